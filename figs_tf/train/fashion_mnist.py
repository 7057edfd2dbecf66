"""The Fashion-MNIST files offline, read as Keras's `fashion_mnist.load_data()` reads them.

Debian's `dataset-fashion-mnist` puts Zalando's four gzip files in
`/usr/share/datasets/fashion-mnist/` (`FIGS_FASHION_MNIST_DIR` names another
directory). tfds's own `fashion_mnist` builder cannot use them: they were
recompressed, so its download checksums reject them. Each file is a header
(magic number and sizes, big-endian) and then uint8 pixels or labels, read
with gzip and `np.frombuffer`. `figs_tf.train.input_pipeline` reads them when
tfds has no prepared copy. This module needs only numpy (no TensorFlow).

Example::

    from figs_tf.train.fashion_mnist import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    images.shape, images.dtype, labels.shape  # (10000, 28, 28, 1), uint8, (10000,)
"""

import gzip
import os
import zlib

import numpy as np

from figs_tf.train import errors

DIR_ENV_VAR = "FIGS_FASHION_MNIST_DIR"
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
#: split -> (examples, images file, labels file)
FILES = {"train": (60000, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": (10000, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
HOW_TO_GET_THEM = (f"`sudo apt-get install dataset-fashion-mnist` (puts them in {DEBIAN_DIR}), or set "
                   f"{DIR_ENV_VAR} to a directory holding the four files "
                   f"({', '.join(name for _, *names in FILES.values() for name in names)})")


class FilesMissingError(errors.UserError, RuntimeError):
    """The Fashion-MNIST files are not there; the message says how to install them."""


def files_directory():
    """`$FIGS_FASHION_MNIST_DIR`, else Debian's directory."""
    return os.environ.get(DIR_ENV_VAR) or DEBIAN_DIR


def load_fashion_mnist(split, missing_ok=False):
    """Returns `(images, labels)` of `split` ("train" or "test") in the files' order.

    Images are uint8 of shape (N, 28, 28, 1), labels int64 of shape (N,) in 0..9
    (`CLASS_NAMES`). With `missing_ok`, None when the files are absent.

    Raises:
      ValueError: an unknown split, or a file that is not what its name says (the message names it).
      FilesMissingError: the files are absent (and not `missing_ok`).
    """
    if split not in FILES:
        raise ValueError(f"Unknown Fashion-MNIST split {split!r}; known splits: {', '.join(map(repr, FILES))}")
    count, images_name, labels_name = FILES[split]
    directory = files_directory()
    paths = [os.path.join(directory, images_name), os.path.join(directory, labels_name)]
    if not all(os.path.isfile(path) for path in paths):
        if missing_ok:
            return None
        raise FilesMissingError(f"The Fashion-MNIST {split!r} files are not in {directory}. Fix: {HOW_TO_GET_THEM}.")
    images = _read(paths[0], (count, 28, 28))
    labels = _read(paths[1], (count,))
    return images[..., np.newaxis], labels.astype(np.int64)


def _read(path, shape):
    """The uint8 array of `shape` after a header of magic 0x0801/0x0803 and the sizes."""
    try:
        with gzip.open(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: not a readable gzip file ({error}); reinstall it: {HOW_TO_GET_THEM}") from error
    header = np.array([0x800 + len(shape), *shape], ">u4").tobytes()
    if data[:len(header)] != header or len(data) != len(header) + int(np.prod(shape)):
        raise ValueError(f"{path}: not a Fashion-MNIST file of shape {shape} (its header or size differs: corrupt, "
                         f"truncated or another file); reinstall it: {HOW_TO_GET_THEM}")
    return np.frombuffer(data, np.uint8, offset=len(header)).reshape(shape)
