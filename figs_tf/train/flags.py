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

from figs_tf.train import runtime

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # figs_tf/

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_config.py")

CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG, "Training config file (path.py or path.py:variant); "
    "override keys with --config.key=value.", lock_config=True)
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory (local or gs://) for checkpoints, the exported architecture, logs "
    "and TensorBoard; search and retrain share it.")
flags.mark_flag_as_required("workdir")
# Several processes (JAX backend; figs_tf/train/runtime.py). Unset: Keras's environment
# variables KERAS_DISTRIBUTION_JOB_ADDRESSES / _NUM_PROCESSES / _PROCESS_ID, else one process.
COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 when several processes train together (the same on "
    "every process; launch/local.sh --processes N picks a free 127.0.0.1 port).")
NUM_PROCESSES = flags.DEFINE_string(
    "num_processes", None, "How many processes train together (default 1), or 'auto' on a Cloud TPU slice, where "
    "JAX finds them itself. Needs KERAS_BACKEND=jax when more than 1.")
PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index, 0 .. num_processes - 1; process 0 writes the workdir.")
PEER_TIMEOUT_SECONDS = flags.DEFINE_integer(
    "peer_timeout_seconds", runtime.DEFAULT_PEER_TIMEOUT_SECONDS, "Several processes: a process that sent no "
    "heartbeat for this many seconds is taken as lost (killed, host down or unreachable) and the others stop "
    "with an error, to be rerun to resume.")


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


def process_settings():
    """The processes of this run, from the flags or else Keras's environment variables."""
    return runtime.ProcessSettings.from_environment(COORDINATOR_ADDRESS.value, NUM_PROCESSES.value,
                                                    PROCESS_ID.value, PEER_TIMEOUT_SECONDS.value)


def main_for(run):
    """The absl `main` of a binary whose whole work is `run(config, workdir, processes=...)`.

    Example:

    >>> app.run(flags.main_for(search.run))     # what `figs-search` does
    """
    def main(argv):
        del argv
        quiet_logging()
        run(CONFIG.value, WORKDIR.value, processes=process_settings())
    return main
