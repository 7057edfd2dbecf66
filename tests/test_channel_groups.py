"""Channel-group analysis: ties, composites, fixed channels, nested models, clear errors."""

import os

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.channel_sets import Segment

from helpers import check_all_gates_on_is_the_supernet, check_random_gates_slim_exactly, residual_concat_depthwise_model


def _groups_by_producer(graph):
    return {tuple(g.producers): g.size for g in graph.groups}


def test_residual_add_ties_groups_and_concat_makes_a_composite():
    graph = figs_tf.analyze(residual_concat_depthwise_model())
    # c1 and c2 meet in an Add: one group of 8; c3 its own group of 4; fc is the output.
    assert _groups_by_producer(graph) == {("c1", "c2"): 8, ("c3",): 4}
    by_name = {c.name: c for c in graph.calls}
    cat_set = graph.out_sets(by_name["cat"])[0]
    residual = next(i for i, g in enumerate(graph.groups) if "c1" in g.producers)
    c3 = next(i for i, g in enumerate(graph.groups) if "c3" in g.producers)
    # depthwise passes the residual group through; concat joins [dw | c3]
    assert cat_set == (Segment(residual, 8), Segment(c3, 4))
    assert graph.out_sets(by_name["fc"])[0] == (Segment(None, 10),)
    assert graph.in_sets(by_name["c1"])[0] == (Segment(None, 3),)


def test_masks_go_after_batchnorm_not_between_conv_and_batchnorm():
    model = residual_concat_depthwise_model()
    search = figs_tf.wrap(model)
    mask_inputs = {layer.name: layer._inbound_nodes[0].input_tensors[0]._keras_history.operation.name
                   for layer in search.layers if isinstance(layer, figs_tf.ApplyMask)}
    producers = set(mask_inputs.values())
    assert "c1" not in producers and "c2" not in producers
    assert {"bn2", "relu1"} <= producers  # before the Add and before c2 / the Add
    # c3 feeds the concat directly: masked right after it; dw output (bias) too.
    assert {"c3", "dw"} <= producers


def test_depthwise_multiplier_repeats_each_input_channel():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 1, name="c")(inputs)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    outputs = keras.layers.Conv2D(2, 1, name="out")(x)
    graph = figs_tf.analyze(keras.Model(inputs, outputs))
    dw = next(c for c in graph.calls if c.name == "dw")
    assert graph.out_sets(dw)[0] == (Segment(0, 4, 2),)


def test_squeeze_excite_product_ties_the_gate_with_the_features():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, name="features")(inputs)
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    s = keras.layers.Conv2D(4, 1, activation="relu", name="reduce")(s)
    s = keras.layers.Conv2D(16, 1, activation="sigmoid", name="expand")(s)
    x = keras.layers.Multiply(name="excite")([x, s])
    outputs = keras.layers.Dense(5, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    graph = figs_tf.analyze(keras.Model(inputs, outputs))
    assert _groups_by_producer(graph) == {("expand", "features"): 16, ("reduce",): 4}


def test_nested_functional_and_sequential_models_are_inlined():
    inner_in = keras.Input((8, 8, 3))
    inner = keras.Model(inner_in, keras.layers.Conv2D(6, 3, name="inner_conv")(inner_in), name="backbone")
    head = keras.Sequential([keras.Input((6, 6, 6)), keras.layers.Conv2D(5, 1, name="seq_conv"),
                             keras.layers.GlobalAveragePooling2D(name="seq_gap")], name="head")
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(3, name="fc")(head(inner(inputs)))
    model = keras.Model(inputs, outputs)
    graph = figs_tf.analyze(model)
    assert [c.name for c in graph.calls] == ["inner_conv", "seq_conv", "seq_gap", "fc"]
    assert _groups_by_producer(graph) == {("inner_conv",): 6, ("seq_conv",): 5}
    assert figs_tf.count(model, "params") == model.count_params()


def test_input_channels_and_outputs_are_never_pruned():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c")(inputs)
    x = keras.layers.Add(name="add_input")([x, inputs])  # tied to the image channels
    outputs = keras.layers.Conv2D(2, 1, name="out")(x)
    graph = figs_tf.analyze(keras.Model(inputs, outputs))
    assert graph.num_groups == 0
    assert any("never pruned" in note for note in graph.notes)


def test_layer_normalization_over_channels_is_kept_out_of_search():
    inputs = keras.Input((10, 8))
    x = keras.layers.Dense(16, name="up")(inputs)
    x = keras.layers.LayerNormalization(name="ln")(x)
    h = keras.layers.Dense(32, name="hidden")(x)
    outputs = keras.layers.Dense(4, name="out")(h)
    graph = figs_tf.analyze(keras.Model(inputs, outputs))
    assert _groups_by_producer(graph) == {("hidden",): 32}
    assert any("'ln'" in note and "mixes channels" in note for note in graph.notes)


def test_exclude_keeps_a_layers_channels_out_of_search():
    graph = figs_tf.analyze(residual_concat_depthwise_model(), exclude=["c3"])
    assert _groups_by_producer(graph) == {("c1", "c2"): 8}
    with pytest.raises(ValueError, match="not in the model.*'nope'"):
        figs_tf.analyze(residual_concat_depthwise_model(), exclude=["nope"])


def test_unknown_layer_type_names_the_layer_and_the_fix():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 1)(inputs)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="doubler")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(figs_tf.UnsupportedLayerError) as error:
        figs_tf.analyze(model)
    message = str(error.value)
    assert "'doubler'" in message and "Lambda" in message
    assert "register_handler" in message


def test_registering_a_handler_makes_an_unknown_layer_supported():
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 1, name="c")(inputs)
    x = Doubler(name="doubler")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    figs_tf.register_handler(Doubler, figs_tf.handlers.PerChannel(zero_preserving=True))
    graph = figs_tf.analyze(model)
    assert _groups_by_producer(graph) == {("c",): 4}


def test_subclassed_model_gets_an_error_saying_what_is_supported():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    net = Net()
    net(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(figs_tf.GraphError, match="subclassed model.*functional"):
        figs_tf.analyze(net)


def shared_mlp_model():
    """A stem conv, then one residual MLP (two Dense layers) applied twice, then a head."""
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(6, 1, name="stem")(inputs)
    expand = keras.layers.Dense(12, activation="relu", name="expand")
    project = keras.layers.Dense(6, name="project")
    for _ in range(2):
        x = keras.layers.Add()([x, project(expand(x))])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


def test_a_shared_layer_keeps_one_set_of_channels_at_every_use():
    model = shared_mlp_model()
    graph = figs_tf.analyze(model)
    # expand's units at both uses are one group; the residual stream ties stem and both uses of project
    assert sorted(g.producers for g in graph.groups) == [["expand"], ["project", "stem"]]
    assert figs_tf.count(model, "params") == model.count_params() == (3 * 6 + 6) + (6 * 12 + 12) + (12 * 6 + 6) + 14
    positions = 4 * 4
    assert figs_tf.count(model, "flops") == positions * 3 * 6 + 2 * positions * (6 * 12 + 12 * 6) + 6 * 2
    x = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    check_all_gates_on_is_the_supernet(model, x)
    _, slim, network = check_random_gates_slim_exactly(model, x, seed=2)
    assert [layer.name for layer in slim.layers].count("expand") == 1
    assert slim.get_layer("expand").units == network.architecture()["expand"] < 12


def test_a_shared_attention_layer_wraps_saves_loads_and_slims_alike(tmp_path):
    tokens = keras.Input((6, 5))
    x = keras.layers.Dense(8, name="embed")(tokens)
    attention = keras.layers.MultiHeadAttention(3, 2, name="attention")
    for _ in range(2):
        x = keras.layers.Add()([x, attention(x, x)])
    model = keras.Model(tokens, keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling1D()(x)))
    assert figs_tf.count(model, "params") == model.count_params()
    x = np.random.default_rng(3).random((2, 6, 5)).astype(np.float32)
    check_all_gates_on_is_the_supernet(model, x)
    search, slim, network = check_random_gates_slim_exactly(model, x, seed=4)
    assert slim.get_layer("attention").num_heads == network.architecture()["attention/heads"] < 3
    path = os.path.join(tmp_path, "search.keras")
    search.save(path)
    loaded = keras.models.load_model(path)
    assert figs_tf.export_architecture(loaded) == figs_tf.export_architecture(search)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(figs_tf.slim(loaded)(x)),
                               keras.ops.convert_to_numpy(slim(x)), rtol=1e-5, atol=1e-6)


def test_a_shared_layer_called_with_different_options_is_refused_with_the_reason():
    inputs = keras.Input((4, 6))
    attention = keras.layers.MultiHeadAttention(2, 3, name="attention")
    x = attention(inputs, inputs)
    x = attention(x, x, use_causal_mask=True)  # the search model would run the first use's options again
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(figs_tf.GraphError, match="'attention'.*applied 2 times with different arguments"):
        figs_tf.analyze(model)


def test_a_split_keeps_whole_groups_searched_and_cuts_inside_a_group_with_a_note():
    inputs = keras.Input((4, 4, 3))
    a = keras.layers.Conv2D(3, 1, name="a")(inputs)
    b = keras.layers.Conv2D(5, 1, name="b")(inputs)
    left, right = keras.ops.split(keras.layers.Concatenate()([a, b]), [3], axis=-1)  # at the seam
    c = keras.layers.Conv2D(6, 1, name="c")(keras.layers.Concatenate()([right, left]))
    halves = keras.ops.split(c, 2, axis=-1)  # inside c's channels
    d = keras.layers.Conv2D(4, 1, name="d")(keras.layers.Add()(halves))
    padded = keras.ops.pad(d, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=float("-inf"))
    x = keras.layers.MaxPooling2D(3, strides=1)(padded)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x)))
    graph = figs_tf.analyze(model)
    assert sorted(g.key for g in graph.groups) == ["a", "b", "d"]
    assert any("'c'" in note and "splits their channels" in note for note in graph.notes)
    x = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    check_all_gates_on_is_the_supernet(model, x)
    check_random_gates_slim_exactly(model, x, seed=5)


def test_padding_the_channel_axis_keeps_those_channels_out_of_search():
    inputs = keras.Input((4, 4, 3))
    x = keras.ops.pad(keras.layers.Conv2D(4, 1, name="c")(inputs), 1)  # every axis, the channels too
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    assert any("'c'" in note and "pads the channel axis" in note for note in figs_tf.analyze(model).notes)


def test_keras_ops_arithmetic_in_functional_graphs():
    # MobileNetV3's hard-sigmoid: relu6(x + 3) * (1 / 6) written with keras ops.
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="c")(inputs)
    gate = keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)
    x = x * gate
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))
    graph = figs_tf.analyze(model)
    assert _groups_by_producer(graph) == {("c",): 8}
