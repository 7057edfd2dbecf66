"""File access for local paths and `gs://` (and other tf.io.gfile) URLs.

Local paths use the standard library, so the core works without TensorFlow;
URLs with a scheme (`gs://bucket/run1`) go through `tf.io.gfile`.

    with files.open_file("gs://bucket/run1/summary.json", "w") as f:
        f.write(text)
"""

import os
import shutil


def is_url(path):
    return "://" in str(path)


def _gfile():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.io.gfile


def open_file(path, mode="r"):
    if is_url(path):
        return _gfile().GFile(path, mode)
    return open(path, mode, encoding=None if "b" in mode else "utf-8")  # pylint: disable=unspecified-encoding


def exists(path):
    return _gfile().exists(path) if is_url(path) else os.path.exists(path)


def makedirs(path):
    if is_url(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def join(*parts):
    return "/".join([str(parts[0]).rstrip("/"), *parts[1:]]) if is_url(parts[0]) else os.path.join(*parts)


def copy(source, destination):
    """Copies a file, overwriting `destination` (either may be a URL)."""
    if is_url(source) or is_url(destination):
        _gfile().copy(source, destination, overwrite=True)
    else:
        shutil.copyfile(source, destination)


def remove(path):
    if is_url(path):
        _gfile().remove(path)
    else:
        os.remove(path)


def write_atomically(path, text):
    """Writes `text` to `path` so that readers see the old or the new file, never half.

    Writes a temporary file beside `path` and renames it over `path` (atomic on
    POSIX; on GCS the object only appears once complete).
    """
    directory = os.path.dirname(path) if not is_url(path) else path.rsplit("/", 1)[0]
    if directory:
        makedirs(directory)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open_file(temporary, "w") as f:
        f.write(text)
    if is_url(path):
        _gfile().rename(temporary, path, overwrite=True)
    else:
        os.replace(temporary, path)
    return path


def check_writable(directory, what="--workdir"):
    """Creates `directory` if needed and proves a file can be written there.

    Raises a ValueError naming the directory and the fix, before any work starts.
    """
    probe = join(directory, f".figs_write_test-{os.getpid()}")
    try:
        makedirs(directory)
        with open_file(probe, "w") as f:
            f.write("ok")
        remove(probe)
    except Exception as error:  # pylint: disable=broad-except  (gfile raises tf.errors.*)
        raise ValueError(f"{what} {directory!s} is not writable ({type(error).__name__}: {error}); "
                         f"pass a directory you can write to.") from None
