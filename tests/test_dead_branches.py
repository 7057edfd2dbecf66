"""Dead branches (figs_tf.branches): summands of an Add whose inner channels close leave the network exactly.

The spaces' own cases (an FBNet operator, a One-Shot pair, a ResNet bottleneck)
are in tests/test_space_*.py; random graphs in tests/test_fuzz_graphs.py. Here:
the rule's edge cases on small hand-made graphs, with constants computed by
hand from BatchNorm's formula.
"""

import json
import os

import keras
import numpy as np
import pytest
from keras import ops

import figs_tf
from figs_tf import export_rules
from figs_tf.mask_layer import MaskLayer, hard_widths, hard_widths_numpy
from figs_tf.wrapping import channel_graph_of, gates_of

from helpers import (assign_logits, batchnorm_of_zero, check_dead_branch_is_gone, layer_structure,
                     randomize_batchnorm, set_all_logits, set_group_logits, to_numpy)

L = keras.layers


def _conv_bn(x, width, kernel, name, relu=True):
    x = L.Conv2D(width, kernel, padding="same", name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x) if relu else x


def _two_branch_sum(identity=True, tail=None, se=False):
    """stem -> [x +] a(x) + b(x) -> head; a and b are conv-BN-ReLU-conv-BN pairs.

    tail: an extra layer after a's last BatchNorm ("depthwise": a 'same'-padded 3x3
    depthwise conv, whose output near the borders differs from the middle; "relu").
    se: a squeeze-excite product inside b, between its two convolutions.
    """
    inputs = keras.Input((8, 8, 3), name="image")
    x = _conv_bn(inputs, 6, 3, "stem")
    a = _conv_bn(_conv_bn(x, 4, 1, "a1"), 6, 1, "a2", relu=False)
    if tail == "depthwise":
        a = L.DepthwiseConv2D(3, padding="same", name="a_tail")(a)
    elif tail == "relu":
        a = L.ReLU(name="a_tail")(a)
    b = _conv_bn(x, 5, 3, "b1")
    if se:
        s = L.GlobalAveragePooling2D(keepdims=True, name="se_pool")(b)
        s = L.Conv2D(2, 1, activation="relu", name="se_reduce")(s)
        s = L.Conv2D(5, 1, activation="sigmoid", name="se_expand")(s)
        b = L.Multiply(name="se_scale")([b, s])
    b = _conv_bn(b, 6, 1, "b2", relu=False)
    y = L.Add(name="sum")([x, a, b] if identity else [a, b])
    y = L.GlobalAveragePooling2D(name="pool")(L.ReLU(name="sum_relu")(y))
    return keras.Model(inputs, L.Dense(3, name="head")(y), name="two_branch_sum")


def _names(model, prefixes):
    return [layer.name for layer in model.layers if layer.name.startswith(prefixes)]


def _x(seed=0):
    return np.random.default_rng(seed).random((2, 8, 8, 3)).astype(np.float32)


def _model(seed=0, **kwargs):
    model = _two_branch_sum(**kwargs)
    randomize_batchnorm(model, np.random.default_rng(seed))
    return model


def test_the_folded_constant_is_the_dead_branch_on_zeros_by_hand():
    model = _model(tail="relu")
    _, slim, _ = check_dead_branch_is_gone(model, ["a1_conv"], _names(model, ("a1", "a2", "a_tail")), _x())
    # a2_conv reads nothing: its bias, through a2_bn, then the ReLU after it (not affine, still a constant)
    constant = np.maximum(batchnorm_of_zero(model.get_layer("a2_bn"), to_numpy(model.get_layer("a2_conv").bias)), 0)
    before = to_numpy(model.get_layer("b2_bn").beta)  # b's last BatchNorm feeds the sum alone: it absorbs
    np.testing.assert_allclose(to_numpy(slim.get_layer("b2_bn").beta), before + constant, rtol=1e-5, atol=1e-6)
    assert not any("folded" in layer.name for layer in slim.layers)


def test_a_sum_left_with_its_identity_gets_one_bias():
    model = _model()
    gone = _names(model, ("a1", "a2", "b1", "b2", "sum"))
    gone.remove("sum_relu")
    _, slim, fresh = check_dead_branch_is_gone(model, ["a1_conv", "b1_conv"], gone, _x())
    constant = sum(batchnorm_of_zero(model.get_layer(f"{n}_bn"), to_numpy(model.get_layer(f"{n}_conv").bias))
                   for n in ("a2", "b2"))
    np.testing.assert_allclose(to_numpy(slim.get_layer("sum_folded_bias").bias), constant, rtol=1e-5, atol=1e-6)
    # counted: the bias is 6 parameters the exported cost includes (checked against count_params above)
    assert isinstance(fresh.get_layer("sum_folded_bias"), figs_tf.ChannelBias)
    np.testing.assert_array_equal(to_numpy(fresh.get_layer("sum_folded_bias").bias), np.zeros(6))


def test_a_sum_of_branches_only_keeps_the_better_one():
    # no identity: removing both summands would cut the network in two
    model = _model(identity=False)
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    set_group_logits(search, "a1_conv", [-9.0, -5.0, -9.0, -9.0])  # a's best channel: -5
    set_group_logits(search, "b1_conv", -8.0)
    architecture = figs_tf.export_architecture(search)
    assert architecture["a1_conv"] == 1 and architecture["b1_conv"] == 0 and architecture["b2_conv"] == 0
    network = figs_tf.exported_network(search)
    assert network.kept_channels[channel_graph_of(search).groups.index(
        next(g for g in channel_graph_of(search).groups if g.producers == ["a1_conv"]))].tolist() == [1]
    slim = figs_tf.slim(search)
    x = _x()
    np.testing.assert_allclose(to_numpy(slim(x)), to_numpy(search(x, training=False)), rtol=1e-5, atol=1e-5)
    assert not _names(slim, ("b1", "b2")) and _names(slim, ("a1", "a2"))


def test_a_constant_that_varies_over_positions_keeps_one_channel():
    model = _model(tail="depthwise")
    graph = figs_tf.analyze(model)
    assert [b.name for b in graph.branches] == ["b"]
    assert any("'sum'" in note and "positions" in note for note in graph.notes)
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    set_group_logits(search, "a1_conv", -30.0)
    assert figs_tf.export_architecture(search)["a1_conv"] == 1  # the keep-one rule, as before
    slim = figs_tf.slim(search)
    x = _x()
    np.testing.assert_allclose(to_numpy(slim(x)), to_numpy(search(x, training=False)), rtol=1e-5, atol=1e-5)


def _resized_branch(**resizing):
    """stem -> [x +] crop to 8x4 -> conv-BN-ReLU-conv-BN -> Resizing(8, 8, **resizing) -> head (issue 26)."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = _conv_bn(inputs, 6, 3, "stem")
    r = L.Cropping2D(((0, 0), (2, 2)), name="r_crop")(x)
    r = _conv_bn(_conv_bn(r, 4, 1, "r1"), 6, 1, "r2", relu=False)
    r = L.Resizing(8, 8, name="resize", **resizing)(r)
    y = L.GlobalAveragePooling2D(name="pool")(L.Add(name="sum")([x, r]))
    model = keras.Model(inputs, L.Dense(3, name="head")(y))
    randomize_batchnorm(model, np.random.default_rng(0))
    return model


@pytest.mark.parametrize("option", ["pad_to_aspect_ratio", "crop_to_aspect_ratio", "stretch"])
def test_a_resized_branch_is_removed_only_where_resizing_keeps_its_constant(option):
    """Padding an 8x4 constant to 8x8 leaves a border of zeros: the branch keeps one channel, the note
    says why, and slim is exact. Cropping to the aspect ratio or stretching keeps a constant: the
    branch is removed and its constant folded."""
    model = _resized_branch(**({} if option == "stretch" else {option: True}))
    graph = figs_tf.analyze(model)
    x = np.random.default_rng(1).random((2, 8, 8, 3)).astype(np.float32)
    if option == "pad_to_aspect_ratio":
        assert graph.branches == []
        assert any("'sum'" in note and "differ between positions" in note for note in graph.notes), graph.notes
        search = figs_tf.wrap(model)
        set_all_logits(search, 30.0)
        set_group_logits(search, "r1_conv", -30.0)
        assert figs_tf.export_architecture(search)["r1_conv"] == 1  # keep-one
        slim = figs_tf.slim(search)
        expected = to_numpy(search(x, training=False))
        np.testing.assert_allclose(to_numpy(slim(x)), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
        assert slim.count_params() == figs_tf.exported_network(search).cost("params")
    else:
        assert [b.name for b in graph.branches] == ["r"]
        check_dead_branch_is_gone(model, closed=["r1_conv"], gone=["r_crop", "r1_conv", "r2_conv", "resize"], x=x)


def test_a_squeeze_excite_inside_a_branch_is_a_product_not_a_sum():
    model = _model(se=True)
    # se_reduce closed: se_expand gives a constant that multiplies a live tensor: it keeps one channel
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    set_group_logits(search, "se_reduce", -30.0)
    assert figs_tf.export_architecture(search)["se_reduce"] == 1
    # b1 closed: b is constant, the squeeze-excite goes with it
    gone = _names(model, ("b1", "b2", "se_"))
    check_dead_branch_is_gone(model, ["b1_conv"], gone, _x())


def test_slimming_a_plain_model_to_a_saved_architecture_gives_the_same_network(tmp_path):
    model = _model(seed=2)
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    set_group_logits(search, "a1_conv", -30.0)
    set_group_logits(search, "stem_conv", [30.0, -30.0, 30.0, 30.0, -30.0, 30.0])
    network = figs_tf.exported_network(search)
    path = os.path.join(tmp_path, "arch.json")
    figs_tf.save_architecture(network.architecture(), path, channels=network.channels())
    from_file = figs_tf.slim(model, architecture=path)
    slim = figs_tf.slim(search)
    assert layer_structure(from_file) == layer_structure(slim)
    x = _x()
    np.testing.assert_allclose(to_numpy(from_file(x)), to_numpy(slim(x)), rtol=1e-5, atol=1e-6)


def test_an_architecture_that_removes_a_used_layer_is_refused():
    model = _model()
    architecture = figs_tf.export_architecture(figs_tf.wrap(model))
    architecture["a2_conv"] = 0  # a1 keeps its channels: the branch is alive and a2_conv is needed
    with pytest.raises(ValueError, match=r"tied by a merge.*'a2_conv'"):
        figs_tf.build_from_architecture(model, architecture)


def test_the_numpy_twin_and_the_config_round_trip_agree_on_the_summand_rules():
    search = figs_tf.wrap(_model(identity=False, se=True))
    gates = gates_of(search)
    rules = export_rules.summand_rules(gates.keep_one_sets)
    assert len(rules) == 1 and rules[0].keep_one
    copy = MaskLayer.from_config(json.loads(json.dumps(gates.get_config())))  # as a saved model holds it
    assert copy.keep_one_sets == gates.keep_one_sets
    rng = np.random.default_rng(0)
    revived = removed = 0
    for _ in range(60):
        logits = np.concatenate([rng.normal(rng.uniform(-7, 2), 2.0, s) for s in gates.group_sizes])
        logits[rng.random(logits.shape) < 0.4] = -30.0
        logits = logits.astype(np.float32)
        backend = [int(w) for w in to_numpy(hard_widths(ops.convert_to_tensor(logits), gates.group_sizes,
                                                        gates.keep_one_sets))]
        assert hard_widths_numpy(logits, gates.group_sizes, gates.keep_one_sets) == backend
        assert hard_widths_numpy(logits, copy.group_sizes, copy.keep_one_sets) == backend
        assign_logits(search, logits)
        network = figs_tf.exported_network(search)
        dead = [b for b in network.graph.branches if b.is_dead(network.widths)]
        assert len(dead) < 2  # never both: the sum would be cut off
        removed += len(dead)
        floor = hard_widths_numpy(logits, gates.group_sizes, [])
        revived += all(any(floor[g] == 0 for g in b.internal_groups) for b in network.graph.branches)
    assert revived > 5 and removed > 10  # both steps of the rule ran
