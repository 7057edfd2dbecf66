"""Start-up of the training binaries: flags first, then a quiet TensorFlow import.

`figs-search` and `figs-retrain` (or `python -m figs_tf.train.search|retrain`)
import `figs_tf` first, and `import figs_tf` imports keras, which imports
TensorFlow on its default backend. TensorFlow reads TF_CPP_MIN_LOG_LEVEL once,
at that import, so a default for it must be set before it; this module is the
first thing `figs_tf/__init__.py` imports. In any other program it does nothing.

When the process runs one of the binaries, its command line is parsed first
(`figs_tf.train.flags.parse_command_line`, which imports absl and
ml_collections only): `--help` and a bad flag or config key answer in about a
second, before keras and TensorFlow are imported. Then (on either Keras
backend: the input pipelines are tf.data), if the user has not set
TF_CPP_MIN_LOG_LEVEL:
- TF_CPP_MIN_LOG_LEVEL defaults to 3: TensorFlow's C++ INFO, WARNING and
  ERROR lines of a healthy run (oneDNN and CPU-feature notes, CUDA probing on a
  machine without a GPU, tf.data's end-of-sequence notes) are not shown; real
  failures still raise Python exceptions that carry their message.
- TensorFlow is imported here with the INFO lines its C++ prints before its
  logging is initialised (which no setting hides: "All log messages before
  absl::InitializeLog() ...", the oneDNN and CUDA-driver notes) dropped from
  stderr; any other line it prints is passed on.
Set TF_CPP_MIN_LOG_LEVEL (e.g. to 0) to see everything TensorFlow logs.
"""

import os
import re
import sys
import tempfile

BINARIES = ("figs-search", "figs-retrain")
MODULES = ("figs_tf.train.search", "figs_tf.train.retrain")
# absl C++ lines at INFO ("I0000 00:00:1796034732.972644   12355 port.cc:153] ...") and
# what belongs to them, printed before TensorFlow applies TF_CPP_MIN_LOG_LEVEL.
_START_UP_NOISE = re.compile(r"^(I\d{4} \d+:\d+:\d+\.\d+ +\d+ \S+:\d+\] |WARNING: All log messages before "
                             r"absl::InitializeLog\(\) is called are written to STDERR$|To enable the following "
                             r"instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$)")


def running_a_binary(argv=None, orig_argv=None):
    """True when this process was started as figs-search / figs-retrain (either form)."""
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    if argv and os.path.basename(argv[0]) in BINARIES:
        return True
    return any(flag == "-m" and module in MODULES for flag, module in zip(orig_argv, orig_argv[1:]))


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


if running_a_binary():
    from figs_tf.train import flags as _flags  # pylint: disable=g-import-not-at-top  # absl and ml_collections only
    _flags.parse_command_line()
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        if "tensorflow" not in sys.modules:
            import_tensorflow_quietly()
