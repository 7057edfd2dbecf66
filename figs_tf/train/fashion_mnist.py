"""Fashion-MNIST loading that works online (tfds) and offline (Debian IDX files).

Where the data comes from, in this order:

1. A dataset already prepared by ``tensorflow_datasets`` in ``data_dir`` (or
   tfds's default data directory). This is the normal path on machines that
   have run ``tfds.load("fashion_mnist")`` before.
2. The original IDX files, e.g. from Debian's ``dataset-fashion-mnist``
   package (``/usr/share/datasets/fashion-mnist/``), or from the directory
   named by the environment variable ``FIGS_FASHION_MNIST_DIR``. Files may be
   gzip-compressed (``*.gz``) or plain. tfds's own ``fashion_mnist`` builder
   cannot use the Debian files (they were recompressed, so tfds's download
   checksums do not match), so this module parses them itself.
3. ``tfds.load("fashion_mnist")`` with download enabled (needs internet).

If all three fail, a ``RuntimeError`` explains how to fix it.

TensorFlow and tensorflow_datasets are imported lazily inside the functions
that need them, so importing this module works without TensorFlow (e.g. with
Keras on JAX); :func:`load_fashion_mnist` then still works from IDX files.

Example::

    from figs_tf.train.fashion_mnist import load_fashion_mnist, fashion_mnist_dataset

    train_images, train_labels = load_fashion_mnist("train")
    train_images.shape, train_images.dtype   # (60000, 28, 28, 1), uint8
    train_labels.shape, train_labels.dtype   # (60000,), int64

    test_batches = fashion_mnist_dataset("test", batch_size=256, shuffle=False)
    for images, labels in test_batches.take(1):
        images.shape                          # (256, 28, 28, 1), float32 in [0, 1]
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import logging
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASS_NAMES",
    "FASHION_MNIST_DIR_ENV_VAR",
    "FASHION_MNIST_IDX_FILE_NAMES",
    "FASHION_MNIST_SPLIT_SIZES",
    "IdxFormatError",
    "asking_tfds_quietly",
    "clear_fashion_mnist_cache",
    "fashion_mnist_dataset",
    "find_fashion_mnist_idx_files",
    "load_fashion_mnist",
    "read_idx_file",
]

TFDS_DATASET_NAME = "fashion_mnist"

#: Environment variable naming a directory with the four Fashion-MNIST IDX files.
FASHION_MNIST_DIR_ENV_VAR = "FIGS_FASHION_MNIST_DIR"

#: Where ``apt-get install dataset-fashion-mnist`` puts the IDX files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

#: Number of examples in each split of Fashion-MNIST.
FASHION_MNIST_SPLIT_SIZES = {"train": 60000, "test": 10000}

#: IDX file names per split, as (images, labels); each may also end in ``.gz``.
FASHION_MNIST_IDX_FILE_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: Label index -> class name.
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

IMAGE_HEIGHT = 28
IMAGE_WIDTH = 28
NUM_CLASSES = len(FASHION_MNIST_CLASS_NAMES)

# IDX magic number = 0x0000 <dtype code> <number of dimensions>.
IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

# IDX dtype code -> numpy dtype (multi-byte types are big-endian in IDX).
_IDX_DTYPE_BY_CODE = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC_BYTES = b"\x1f\x8b"

_APT_INSTALL_COMMAND = "sudo apt-get install dataset-fashion-mnist"


class IdxFormatError(ValueError):
    """An IDX file is unreadable or does not hold what Fashion-MNIST needs.

    The message always starts with the offending file's path.
    """


# ---------------------------------------------------------------------------
# IDX parsing
# ---------------------------------------------------------------------------


def read_idx_file(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Reads one IDX file (gzip-compressed or plain) into a numpy array.

    Compression is detected from the file's first bytes, not its name. The
    array has the shape stored in the file's header and a native-endian dtype;
    for unsigned-byte files it is a read-only view of the file's bytes.

    Args:
      path: The IDX file.
      expected_magic: If given, the 4-byte magic number the file must start
        with, e.g. ``0x00000803`` for a 3-D unsigned-byte array.

    Raises:
      IdxFormatError: naming ``path`` if the file cannot be decompressed, has
        a wrong or unknown magic number, or its size does not match its header.
      FileNotFoundError: if ``path`` does not exist.

    Example::

        labels = read_idx_file("/usr/share/datasets/fashion-mnist/"
                               "t10k-labels-idx1-ubyte.gz", expected_magic=0x801)
        labels.shape  # (10000,)
    """
    path = Path(path)
    with open(path, "rb") as raw_file:
        is_gzip = raw_file.read(2) == _GZIP_MAGIC_BYTES
    try:
        if is_gzip:
            with gzip.open(path, "rb") as gzip_file:
                file_bytes = gzip_file.read()
        else:
            file_bytes = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise IdxFormatError(f"{path}: cannot decompress gzip IDX file: {error}") from error

    if len(file_bytes) < 4:
        raise IdxFormatError(
            f"{path}: not an IDX file: only {len(file_bytes)} bytes, "
            "shorter than the 4-byte magic number"
        )
    magic = int.from_bytes(file_bytes[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise IdxFormatError(
            f"{path}: wrong IDX magic number 0x{magic:08x}, expected "
            f"0x{expected_magic:08x} (file is corrupt or is not the file its name says)"
        )
    dtype_code, num_dims = file_bytes[2], file_bytes[3]
    if file_bytes[:2] != b"\x00\x00" or dtype_code not in _IDX_DTYPE_BY_CODE or num_dims == 0:
        raise IdxFormatError(f"{path}: not an IDX file: bad magic number 0x{magic:08x}")

    header_size = 4 + 4 * num_dims
    if len(file_bytes) < header_size:
        raise IdxFormatError(
            f"{path}: truncated IDX header: {len(file_bytes)} bytes, "
            f"need {header_size} for {num_dims} dimensions"
        )
    shape = tuple(int(size) for size in np.frombuffer(file_bytes, ">u4", num_dims, offset=4))
    dtype = _IDX_DTYPE_BY_CODE[dtype_code]
    expected_data_size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual_data_size = len(file_bytes) - header_size
    if actual_data_size != expected_data_size:
        raise IdxFormatError(
            f"{path}: IDX header says shape {shape} ({expected_data_size} data bytes) "
            f"but the file has {actual_data_size} data bytes (truncated or corrupt)"
        )
    array = np.frombuffer(file_bytes, dtype, offset=header_size).reshape(shape)
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("="))
    return array


def find_fashion_mnist_idx_files(
    split: str, idx_dir: str | os.PathLike | None = None
) -> tuple[Path, Path] | None:
    """Finds the (images, labels) IDX files of ``split``, or None if absent.

    Looks in ``idx_dir``, else in ``$FIGS_FASHION_MNIST_DIR``, else in
    :data:`DEBIAN_FASHION_MNIST_DIR`. Each file may be named with or without
    ``.gz``; the gzip name wins if both exist. Returns None unless both files
    are there.

    Example::

        find_fashion_mnist_idx_files("test")
        # (PosixPath('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz'),
        #  PosixPath('/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz'))
    """
    _check_split(split)
    directory = Path(idx_dir) if idx_dir is not None else _idx_dir_from_environment()
    found_paths = []
    for file_name in FASHION_MNIST_IDX_FILE_NAMES[split]:
        candidates = [directory / f"{file_name}.gz", directory / file_name]
        existing = [candidate for candidate in candidates if candidate.is_file()]
        if not existing:
            return None
        found_paths.append(existing[0])
    images_path, labels_path = found_paths
    return images_path, labels_path


def _idx_dir_from_environment() -> Path:
    return Path(os.environ.get(FASHION_MNIST_DIR_ENV_VAR) or DEBIAN_FASHION_MNIST_DIR)


def _load_split_from_idx_files(
    split: str, images_path: Path, labels_path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Parses and validates one split's IDX files into (images, labels)."""
    images = read_idx_file(images_path, expected_magic=IDX_IMAGES_MAGIC)
    if images.shape[1:] != (IMAGE_HEIGHT, IMAGE_WIDTH):
        raise IdxFormatError(
            f"{images_path}: images have shape {images.shape}, "
            f"expected (N, {IMAGE_HEIGHT}, {IMAGE_WIDTH})"
        )
    labels = read_idx_file(labels_path, expected_magic=IDX_LABELS_MAGIC)

    expected_count = FASHION_MNIST_SPLIT_SIZES[split]
    for path, array in ((images_path, images), (labels_path, labels)):
        if array.shape[0] != expected_count:
            raise IdxFormatError(
                f"{path}: holds {array.shape[0]} examples, but the Fashion-MNIST "
                f"{split!r} split has {expected_count}"
            )
    if labels.max() >= NUM_CLASSES:
        raise IdxFormatError(
            f"{labels_path}: label {int(labels.max())} out of range 0..{NUM_CLASSES - 1}"
        )
    return images[..., np.newaxis], labels.astype(np.int64)


# ---------------------------------------------------------------------------
# tfds
# ---------------------------------------------------------------------------


def _import_tfds() -> Any | None:
    """Returns the tensorflow_datasets module, or None if it cannot be imported."""
    try:
        import tensorflow_datasets as tfds
    except Exception:  # ImportError, or a broken/missing TensorFlow underneath.
        return None
    return tfds


class _NotPreparedWarnings(logging.Filter):
    """Drops tfds's "Variant folder <dir> has no dataset_info.json" (one per look at an
    unprepared directory)."""

    def filter(self, record):
        return not str(record.msg).startswith("Variant folder ")


@contextlib.contextmanager
def asking_tfds_quietly():
    """While inside, tfds asks whether a dataset is prepared without a warning when it is not.

    Asking is how this module and the input pipelines find out that a dataset is
    not prepared (e.g. on the offline Fashion-MNIST path); tfds answers with a
    warning for each directory it looked into, which a user reads as a fault.
    Other tfds warnings pass.
    """
    quiet = _NotPreparedWarnings()
    logger = logging.getLogger("absl")  # tfds logs through absl.logging
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _tfds_has_prepared_fashion_mnist(tfds: Any, data_dir: str | None) -> bool:
    try:
        with asking_tfds_quietly():
            return bool(tfds.builder(TFDS_DATASET_NAME, data_dir=data_dir).is_prepared())
    except Exception:
        return False


def _load_split_with_tfds(
    tfds: Any, split: str, data_dir: str | None, download: bool
) -> tuple[np.ndarray, np.ndarray]:
    images, labels = tfds.as_numpy(
        tfds.load(
            TFDS_DATASET_NAME,
            split=split,
            data_dir=data_dir,
            download=download,
            as_supervised=True,
            batch_size=-1,
        )
    )
    images = np.asarray(images, dtype=np.uint8).reshape(-1, IMAGE_HEIGHT, IMAGE_WIDTH, 1)
    labels = np.asarray(labels, dtype=np.int64)
    expected_count = FASHION_MNIST_SPLIT_SIZES[split]
    if images.shape[0] != expected_count or labels.shape != (expected_count,):
        raise RuntimeError(
            f"tfds {TFDS_DATASET_NAME!r} split {split!r} has images {images.shape} and "
            f"labels {labels.shape}; expected {expected_count} examples"
        )
    return images, labels


# ---------------------------------------------------------------------------
# Public loading API
# ---------------------------------------------------------------------------


def _check_split(split: str) -> None:
    if split not in FASHION_MNIST_SPLIT_SIZES:
        allowed = ", ".join(repr(name) for name in FASHION_MNIST_SPLIT_SIZES)
        raise ValueError(f"Unknown Fashion-MNIST split {split!r}; allowed splits: {allowed}")


def load_fashion_mnist(split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loads one Fashion-MNIST split as numpy arrays.

    Sources, in order: a tfds-prepared dataset in ``data_dir`` (tfds's default
    directory if None); the IDX files in ``$FIGS_FASHION_MNIST_DIR`` or
    ``/usr/share/datasets/fashion-mnist``; ``tfds.load`` with download.
    Results are cached in-process per (split, data_dir, IDX directory); the
    returned arrays are read-only, so copy them before modifying.

    Args:
      split: ``"train"`` (60000 examples) or ``"test"`` (10000 examples).
      data_dir: tfds data directory to look in and download to.

    Returns:
      ``(images, labels)``: uint8 images of shape ``(N, 28, 28, 1)`` with
      values 0..255, and int64 labels of shape ``(N,)`` with values 0..9 (see
      :data:`FASHION_MNIST_CLASS_NAMES`). The example order depends on the
      source (tfds stores examples in its own shuffled order).

    Raises:
      ValueError: ``split`` is not ``"train"`` or ``"test"``.
      IdxFormatError: an IDX file exists but is corrupt; the message names it.
      RuntimeError: no source worked; the message says how to fix that.

    Example::

        images, labels = load_fashion_mnist("test")
        images.shape, labels.shape  # (10000, 28, 28, 1), (10000,)
    """
    _check_split(split)
    idx_dir = str(_idx_dir_from_environment())
    return _load_fashion_mnist_cached(split, data_dir, idx_dir)


@functools.lru_cache(maxsize=None)
def _load_fashion_mnist_cached(
    split: str, data_dir: str | None, idx_dir: str
) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _load_fashion_mnist_uncached(split, data_dir, idx_dir)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def clear_fashion_mnist_cache() -> None:
    """Forgets the arrays cached by :func:`load_fashion_mnist`.

    Call it after the files on disk or ``$FIGS_FASHION_MNIST_DIR`` changed
    (a changed environment variable already gets its own cache entry).
    """
    _load_fashion_mnist_cached.cache_clear()


# lru_cache-style alias, so ``load_fashion_mnist.cache_clear()`` works too.
load_fashion_mnist.cache_clear = clear_fashion_mnist_cache  # type: ignore[attr-defined]


def _load_fashion_mnist_uncached(
    split: str, data_dir: str | None, idx_dir: str
) -> tuple[np.ndarray, np.ndarray]:
    tfds = _import_tfds()

    # 1. Dataset already prepared by tfds.
    prepared_tfds_problem = "not found" if tfds is not None else "tensorflow_datasets not importable"
    if tfds is not None and _tfds_has_prepared_fashion_mnist(tfds, data_dir):
        try:
            return _load_split_with_tfds(tfds, split, data_dir, download=False)
        except Exception as error:  # E.g. tfds without TensorFlow, or broken files.
            prepared_tfds_problem = f"found but failed: {type(error).__name__}: {error}"
            warnings.warn(
                f"Reading the tfds-prepared {TFDS_DATASET_NAME!r} dataset failed "
                f"({prepared_tfds_problem}); trying the IDX files next.",
                RuntimeWarning,
                stacklevel=3,
            )

    # 2. IDX files (Debian package or $FIGS_FASHION_MNIST_DIR). Corrupt files
    #    raise IdxFormatError here rather than being silently skipped.
    idx_paths = find_fashion_mnist_idx_files(split, idx_dir)
    if idx_paths is not None:
        images_path, labels_path = idx_paths
        return _load_split_from_idx_files(split, images_path, labels_path)

    # 3. Download with tfds.
    if tfds is None:
        download_problem = "tensorflow_datasets (with TensorFlow) is not importable"
        download_error = None
    else:
        try:
            return _load_split_with_tfds(tfds, split, data_dir, download=True)
        except Exception as error:  # Network, checksum, missing dependency...
            download_problem = f"tfds.load download failed: {type(error).__name__}: {error}"
            download_error = error

    images_name, labels_name = FASHION_MNIST_IDX_FILE_NAMES[split]
    tfds_location = data_dir if data_dir is not None else "tfds's default data_dir"
    raise RuntimeError(
        f"Cannot load the Fashion-MNIST {split!r} split. Tried:\n"
        f"  1. a tfds-prepared {TFDS_DATASET_NAME!r} dataset in {tfds_location}: "
        f"{prepared_tfds_problem};\n"
        f"  2. IDX files {images_name}[.gz] and {labels_name}[.gz] in {idx_dir}: not found;\n"
        f"  3. {download_problem}.\n"
        "Fix it in one of these ways:\n"
        f"  - install the Debian package: {_APT_INSTALL_COMMAND}\n"
        f"    (puts the IDX files into {DEBIAN_FASHION_MNIST_DIR});\n"
        f"  - or set {FASHION_MNIST_DIR_ENV_VAR}=/path/to/dir holding the four "
        "Fashion-MNIST IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally .gz);\n"
        f"  - or pass data_dir= pointing at a tfds data directory where "
        f"tfds.load({TFDS_DATASET_NAME!r}) has already prepared the dataset "
        "(or run that tfds.load once on a machine with internet)."
    ) from download_error


def fashion_mnist_dataset(
    split: str,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    repeat: bool = False,
    limit: int | None = None,
    data_dir: str | None = None,
):
    """Builds a batched ``tf.data.Dataset`` of Fashion-MNIST.

    Elements are ``(images, labels)`` batches: float32 images of shape
    ``(batch, 28, 28, 1)`` scaled to [0, 1] and int64 labels of shape
    ``(batch,)``. The last batch of an epoch may be smaller.

    Args:
      split: ``"train"`` or ``"test"``.
      batch_size: Examples per batch.
      shuffle: Shuffle examples (over the whole split, reshuffled each epoch).
      seed: Shuffle seed; the same seed gives the same order.
      repeat: Repeat the data indefinitely.
      limit: Use only the first ``limit`` examples (before shuffling), e.g.
        to keep tests fast. None uses all.
      data_dir: tfds data directory, passed to :func:`load_fashion_mnist`.

    Example::

        train_batches = fashion_mnist_dataset("train", batch_size=128, seed=42)
        model.fit(train_batches, epochs=5)

        small_batches = fashion_mnist_dataset("test", batch_size=32,
                                              shuffle=False, limit=100)
    """
    import tensorflow as tf

    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be None or a positive integer, got {limit!r}")

    images, labels = load_fashion_mnist(split, data_dir=data_dir)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]

    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()

    def scale_images_to_unit_range(image_batch, label_batch):
        return tf.cast(image_batch, tf.float32) / 255.0, label_batch

    dataset = dataset.batch(batch_size)
    dataset = dataset.map(scale_images_to_unit_range, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
