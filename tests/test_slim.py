"""slim(): the exported network as a real smaller model, equal to the search model."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.wrapping import gates_of

from helpers import (
    randomize_batchnorm, residual_concat_depthwise_model, set_all_logits, set_group_logits,
    small_cnn, to_numpy)

A = keras.applications
LOGITS = dict(weights=None, classes=10, classifier_activation=None)  # compare logits, not softmax

APPLICATIONS = {
    "ResNet50": lambda: A.ResNet50(input_shape=(32, 32, 3), **LOGITS),
    "DenseNet121": lambda: A.DenseNet121(input_shape=(32, 32, 3), **LOGITS),
    "MobileNetV2": lambda: A.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, **LOGITS),
    "MobileNetV3Small": lambda: A.MobileNetV3Small(input_shape=(32, 32, 3), **LOGITS),
    "EfficientNetB0": lambda: A.EfficientNetB0(input_shape=(32, 32, 3), **LOGITS),
    "Xception": lambda: A.Xception(input_shape=(71, 71, 3), **LOGITS),
    "NASNetMobile": lambda: A.NASNetMobile(input_shape=(32, 32, 3), **LOGITS),
    "ConvNeXtTiny": lambda: A.ConvNeXtTiny(input_shape=(32, 32, 3), **LOGITS),
}


@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_slim_model_equals_search_model_at_random_gates(name):
    model = APPLICATIONS[name]()
    rng = np.random.default_rng(0)
    randomize_batchnorm(model, rng)
    search = figs_tf.wrap(model)
    gates = gates_of(search)
    # logits around 0: about half the channels of each group go, some groups entirely
    gates.set_logits(rng.normal(0.3, 3.0, gates.logits.shape).astype(np.float32))
    slim = figs_tf.slim(search)
    network = figs_tf.exported_network(search)
    x = rng.random((2,) + tuple(model.input_shape[1:])).astype(np.float32)
    expected = to_numpy(search(x, training=False))
    np.testing.assert_allclose(to_numpy(slim(x)), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert slim.count_params() == network.cost("params") < model.count_params()
    assert figs_tf.count(slim, "flops") == network.cost("flops")
    assert not any(isinstance(layer, (figs_tf.MaskLayer, figs_tf.ApplyMask)) for layer in slim.layers)


def test_a_concat_branch_with_all_gates_off_is_absent_from_the_slim_model():
    search = figs_tf.wrap(residual_concat_depthwise_model())
    set_all_logits(search, 30.0)
    set_group_logits(search, "c3", -30.0)
    slim = figs_tf.slim(search)
    names = [layer.name for layer in slim.layers]
    assert "c3" not in names and "dw" in names
    assert "cat" not in names  # a concat of one remaining input is that input
    x = np.random.default_rng(0).random((3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(slim(x)), to_numpy(search(x, training=False)), atol=1e-5)
    assert slim.get_layer("fc").kernel.shape == (8, 10)


def test_slim_model_saves_loads_and_trains(tmp_path):
    search = figs_tf.wrap(small_cnn(input_shape=(8, 8, 1), widths=(8, 16)))
    rng = np.random.default_rng(1)
    gates = gates_of(search)
    gates.set_logits(rng.normal(0.5, 2.0, gates.logits.shape).astype(np.float32))
    slim = figs_tf.slim(search)
    path = os.path.join(tmp_path, "slim.keras")
    slim.save(path)
    loaded = keras.models.load_model(path)
    x = rng.random((4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(slim(x)), atol=1e-6)
    loaded.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = loaded.fit(x, rng.integers(0, 10, 4), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_a_new_process_loads_a_saved_search_model_with_figs_tf_load_model(tmp_path):
    """`import figs_tf` is lazy, so Keras knows figs_tf's layers only once they are imported: figs_tf.load_model
    registers them. The loaded search model computes what the saved one computed."""
    search = figs_tf.wrap(small_cnn(input_shape=(8, 8, 1), widths=(4, 6)))
    rng = np.random.default_rng(2)
    gates_of(search).set_logits(rng.normal(0.0, 2.0, gates_of(search).logits.shape).astype(np.float32))
    path = os.path.join(tmp_path, "search.keras")
    search.save(path)
    x = rng.random((2, 8, 8, 1)).astype(np.float32)
    np.save(os.path.join(tmp_path, "x.npy"), x)
    code = ("import sys, numpy as np, figs_tf\n"
            f"model = figs_tf.load_model({path!r})\n"
            f"y = model(np.load({os.path.join(str(tmp_path), 'x.npy')!r}), training=False)\n"
            f"np.save({os.path.join(str(tmp_path), 'y.npy')!r}, np.asarray(y))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.load(os.path.join(tmp_path, "y.npy")), to_numpy(search(x, training=False)),
                               atol=1e-6)


def test_slim_a_plain_model_from_a_saved_architecture(tmp_path):
    model = residual_concat_depthwise_model()
    search = figs_tf.wrap(model)
    rng = np.random.default_rng(2)
    gates = gates_of(search)
    gates.set_logits(rng.normal(0.5, 2.0, gates.logits.shape).astype(np.float32))
    network = figs_tf.exported_network(search)
    path = os.path.join(tmp_path, "arch.json")
    figs_tf.save_architecture(network.architecture(), path, channels=network.channels())
    # the plain supernet (same weights, no gates) + the file = the same slim model
    from_file = figs_tf.slim(model, architecture=path)
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(from_file(x)), to_numpy(figs_tf.slim(search)(x)), atol=1e-6)
    # widths alone: the channels with the largest kernel L1 norm are kept
    by_norm = figs_tf.slim(model, architecture=network.architecture())
    assert by_norm.count_params() == network.cost("params")


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(nope=3), "does not have.*'nope'"),
    (lambda a: a.pop("c3"), "no width for.*'c3'"),
    (lambda a: a.update(c3=99), "'c3' width 99.*0..4"),
    (lambda a: a.update(c1=5, c2=6), "tied by a merge"),
    (lambda a: a.update(fc=3), "'fc' width 3.*never pruned"),
])
def test_architecture_that_does_not_fit_the_model_is_refused(change, message):
    model = residual_concat_depthwise_model()
    architecture = {"c1": 6, "c2": 6, "c3": 2, "fc": 10}
    change(architecture)
    with pytest.raises(ValueError, match=message):
        figs_tf.slim(model, architecture=architecture)


def test_recalibrated_batchnorm_statistics_are_the_data_statistics():
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 1, name="c")(inputs)
    outputs = keras.layers.BatchNormalization(momentum=0.99, name="bn")(x)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).normal(2.0, 3.0, (96, 4, 4, 2)).astype(np.float32)
    conv_out = to_numpy(keras.Model(inputs, x)(images))
    assert figs_tf.recalibrate_batchnorm(model, images, batch_size=32) == 1
    batches = conv_out.reshape(3, 32, 4, 4, 3)
    np.testing.assert_allclose(to_numpy(model.get_layer("bn").moving_mean), conv_out.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(model.get_layer("bn").moving_variance),
                               batches.var(axis=(1, 2, 3)).mean(axis=0), rtol=1e-4)
    assert model.get_layer("bn").momentum == 0.99


def test_build_from_architecture_gives_fresh_weights_and_the_slim_size():
    model = residual_concat_depthwise_model()
    search = figs_tf.wrap(model)
    rng = np.random.default_rng(4)
    gates = gates_of(search)
    gates.set_logits(rng.normal(0.5, 2.0, gates.logits.shape).astype(np.float32))
    model.get_layer("c1").kernel.assign(np.full(model.get_layer("c1").kernel.shape, 7.0, np.float32))
    architecture = figs_tf.export_architecture(search)
    fresh = figs_tf.build_from_architecture(model, architecture)
    assert fresh.count_params() == figs_tf.slim(search).count_params()
    assert not np.any(to_numpy(fresh.get_layer("c1").kernel) == 7.0)  # initialised anew
    widths = {layer.name: layer.filters for layer in fresh.layers if isinstance(layer, keras.layers.Conv2D)}
    assert widths == {k: v for k, v in architecture.items() if k in widths}
