"""The flags of the training binaries, defined once for both: `--config` and `--workdir`.

    figs-search --config=experiments/one_shot_imagenet.py:A --config.strength=1e-6 \
        --workdir=gs://bucket/run1

`--config` is an ml_collections config file; `path.py:arg` passes `arg` to its
`get_config(arg)` (a variant), `--config.key=value` overrides a key. The config
is locked: an override of a key that does not exist is an error. Without
`--config` the embedded default (figs_tf/train/default_config.py) is used.
"""

import logging as std_logging
import os

from absl import flags
from absl import logging
from ml_collections import config_flags

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # figs_tf/

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_config.py")

CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG, "Training config file (path.py or path.py:variant); "
    "override keys with --config.key=value.", lock_config=True)
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory (local or gs://) for checkpoints, the exported architecture, logs "
    "and TensorBoard; search and retrain share it.")
flags.mark_flag_as_required("workdir")


class OwnInfoOnly(std_logging.Filter):
    """Passes warnings and errors of every library, but INFO lines only from figs_tf."""

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or record.pathname.startswith(PACKAGE_DIR)


def quiet_logging():
    """The binaries' status lines (resuming, already finished, processes) at INFO; the INFO
    logs of tfds, TensorFlow and JAX would bury the progress, so they show only when
    `--verbosity` is given."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.INFO)
        logging.get_absl_handler().addFilter(OwnInfoOnly())


def main_for(run):
    """The absl `main` of a binary whose whole work is `run(config, workdir)`.

    Example:

    >>> app.run(flags.main_for(search.run))     # what `figs-search` does
    """
    def main(argv):
        del argv
        quiet_logging()
        run(CONFIG.value, WORKDIR.value)
    return main
