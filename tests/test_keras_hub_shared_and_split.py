"""keras_hub backbones that split channels, pad with -inf or share layers across depth (tiny random configs,
built offline): CSPNet, ResNetV2 and ALBERT wrap, export and slim exactly.

keras_hub is an optional dependency (in the `test` extra); these tests skip without it.
"""

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.channel_sets import groups_in, num_channels

from helpers import (attention_flops_by_hand, check_all_gates_on_is_the_supernet, check_fresh_build_matches_slim,
                     check_random_gates_slim_exactly, to_numpy)

keras_hub = pytest.importorskip("keras_hub")

pytestmark = pytest.mark.tensorflow_only  # keras_hub imports TensorFlow under every backend


def images(shape, seed=0):
    return np.random.default_rng(seed).random((2,) + shape).astype(np.float32)


def tiny_cspnet():
    """cspresnet50's stage layout (csp stages of bottleneck blocks, a split of each stage's expansion) at 16x16."""
    return keras_hub.models.CSPNetBackbone(
        stem_filters=8, stem_kernel_size=3, stem_strides=1, stackwise_depth=[1, 1], stackwise_strides=[1, 2],
        stackwise_num_filters=[8, 16], block_type="bottleneck_block", stage_type="csp", bottle_ratio=[0.5],
        block_ratio=[1.0], expand_ratio=[2.0], stem_padding="valid", cross_linear=True, image_shape=(16, 16, 3))


def tiny_resnet_v2():
    """Pre-activation bottleneck ResNet (keras_hub requires 64 filters in the first stack)."""
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[8], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 8],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="bottleneck_block",
        use_pre_activation=True, image_shape=(16, 16, 3))


def check_backbone(model, x, cost="params"):
    """The issue's acceptance: parameters counted as Keras does, the search model with every gate on computes
    the backbone, random gates slim exactly (parameters and FLOPs are the exported ones), and the slim model's
    searched layers have the exported widths, some below their full width. Returns (graph, slim, architecture)."""
    assert figs_tf.count(model, "params") == model.count_params()
    check_all_gates_on_is_the_supernet(model, x, cost=cost)
    _, slim, network = check_random_gates_slim_exactly(model, x)
    architecture = network.architecture()
    graph = figs_tf.analyze(model)
    full = {name: num_channels(channel_set) for name, _, channel_set in graph.width_entries() if groups_in(channel_set)}
    assert any(architecture[name] < width for name, width in full.items())
    for layer in slim.layers:
        width = getattr(layer, "filters", getattr(layer, "units", None))
        if layer.name in full and architecture[layer.name] and width is not None:
            assert width == architecture[layer.name], layer.name
    check_fresh_build_matches_slim(model)
    return graph, slim, architecture


def test_cspnet_splits_channels_and_slims_exactly():
    model = tiny_cspnet()
    graph, _, _ = check_backbone(model, images((16, 16, 3)))
    # each stage's expansion is split inside one conv's channels: kept out of search, with the reason
    assert any("splits their channels" in note and "stage_0_csp_conv_exp" in note for note in graph.notes)


def test_resnet_v2_pads_with_minus_infinity_and_slims_exactly():
    model = tiny_resnet_v2()
    graph, _, _ = check_backbone(model, images((16, 16, 3)))
    assert not any("pad" in note for note in graph.notes)


LENGTH = 8
ALBERT = dict(vocabulary_size=30, num_layers=2, num_heads=2, num_groups=1, num_inner_repetitions=1, embedding_dim=8,
              hidden_dim=16, intermediate_dim=24, max_sequence_length=LENGTH)


def tiny_albert():
    """ALBERT: one encoder block applied at both depths (its layers shared), traced at LENGTH tokens."""
    backbone = keras_hub.models.AlbertBackbone(**ALBERT)
    inputs = {name: keras.Input((LENGTH,), dtype="int32", name=name) for name in backbone.input}
    return keras.models.clone_model(backbone, input_tensors=inputs, clone_function=lambda layer: layer)


def albert_inputs(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    padding = np.ones((batch, LENGTH), "int32")
    padding[1, 5:] = 0
    return {"token_ids": rng.integers(0, ALBERT["vocabulary_size"], (batch, LENGTH)).astype("int32"),
            "segment_ids": rng.integers(0, 2, (batch, LENGTH)).astype("int32"), "padding_mask": padding}


def test_albert_shares_one_block_across_depth_and_slims_exactly():
    model = tiny_albert()
    x = albert_inputs()
    width, heads, mlp = ALBERT["hidden_dim"], ALBERT["num_heads"], ALBERT["intermediate_dim"]
    block = attention_flops_by_hand(LENGTH, LENGTH, width, width, width, heads, width // heads, width // heads, width,
                                    pairs=LENGTH * LENGTH) + 2 * LENGTH * width * mlp
    projection, pooled = LENGTH * ALBERT["embedding_dim"] * width, width * width
    # every application's multiply-adds, each shared weight once (count_params counts a shared layer once)
    assert figs_tf.count(model, "flops") == projection + ALBERT["num_layers"] * block + pooled
    graph, slim, architecture = check_backbone(model, x)
    shared = "group_0_inner_layer_0"
    assert {g.producers[0] for g in graph.groups} == {f"{shared}.feedforward_intermediate_dense",
                                                      f"{shared}.self_attention_layer/heads"}
    # one slim block, applied at both depths, with the exported widths
    assert [layer.name for layer in slim.layers].count(f"{shared}.feedforward_intermediate_dense") == 1
    attention = slim.get_layer(f"{shared}.self_attention_layer")
    assert attention.num_heads == architecture[f"{shared}.self_attention_layer/heads"]
    assert len(attention._inbound_nodes) == ALBERT["num_layers"]  # pylint: disable=protected-access
