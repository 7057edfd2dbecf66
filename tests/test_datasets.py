"""Tests for figs_tf.train.fashion_mnist (Fashion-MNIST loading and tf.data pipeline)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from figs_tf.train import fashion_mnist
from figs_tf.train.fashion_mnist import (
    FASHION_MNIST_DIR_ENV_VAR,
    FASHION_MNIST_SPLIT_SIZES,
    IdxFormatError,
    clear_fashion_mnist_cache,
    fashion_mnist_dataset,
    find_fashion_mnist_idx_files,
    load_fashion_mnist,
    read_idx_file,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _real_fashion_mnist_available() -> bool:
    """True if tfds has the dataset prepared or the IDX files are installed."""
    if all(find_fashion_mnist_idx_files(split) for split in FASHION_MNIST_SPLIT_SIZES):
        return True
    try:
        import tensorflow_datasets as tfds

        return bool(tfds.builder("fashion_mnist").is_prepared())
    except Exception:
        return False


requires_real_data = pytest.mark.skipif(
    not _real_fashion_mnist_available(),
    reason=(
        "Fashion-MNIST not available offline: neither a tfds-prepared 'fashion_mnist' "
        "nor IDX files (apt-get install dataset-fashion-mnist, or set "
        f"{FASHION_MNIST_DIR_ENV_VAR})"
    ),
)


def _write_idx(path: Path, array: np.ndarray, magic: int | None = None, compress: bool = False):
    """Writes ``array`` (uint8) as an IDX file; ``magic`` overrides the header's magic."""
    if magic is None:
        magic = 0x00000800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.fixture
def fresh_cache():
    clear_fashion_mnist_cache()
    yield
    clear_fashion_mnist_cache()


# --- real data ---------------------------------------------------------------


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


@requires_real_data
def test_results_are_cached_and_read_only():
    first_images, first_labels = load_fashion_mnist("test")
    second_images, second_labels = load_fashion_mnist("test")
    assert first_images is second_images and first_labels is second_labels
    with pytest.raises(ValueError):
        first_labels[0] = 3


@requires_real_data
def test_pipeline_batches_shapes_dtypes_and_value_range():
    import tensorflow as tf

    dataset = fashion_mnist_dataset("test", batch_size=32, shuffle=True, seed=1, limit=100)
    batches = list(dataset.as_numpy_iterator())
    assert [images.shape for images, _ in batches] == [(32, 28, 28, 1)] * 3 + [(4, 28, 28, 1)]
    assert [labels.shape for _, labels in batches] == [(32,)] * 3 + [(4,)]
    images_spec, labels_spec = dataset.element_spec
    assert images_spec.dtype == tf.float32 and labels_spec.dtype == tf.int64
    all_images = np.concatenate([images for images, _ in batches])
    assert all_images.min() == 0.0 and all_images.max() == 1.0

    # limit takes the first N examples; shuffling only reorders them.
    raw_images, raw_labels = load_fashion_mnist("test")
    all_labels = np.concatenate([labels for _, labels in batches])
    assert sorted(all_labels.tolist()) == sorted(raw_labels[:100].tolist())


@requires_real_data
def test_pipeline_unshuffled_matches_arrays_and_seed_is_deterministic():
    raw_images, raw_labels = load_fashion_mnist("test")
    images, labels = next(iter(fashion_mnist_dataset("test", batch_size=8, shuffle=False)))
    np.testing.assert_allclose(images.numpy(), raw_images[:8] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(labels.numpy(), raw_labels[:8])

    def first_labels(seed):
        dataset = fashion_mnist_dataset("test", batch_size=50, seed=seed, limit=500)
        return next(iter(dataset))[1].numpy()

    np.testing.assert_array_equal(first_labels(seed=3), first_labels(seed=3))
    assert not np.array_equal(first_labels(seed=3), first_labels(seed=4))


@requires_real_data
def test_pipeline_repeat_runs_past_one_epoch():
    dataset = fashion_mnist_dataset("test", batch_size=16, repeat=True, limit=20)
    shapes = [images.shape[0] for images, _ in dataset.take(5)]
    assert shapes == [16] * 5


# --- corrupt files and errors (no real data needed) ----------------------------


@pytest.mark.parametrize(
    "corruption",
    ["wrong_magic", "truncated", "bad_gzip", "wrong_image_size", "wrong_count"],
)
def test_corrupt_idx_file_error_names_the_file(tmp_path, monkeypatch, fresh_cache, corruption):
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    images = np.zeros((10000, 28, 28), np.uint8)
    labels = np.arange(10000, dtype=np.uint8) % 10
    images_path = idx_dir / "t10k-images-idx3-ubyte"
    labels_path = _write_idx(idx_dir / "t10k-labels-idx1-ubyte.gz", labels, compress=True)
    if corruption == "wrong_magic":
        _write_idx(images_path, images, magic=0x00000801)
    elif corruption == "truncated":
        _write_idx(images_path, images)
        images_path.write_bytes(images_path.read_bytes()[:-100])
    elif corruption == "bad_gzip":
        images_path = idx_dir / "t10k-images-idx3-ubyte.gz"
        images_path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 5000)[:100])
    elif corruption == "wrong_image_size":
        _write_idx(images_path, np.zeros((10000, 28, 27), np.uint8))
    elif corruption == "wrong_count":
        _write_idx(images_path, images)
        labels_path = _write_idx(labels_path, labels[:9999], compress=True)
    monkeypatch.setenv(FASHION_MNIST_DIR_ENV_VAR, str(idx_dir))

    # An empty tfds data_dir, so a tfds-prepared copy on this machine is not used.
    with pytest.raises(IdxFormatError) as error_info:
        load_fashion_mnist("test", data_dir=str(tmp_path / "empty_tfds_dir"))
    culprit = labels_path if corruption == "wrong_count" else images_path
    assert str(culprit) in str(error_info.value)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_read_idx_file_round_trip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = _write_idx(tmp_path / "small-idx3-ubyte", array, compress=compress)
    np.testing.assert_array_equal(read_idx_file(path, expected_magic=0x803), array)


def test_small_valid_idx_files_load_through_the_offline_path(tmp_path, monkeypatch, fresh_cache):
    """A full-size synthetic test split in FIGS_FASHION_MNIST_DIR is read as-is."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 10000).astype(np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, compress=True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    monkeypatch.setenv(FASHION_MNIST_DIR_ENV_VAR, str(tmp_path))

    loaded_images, loaded_labels = load_fashion_mnist("test", data_dir=str(tmp_path / "no_tfds"))
    np.testing.assert_array_equal(loaded_images[..., 0], images)
    np.testing.assert_array_equal(loaded_labels, labels)
    assert loaded_images.shape == (10000, 28, 28, 1) and loaded_labels.dtype == np.int64


def test_unknown_split_error_names_allowed_splits():
    with pytest.raises(ValueError, match=r"Unknown Fashion-MNIST split 'validation'.*'train', 'test'"):
        load_fashion_mnist("validation")


def test_no_source_error_says_how_to_fix(tmp_path, monkeypatch, fresh_cache):
    monkeypatch.setenv(FASHION_MNIST_DIR_ENV_VAR, str(tmp_path / "nothing_here"))
    monkeypatch.setattr(fashion_mnist, "_import_tfds", lambda: None)  # no tfds, no download
    with pytest.raises(RuntimeError) as error_info:
        load_fashion_mnist("train")
    message = str(error_info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert FASHION_MNIST_DIR_ENV_VAR in message
    assert "data_dir" in message
    assert str(tmp_path / "nothing_here") in message


def test_module_imports_without_tensorflow():
    """The package must import on Keras-on-JAX machines that lack TensorFlow."""
    pytest.importorskip("jax", reason="Keras needs some backend; without TensorFlow that is JAX")
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None\n"
        "sys.modules['tensorflow_datasets'] = None\n"
        "import figs_tf, figs_tf.train.fashion_mnist\n"
        "assert figs_tf.train.fashion_mnist._import_tfds() is None\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env=env)
    assert result.returncode == 0, result.stderr
