"""figs_tf: Fine-Grained Stochastic Architecture Search (FiGS) for Keras 3.

    search = figs_tf.wrap(model, cost="params", strength=1.2e-6)
    search.fit(data, callbacks=[figs_tf.CostCallback(workdir)])
    arch = figs_tf.export_architecture(search)
    figs_tf.summary(search)        # kept / total per layer, the cost against the supernet and the budget
    slim = figs_tf.slim(search)

The library uses `keras.ops` only and runs on any Keras backend; importing it
never imports TensorFlow, and `import figs_tf` itself imports neither keras nor
TensorFlow (names load on first use). The training binaries (`figs_tf.train`) add tf.data
input pipelines and distribution.
"""

import importlib
import importlib.util

# What `figs_tf.<name>` is, by the module that defines it. The package is lazy (PEP 562): `import
# figs_tf` imports neither keras nor TensorFlow, so a program (the training binaries' start-up,
# figs_tf/train/startup.py) can set its environment or parse its flags first; a name's module is
# imported on first use.
_EXPORTS = {
    "figs_tf.apply_mask": ["ApplyMask"],
    "figs_tf.budget": ["ControllerSettings"],
    "figs_tf.callbacks": ["BudgetController", "CostCallback", "ParetoController"],
    "figs_tf.channel_bias": ["ChannelBias"],
    "figs_tf.channel_groups": ["analyze"],
    "figs_tf.cost": ["count"],
    "figs_tf.cost_layer": ["CostLayer"],
    "figs_tf.export": ["ExportedNetwork", "expected_cost", "export_architecture", "exported_network",
                       "load_architecture", "load_channels", "save_architecture", "supernet_cost"],
    "figs_tf.gated_recurrence": ["GatedRecurrence"],
    "figs_tf.handlers": ["LayerHandler", "UnsupportedLayerError", "register_handler"],
    "figs_tf.keras_graph": ["GraphError"],
    "figs_tf.keras_hub_models": ["keras_hub_backbone", "uniform_keras_hub_backbone", "uniform_widths"],
    "figs_tf.mask_layer": ["MaskLayer"],
    "figs_tf.plots": ["plot_operators", "plot_widths"],
    "figs_tf.recalibrate": ["recalibrate_batchnorm"],
    "figs_tf.search_summary": ["summary"],
    "figs_tf.slimming": ["build_from_architecture", "slim"],
    "figs_tf.wrapping": ["channel_graph_of", "gates_of", "get_gate_speed", "get_strength", "get_target",
                         "set_gate_speed", "set_strength", "set_target", "wrap"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


# The modules that register figs_tf's layers with Keras's serialization (the search model's gates,
# slim models' ChannelBias and decoder attention layers).
_SERIALIZABLE_MODULES = ("figs_tf.apply_mask", "figs_tf.channel_bias", "figs_tf.cost_layer", "figs_tf.gated_recurrence",
                         "figs_tf.mask_layer", "figs_tf.wrapper_layer", "figs_tf.handlers.attention",
                         "figs_tf.handlers.grouped_attention", "figs_tf.handlers.keras_hub_decoders",
                         "figs_tf.handlers.keras_hub_encoders")


def load_model(filepath, **kwargs):
    """`keras.saving.load_model` with figs_tf's layers registered, in a process that has not used them yet.

        search = figs_tf.load_model("runs/mbv2/search.keras")   # or a slim model

    Keras finds a custom layer class only once its module is imported; `import
    figs_tf` imports nothing (the package is lazy), so a new process that loads a
    saved search or slim model calls this (or uses any figs_tf name first).
    """
    for module in _SERIALIZABLE_MODULES:
        if not module.startswith("figs_tf.handlers.keras_hub") or importlib.util.find_spec("keras_hub") is not None:
            importlib.import_module(module)
    import keras  # pylint: disable=g-import-not-at-top
    return keras.saving.load_model(filepath, **kwargs)


def __getattr__(name):
    if name not in _MODULE_OF:
        if not name.startswith("_") and importlib.util.find_spec(f"figs_tf.{name}") is not None:
            return importlib.import_module(f"figs_tf.{name}")  # a submodule: figs_tf.gate_speed, figs_tf.handlers
        raise AttributeError(f"module 'figs_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF) | {"handlers"})


__version__ = "0.1.0"

__all__ = [
    "ApplyMask", "BudgetController", "ChannelBias", "ControllerSettings", "CostCallback", "CostLayer",
    "ExportedNetwork", "GatedRecurrence", "GraphError", "LayerHandler", "MaskLayer", "ParetoController",
    "UnsupportedLayerError",
    "analyze", "build_from_architecture", "channel_graph_of", "count", "expected_cost", "export_architecture",
    "exported_network", "gates_of", "get_gate_speed", "get_strength", "get_target", "handlers",
    "keras_hub_backbone", "load_architecture", "load_model", "load_channels", "plot_operators", "plot_widths",
    "recalibrate_batchnorm",
    "register_handler", "save_architecture", "set_gate_speed", "set_strength", "set_target", "slim",
    "summary", "supernet_cost", "uniform_keras_hub_backbone", "uniform_widths", "wrap",
]
