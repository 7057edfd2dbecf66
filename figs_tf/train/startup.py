"""How the training binaries start: flags first, then a quiet TensorFlow import, then the binary.

    figs-search ...                      # console script: figs_tf.train.startup:search
    python -m figs_tf.train.search ...   # the same start (search.py hands over to `search()` here)

The console scripts point here, not at the binaries' modules, because those
import keras, and keras imports TensorFlow on its default backend. This
module imports nothing heavy (`figs_tf` is a lazy package; `flags` imports
absl and ml_collections only), so:
- the command line is parsed first (`figs_tf.train.flags.parse_command_line`):
  `--help`, `--print_config`'s parse and a bad flag or config key answer in
  about a second, before keras and TensorFlow are imported;
- then, unless the user set TF_CPP_MIN_LOG_LEVEL, it defaults to 3 (TensorFlow
  reads it once, at import): TensorFlow's C++ INFO, WARNING and ERROR lines of
  a healthy run (oneDNN and CPU-feature notes, CUDA probing on a machine
  without a GPU, tf.data's end-of-sequence notes) are not shown; real failures
  still raise Python exceptions; and TensorFlow is imported (on either Keras
  backend: the input pipelines are tf.data) with the lines its C++ prints
  before logging is initialised (which no setting hides: "All log messages
  before absl::InitializeLog() ...", the oneDNN and CUDA-driver notes) dropped
  from stderr; any other line it prints is passed on.
Set TF_CPP_MIN_LOG_LEVEL (e.g. to 0) to see everything TensorFlow logs.
"""

import importlib
import os
import re
import sys
import tempfile

from figs_tf.train import flags

# absl C++ lines at INFO ("I0000 00:00:1796034732.972644   12355 port.cc:153] ...") and
# what belongs to them, printed before TensorFlow applies TF_CPP_MIN_LOG_LEVEL.
_START_UP_NOISE = re.compile(r"^(I\d{4} \d+:\d+:\d+\.\d+ +\d+ \S+:\d+\] |WARNING: All log messages before "
                             r"absl::InitializeLog\(\) is called are written to STDERR$|To enable the following "
                             r"instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$)")


def import_tensorflow_quietly():
    """Imports TensorFlow with its known start-up INFO lines dropped from stderr (fd 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not _START_UP_NOISE.match(line.rstrip("\n"))]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def start(module_name):
    """Parses the flags, imports TensorFlow quietly, then runs the binary `module_name`'s `cli()`."""
    flags.parse_command_line()
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        if "tensorflow" not in sys.modules:
            import_tensorflow_quietly()
    importlib.import_module(module_name).cli()


def search():
    """Console script `figs-search`."""
    start("figs_tf.train.search")


def retrain():
    """Console script `figs-retrain`."""
    start("figs_tf.train.retrain")
