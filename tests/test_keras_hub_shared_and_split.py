"""keras_hub backbones that split channels, pad with -inf or share layers across depth (tiny random configs,
built offline): CSPNet, ResNetV2 and ALBERT wrap, export and slim exactly.

keras_hub is an optional dependency (in the `test` extra); these tests skip without it.
"""

import keras
import numpy as np
import pytest

import figs_tf

from helpers import (check_all_gates_on_is_the_supernet, check_fresh_build_matches_slim,
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


def slim_layer_widths(slim, names):
    return {layer.name: layer.filters for layer in slim.layers if layer.name in names}


def check_backbone(model, x):
    """The issue's acceptance: parameters counted as Keras does, the search model with every gate on computes
    the backbone, random gates slim exactly, and searched widths are gone from the slim model."""
    assert figs_tf.count(model, "params") == model.count_params()
    check_all_gates_on_is_the_supernet(model, x)
    search, slim, network = check_random_gates_slim_exactly(model, x)
    architecture = network.architecture()
    graph = figs_tf.analyze(model)
    searched = {name for name, _, channel_set in graph.width_entries() if figs_tf.channel_sets.groups_in(channel_set)}
    for layer in slim.layers:
        if layer.name in searched and isinstance(layer, keras.layers.Conv2D) and architecture[layer.name]:
            assert layer.filters == architecture[layer.name]
    assert any(architecture[name] < dict((n, num) for n, _, num in [(e[0], 0, figs_tf.channel_sets.num_channels(e[2]))
                                                                     for e in graph.width_entries()])[name]
               for name in searched)
    check_fresh_build_matches_slim(model)
    return graph, search, slim


def test_cspnet_splits_channels_and_slims_exactly():
    model = tiny_cspnet()
    graph, _, _ = check_backbone(model, images((16, 16, 3)))
    # each stage's expansion is split inside one conv's channels: kept out of search, with the reason
    assert any("splits their channels" in note and "stage_0_csp_conv_exp" in note for note in graph.notes)


def test_resnet_v2_pads_with_minus_infinity_and_slims_exactly():
    model = tiny_resnet_v2()
    graph, _, _ = check_backbone(model, images((16, 16, 3)))
    assert not any("pad" in note for note in graph.notes)
