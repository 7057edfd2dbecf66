"""figs_tf: Fine-Grained Stochastic Architecture Search (FiGS) for Keras 3.

    search = figs_tf.wrap(model, cost="params", strength=1.2e-6)
    search.fit(data, callbacks=[figs_tf.CostCallback(workdir)])
    arch = figs_tf.export_architecture(search)
    figs_tf.summary(search)        # kept / total per layer, the cost against the supernet and the budget
    slim = figs_tf.slim(search)

The library uses `keras.ops` only and runs on any Keras backend; importing it
never imports TensorFlow. The training binaries (`figs_tf.train`) add tf.data
input pipelines and distribution.
"""

from figs_tf import _binary_startup  # noqa: F401  first: the binaries' defaults before keras imports TensorFlow
from figs_tf import handlers
from figs_tf.apply_mask import ApplyMask
from figs_tf.budget import ControllerSettings
from figs_tf.callbacks import BudgetController, CostCallback, ParetoController
from figs_tf.channel_bias import ChannelBias
from figs_tf.channel_groups import analyze
from figs_tf.cost import count
from figs_tf.cost_layer import CostLayer
from figs_tf.export import (ExportedNetwork, expected_cost, export_architecture, exported_network,
                            load_architecture, load_channels, save_architecture, supernet_cost)
from figs_tf.gated_recurrence import GatedRecurrence
from figs_tf.handlers import LayerHandler, UnsupportedLayerError, register_handler
from figs_tf.keras_graph import GraphError
from figs_tf.keras_hub_models import keras_hub_backbone, uniform_keras_hub_backbone, uniform_widths
from figs_tf.mask_layer import MaskLayer
from figs_tf.plots import plot_operators, plot_widths
from figs_tf.recalibrate import recalibrate_batchnorm
from figs_tf.search_summary import summary
from figs_tf.slim import build_from_architecture, slim
from figs_tf.wrapping import (channel_graph_of, gates_of, get_gate_speed, get_strength, get_target, set_gate_speed,
                              set_strength, set_target, wrap)

__version__ = "0.1.0"

__all__ = [
    "ApplyMask", "BudgetController", "ChannelBias", "ControllerSettings", "CostCallback", "CostLayer",
    "ExportedNetwork", "GatedRecurrence", "GraphError", "LayerHandler", "MaskLayer", "ParetoController",
    "UnsupportedLayerError",
    "analyze", "build_from_architecture", "channel_graph_of", "count", "expected_cost", "export_architecture",
    "exported_network", "gates_of", "get_gate_speed", "get_strength", "get_target", "handlers",
    "keras_hub_backbone",    "load_architecture", "load_channels", "plot_operators", "plot_widths", "recalibrate_batchnorm",
    "register_handler", "save_architecture", "set_gate_speed", "set_strength", "set_target", "slim",
    "summary", "supernet_cost", "uniform_keras_hub_backbone", "uniform_widths", "wrap",
]
