"""data_format="channels_first": the channel axis follows each layer's data format.

Independent truth: Keras keeps kernels (..., in, out) in both formats, so a
channels_first network with a channels_last twin's weights computes the twin's
function on transposed inputs; its parameters and multiply-adds are the twin's,
and so is everything figs_tf derives (groups, exported widths, the slim
model's outputs). Runs on the TensorFlow and JAX backends. TensorFlow runs
NCHW convolutions on a CPU only with oneDNN on (TF_ENABLE_ONEDNN_OPTS=1; on by
default only on CPUs with AVX-512): where this process cannot run them (tried
once, helpers.runs_channels_first_convolutions) the tests marked
`channels_first` are skipped here and rerun in a TensorFlow process with oneDNN
on, and `figs_tf.wrap` refuses such a model naming what to do.
"""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.wrapping import gates_of

from figs_tf import runs_here
from helpers import (batchnorm_of_zero, check_all_gates_on_is_the_supernet, check_fresh_build_matches_slim,
                     randomize_batchnorm, runs_channels_first_convolutions, to_numpy)

L = keras.layers


def _cnn(data_format):
    """Every layer kind whose channel axis follows the data format, on 8x8 images; a GAP head."""
    f = dict(data_format=data_format)
    axis = 1 if data_format == "channels_first" else -1
    image = (3, 8, 8) if data_format == "channels_first" else (8, 8, 3)
    inputs = keras.Input(image, name="image")
    x = L.Conv2D(6, 3, padding="same", name="c1", **f)(inputs)
    x = L.BatchNormalization(axis=axis, name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    y = L.Conv2D(6, 3, padding="same", name="c2", **f)(x)
    y = L.BatchNormalization(axis=axis, name="bn2")(y)
    x = L.Add(name="add")([x, y])
    s = L.GlobalAveragePooling2D(keepdims=True, name="squeeze", **f)(x)
    s = L.Conv2D(3, 1, activation="relu", name="se_reduce", **f)(s)
    s = L.Conv2D(6, 1, activation="sigmoid", name="se_expand", **f)(s)
    x = L.Multiply(name="excite")([x, s])
    a = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw", **f)(x)
    b = L.SeparableConv2D(5, 3, padding="same", name="sep", **f)(x)
    x = L.Concatenate(axis=axis, name="cat")([a, b])
    x = L.MaxPooling2D(2, name="pool", **f)(x)
    x = L.RandomFlip(name="flip", **f)(x)  # augmentation follows the data format too (inference: identity)
    x = L.Conv2DTranspose(7, 3, strides=2, padding="same", name="tconv", **f)(x)
    x = L.ZeroPadding2D(1, name="pad", **f)(x)
    x = L.Cropping2D(1, name="crop", **f)(x)
    x = L.AveragePooling2D(2, name="avg", **f)(x)
    x = L.UpSampling2D(2, name="up", **f)(x)
    x = L.Conv2D(5, 3, strides=2, name="c3", **f)(x)
    x = L.SpatialDropout2D(0.1, name="drop", **f)(x)
    outputs = L.Dense(4, name="out")(L.GlobalAveragePooling2D(name="gap", **f)(x))
    return keras.Model(inputs, outputs, name=data_format)


def _sequence_and_volume(data_format):
    """Conv1D/3D and their pooling, transposed and depthwise kinds, both heads flattened."""
    f = dict(data_format=data_format)
    first = data_format == "channels_first"
    sequence = keras.Input((4, 12) if first else (12, 4), name="sequence")
    x = L.Conv1D(6, 3, padding="same", name="s1", **f)(sequence)
    x = L.DepthwiseConv1D(3, padding="same", name="s_dw", **f)(x)
    x = L.SeparableConv1D(5, 3, name="s_sep", **f)(x)
    x = L.Conv1DTranspose(4, 3, strides=2, name="s_t", **f)(x)
    x = L.MaxPooling1D(2, name="s_pool", **f)(x)
    x = L.GlobalMaxPooling1D(name="s_gmp", **f)(x)
    volume = keras.Input((2, 4, 4, 4) if first else (4, 4, 4, 2), name="volume")
    v = L.Conv3D(5, 3, padding="same", name="v1", **f)(volume)
    v = L.Conv3DTranspose(4, 2, strides=2, name="v_t", **f)(v)
    v = L.AveragePooling3D(2, name="v_pool", **f)(v)
    v = L.Conv3D(3, 1, name="v2", **f)(v)
    v = L.Flatten(name="v_flat", **f)(v)  # Keras moves a channels_first axis last before flattening
    outputs = L.Dense(3, name="out")(L.Concatenate(name="cat")([x, L.Dense(6, name="v_fc")(v)]))
    return keras.Model([sequence, volume], outputs, name=f"seq_vol_{data_format}")


def _twins(build):
    """(channels_first model, channels_last model with the same weights)."""
    first, last = build("channels_first"), build("channels_last")
    randomize_batchnorm(last, np.random.default_rng(0))
    first.set_weights(last.get_weights())  # kernels are (..., in, out) in both formats
    return first, last


def _to_first(x):
    return np.moveaxis(x, -1, 1)


def _set_random_gates(*searches, seed=1):
    logits = None
    for search in searches:
        gates = gates_of(search)
        if logits is None:
            logits = np.random.default_rng(seed).normal(0.3, 2.5, gates.logits.shape).astype(np.float32)
        gates.set_logits(logits)


def _check_slim(search, model, x):
    network = figs_tf.exported_network(search)
    slim = figs_tf.slim(search)
    expected = to_numpy(search(x, training=False))
    np.testing.assert_allclose(to_numpy(slim(x, training=False)), expected, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(expected).max()))
    assert slim.count_params() == network.cost("params") < model.count_params()
    assert figs_tf.count(slim, "flops") == network.cost("flops")
    return slim, network


@pytest.mark.channels_first
def test_a_channels_first_cnn_is_its_channels_last_twin():
    first, last = _twins(_cnn)
    x = np.random.default_rng(2).random((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(first(_to_first(x), training=False)), to_numpy(last(x, training=False)),
                               rtol=1e-4, atol=1e-5)
    for metric in ("params", "flops"):
        assert figs_tf.count(first, metric) == figs_tf.count(last, metric)
    assert figs_tf.count(first, "params") == first.count_params()
    graph_first, graph_last = figs_tf.analyze(first), figs_tf.analyze(last)
    assert [(g.producers, g.size) for g in graph_first.groups] == [(g.producers, g.size) for g in graph_last.groups]
    assert {p for g in graph_first.groups for p in g.producers} >= {"c1", "c2", "se_reduce", "sep", "tconv", "c3"}
    check_all_gates_on_is_the_supernet(first, _to_first(x))
    search_first, search_last = figs_tf.wrap(first), figs_tf.wrap(last)
    _set_random_gates(search_first, search_last)
    slim_first, network = _check_slim(search_first, first, _to_first(x))
    slim_last, _ = _check_slim(search_last, last, x)
    assert figs_tf.export_architecture(search_first) == figs_tf.export_architecture(search_last)
    assert network.cost("flops") == figs_tf.exported_network(search_last).cost("flops")
    np.testing.assert_allclose(to_numpy(slim_first(_to_first(x), training=False)),
                               to_numpy(slim_last(x, training=False)), rtol=1e-4, atol=1e-5)
    check_fresh_build_matches_slim(first)


@pytest.mark.channels_first
def test_channels_first_1d_and_3d_layers_and_flatten_are_their_twins():
    first, last = _twins(_sequence_and_volume)
    rng = np.random.default_rng(3)
    sequence, volume = rng.random((2, 12, 4)).astype(np.float32), rng.random((2, 4, 4, 4, 2)).astype(np.float32)
    x_first, x_last = [_to_first(sequence), _to_first(volume)], [sequence, volume]
    np.testing.assert_allclose(to_numpy(first(x_first)), to_numpy(last(x_last)), rtol=1e-4, atol=1e-5)
    for metric in ("params", "flops"):
        assert figs_tf.count(first, metric) == figs_tf.count(last, metric)
    assert figs_tf.count(first, "params") == first.count_params()
    check_all_gates_on_is_the_supernet(first, x_first)
    search_first, search_last = figs_tf.wrap(first), figs_tf.wrap(last)
    _set_random_gates(search_first, search_last, seed=4)
    slim_first, _ = _check_slim(search_first, first, x_first)
    slim_last, _ = _check_slim(search_last, last, x_last)
    np.testing.assert_allclose(to_numpy(slim_first(x_first)), to_numpy(slim_last(x_last)), rtol=1e-4, atol=1e-5)


@pytest.mark.channels_first
def test_flatten_of_a_channels_first_tensor_repeats_each_channel_over_the_positions():
    inputs = keras.Input((3, 4, 4))
    x = L.Conv2D(5, 1, data_format="channels_first", name="c")(inputs)
    as_is = L.Flatten(data_format="channels_last", name="flat")(x)  # (C, H, W) order: channel-major
    moved = L.Flatten(data_format="channels_first", name="flat_moved")(x)  # Keras moves C last: (H, W, C)
    model = keras.Model(inputs, [L.Dense(2, name="a")(as_is), L.Dense(2, name="b")(moved)])
    graph = figs_tf.analyze(model)
    by_name = {c.name: c for c in graph.calls}
    assert graph.out_sets(by_name["flat"])[0] == (figs_tf.channel_sets.Segment(0, 5, 16),)
    assert graph.out_sets(by_name["flat_moved"])[0] == (figs_tf.channel_sets.Segment(0, 5),) * 16
    search = figs_tf.wrap(model)
    _set_random_gates(search, seed=5)
    x = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
    _check_slim(search, model, x)


@pytest.mark.channels_first
def test_a_model_input_joins_a_channels_first_concatenation():
    inputs = keras.Input((3, 6, 6), name="image")
    x = L.Rescaling(0.5, name="rescale")(inputs)
    y = L.Conv2D(4, 3, padding="same", data_format="channels_first", name="c")(x)
    x = L.Concatenate(axis=1, name="cat")([x, y])  # the image's channels are on the axis its readers use
    x = L.Conv2D(5, 1, data_format="channels_first", name="d")(x)
    model = keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D(data_format="channels_first")(x)))
    graph = figs_tf.analyze(model)
    assert sorted(p for g in graph.groups for p in g.producers) == ["c", "d"]
    cat = next(c for c in graph.calls if c.name == "cat")
    assert graph.out_sets(cat)[0][0] == figs_tf.channel_sets.Segment(None, 3) and graph.tensor_axes[cat.output_keys[0]] == 1
    search = figs_tf.wrap(model)
    _set_random_gates(search, seed=7)
    _check_slim(search, model, np.random.default_rng(0).random((2, 3, 6, 6)).astype(np.float32))


@pytest.mark.channels_first
def test_permute_carries_channels_between_formats_and_a_mismatched_reader_keeps_them_out():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(5, 3, padding="same", name="last")(inputs)
    x = L.Permute((3, 1, 2), name="to_first")(x)
    x = L.Conv2D(4, 3, padding="same", data_format="channels_first", name="first")(x)
    x = L.BatchNormalization(axis=1, name="bn")(x)
    kept = L.GlobalAveragePooling2D(data_format="channels_first", name="gap")(x)
    crossed = L.Dense(3, name="reads_width")(x)  # Dense reads the last axis: W, not the channels
    outputs = L.Dense(2, name="out")(L.Concatenate()([kept, L.Flatten()(crossed)]))
    model = keras.Model(inputs, outputs)
    graph = figs_tf.analyze(model)
    producers = {p for g in graph.groups for p in g.producers}
    assert "last" in producers and "first" not in producers
    assert any("'reads_width' reads axis 3" in note and "'first'" in note for note in graph.notes)
    x = np.random.default_rng(0).random((2, 6, 6, 3)).astype(np.float32)
    check_all_gates_on_is_the_supernet(model, x)
    search = figs_tf.wrap(model)
    _set_random_gates(search, seed=6)
    _check_slim(search, model, x)


def test_apply_mask_gates_the_channel_axis_it_is_given():
    x = np.ones((2, 3, 2, 2), np.float32)
    gate_vector = np.array([1.0, 0.0, 0.5, 1.0], np.float32)
    y = to_numpy(figs_tf.ApplyMask([0, 1, 2], axis=1)([x, gate_vector]))
    np.testing.assert_array_equal(y[0, :, 1, 1], [1.0, 0.0, 0.5])
    assert figs_tf.ApplyMask.from_config(figs_tf.ApplyMask([0], axis=1).get_config()).axis == 1


@pytest.mark.tensorflow_only
@pytest.mark.channels_first
def test_a_channels_first_search_model_trains_on_this_backend():
    """fit runs and trains: the gate logits and the first kernel move, the losses stay finite. (The
    channels_last twin is no reference in training: its RandomFlip and Dropout draw differently.)"""
    first, _ = _twins(_cnn)
    search = figs_tf.wrap(first, cost="flops", strength=1e-6)
    search.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logits, kernel = to_numpy(gates_of(search).logits).copy(), to_numpy(first.get_layer("c1").kernel).copy()
    x = np.random.default_rng(0).random((8, 3, 8, 8)).astype(np.float32)
    history = search.fit(x, np.arange(8) % 4, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert np.abs(to_numpy(gates_of(search).logits) - logits).max() > 1e-4
    assert np.abs(to_numpy(first.get_layer("c1").kernel) - kernel).max() > 1e-4


def _residual(data_format):
    """A conv stream with an identity shortcut and a bottleneck branch summed into it."""
    f, axis = dict(data_format=data_format), 1 if data_format == "channels_first" else -1
    inputs = keras.Input((4, 8, 8) if data_format == "channels_first" else (8, 8, 4))
    x = L.ReLU(name="r0")(L.BatchNormalization(axis=axis, name="bn0")(L.Conv2D(6, 3, padding="same", name="c0", **f)(inputs)))
    y = L.ReLU(name="rb")(L.BatchNormalization(axis=axis, name="bnb1")(L.Conv2D(5, 1, name="b1", **f)(x)))
    y = L.BatchNormalization(axis=axis, name="bnb2")(L.Conv2D(6, 1, name="b2", **f)(y))
    x = L.Add(name="add")([x, y])
    return keras.Model(inputs, L.Dense(3, name="out")(L.GlobalAveragePooling2D(name="gap", **f)(x)))


@pytest.mark.channels_first
def test_a_dead_branch_on_channels_first_folds_into_a_bias_on_the_channel_axis():
    """Closing the bottleneck's inner channels removes it; the constant it added (b2's bias through
    bnb2, by hand) becomes a ChannelBias on axis 1 after the sum, and slim == search."""
    first, last = _twins(_residual)
    searches = [figs_tf.wrap(first), figs_tf.wrap(last)]
    for search in searches:
        gates = gates_of(search)
        logits = np.full(sum(gates.group_sizes), 20.0, np.float32)  # π = 1 in float32: every channel kept
        inner = gates.group_sizes.index(5)
        start = sum(gates.group_sizes[:inner])
        logits[start:start + 5] = -5.0  # b1's channels: the branch has no path left
        gates.set_logits(logits)
    assert figs_tf.export_architecture(searches[0]) == figs_tf.export_architecture(searches[1])
    assert figs_tf.export_architecture(searches[0])["b1"] == 0
    x = np.random.default_rng(0).random((2, 8, 8, 4)).astype(np.float32)
    slim = figs_tf.slim(searches[0])
    expected = to_numpy(searches[0](_to_first(x), training=False))
    np.testing.assert_allclose(to_numpy(slim(_to_first(x), training=False)), expected, rtol=1e-5, atol=1e-5)
    bias = slim.get_layer("add_folded_bias")
    assert bias.data_format == "channels_first"
    by_hand = batchnorm_of_zero(first.get_layer("bnb2"), to_numpy(first.get_layer("b2").bias))
    np.testing.assert_allclose(to_numpy(bias.bias), by_hand, rtol=1e-5, atol=1e-6)
    assert figs_tf.count(slim, "params") == slim.count_params() == figs_tf.exported_network(searches[0]).cost("params")


def _conv_first(data_format="channels_first"):
    inputs = keras.Input((3, 6, 6) if data_format == "channels_first" else (6, 6, 3))
    x = L.Conv2D(4, 3, data_format=data_format, name="conv")(inputs)
    x = L.DepthwiseConv2D(3, data_format=data_format, name="depthwise")(x)
    x = L.Conv2DTranspose(4, 3, data_format=data_format, name="transposed")(x)
    return keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D(data_format=data_format)(x)))


def test_wrap_of_a_model_the_backend_cannot_run_here_says_what_to_do(monkeypatch):
    """Where the backend cannot run channels_first convolutions (TensorFlow on a CPU without oneDNN),
    wrap refuses at once, naming the layers and the three ways out; elsewhere the same message is
    checked with the probe's answer replaced by the error TensorFlow gives."""
    if runs_channels_first_convolutions():
        def fails(layer, channels):
            if isinstance(layer, L.DepthwiseConv2D):
                return None  # TensorFlow's CPU runs NCHW depthwise convolutions without oneDNN
            return RuntimeError("The Conv2D op currently only supports the NHWC tensor format on the CPU.")
        monkeypatch.setattr(runs_here, "layer_type_runs_here", fails)
    with pytest.raises(ValueError) as raised:
        figs_tf.wrap(_conv_first())
    message = str(raised.value)
    assert "'conv' (Conv2D)" in message and "'transposed' (Conv2DTranspose)" in message
    assert "depthwise" not in message.split("To search it")[0]
    assert "data_format='channels_last'" in message
    if keras.backend.backend() == "tensorflow":
        assert "TF_ENABLE_ONEDNN_OPTS=1" in message and "KERAS_BACKEND=jax" in message
    figs_tf.wrap(_conv_first("channels_last"))  # the same model channels_last is wrapped


@pytest.mark.tensorflow_only
def test_the_channels_first_tests_pass_in_a_tensorflow_process_with_onednn_on():
    """What this process cannot run (TensorFlow without oneDNN) runs in one that can: the tests
    above marked `channels_first`, in a subprocess with TF_ENABLE_ONEDNN_OPTS=1."""
    if runs_channels_first_convolutions():
        pytest.skip("this process runs channels_first convolutions: the tests above ran here")
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1", KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-m", "channels_first", __file__],
                            env=env, capture_output=True, text=True, timeout=900, check=False)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    if "skipped" in summary and "passed" not in summary:
        pytest.skip(f"TensorFlow cannot run channels_first convolutions here even with oneDNN on: {summary}")
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert passed == 7 and "skipped" not in summary, summary
