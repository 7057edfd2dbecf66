"""keras_hub's convolutional backbones (tiny random configs, built offline): EfficientNet v2 (CBA, fused and
unfused MBConv blocks with squeeze-excite and stochastic depth) and MobileNet v3 (depthwise, inverted residual
and conv-BN-activation blocks, hard-swish, squeeze-excite with a hard-sigmoid gate) wrap, export and slim exactly.

keras_hub is an optional dependency (in the `test` extra); these tests skip without it.
"""

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.channel_sets import groups_in, num_channels

from helpers import check_dead_branch_is_gone, check_random_gates_slim_exactly, set_all_logits, to_numpy

keras_hub = pytest.importorskip("keras_hub")

pytestmark = pytest.mark.tensorflow_only  # keras_hub imports TensorFlow under every backend


def randomize_statistics(model, seed=0):
    """Non-trivial BatchNorm statistics and biases (the blocks' own sublayers too), so that a pruned channel's
    β, mean or bias would show in the outputs."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        kind = weight.path.rsplit("/", 1)[-1]
        if kind == "moving_variance":
            weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype("float32"))
        elif kind in ("moving_mean", "beta", "bias"):
            weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
        elif kind == "gamma":
            weight.assign(rng.normal(1.0, 0.2, weight.shape).astype("float32"))
    return model


def images(model, seed=0):
    return np.random.default_rng(seed).random((2,) + tuple(model.input_shape[1:])).astype(np.float32)


def tiny_efficientnet_v2():
    """EfficientNetV2-rw-t's block kinds at 16x16: a CBA block, a fused block (expansion 2, squeeze-excite, a
    residual with stochastic depth), unfused blocks (expansion 3, squeeze-excite; stride 2, then a residual)."""
    return randomize_statistics(keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 3, stackwise_depth_coefficients=[1.0] * 3,
        stackwise_kernel_sizes=[3, 3, 3], stackwise_num_repeats=[1, 1, 2], stackwise_input_filters=[8, 8, 8],
        stackwise_output_filters=[8, 8, 16], stackwise_expansion_ratios=[1, 2, 3], stackwise_strides=[1, 1, 2],
        stackwise_squeeze_and_excite_ratios=[0, 0.25, 0.25], stackwise_block_types=["cba", "fused", "unfused"],
        stackwise_force_input_filters=[0] * 3, stackwise_nores_option=[False] * 3, num_features=16,
        input_shape=(16, 16, 3), dropout=0.2, activation="silu"))


def tiny_mobilenet(v3=True):
    """MobileNetV3-small's block kinds at 16x16: a depthwise block with squeeze-excite, inverted residual blocks
    (relu without squeeze-excite at stride 2; hard-swish with squeeze-excite and a residual), the last conv.
    v3=False: MobileNetV2's style (relu6, a residual depthwise block without squeeze-excite), the same classes."""
    style = dict(activation="hard_swish", squeeze_and_excite=0.5, depthwise_stride=2, depthwise_residual=False)
    if not v3:
        style = dict(activation="relu6", squeeze_and_excite=None, depthwise_stride=1, depthwise_residual=True)
    return randomize_statistics(keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[16, 24]], stackwise_num_blocks=[2], stackwise_num_filters=[[8, 8]],
        stackwise_kernel_size=[[3, 5]], stackwise_num_strides=[[2, 1]], stackwise_se_ratio=[[None, 0.25]],
        stackwise_activation=[["relu" if v3 else "relu6", style["activation"]]], stackwise_padding=[[1, 2]],
        output_num_filters=16, depthwise_filters=8, depthwise_stride=style["depthwise_stride"],
        depthwise_residual=style["depthwise_residual"], last_layer_filter=24,
        squeeze_and_excite=style["squeeze_and_excite"], image_shape=(16, 16, 3),
        input_activation=style["activation"], output_activation=style["activation"], input_num_filters=8))


def check_backbone(model, x):
    """The issue's acceptance, on one search model (wrapping is most of the time): parameters counted as Keras
    does; random gates slim exactly (parameters and FLOPs are the exported ones) and the slim model's searched
    convolutions have the exported widths, some below their full width; a fresh build of the exported
    architecture has the slim model's size; every gate on, the search model computes the backbone.
    Returns (graph, slim, architecture)."""
    assert figs_tf.count(model, "params") == model.count_params()
    search, slim, network = check_random_gates_slim_exactly(model, x)
    architecture = network.architecture()
    graph = figs_tf.analyze(model)
    full = {name: num_channels(channel_set) for name, _, channel_set in graph.width_entries() if groups_in(channel_set)}
    assert any(architecture[name] < width for name, width in full.items())
    for name in full:
        if architecture[name]:
            assert slim.get_layer(name).filters == architecture[name], name
    fresh = figs_tf.build_from_architecture(model, figs_tf.export_architecture(search))
    assert fresh.count_params() == slim.count_params()
    assert figs_tf.count(fresh, "flops") == figs_tf.count(slim, "flops")
    set_all_logits(search, 30.0)
    want = to_numpy(model(x, training=False))
    np.testing.assert_allclose(to_numpy(search(x, training=False)), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    return graph, slim, architecture


def test_efficientnet_v2_fused_and_unfused_blocks_slim_exactly():
    model = tiny_efficientnet_v2()
    graph, slim, architecture = check_backbone(model, images(model))
    producers = {name for group in graph.groups for name in group.producers}
    # the expansions and the squeeze-excite widths of both block kinds are searched, written out as plain layers
    for name in ("block2a_.block2a_expand_conv", "block2a_.block2a_se_reduce", "block3a_.block3a_expand_conv",
                 "block3b_.block3b_se_reduce"):
        assert name in producers, name
    # a squeeze-excite's expand conv makes the channels it gates: one group with the expansion
    assert any({"block3a_.block3a_expand_conv", "block3a_.block3a_se_expand"} <= set(g.producers)
               for g in graph.groups)
    # residual adds tie the stem's, the CBA block's and the fused block's outputs
    assert any({"stem_conv", "block1a_.block1a_conv", "block2a_.block2a_project_conv"} <= set(g.producers)
               for g in graph.groups)
    assert not any(type(layer).__module__.startswith("keras_hub") for layer in slim.layers)
    assert slim.get_layer("block2a_.block2a_drop").noise_shape == (None, 1, 1, 1)  # stochastic depth
    depthwise = slim.get_layer("block3b_.block3b_dwconv2")
    assert depthwise.kernel.shape[-2] == architecture["block3b_.block3b_expand_conv"]


def test_mobilenet_v3_blocks_slim_exactly():
    model = tiny_mobilenet()
    graph, slim, architecture = check_backbone(model, images(model))
    producers = {name for group in graph.groups for name in group.producers}
    # the expanded widths (searched through the depthwise convolutions written as grouped Conv2D) and the
    # squeeze-excite widths
    for name in ("block_1_0.block_1_0_conv1", "block_1_1.block_1_1_conv1",
                 "block_1_1.block_1_1_se.block_1_1_se_conv_reduce",
                 "block_0_0.block_0_0_squeeze_excite.block_0_0_squeeze_excite_conv_reduce"):
        assert name in producers, name
    assert not any("grouped convolution" in note for note in graph.notes)
    assert not any(type(layer).__module__.startswith("keras_hub") for layer in slim.layers)
    # each depthwise convolution is a DepthwiseConv2D of the kept expanded width
    depthwise = slim.get_layer("block_1_1.block_1_1_conv2")
    assert isinstance(depthwise, keras.layers.DepthwiseConv2D)
    assert depthwise.kernel.shape[-2] == architecture["block_1_1.block_1_1_conv1"]
    # the stem's channels are gated by the first block's squeeze-excite: one group
    assert any({"input_conv", "block_0_0.block_0_0_squeeze_excite.block_0_0_squeeze_excite_conv_expand"}
               <= set(g.producers) for g in graph.groups)


def test_mobilenet_v2_style_closed_expansion_removes_its_residual_branch(tmp_path):
    """MobileNetV2's style (relu6, a residual depthwise block) counts parameters as Keras does; every channel of
    a residual inverted block's expansion closed, the block (depthwise convolution and squeeze-excite with its
    hard-sigmoid gate included) leaves the slim model, its constant folded exactly; the search model (its
    depthwise convolutions as GroupedDepthwise) saves, loads and slims alike."""
    model = tiny_mobilenet(v3=False)
    x = images(model)
    assert figs_tf.count(model, "params") == model.count_params()
    block = "block_1_1.block_1_1"
    gone = [f"{block}_conv1", f"{block}_conv2", f"{block}_se.{block}_se_conv_expand", f"{block}_conv3"]
    search, slim, _ = check_dead_branch_is_gone(model, [f"{block}_conv1"], gone, x)
    search.save(tmp_path / "search.keras")
    loaded_slim = figs_tf.slim(figs_tf.load_model(tmp_path / "search.keras"))
    assert [layer.name for layer in loaded_slim.layers] == [layer.name for layer in slim.layers]
    np.testing.assert_allclose(to_numpy(loaded_slim(x)), to_numpy(slim(x)), rtol=1e-6, atol=1e-6)
    # the depthwise block's residual ties its output to the stem's; its depthwise convolution slims to one
    assert any({"input_conv", "block_0_0.block_0_0_conv2"} <= set(g.producers) for g in figs_tf.analyze(model).groups)
    assert isinstance(slim.get_layer("block_0_0.block_0_0_conv1"), keras.layers.DepthwiseConv2D)


def test_grouped_depthwise_with_a_depth_multiplier_slims_to_depthwise_conv2d():
    """A Conv2D with one group per input channel and two outputs per group, run through GroupedDepthwise: its
    input's channels are searched through it (each owning its two outputs) and it slims to a DepthwiseConv2D
    with depth_multiplier 2 computing what the search model computes."""
    from figs_tf.handlers.keras_hub_convblocks import GroupedDepthwise  # pylint: disable=g-import-not-at-top
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 1, name="expand")(inputs)
    x = GroupedDepthwise(keras.layers.Conv2D(8, 3, groups=4, padding="same", name="grouped"))(x)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="project")(keras.layers.ReLU()(x)))
    assert figs_tf.count(model, "params") == model.count_params()
    _, slim, network = check_random_gates_slim_exactly(model, images(model), seed=2)
    depthwise = slim.get_layer("grouped")
    assert isinstance(depthwise, keras.layers.DepthwiseConv2D) and depthwise.depth_multiplier == 2
    assert depthwise.kernel.shape[-2] == network.architecture()["expand"] < 4
