"""The workdir of a training run: where each phase writes, its config, summary and checkpoints.

    directory = workdir.phase_dir("gs://bucket/run1", "search")
    workdir.record_config(config, directory)       # refuses a different config on resume
    ...
    workdir.write_json(workdir.summary_path(directory), summary)   # marks the phase as done

WORKSPACE.md describes the files. `Checkpoints` are the resume points: a run
killed at any instant and rerun trains exactly what the uninterrupted run trains.
"""

import json
import os
import re
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from figs_tf import callbacks as callbacks_lib
from figs_tf import files
from figs_tf.train import errors

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


def search_model_path(workdir):
    """Where AL leaves the trained search model (`figs_tf.load_model` reads it), for retraining that
    inherits its weights or distils from it."""
    return files.join(phase_dir(workdir, "search"), "search_model.keras")


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


def record_config(config, directory, write=True):
    """Writes the resolved config to `<phase dir>/config.json`; refuses a different one.

    A rerun (resume) must use the same config, or checkpoints would be restored
    into a different model / schedule. `write=False` (processes that do not
    write the workdir) only compares.
    """
    path = files.join(directory, CONFIG_FILE)
    current = json.loads(config.to_json_best_effort(sort_keys=True))
    if files.exists(path):
        previous = read_json(path)
        changed = sorted(_differences(previous, current))
        if changed:
            raise errors.UserError(f"{directory} holds a run with a different config (changed: {', '.join(changed)}). "
                             f"Use a new --workdir, or rerun with the config in {path}.")
        return
    if write:
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


def checkpoint_dir(directory):
    """Where a phase keeps its resume points (written by the one writing process, read by all)."""
    return files.join(directory, CHECKPOINT_DIR)


class Checkpoints(keras.callbacks.Callback):
    """The resume points of one phase, made so that a resumed run is the uninterrupted run.

    Files in `<phase dir>/checkpoint/`, one pair per checkpoint, named by the
    optimizer step they hold:
    - `step_<N>.json`: what Keras's weights file leaves out: the state of every
      `keras.random.SeedGenerator` of the model (the gates' noise: Keras does not
      save it) and the state of callbacks that keep their own (the budget
      controllers). Written first.
    - `step_<N>.weights.h5`: model and optimizer variables (`save_weights`),
      written to a temporary name and renamed, so a file with this name is
      complete.
    The newest `keep` pairs stay (a kill while writing the newest leaves the
    one before). The input position needs nothing: the training stream is a
    function of the step (`input_pipeline.make_dataset(start_batch=...)`).
    But it is a function of the number of processes too (each reads its own
    shuffled share of the examples), so the JSON records the process count and
    `restore` refuses a checkpoint written by another count, before any work.

    Use: `step = checkpoints.restore(model, callbacks)` before the training data
    is built (it starts at `step`), then pass `checkpoints` to `fit` with the
    other callbacks after them: it saves after every Keras epoch and hands the
    callbacks their state back at the start of training.

    Under several processes every process restores (each must assign the
    replicated variables) and saves (a save reads them together), but only the
    writer keeps files (`runtime.Runtime.save_everywhere`).
    """

    def __init__(self, directory, runtime, keep=2):
        super().__init__()
        self.directory = directory
        self.runtime = runtime
        self.keep = int(keep)
        self._callback_states = None
        self._callbacks = []

    # --- files ---------------------------------------------------------------------------------

    def weights_path(self, step):
        return files.join(self.directory, f"step_{step:012d}.weights.h5")

    def state_path(self, step):
        return files.join(self.directory, f"step_{step:012d}.json")

    def steps(self):
        """Steps with a complete weights file, newest first."""
        if not files.exists(self.directory):
            return []
        found = []
        for name in tf.io.gfile.listdir(self.directory):
            match = _WEIGHTS_NAME.fullmatch(name.rstrip("/"))
            if match:
                found.append(int(match.group(1)))
        return sorted(found, reverse=True)

    def latest_step(self):
        steps = self.steps()
        return steps[0] if steps else 0

    # --- restore -------------------------------------------------------------------------------

    def restore(self, model, callbacks=()):
        """Loads the newest readable checkpoint into `model`; returns its step (0: none).

        A newest pair that cannot be read (the run was killed while writing
        it, or it was damaged) is skipped with a warning for the one before.
        """
        self._callbacks = list(callbacks)
        skipped = []
        for step in self.steps():
            try:
                state = read_json(self.state_path(step))
                local = _readable_weights_file(self.weights_path(step))
            except Exception as error:  # pylint: disable=broad-except  (json, h5py, gfile errors)
                skipped.append(f"step {step} ({type(error).__name__}: {error})")
                continue
            check_process_count(state, self.runtime.num_processes, self.state_path(step))
            optimizer = model.optimizer
            if optimizer is not None and not optimizer.built:
                with self.runtime.scope():
                    optimizer.build(model.trainable_variables)  # its variables must exist to be loaded
            try:
                model.load_weights(local)  # the file just checked: on gs:// not downloaded twice
            finally:
                _remove_local_copy(local, self.weights_path(step))
            loaded = int(keras.ops.convert_to_numpy(optimizer.iterations)) if optimizer is not None else step
            if loaded != step:
                raise errors.UserError(f"{self.weights_path(step)} holds optimizer step {loaded}, not {step}: the "
                                 f"checkpoint directory {self.directory} was changed by hand; delete it to start over.")
            _set_extra_state(model, state["variables"], self.weights_path(step))
            self._callback_states = state.get("callbacks", {})
            if skipped:
                logging.warning("Checkpoint(s) %s in %s could not be read (killed while writing?); resuming from "
                                "step %d instead.", ", ".join(skipped), self.directory, step)
            return step
        if skipped:
            logging.warning("No checkpoint in %s could be read (%s): the run was killed while writing the first "
                            "one; starting this phase from the beginning.", self.directory, ", ".join(skipped))
        return 0

    def on_train_begin(self, logs=None):
        # after the other callbacks' on_train_begin (they come first in the list), which reset their state
        if self._callback_states:
            for key, callback in _stateful_callbacks(self._callbacks):
                if key in self._callback_states:
                    callback.set_state(self._callback_states[key])

    # --- save ----------------------------------------------------------------------------------

    def on_epoch_end(self, epoch, logs=None):
        self.save(self.model)

    def save(self, model):
        step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        state = {"step": step, "processes": self.runtime.num_processes, "variables": _extra_state(model),
                 "callbacks": {key: callback.get_state() for key, callback in _stateful_callbacks(self._callbacks)}}
        if self.runtime.writer:
            files.makedirs(self.directory)
            write_json(self.state_path(step), state)
        final = self.weights_path(step)
        temporary = files.join(self.directory, f"writing_{step:012d}.weights.h5")
        self.runtime.save_everywhere(lambda path: model.save_weights(path, overwrite=True), temporary)
        if self.runtime.writer:
            tf.io.gfile.rename(temporary, final, overwrite=True)
            self._prune()

    def _prune(self):
        """Keeps the newest `keep` pairs; removes older ones and what a killed save left."""
        kept = set(self.steps()[:self.keep])
        for name in tf.io.gfile.listdir(self.directory):
            match = _CHECKPOINT_NAME.fullmatch(name)
            if (match and int(match.group(1)) not in kept) or name.startswith("writing_"):
                files.remove(files.join(self.directory, name))


def check_process_count(state, processes, source):
    """Raises ValueError if the checkpoint state `state` (read from `source`) was written by a run
    of another number of processes than `processes`. Checkpoints older than the count's record
    (no "processes" key) pass."""
    written = state.get("processes")
    if written is None or int(written) == processes:
        return
    raise errors.UserError(
        f"The checkpoint {source} was written by a run of {written} process(es), and this run has {processes}. "
        f"Each process reads its own shuffled share of the training examples, so with {processes} the resumed "
        f"run would train on other batches than the uninterrupted {written}-process run; resuming with another "
        f"process count is refused. Rerun with {written} process(es) (launch/local.sh --processes {written}, or "
        f"--num_processes={written} with --process_id=0 .. {int(written) - 1} on the hosts) to resume, or start "
        f"this phase afresh with {processes} in a new --workdir (or after deleting {os.path.dirname(source)}).")


_WEIGHTS_NAME = re.compile(r"step_(\d+)\.weights\.h5")
_CHECKPOINT_NAME = re.compile(r"step_(\d+)\.(weights\.h5|json)")


def _readable_weights_file(path):
    """A local path of the HDF5 file at `path` (a temporary copy for gs://), read whole once.

    Raises if it cannot be read (a truncated or damaged file).
    """
    import h5py  # pylint: disable=import-outside-toplevel  # Keras's own dependency for .weights.h5
    local = path
    if files.is_url(path):
        local = os.path.join(tempfile.mkdtemp(prefix="figs_checkpoint_"), os.path.basename(path))
        files.copy(path, local)
    try:
        with h5py.File(local, "r") as h5:
            h5.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except Exception:
        _remove_local_copy(local, path)
        raise
    return local


def _remove_local_copy(local, path):
    """Removes `_readable_weights_file`'s temporary copy (nothing for a local checkpoint)."""
    if local is not None and local != path:
        shutil.rmtree(os.path.dirname(local), ignore_errors=True)


def _extra_variables(model):
    """The model's variables that `save_weights` leaves out: SeedGenerator states (the gates' noise)."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


def _extra_state(model):
    return [[v.path, keras.ops.convert_to_numpy(v).tolist()] for v in _extra_variables(model)]


def _set_extra_state(model, state, source):
    # By position: a SeedGenerator's variable is named by a counter of the Keras session
    # ("seed_generator_1/..."), not by its layer, so names may differ between runs.
    variables = _extra_variables(model)
    shapes = [np.shape(values) for _, values in state]
    if shapes != [tuple(v.shape) for v in variables]:
        raise errors.UserError(f"The checkpoint {source} holds random states of shapes {shapes}, but this model has "
                         f"{[tuple(v.shape) for v in variables]}: it was written by another model.")
    for variable, (_, values) in zip(variables, state):
        variable.assign(np.asarray(values, dtype=variable.dtype))


def _stateful_callbacks(callbacks):
    """(key, callback) of the callbacks whose state a resume must restore: the budget controllers."""
    return [(f"{type(c).__name__}_{i}", c) for i, c in enumerate(callbacks)
            if isinstance(c, callbacks_lib.BudgetController)]


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


def trim_history(path, start_epoch):
    """Keeps the header and the rows of the epochs before `start_epoch` in a local history.csv.

    A resumed run reruns its epochs from `start_epoch` (its checkpoint's) on. The
    killed run may have written rows of those epochs (`fit` writes an epoch's row
    before its checkpoint, so a kill in between leaves a row whose epoch is
    rerun), and a row the kill cut off: both go, so the resumed history has
    exactly one row per epoch. Keras's CSVLogger starts each row with the epoch.
    """
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        lines = f.readlines()
    kept = lines[:1] if lines and lines[0].endswith("\n") else []
    for line in lines[1:] if kept else []:
        epoch = line.split(",", 1)[0]
        if line.endswith("\n") and epoch.isdigit() and int(epoch) < start_epoch:
            kept.append(line)
    if kept != lines:
        with open(path, "w", newline="") as f:
            f.writelines(kept)


class CopyEachEpoch(keras.callbacks.Callback):
    """Copies a local file to the (remote) workdir after every epoch."""

    def __init__(self, source, destination):
        super().__init__()
        self.source, self.destination = source, destination

    def on_epoch_end(self, epoch, logs=None):
        if os.path.exists(self.source):
            tf.io.gfile.copy(self.source, self.destination, overwrite=True)
