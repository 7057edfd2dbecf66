"""The LayerHandler interface is the whole contract: a handler written against it alone works everywhere.

A layer type figs_tf has never seen (`ScaledProjection`: y = (x @ kernel) * gain)
is taught to it by a handler that overrides only members `LayerHandler`
declares; analysis, cost, wrapping, the export and slimming then treat it
exactly (checked against Keras's count_params, hand counts and the search
model's own outputs). A static check keeps the declaration complete: every
member that cost, export, slimming, wrapping and the analysis read of a
handler is declared on the base class.
"""

import ast
import os

import keras
import numpy as np

import figs_tf
from figs_tf.channel_sets import Segment
from figs_tf.handlers import LayerHandler, Term

from helpers import check_all_gates_on_is_the_supernet, check_random_gates_slim_exactly

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ScaledProjection(keras.layers.Layer):
    """(x @ kernel) * gain: a Dense without bias and with a learnt scale per output channel."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")
        self.gain = self.add_weight(shape=(self.units,), initializer="random_normal")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) * self.gain


class ScaledProjectionHandler(LayerHandler):
    """Overrides declared members only."""

    mixes_channels = True

    def requires_clean_inputs(self, call):
        return True

    def output_dirty(self, call, in_dirty):
        return True

    def output_sets(self, call, in_sets, groups):
        units = call.layer.units
        return [(Segment(groups.new_group(units, call.name), units),)]

    def param_terms(self, call, in_sets, out_sets):
        return [Term(1, (in_sets[0], out_sets[0])), Term(1, (out_sets[0],))]

    def flop_terms(self, call, in_sets, out_sets):
        return [Term(1, (in_sets[0], out_sets[0]))]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        kernel = keras.ops.convert_to_numpy(layer.kernel)[kept_in[0]][:, kept_out[0]]
        gain = keras.ops.convert_to_numpy(layer.gain)[kept_out[0]]
        return ScaledProjection(len(kept_out[0]), name=layer.name), [kernel, gain]

    def output_channel_l1(self, layer):
        kernel, gain = (np.abs(keras.ops.convert_to_numpy(w)) for w in (layer.kernel, layer.gain))
        return kernel.sum(axis=0) * gain


def _model():
    inputs = keras.Input((8,))
    x = ScaledProjection(6, name="p1")(inputs)
    x = keras.layers.ReLU()(x)
    x = ScaledProjection(5, name="p2")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def test_the_handler_overrides_only_declared_members():
    own = {name for name in vars(ScaledProjectionHandler) if not name.startswith("__")}
    assert own and own <= set(dir(LayerHandler))


def test_a_handler_written_against_the_interface_wraps_counts_and_slims_exactly():
    figs_tf.register_handler(ScaledProjection, ScaledProjectionHandler())
    model = _model()
    assert figs_tf.count(model, "params") == model.count_params()
    assert figs_tf.count(model, "flops") == 8 * 6 + 6 * 5 + 5 * 3  # multiply-adds by hand
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    check_all_gates_on_is_the_supernet(model, x)
    _, slim, _ = check_random_gates_slim_exactly(model, x, seed=3)
    assert 0 < slim.get_layer("p1").units < 6 or 0 < slim.get_layer("p2").units < 5
    assert isinstance(slim.get_layer("p1"), ScaledProjection)

    # widths without kept channels: the channels of largest output_channel_l1 are kept (numpy by hand)
    kernel1, gain1, kernel2, gain2 = (keras.ops.convert_to_numpy(w) for w in model.get_layer("p1").weights
                                      + model.get_layer("p2").weights)
    head_kernel, head_bias = model.get_layer("head").get_weights()
    kept1 = np.sort(np.argsort(-(np.abs(kernel1).sum(0) * np.abs(gain1)), kind="stable")[:3])
    kept2 = np.sort(np.argsort(-(np.abs(kernel2).sum(0) * np.abs(gain2)), kind="stable")[:2])
    slim = figs_tf.slim(model, {"p1": 3, "p2": 2, "head": 3})
    hidden = np.maximum(x @ kernel1[:, kept1] * gain1[kept1], 0)
    expected = (hidden @ kernel2[kept1][:, kept2] * gain2[kept2]) @ head_kernel[kept2] + head_bias
    np.testing.assert_allclose(keras.ops.convert_to_numpy(slim(x)), expected, rtol=1e-5, atol=1e-6)
    assert slim.count_params() == 8 * 3 + 3 + 3 * 2 + 2 + 2 * 3 + 3


def _members_read(path):
    """Names of attributes read of a handler in one module: `handler.X`, `<...>.handler(call).X`, `handler_for(l).X`."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id == "handler":
            names.add(node.attr)
        elif isinstance(value, ast.Call):
            function = value.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if called in ("handler", "handler_for"):
                names.add(node.attr)
    return names


def test_every_member_the_library_reads_of_a_handler_is_declared():
    callers = ["channel_groups", "cost", "export", "slimming", "wrapping", "branches"]
    read = set().union(*(_members_read(os.path.join(ROOT, "figs_tf", f"{m}.py")) for m in callers))
    assert {"output_sets", "slim", "param_terms", "output_channel_l1"} <= read  # the scan sees the callers
    assert read - set(dir(LayerHandler)) == set()
