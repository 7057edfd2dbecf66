"""The One-Shot search space (figs_tf.spaces.one_shot): counts, gates, export, operator removal, training."""

import math

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.train import fashion_mnist
from figs_tf.spaces import one_shot
from figs_tf.wrapping import channel_graph_of, gates_of

from helpers import (batchnorm_of_zero, check_dead_branch_is_gone, randomize_batchnorm, set_all_logits,
                     set_group_logits, to_numpy)

AGGREGATORS = ("concat", "add")
SEPARABLE_KERNELS = (3, 5, 7)  # sep3, sep5, sep7 pairs
PARAMETER_FREE = 3  # maxpool, avgpool, identity


def hand_count(aggregator, size=224, image_channels=3, classes=1000, base=64, cells=8, blocks=4,
               every=2, small=False):
    """(params, multiply-adds) from the structure in docs/spaces.md, by hand.

    Every conv has no bias; BN has 4 numbers per channel; FLOPs count kernels only.
    """
    params = flops = 0

    def conv(k2, cin, cout, positions):
        nonlocal params, flops
        params += k2 * cin * cout + 4 * cout  # kernel + its BatchNorm
        flops += positions * k2 * cin * cout

    def separable(k, width, positions):  # depthwise k x k + pointwise 1x1 (+ BN)
        nonlocal params, flops
        params += k * k * width + width * width + 4 * width
        flops += positions * (k * k * width + width * width)

    res = size
    if small:
        conv(9, image_channels, base, res * res)
    else:
        res = math.ceil(res / 2)
        conv(9, image_channels, base // 2, res * res)
        res = math.ceil(res / 2)
        conv(9, base // 2, base, res * res)
    width, cell_in = base, base
    for cell in range(cells):
        if cell and every and cell % every == 0:
            res, width = math.ceil(res / 2), 2 * width
        positions = res * res
        for block in range(blocks):
            conv(1, cell_in + block * width, width, positions)  # input projection
            for k in SEPARABLE_KERNELS:
                separable(k, width, positions)
                separable(k, width, positions)
            conv(7, width, width, positions)  # 1x7
            conv(7, width, width, positions)  # 7x1
            if aggregator == "concat":
                operators = len(SEPARABLE_KERNELS) + 1 + PARAMETER_FREE
                conv(1, operators * width, width, positions)
        cell_in = blocks * width
    conv(1, cell_in, 2 * width, res * res)  # final 1x1 before global pooling
    params += 2 * width * classes + classes
    flops += 2 * width * classes
    return params, flops


@pytest.fixture(scope="module")
def imagenet_supernets():
    """The ImageNet supernets, built once (counting only, never run on data)."""
    return {aggregator: one_shot.one_shot_supernet(aggregator) for aggregator in AGGREGATORS}


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_imagenet_supernet_counts_equal_a_hand_count(imagenet_supernets, aggregator):
    model = imagenet_supernets[aggregator]
    params, flops = figs_tf.count(model, "params"), figs_tf.count(model, "flops")
    print(f"\nOne-Shot ImageNet supernet, {aggregator} aggregator: {params:,} parameters, "
          f"{flops:,} multiply-adds per 224x224 image")
    assert (params, flops) == hand_count(aggregator)
    assert params == model.count_params()
    # what the papers do say: 8 cells x 4 blocks, F = 64 doubling every 2 cells by stride-2
    # average pooling; cell 5 (1-based) at stride 16, the final 1x1 at stride 32 (FiGS Sec. 4.4)
    assert model.get_layer("cell0_block0_proj_conv").filters == 64
    assert model.get_layer("cell7_block3_proj_conv").filters == 512
    assert tuple(model.get_layer("cell4_output").output.shape) == (None, 14, 14, 4 * 256)
    assert tuple(model.get_layer("head_conv").output.shape[1:3]) == (7, 7)
    assert [layer.name for layer in model.layers if "downsample" in layer.name] == [
        "cell2_downsample", "cell4_downsample", "cell6_downsample"]
    assert all(isinstance(model.get_layer(f"cell{c}_downsample"), keras.layers.AveragePooling2D)
               for c in (2, 4, 6))


def test_small_instantiations_match_the_hand_count():
    cifar = one_shot.one_shot_cifar10()
    assert cifar.input_shape == (None, 32, 32, 3) and cifar.output_shape == (None, 10)
    assert (cifar.count_params(), figs_tf.count(cifar, "flops")) == hand_count(
        "concat", 32, 3, 10, base=16, cells=4, blocks=4, every=2, small=True)
    fmnist = one_shot.one_shot_fashion_mnist("add")
    assert fmnist.input_shape == (None, 28, 28, 1)
    assert (fmnist.count_params(), figs_tf.count(fmnist, "flops")) == hand_count(
        "add", 28, 1, 10, base=16, cells=2, blocks=3, every=1, small=True)


TINY_OPERATORS = ("sep3", "sep5", "conv7x1", "avgpool", "identity")  # every kind of operator, fewer layers


def tiny(aggregator):
    return one_shot.one_shot_fashion_mnist(aggregator, base_width=8, cells=2, blocks_per_cell=2,
                                           operators=TINY_OPERATORS)


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_all_gates_on_the_search_model_is_the_supernet(aggregator):
    model = tiny(aggregator)
    rng = np.random.default_rng(0)
    randomize_batchnorm(model, rng)
    search = figs_tf.wrap(model, cost="params")
    set_all_logits(search, 30.0)
    x = rng.random((3, 28, 28, 1)).astype(np.float32)
    expected = to_numpy(model(x, training=False))
    np.testing.assert_allclose(to_numpy(search(x, training=False)), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_exported_architecture_rebuilds_to_the_slim_size(aggregator):
    model = tiny(aggregator)
    search = figs_tf.wrap(model)
    gates = gates_of(search)
    rng = np.random.default_rng(1)
    gates.set_logits(rng.normal(0.5, 3.0, gates.logits.shape).astype(np.float32))
    architecture = figs_tf.export_architecture(search)
    slim = figs_tf.slim(search)
    fresh = figs_tf.build_from_architecture(model, architecture)
    assert fresh.count_params() == slim.count_params() < model.count_params()
    x = rng.random((2, 28, 28, 1)).astype(np.float32)
    expected = to_numpy(search(x, training=False))
    np.testing.assert_allclose(to_numpy(slim(x)), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_concat_aggregator_removes_an_operator_whose_output_gates_are_off():
    model = tiny("concat")
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    set_group_logits(search, "cell1_block1_sep5_conv2", -30.0)  # the operator's output group
    slim = figs_tf.slim(search)
    names = {layer.name for layer in slim.layers}
    removed = one_shot.operator_layer_names(1, 1, "sep5")
    assert len(removed) == 6 and not names & set(removed)  # its inner conv goes with it
    for operator in ("sep3", "conv7x1", "avgpool"):
        assert set(one_shot.operator_layer_names(1, 1, operator)) <= names
    rows = model.get_layer("cell1_block1_agg_conv").kernel.shape[2]  # 5 operators x W
    block_width = model.get_layer("cell1_block1_sep5_conv2").filters
    assert slim.get_layer("cell1_block1_agg_conv").kernel.shape[2] == rows - block_width
    x = np.random.default_rng(2).random((2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(slim(x)), to_numpy(search(x, training=False)), atol=1e-4)


def test_add_aggregator_ties_operator_outputs_to_the_block_input():
    search = figs_tf.wrap(tiny("add"))
    groups = channel_graph_of(search).groups
    tied = next(g.producers for g in groups if "cell0_block1_sep3_conv2" in g.producers)
    assert {"cell0_block1_proj_conv", "cell0_block1_sep5_conv2", "cell0_block1_conv7x1_conv2"} <= set(tied)
    # the inner convolution of a pair stays a group of its own
    assert any(g.producers == ["cell0_block1_sep3_conv1"] for g in groups)


def test_add_aggregator_removes_an_operator_whose_inner_gates_are_off():
    model = tiny("add")
    rng = np.random.default_rng(7)
    randomize_batchnorm(model, rng)
    gone = one_shot.operator_layer_names(0, 1, "sep3")
    x = rng.random((2, 28, 28, 1)).astype(np.float32)
    search, slim, _ = check_dead_branch_is_gone(model, ["cell0_block1_sep3_conv1"], gone, x)
    names = {layer.name for layer in slim.layers}
    for operator in ("sep5", "conv7x1", "avgpool"):
        assert set(one_shot.operator_layer_names(0, 1, operator)) <= names
    choices = one_shot.operator_choices(figs_tf.export_architecture(search), cells=2, blocks_per_cell=2,
                                        operators=TINY_OPERATORS)
    assert choices["cell0_block1"] == {"sep3": False, "sep5": True, "conv7x1": True, "avgpool": True,
                                       "identity": True}
    assert sum(not on for ops in choices.values() for on in ops.values()) == 1
    # the constant (bn2 of a separable conv reading zeros) went into the first summand with a shift
    before = to_numpy(model.get_layer("cell0_block1_sep5_bn2").beta)
    constant = batchnorm_of_zero(model.get_layer("cell0_block1_sep3_bn2"))
    np.testing.assert_allclose(to_numpy(slim.get_layer("cell0_block1_sep5_bn2").beta), before + constant,
                               rtol=1e-5, atol=1e-6)


def test_fashion_mnist_supernet_trains_with_a_params_cost():
    # real Fashion-MNIST images; the "test" split loads ~10x faster than "train", and this
    # checks the training mechanics only. One block per cell keeps graph tracing short.
    images, labels = fashion_mnist.load_fashion_mnist("test")
    x = images[:512].astype(np.float32) / 255.0
    y = labels[:512]
    model = one_shot.one_shot_fashion_mnist("concat", base_width=8, cells=2, blocks_per_cell=1,
                                            operators=("sep3", "conv7x1", "maxpool", "identity"))
    search = figs_tf.wrap(model, cost="params", strength=1e-5)
    search.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False,
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = to_numpy(gates_of(search).logits).copy()
    history = search.fit(x, y, batch_size=64, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = to_numpy(gates_of(search).logits)
    assert np.abs(after - before).max() > 1e-3
    assert figs_tf.expected_cost(search, "params") < figs_tf.count(model, "params")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="aggregator"):
        one_shot.one_shot_supernet("mean")
    with pytest.raises(ValueError, match="operators"):
        one_shot.one_shot_supernet(operators=("sep3", "conv9"))
