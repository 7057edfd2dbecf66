"""ResNet supernets: Keras's own counts, hand-counted FLOPs, FiGS wrap/export/train."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.train import fashion_mnist
from figs_tf.spaces import resnet
from figs_tf.wrapping import channel_graph_of, gates_of

from helpers import (
    batchnorm_of_zero, check_all_gates_on_is_the_supernet, check_dead_branch_is_gone,
    check_fresh_build_matches_slim, randomize_batchnorm, to_numpy)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS_PARAMS = {50: 25_636_712, 152: 60_419_944}  # keras.applications docs / their count_params()
HE_ET_AL_GFLOPS = {50: 3.8, 152: 11.3}  # He et al. 2016, Table 1 ("FLOPs" = multiply-adds)
V15_GMADDS = {50: 4.1, 152: 11.5}  # commonly published (torchvision / TF official, ResNet v1.5)


@pytest.fixture(scope="module")
def imagenet_models():
    """Ours and Keras's ResNet-50/152 at 224x224x3, 1000 classes; built once, never run."""
    A = keras.applications
    return {50: (resnet.resnet(50), A.ResNet50(weights=None)),
            152: (resnet.resnet(152), A.ResNet152(weights=None))}


def hand_count_flops(blocks, stride_on="1x1", size=224, classes=1000):
    """Σ over convs of k·k·Cin·Cout·Hout·Wout + the Dense, from the paper's table.

    stride_on="1x1": v1 (original / Keras), the first 1x1 of stages 3-5 has
    stride 2; "3x3": v1.5, the 3x3 has it and the 1x1 runs at input resolution.
    """
    total = 7 * 7 * 3 * 64 * (size // 2) ** 2  # stem, 224 -> 112
    h = size // 4  # max-pool 112 -> 56
    cin = 64
    for stage, (n, inner) in enumerate(zip(blocks, (64, 128, 256, 512))):
        stream = 4 * inner
        for block in range(n):
            stride = 2 if (stage > 0 and block == 0) else 1
            h_out = h // stride
            h_first = h_out if stride_on == "1x1" else h
            total += cin * inner * h_first ** 2  # _1_conv
            total += 9 * inner * inner * h_out ** 2  # _2_conv
            total += inner * stream * h_out ** 2  # _3_conv
            if block == 0:
                total += cin * stream * h_out ** 2  # _0_conv, projection
            cin, h = stream, h_out
    return total + cin * classes


@pytest.mark.parametrize("depth", [50, 152])
def test_parameter_count_equals_keras_applications(imagenet_models, depth):
    ours, theirs = imagenet_models[depth]
    assert theirs.count_params() == KERAS_PARAMS[depth]
    assert ours.count_params() == KERAS_PARAMS[depth]
    assert figs_tf.count(ours, "params") == KERAS_PARAMS[depth]
    # same layers under the same names with the same weight shapes
    shapes = lambda m: {l.name: [tuple(w.shape) for w in l.weights] for l in m.layers
                        if not isinstance(l, keras.layers.InputLayer)}
    assert shapes(ours) == shapes(theirs)
    for layer in ours.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.epsilon == pytest.approx(1.001e-5)


@pytest.mark.parametrize("depth", [50, 152])
def test_flops_equal_a_hand_count_and_the_published_numbers(imagenet_models, depth):
    ours, _ = imagenet_models[depth]
    blocks = {50: (3, 4, 6, 3), 152: (3, 8, 36, 3)}[depth]
    flops = figs_tf.count(ours, "flops")
    assert flops == hand_count_flops(blocks)
    # He et al. Table 1 (v1, stride on the 1x1): 3.8 / 11.3 G, rounded to 0.1 G
    assert flops / 1e9 == pytest.approx(HE_ET_AL_GFLOPS[depth], abs=0.1)
    # the "~4.1 / ~11.5 G" usually quoted are v1.5 (stride on the 3x3)
    assert hand_count_flops(blocks, stride_on="3x3") / 1e9 == pytest.approx(V15_GMADDS[depth], abs=0.05)


def test_unknown_depth_and_bad_block_counts_are_refused():
    with pytest.raises(ValueError, match=r"\[50, 101, 152\].*34"):
        resnet.resnet(34)
    with pytest.raises(ValueError, match="blocks_per_stage"):
        resnet.resnet(input_shape=(28, 28, 1), small_input=True, blocks_per_stage=(1, 1, 1))


@pytest.mark.parametrize("shape, sizes", [((28, 28, 1), (28, 14, 7, 4)), ((32, 32, 3), (32, 16, 8, 4))])
def test_small_input_stem_keeps_the_resolution(shape, sizes):
    model = resnet.resnet(input_shape=shape, classes=10, small_input=True, width_multiplier=0.25,
                          blocks_per_stage=(1, 1, 1, 1))
    names = [layer.name for layer in model.layers]
    assert "pool1_pool" not in names and model.get_layer("conv1_conv").kernel_size == (3, 3)
    for stage, size in zip(range(2, 6), sizes):
        out = model.get_layer(f"conv{stage}_block1_out").output
        assert tuple(out.shape[1:]) == (size, size, [64, 128, 256, 512][stage - 2])
    assert model.output.shape[-1] == 10


def _tiny(blocks=(2, 1, 1, 1)):
    return resnet.resnet(input_shape=(28, 28, 1), classes=10, small_input=True, width_multiplier=0.25,
                         blocks_per_stage=blocks)


def test_channel_groups_are_stem_inner_convs_and_one_stream_per_stage():
    blocks = (2, 1, 1, 1)
    search = figs_tf.wrap(_tiny(blocks))
    producers = sorted(sorted(g.producers) for g in channel_graph_of(search).groups)
    expected = [["conv1_conv"]]
    for stage, n in zip(range(2, 6), blocks):
        expected.append(sorted([f"conv{stage}_block1_0_conv"] +
                               [f"conv{stage}_block{b}_3_conv" for b in range(1, n + 1)]))
        expected += [[f"conv{stage}_block{b}_{i}_conv"] for b in range(1, n + 1) for i in (1, 2)]
    assert producers == sorted(expected)


def test_with_all_gates_on_the_search_model_is_the_supernet():
    model = _tiny()
    rng = np.random.default_rng(0)
    randomize_batchnorm(model, rng)
    check_all_gates_on_is_the_supernet(model, rng.random((3, 28, 28, 1)).astype(np.float32), cost="flops")


def test_build_from_architecture_has_the_slim_parameter_count():
    architecture, fresh = check_fresh_build_matches_slim(_tiny())
    assert fresh.get_layer("conv2_block1_2_conv").filters == architecture["conv2_block1_2_conv"]
    # the tied stream: every producer of a stage's stream has the same width
    streams = {fresh.get_layer(n).filters for n in ("conv2_block1_0_conv", "conv2_block1_3_conv",
                                                     "conv2_block2_3_conv")}
    assert len(streams) == 1


def _block_layers(model, block):
    return [layer.name for layer in model.layers if layer.name.startswith(f"{block}_")
            and layer.name[len(block) + 1] in "123"]


def test_a_bottleneck_whose_first_conv_dies_becomes_its_identity_shortcut():
    model = _tiny()
    rng = np.random.default_rng(5)
    randomize_batchnorm(model, rng)
    gone = _block_layers(model, "conv2_block2") + ["conv2_block2_add"]
    assert len(gone) == 9
    x = rng.random((2, 28, 28, 1)).astype(np.float32)
    # only conv1's gates close: conv2's and conv3's stay open, yet their outputs are constants now
    search, slim, _ = check_dead_branch_is_gone(model, ["conv2_block2_1_conv"], gone, x)
    architecture = figs_tf.export_architecture(search)
    assert architecture["conv2_block2_2_conv"] == architecture["conv2_block2_3_conv"] == 0
    assert architecture["conv2_block1_3_conv"] == 64  # the stream keeps its width
    assert resnet.operator_choices(architecture) == {
        "conv2_block1": {"bottleneck": True, "shortcut": True}, "conv2_block2": {"bottleneck": False, "shortcut": True},
        "conv3_block1": {"bottleneck": True, "shortcut": True}, "conv4_block1": {"bottleneck": True, "shortcut": True},
        "conv5_block1": {"bottleneck": True, "shortcut": True}}
    # the identity shortcut has no shift of its own: one bias after the sum holds the constant,
    # by hand the last BatchNorm of conv3's bias (conv3 reads nothing once conv2's group is emptied)
    conv3 = model.get_layer("conv2_block2_3_conv")
    constant = batchnorm_of_zero(model.get_layer("conv2_block2_3_bn"), to_numpy(conv3.bias))
    np.testing.assert_allclose(to_numpy(slim.get_layer("conv2_block2_add_folded_bias").bias), constant,
                               rtol=1e-5, atol=1e-6)
    assert figs_tf.count(slim, "params") == slim.count_params()


def test_a_bottleneck_with_a_projection_shortcut_folds_into_its_batchnorm():
    model = _tiny()
    rng = np.random.default_rng(6)
    randomize_batchnorm(model, rng)
    gone = _block_layers(model, "conv3_block1") + ["conv3_block1_add"]
    x = rng.random((2, 28, 28, 1)).astype(np.float32)
    _, slim, _ = check_dead_branch_is_gone(model, ["conv3_block1_2_conv"], gone, x)
    assert not any("folded" in layer.name for layer in slim.layers)
    conv3 = model.get_layer("conv3_block1_3_conv")
    constant = batchnorm_of_zero(model.get_layer("conv3_block1_3_bn"), to_numpy(conv3.bias))
    before = to_numpy(model.get_layer("conv3_block1_0_bn").beta)
    np.testing.assert_allclose(to_numpy(slim.get_layer("conv3_block1_0_bn").beta), before + constant,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.tensorflow_only
def test_tiny_resnet_searches_on_real_fashion_mnist():
    try:
        images, labels = fashion_mnist.load_fashion_mnist("train")
    except RuntimeError as error:
        pytest.skip(f"Fashion-MNIST is not available here: {error}")
    x = images[:512].astype("float32") / 255.0
    y = labels[:512]
    search = figs_tf.wrap(resnet.fashion_mnist_resnet(), cost="params", strength=1e-5, seed=0)
    before = to_numpy(gates_of(search).logits).copy()
    search.compile(optimizer=keras.optimizers.Adam(0.01),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   jit_compile=False)  # XLA compiles for longer than 8 steps take
    history = search.fit(x, y, batch_size=64, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = to_numpy(gates_of(search).logits)
    assert np.all(np.isfinite(after)) and np.abs(after - before).max() > 1e-3
    assert (after < before).mean() > 0.9  # the cost pushes (nearly) every gate down


def test_module_imports_without_tensorflow():
    """Imports on Keras-on-JAX (building there is slow on CPU: ~15 s of per-variable set-up)."""
    pytest.importorskip("jax", reason="Keras needs some backend; without TensorFlow that is JAX")
    code = ("import sys\n"
            "sys.modules['tensorflow'] = None\n"
            "import keras\n"
            "from figs_tf.spaces import resnet\n"
            "assert keras.backend.backend() == 'jax' and callable(resnet.resnet)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, KERAS_BACKEND="jax"))
    assert result.returncode == 0, result.stderr
