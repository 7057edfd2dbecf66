"""FBNet space: published FBNet-A/B/C counts, hand-counted MAdds, FiGS wrap/export/train."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.train import fashion_mnist
from figs_tf import spaces
from figs_tf.spaces import fbnet
from figs_tf.wrapping import channel_graph_of, gates_of

from helpers import (
    assign_logits, batchnorm_of_zero, check_all_gates_on_is_the_supernet, check_dead_branch_is_gone,
    check_fresh_build_matches_slim, randomize_batchnorm, set_all_logits, set_group_logits, to_numpy)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Wu et al. 2019 (FBNet), Table 2; also the FiGS paper's Tables 2 and 5.
PAPER_MADDS = {"a": 249e6, "b": 295e6, "c": 375e6}
PAPER_PARAMS = {"a": 4.3e6, "b": 4.5e6, "c": 5.5e6}
# facebookresearch/mobile-vision, mobile_cv/model_zoo/models/model_info/fbnet/model_info.json
RELEASE_MADDS = {"a": 249.921848e6, "b": 295.561032e6, "c": 382.98448e6}
RELEASE_PARAMS = {"a": 4_286_480, "b": 4_777_296, "c": 5_520_784}

# FBNet paper, Table 1: (width, layers, stride of the first layer) per stage, stem 16/2, head 1x1.
TABLE_1 = [(16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1)]
# The released per-layer operators, written out again here as (kernel, expansion, groups)
# so that the hand count does not read the module's tables.
RELEASED = {
    "a": "skip | k3e3 k3e1 skip skip | k5e6 k3e3 k5e1 k3e3 | k5e6 k5e3 k5e1g2 k5e6 | "
         "k3e6 k5e1g2 k5e3 k3e1g2 | k5e6 k5e6 k5e3 k5e6 | k5e6",
    "b": "k3e1 | k3e6 k5e1 k3e1 k3e1 | k5e6 k5e3 k3e6 k5e6 | k5e6 k5e6 skip k5e3 | "
         "k5e6 k3e1 k5e1 k5e3 | k5e6 k5e1 k5e6 k5e6 | k3e6",
    "c": "k3e1 | k3e6 skip k3e1 k3e1 | k5e6 k5e3 k5e6 k3e6 | k5e6 k5e3 k5e6 k5e6 | "
         "k5e6 k5e6 k5e6 k5e3 | k5e6 k5e6 k5e6 k5e6 | k3e6",
}
RELEASED_HEAD = {"a": 1504, "b": 1984, "c": 1984}


def hand_count_madds(variant, size=224, classes=1000):
    """Σ k·k·Cin·Cout/groups·Hout·Wout over the released network, from Table 1."""
    stages = [s.split() for s in RELEASED[variant].split("|")]
    h = size // 2
    total = 3 * 3 * 3 * 16 * h * h  # stem 3x3/2
    cin = 16
    for (width, n, stride), ops in zip(TABLE_1, stages):
        assert len(ops) == n
        for i, op in enumerate(ops):
            s = stride if i == 0 else 1
            h_out = h // s
            if op != "skip":
                k, e = int(op[1]), int(op[3])
                g = 2 if op.endswith("g2") else 1
                mid = cin * e
                if e != 1:
                    total += cin * mid * h * h  # 1x1 expansion
                total += k * k * mid * h_out * h_out  # depthwise
                total += mid * width // g * h_out * h_out  # 1x1 projection
            else:
                assert s == 1 and cin == width  # every released skip is an identity
            cin, h = width, h_out
    head = RELEASED_HEAD[variant]
    return total + cin * head * h * h + head * classes


@pytest.fixture(scope="module")
def published():
    """FBNet-A/B/C at 224x224x3, 1000 classes; built once, never run."""
    return {v: fbnet.published_fbnet(v) for v in "abc"}


def test_published_choices_are_the_released_ones():
    for variant, constant in zip("abc", (fbnet.FBNET_A, fbnet.FBNET_B, fbnet.FBNET_C)):
        written = [op.replace("_", "") for op in constant]
        assert " ".join(written) == " ".join(RELEASED[variant].replace("|", " ").split())
        assert len(constant) == 22


@pytest.mark.parametrize("variant", "abc")
def test_madds_match_the_paper_and_a_hand_count(published, variant):
    model = published[variant]
    madds = figs_tf.count(model, "flops")
    assert madds == hand_count_madds(variant)
    print(f"FBNet-{variant.upper()}: {madds / 1e6:.2f}M MAdds; paper {PAPER_MADDS[variant] / 1e6:.0f}M, "
          f"release {RELEASE_MADDS[variant] / 1e6:.2f}M")
    assert madds == pytest.approx(PAPER_MADDS[variant], rel=0.03)
    assert madds == pytest.approx(RELEASE_MADDS[variant], rel=0.03)


@pytest.mark.parametrize("variant", "abc")
def test_parameter_counts_next_to_the_published_ones(published, variant):
    model = published[variant]
    assert figs_tf.count(model, "params") == model.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    bn_channels = sum(layer.gamma.shape[0] for layer in model.layers
                      if isinstance(layer, keras.layers.BatchNormalization))
    assert model.count_params() == trainable + 2 * bn_channels  # Keras also counts BN statistics
    print(f"FBNet-{variant.upper()}: {trainable:,} trainable ({model.count_params():,} Keras); "
          f"paper {PAPER_PARAMS[variant] / 1e6:.1f}M, release {RELEASE_PARAMS[variant]:,}")
    assert trainable == pytest.approx(RELEASE_PARAMS[variant], rel=0.02)
    # the paper's 4.5M for FBNet-B is ~6 % below its own release (docs/spaces.md)
    assert trainable == pytest.approx(PAPER_PARAMS[variant], rel=0.02 if variant != "b" else 0.08)


def test_stage_resolutions_and_widths_follow_table_1(published):
    model = published["c"]
    assert model.get_layer("stem_conv").output.shape[1:] == (112, 112, 16)
    size = 112
    for stage, (width, n, stride) in enumerate(TABLE_1, start=1):
        size //= stride
        last = next(l for l in reversed(model.layers) if l.name.startswith(f"s{stage}b{n}_"))
        assert tuple(last.output.shape[1:]) == (size, size, width), last.name
    assert model.get_layer("head_conv").output.shape[1:] == (7, 7, 1984)
    assert published["a"].get_layer("head_conv").filters == 1504
    assert len(fbnet.layer_plan()) == 22


def test_reduced_supernet_has_every_operator_in_every_layer():
    model = fbnet.fbnet_supernet(input_shape=(32, 32, 3), classes=10, small_input=True,
                                 width_multiplier=0.25)
    names = {layer.name for layer in model.layers}
    for stage, block, _, _ in fbnet.layer_plan():
        for op in ("k3_e6", "k5_e6"):
            assert f"s{stage}b{block}_{op}_dw" in names
            assert model.get_layer(f"s{stage}b{block}_{op}_dw").kernel_size == (int(op[1]),) * 2
        assert f"s{stage}b{block}_add" in names
    # the first layer of stages 2-7 changes shape: 'skip' is a 1x1 projection there, nowhere else
    assert sorted(n for n in names if n.endswith("skip_conv")) == [f"s{s}b1_skip_conv" for s in range(2, 8)]
    assert not any(isinstance(l, keras.layers.Conv2D) and l.groups > 1 for l in model.layers)


def _tiny(op_set="reduced", layers=(1, 2, 1, 1, 1, 1, 1)):
    return fbnet.fbnet_supernet(op_set, input_shape=(28, 28, 1), classes=10, small_input=True,
                                width_multiplier=0.25, layers_per_stage=layers)


def test_channel_groups_are_operator_inner_widths_and_one_stream_per_stage():
    layers = (1, 2, 1, 1, 1, 1, 1)
    search = figs_tf.wrap(_tiny(layers=layers))
    producers = sorted(sorted(g.producers) for g in channel_graph_of(search).groups)
    ops = ("k3_e6", "k5_e6")
    expected = [["head_conv"], sorted(["stem_conv"] + [f"s1b1_{op}_project" for op in ops])]
    for stage in range(1, 8):
        if stage > 1:
            expected.append(sorted([f"s{stage}b1_skip_conv"] + [f"s{stage}b{b}_{op}_project"
                                                                  for b in range(1, layers[stage - 1] + 1)
                                                                  for op in ops]))
        expected += [[f"s{stage}b{b}_{op}_expand"] for b in range(1, layers[stage - 1] + 1) for op in ops]
    assert producers == sorted(expected)


def test_grouped_operators_fix_the_streams_and_no_group_searches_them():
    original = channel_graph_of(figs_tf.wrap(_tiny("original", (1,) * 7)))
    assert not any("project" in p for g in original.groups for p in g.producers)
    assert any("k3_e3_expand" in p for g in original.groups for p in g.producers)
    no_group = channel_graph_of(figs_tf.wrap(_tiny("no_group", (1,) * 7)))
    streams = [g for g in no_group.groups if any(p.endswith("k3_e1_project") for p in g.producers)]
    assert len(streams) == 7


def test_with_all_gates_on_the_search_model_is_the_supernet():
    model = _tiny()
    rng = np.random.default_rng(0)
    randomize_batchnorm(model, rng)
    check_all_gates_on_is_the_supernet(model, rng.random((3, 28, 28, 1)).astype(np.float32), cost="flops")


def test_build_from_architecture_has_the_slim_parameter_count():
    architecture, fresh = check_fresh_build_matches_slim(_tiny())
    assert fresh.get_layer("s2b2_k5_e6_expand").filters == architecture["s2b2_k5_e6_expand"]


def test_a_dead_operator_leaves_no_layer_behind():
    # The example of issue 19: before, all 8 layers of s3b1_k5_e6 stayed with one channel (146 -> 146).
    model = fbnet.fashion_mnist_supernet()
    rng = np.random.default_rng(3)
    randomize_batchnorm(model, rng)
    gone = [layer.name for layer in model.layers if layer.name.startswith("s3b1_k5_e6_")]
    assert len(gone) == 8
    x = rng.random((2, 28, 28, 1)).astype(np.float32)
    _, slim, _ = check_dead_branch_is_gone(model, ["s3b1_k5_e6_expand"], gone, x)
    assert len(slim.layers) == len(model.layers) - 8
    names = {layer.name for layer in slim.layers}
    assert {"s3b1_k3_e6_project_bn", "s3b1_skip_relu", "s3b1_add"} <= names
    assert not any("folded" in name for name in names)  # the constant went into s3b1_k3_e6_project_bn


def test_operator_choices_name_what_each_layer_kept(tmp_path):
    model = fbnet.fashion_mnist_supernet()
    search = figs_tf.wrap(model, cost="flops")
    set_all_logits(search, 30.0)
    for producer in ("s3b1_k5_e6_expand", "s1b1_k3_e6_expand", "s1b1_k5_e6_expand"):
        set_group_logits(search, producer, -30.0)
    architecture = figs_tf.export_architecture(search)
    choices = spaces.operator_choices_function("fbnet", op_set="reduced", width_multiplier=0.25,
                                               layers_per_stage=(1,) * 7, small_input=True)(architecture)
    assert list(choices) == [f"s{stage}b1" for stage in range(1, 8)]
    assert choices["s3b1"] == {"k3_e6": True, "k5_e6": False, "skip": True}
    assert choices["s1b1"] == {"k3_e6": False, "k5_e6": False, "skip": True}  # a skip layer: the identity
    assert all(all(kept.values()) for layer, kept in choices.items() if layer not in ("s1b1", "s3b1"))
    path = figs_tf.save_architecture(architecture, os.path.join(tmp_path, "arch.json"), operators=choices)
    with open(path) as f:
        assert json.load(f)["operators"]["s3b1"] == {"k3_e6": True, "k5_e6": False, "skip": True}
    plot = figs_tf.plot_operators(choices, os.path.join(tmp_path, "operators.png"))
    assert os.path.getsize(plot) > 1000


def test_a_published_choice_sits_in_the_supernet_as_a_single_path():
    model = fbnet.fashion_mnist_supernet()
    choices = ("k3_e1", "k3_e6", "k5_e6", "skip", "k5_e3", "k5_e6", "k3_e6")
    architecture = fbnet.single_path_architecture(model, choices)
    kept = fbnet.operator_choices(architecture, layers_per_stage=(1,) * 7, width_multiplier=0.25)
    assert [[op for op, on in ops.items() if on and op != "skip"] for ops in kept.values()] == [
        ["k3_e6"], ["k3_e6"], ["k5_e6"], [], ["k5_e6"], ["k5_e6"], ["k3_e6"]]
    # k3_e1 is the supernet's k3_e6 pruned to 1x its input width, k5_e3 its k5_e6 at 3x
    assert architecture["s1b1_k3_e6_expand"] == model.get_layer("s1b1_k3_e6_expand").input.shape[-1]
    assert architecture["s5b1_k5_e6_expand"] == 3 * model.get_layer("s5b1_k5_e6_expand").input.shape[-1]
    network = figs_tf.build_from_architecture(model, architecture)
    assert not [layer.name for layer in network.layers if layer.name.startswith("s4b1_k")]
    with pytest.raises(ValueError, match="cannot express 'k3_e1_g2'"):
        fbnet.single_path_architecture(model, ("k3_e1_g2",) + choices[1:])


def test_the_fashion_mnist_budget_is_the_cost_of_fbnet_b_choice():
    spec = importlib.util.spec_from_file_location("fashion_mnist_experiment",
                                                  os.path.join(REPO_ROOT, "experiments", "fashion_mnist.py"))
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    config = experiment.get_config("fbnet_b_budget")
    supernet = fbnet.fbnet_supernet(input_shape=(28, 28, 1), classes=10, **config.space_kwargs)
    choices = tuple(fbnet.FBNET_B[i] for i in (0, 1, 5, 9, 13, 17, 21))  # the first layer of each stage
    network = figs_tf.build_from_architecture(supernet, fbnet.single_path_architecture(supernet, choices))
    assert figs_tf.count(network, "flops") == config.target


def test_a_layer_whose_operators_all_die_becomes_its_skip():
    model = _tiny(layers=(1, 2, 1, 1, 1, 1, 1))
    rng = np.random.default_rng(4)
    randomize_batchnorm(model, rng)
    gone = [layer.name for layer in model.layers if layer.name.startswith("s2b2_")]
    x = rng.random((2, 28, 28, 1)).astype(np.float32)
    _, slim, _ = check_dead_branch_is_gone(model, ["s2b2_k3_e6_expand", "s2b2_k5_e6_expand"], gone, x)
    assert not any(name.startswith("s2b2") for name in (layer.name for layer in slim.layers))
    # s2b2 = x + K with x = s2b1's sum, read by nothing else now: K is folded into the first
    # BatchNorm shift that feeds that sum. K by hand: each projection reads zeros (no bias).
    constant = sum(batchnorm_of_zero(model.get_layer(f"s2b2_{op}_project_bn")) for op in ("k3_e6", "k5_e6"))
    before = to_numpy(model.get_layer("s2b1_k3_e6_project_bn").beta)
    np.testing.assert_allclose(to_numpy(slim.get_layer("s2b1_k3_e6_project_bn").beta), before + constant,
                               rtol=1e-5, atol=1e-6)


def test_without_skip_projections_a_shape_changing_layer_keeps_one_operator():
    # There the sum has no identity and no projection: removing both operators would cut the network.
    model = fbnet.fbnet_supernet(input_shape=(28, 28, 1), classes=10, small_input=True, width_multiplier=0.25,
                                 layers_per_stage=(1,) * 7, skip_projection=False)
    search = figs_tf.wrap(model)
    logits = np.full(gates_of(search).logits.shape, -30.0, np.float32)
    k5 = next(i for i, g in enumerate(channel_graph_of(search).groups) if "s3b1_k5_e6_expand" in g.producers)
    logits[gates_of(search).group_slice(k5).start] = -20.0  # s3b1's k5_e6 is the better operator to keep
    assign_logits(search, logits)
    architecture = figs_tf.export_architecture(search)
    for stage in range(2, 8):
        kept = [op for op in ("k3_e6", "k5_e6") if architecture[f"s{stage}b1_{op}_project"] > 0]
        assert len(kept) == 1, (stage, kept)
    assert architecture["s3b1_k5_e6_expand"] == 1 and architecture["s3b1_k3_e6_expand"] == 0
    assert architecture["s1b1_k3_e6_project"] == architecture["s1b1_k5_e6_project"] == 0  # s1b1 has x


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="op_set"):
        fbnet.fbnet_supernet("full")
    with pytest.raises(ValueError, match="layers_per_stage"):
        fbnet.fbnet_supernet(layers_per_stage=(1, 1, 1))
    with pytest.raises(ValueError, match="22 layers"):
        fbnet.fbnet(fbnet.FBNET_B[:-1])
    with pytest.raises(ValueError, match="k7_e6"):
        fbnet.fbnet(("k7_e6",) + fbnet.FBNET_B[1:])


@pytest.mark.tensorflow_only
def test_tiny_supernet_searches_on_real_fashion_mnist():
    try:
        images, labels = fashion_mnist.load_fashion_mnist("train")
    except RuntimeError as error:
        pytest.skip(f"Fashion-MNIST is not available here: {error}")
    x = images[:512].astype("float32") / 255.0
    y = labels[:512]
    supernet = fbnet.fashion_mnist_supernet()
    search = figs_tf.wrap(supernet, cost="flops", strength=2e-7, seed=0)
    before = to_numpy(gates_of(search).logits).copy()
    search.compile(optimizer=keras.optimizers.Adam(0.01),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   run_eagerly=True)  # tracing the 146-layer graph takes longer than 8 eager steps
    history = search.fit(x, y, batch_size=64, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = to_numpy(gates_of(search).logits)
    assert np.all(np.isfinite(after)) and np.abs(after - before).max() > 1e-3
    assert after.mean() < before.mean()  # the FLOP cost pushes the gates down on average


def test_module_imports_and_builds_without_tensorflow():
    pytest.importorskip("jax", reason="Keras needs some backend; without TensorFlow that is JAX")
    code = ("import sys\n"
            "sys.modules['tensorflow'] = None\n"
            "from figs_tf.spaces import fbnet\n"
            "m = fbnet.fbnet(('k5_e6',) * 7, input_shape=(28, 28, 1), classes=10, small_input=True,\n"
            "                width_multiplier=0.25, layers_per_stage=(1,) * 7)\n"
            "assert m.output.shape[-1] == 10\n")  # a small single-path net: JAX builds layers slowly
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, KERAS_BACKEND="jax"))
    assert result.returncode == 0, result.stderr
