"""The workdir of a training run: where each phase writes, its config, summary and checkpoints.

    directory = workdir.phase_dir("gs://bucket/run1", "search")
    workdir.record_config(config, directory)       # refuses a different config on resume
    ...
    workdir.write_json(workdir.summary_path(directory), summary)   # marks the phase as done

WORKSPACE.md describes the files. `Checkpoint` is Keras's BackupAndRestore made
safe against a kill at any instant.
"""

import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from figs_tf import files
from figs_tf.train import strategies

PHASES = ("search", "retrain")
CHECKPOINT_DIR = "checkpoint"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
TENSORBOARD_DIR = "tensorboard"


def phase_dir(workdir, phase):
    return files.join(workdir, phase)


def architecture_path(workdir):
    """Where AL leaves the exported architecture and retraining looks for it."""
    return files.join(phase_dir(workdir, "search"), "architecture.json")


def summary_path(directory):
    return files.join(directory, SUMMARY_FILE)


def finished_summary(directory):
    """The summary of a finished phase in `directory`, or None."""
    path = summary_path(directory)
    return read_json(path) if files.exists(path) else None


def write_json(path, document):
    files.write_atomically(path, json.dumps(document, indent=2, default=_plain) + "\n")


def read_json(path):
    with files.open_file(path) as f:
        return json.load(f)


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def record_config(config, directory):
    """Writes the resolved config to `<phase dir>/config.json`; refuses a different one.

    A rerun (resume) must use the same config, or checkpoints would be restored
    into a different model / schedule.
    """
    path = files.join(directory, CONFIG_FILE)
    current = json.loads(config.to_json_best_effort(sort_keys=True))
    if files.exists(path):
        previous = read_json(path)
        changed = sorted(_differences(previous, current))
        if changed:
            raise ValueError(f"{directory} holds a run with a different config (changed: {', '.join(changed)}). "
                             f"Use a new --workdir, or rerun with the config in {path}.")
        return
    write_json(path, current)


def _differences(previous, current, prefix=""):
    for key in sorted(set(previous) | set(current)):
        before, after = previous.get(key), current.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            yield from _differences(before, after, f"{prefix}{key}.")
        elif before != after and key not in RESUME_MAY_CHANGE:
            yield f"{prefix}{key}"

# Keys a rerun may change without invalidating the checkpoint.
RESUME_MAY_CHANGE = {"progress", "data_dir", "tpu", "strategy"}


def checkpoint_dir(directory, strategy):
    """Every worker of a multi-worker run keeps its own copy (the weights are in sync)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and not strategies.is_chief(strategy):
        return files.join(directory, CHECKPOINT_DIR, f"{resolver.task_type}_{resolver.task_id}")
    return files.join(directory, CHECKPOINT_DIR)


def resumed_epoch(backup_dir):
    """The Keras epoch a rerun resumes at (0 for a fresh run), as the checkpoint's metadata says.

    Used for the "Resuming" message and the data seed; `Checkpoint` re-derives
    the epoch from the restored step counter, which wins if the two differ
    (a kill between writing the weights and this file).
    """
    path = files.join(backup_dir, "training_metadata.json")
    if not files.exists(path):
        return 0
    try:
        with files.open_file(path) as f:
            return int(json.load(f).get("epoch", 0))
    except json.JSONDecodeError:
        return 0  # killed while writing it


class Checkpoint(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that resumes correctly whenever the process was killed.

    A SIGKILL while Keras writes `latest.weights.h5` leaves a corrupt HDF5 file
    (a real failure of tests/test_binaries.py's kill test): with
    `double_checkpoint` Keras keeps the previous checkpoint (`*.bkp`) and falls
    back to it. A kill between writing the weights and `training_metadata.json`
    (or while writing the JSON) would leave an epoch number that does not match
    the weights, so the epoch to resume at is taken from the optimizer's step
    counter, which is saved inside the weights file itself.
    """

    def __init__(self, backup_dir, steps_per_epoch):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False, double_checkpoint=True)
        self.steps_per_epoch = int(steps_per_epoch)

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except OSError:
            if files.exists(self._prev_weights_path):
                raise  # Keras fell back to the previous checkpoint and that failed too
            # killed during the very first checkpoint: there is no earlier one, start over
            logging.warning("The first checkpoint in %s is incomplete (the run was killed while writing it); "
                            "starting this phase from the beginning.", self.backup_dir)
            for path in (self._weights_path, self._training_metadata_path):
                if files.exists(path):
                    tf.io.gfile.remove(path)
            if self.model.optimizer is not None and self.model.optimizer.built:
                self.model.optimizer.iterations.assign(0)
            self.model._initial_epoch = 0  # pylint: disable=protected-access

    def _load_model(self):
        try:
            super()._load_model()
        except json.JSONDecodeError:
            pass  # killed while writing training_metadata.json: the weights' step counter decides
        optimizer = self.model.optimizer
        if optimizer is not None and optimizer.built:
            self.model._initial_epoch = int(optimizer.iterations.numpy()) // self.steps_per_epoch  # pylint: disable=protected-access


def local_copy(path):
    """A local file to append to for `path`; for gs:// a temporary copy of it.

    CSVLogger appends, which object stores cannot do: append locally (starting
    from the workdir's copy when resuming) and copy the file up each epoch.
    """
    if not files.is_url(path):
        return path
    local = os.path.join(tempfile.gettempdir(), "figs_" + path.replace("://", "_").replace("/", "_"))
    if files.exists(path):
        tf.io.gfile.copy(path, local, overwrite=True)
    elif os.path.exists(local):
        os.remove(local)
    return local


class CopyEachEpoch(keras.callbacks.Callback):
    """Copies a local file to the (remote) workdir after every epoch."""

    def __init__(self, source, destination):
        super().__init__()
        self.source, self.destination = source, destination

    def on_epoch_end(self, epoch, logs=None):
        if os.path.exists(self.source):
            tf.io.gfile.copy(self.source, self.destination, overwrite=True)
