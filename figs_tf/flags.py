"""The two flags of the training binaries: `--config` and `--workdir`.

    figs-search --config=experiments/one_shot_imagenet.py:A --config.strength=1e-6 \
        --workdir=gs://bucket/run1

`--config` is an ml_collections config file; `path.py:arg` passes `arg` to its
`get_config(arg)` (a variant), `--config.key=value` overrides a key. The config
is locked: an override of a key that does not exist is an error. Without
`--config` the embedded default (figs_tf/default_config.py) is used.
"""

import os

from absl import flags
from ml_collections import config_flags

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_config.py")


def define():
    """Defines --config and --workdir once per process."""
    if "config" in flags.FLAGS:
        return
    config_flags.DEFINE_config_file(
        "config", DEFAULT_CONFIG, "Training config file (path.py or path.py:variant); "
        "override keys with --config.key=value.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Directory (local or gs://) for checkpoints, the exported "
                        "architecture, logs and TensorBoard; search and retrain share it.")
    flags.mark_flag_as_required("workdir")


def quiet_logging():
    """INFO logs of tfds and TensorFlow hide the progress; show them only on request."""
    from absl import logging  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def parsed():
    """(config, workdir) after absl parsed the command line."""
    return flags.FLAGS.config, flags.FLAGS.workdir
