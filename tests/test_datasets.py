"""Tests for figs_tf.train.fashion_mnist (the offline Fashion-MNIST files)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from figs_tf.train.fashion_mnist import DIR_ENV_VAR, FILES, FilesMissingError, load_fashion_mnist

REPO_ROOT = Path(__file__).resolve().parents[1]

requires_real_data = pytest.mark.skipif(
    not all(load_fashion_mnist(split, missing_ok=True) is not None for split in FILES),
    reason=f"Fashion-MNIST files not installed (apt-get install dataset-fashion-mnist, or set {DIR_ENV_VAR})")


def _write_idx(path: Path, array: np.ndarray, magic: int | None = None):
    """Writes ``array`` (uint8) as a gzip IDX file; ``magic`` overrides the header's magic."""
    magic = 0x00000800 | array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
    return path


@requires_real_data
@pytest.mark.parametrize("split", ["train", "test"])
def test_split_shapes_dtypes_and_label_range(split):
    images, labels = load_fashion_mnist(split)
    expected_count = {"train": 60000, "test": 10000}[split]
    assert images.shape == (expected_count, 28, 28, 1)
    assert images.dtype == np.uint8
    assert labels.shape == (expected_count,)
    assert labels.dtype == np.int64
    assert labels.min() == 0 and labels.max() == 9
    assert images.max() == 255  # real pixel data, not all zeros


@requires_real_data
def test_each_class_has_6000_training_and_1000_test_examples():
    _, train_labels = load_fashion_mnist("train")
    _, test_labels = load_fashion_mnist("test")
    assert np.bincount(train_labels, minlength=10).tolist() == [6000] * 10
    assert np.bincount(test_labels, minlength=10).tolist() == [1000] * 10


@pytest.mark.parametrize("corruption", ["wrong_magic", "truncated", "bad_gzip", "wrong_image_size", "wrong_count"])
def test_corrupt_file_error_names_the_file(tmp_path, monkeypatch, corruption):
    images = np.zeros((10000, 28, 28), np.uint8)
    labels = np.arange(10000, dtype=np.uint8) % 10
    images_path = tmp_path / "t10k-images-idx3-ubyte.gz"
    labels_path = _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    if corruption == "wrong_magic":
        _write_idx(images_path, images, magic=0x00000801)
    elif corruption == "truncated":
        images_path.write_bytes(gzip.compress(gzip.decompress(_write_idx(images_path, images).read_bytes())[:-100]))
    elif corruption == "bad_gzip":
        images_path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 5000)[:100])
    elif corruption == "wrong_image_size":
        _write_idx(images_path, np.zeros((10000, 28, 27), np.uint8))
    elif corruption == "wrong_count":
        _write_idx(images_path, images)
        _write_idx(labels_path, labels[:9999])
    monkeypatch.setenv(DIR_ENV_VAR, str(tmp_path))
    with pytest.raises(ValueError) as error_info:
        load_fashion_mnist("test")
    culprit = labels_path if corruption == "wrong_count" else images_path
    assert str(culprit) in str(error_info.value)
    assert "dataset-fashion-mnist" in str(error_info.value)  # and says how to fix it


def test_valid_files_in_the_named_directory_are_read_as_they_are(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 10000).astype(np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv(DIR_ENV_VAR, str(tmp_path))
    loaded_images, loaded_labels = load_fashion_mnist("test")
    np.testing.assert_array_equal(loaded_images[..., 0], images)
    np.testing.assert_array_equal(loaded_labels, labels)
    assert loaded_images.shape == (10000, 28, 28, 1) and loaded_labels.dtype == np.int64


def test_unknown_split_error_names_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown Fashion-MNIST split 'validation'.*'train', 'test'"):
        load_fashion_mnist("validation")


def test_missing_files_error_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(DIR_ENV_VAR, str(tmp_path / "nothing_here"))
    assert load_fashion_mnist("train", missing_ok=True) is None
    with pytest.raises(FilesMissingError) as error_info:  # a RuntimeError, and the binaries' user error
        load_fashion_mnist("train")
    message = str(error_info.value)
    for fix in ("apt-get install dataset-fashion-mnist", DIR_ENV_VAR, str(tmp_path / "nothing_here"),
                "train-images-idx3-ubyte.gz"):
        assert fix in message
    assert isinstance(error_info.value, RuntimeError)


def test_module_imports_without_tensorflow():
    """The reader must work on Keras-on-JAX machines that lack TensorFlow."""
    pytest.importorskip("jax", reason="Keras needs some backend; without TensorFlow that is JAX")
    code = ("import sys\n"
            "sys.modules['tensorflow'] = None\n"
            "sys.modules['tensorflow_datasets'] = None\n"
            "import figs_tf, figs_tf.train.fashion_mnist as f\n"
            "f.load_fashion_mnist('test', missing_ok=True)\n"  # reads the files, if any, without TensorFlow
            "assert 'tensorflow' not in [name.split('.')[0] for name, m in sys.modules.items() if m]\n")
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0, result.stderr
