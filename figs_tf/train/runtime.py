"""Where a phase runs: the engine, the processes and the devices, on either Keras backend.

    processes = runtime.ProcessSettings.from_environment()    # or from the flags
    run = runtime.make_runtime(config, processes)
    with run.scope():
        model = ...                                           # variables where they belong
    train_data = run.distribute(lambda context: make_dataset(..., input_context=context))

Two engines run the same configs:

- TensorFlow backend (the default): one process and `tf.distribute`
  (`strategies.make_strategy(config.strategy)`: TPUStrategy, MirroredStrategy
  or the default strategy on one device). Several processes are refused
  (`refuse_multi_worker`): Keras 3's `fit` under MultiWorkerMirroredStrategy is
  broken upstream.
- JAX backend (`KERAS_BACKEND=jax`): `keras.distribution`. One process over all
  local devices, or several processes (a multi-host TPU slice, several GPU
  machines, or N processes on one machine with `launch/local.sh --processes N`)
  that `jax.distributed.initialize` joins through a coordinator. The model is
  replicated on every device (`DataParallel`), each process feeds its own
  share of every global batch (`auto_shard_dataset=False`; the input pipeline
  reads a disjoint share of the data per process) and gradients are summed
  over all devices of all processes.

Processes come from the flags `--coordinator_address`, `--num_processes` and
`--process_id`, or else from Keras's environment variables
`KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES` and
`KERAS_DISTRIBUTION_PROCESS_ID`; `--num_processes=auto` lets JAX find them on
a Cloud TPU slice.

A lost process (its host died, froze or left the network) stops the others
within `--peer_timeout_seconds` (default `DEFAULT_PEER_TIMEOUT_SECONDS`, 100):
JAX's distributed service takes a process that sent no heartbeat for that long
as dead and ends every other process (exit status 134, "Terminating process
because the JAX distributed service detected fatal errors"); each process logs
at the start what then to do (rerun the same command everywhere to resume).

Every process runs the same program; process 0 writes the workdir
(`Runtime.writer`). Under JAX with several processes every process must take
part in each computation on the replicated variables (an assignment, a save),
so the binaries run all of them everywhere and only the writer keeps files.
"""

import contextlib
import dataclasses
import hashlib
import os
import tempfile
from typing import Any, Optional

import keras
import numpy as np
from absl import logging

from figs_tf.train import errors
from figs_tf.train import strategies

# Keras's own names (keras.distribution.initialize reads them too).
ENV_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
ENV_NUM_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"
AUTO = "auto"
# Seconds without a heartbeat after which a process is taken as lost and the others stop
# (JAX's own default: `jax.distributed.initialize(heartbeat_timeout_seconds=100)`).
DEFAULT_PEER_TIMEOUT_SECONDS = 100
# Strategies that train on a single device: with JAX, no distribution at all.
ONE_DEVICE_STRATEGIES = ("one_device", "cpu", "default")


@dataclasses.dataclass(frozen=True)
class ProcessSettings:
    """How many processes train together and which one this is.

    Attributes:
      coordinator_address: host:port of process 0 (several processes), or None.
      num_processes: 1, N, or "auto" (JAX finds the processes itself: Cloud TPU).
      process_id: this process's index, 0 .. num_processes - 1.
      peer_timeout_seconds: a process silent (no heartbeat) this long is lost, and the
        others stop (several processes only).
    """
    coordinator_address: Optional[str] = None
    num_processes: Any = 1
    process_id: int = 0
    peer_timeout_seconds: int = DEFAULT_PEER_TIMEOUT_SECONDS

    @classmethod
    def from_environment(cls, coordinator_address=None, num_processes=None, process_id=None,
                         peer_timeout_seconds=None):
        """The given values, each falling back to Keras's environment variable, then to one process."""
        address = coordinator_address or os.environ.get(ENV_ADDRESSES) or None
        count = num_processes if num_processes not in (None, "") else os.environ.get(ENV_NUM_PROCESSES, 1)
        index = process_id if process_id is not None else os.environ.get(ENV_PROCESS_ID, 0)
        timeout = DEFAULT_PEER_TIMEOUT_SECONDS if peer_timeout_seconds is None else peer_timeout_seconds
        return cls(address, _parse_count(count), _parse_index(index), timeout)

    @property
    def several(self):
        return self.num_processes == AUTO or self.num_processes > 1

    def check(self):
        """Raises ValueError naming the flag and the fix for inconsistent settings."""
        timeout = self.peer_timeout_seconds
        if isinstance(timeout, bool) or not isinstance(timeout, (int, np.integer)) or timeout < 1:
            raise errors.UserError(f"--peer_timeout_seconds must be a positive number of seconds, got {timeout!r}; "
                             f"the default is {DEFAULT_PEER_TIMEOUT_SECONDS}.")
        if self.num_processes == AUTO:
            return
        if not 0 <= self.process_id < self.num_processes:
            raise errors.UserError(f"--process_id={self.process_id} is not one of the {self.num_processes} processes "
                             f"(0 .. {self.num_processes - 1}); give every process its own id.")
        if self.num_processes > 1 and not self.coordinator_address:
            raise errors.UserError(f"--num_processes={self.num_processes} needs --coordinator_address=HOST:PORT (process "
                             f"0's address, the same on every process; or ${ENV_ADDRESSES}).")


def _parse_count(value):
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise errors.UserError(f"--num_processes must be a positive number or 'auto', got {value!r}") from None
    if count < 1:
        raise errors.UserError(f"--num_processes must be a positive number or 'auto', got {value!r}")
    return count


def _parse_index(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.UserError(f"--process_id must be a number, got {value!r}") from None


def refuse_multi_worker(config, processes):
    """On the TensorFlow backend, refuses several processes before any work, naming the way out."""
    if keras.backend.backend() != "tensorflow":
        return
    if config.strategy == "multi_worker":
        raise errors.UserError(strategies.MULTI_WORKER_REFUSED)
    if processes.several:
        raise errors.UserError(f"--num_processes={processes.num_processes} on the TensorFlow backend would need "
                         f"MultiWorkerMirroredStrategy, which is refused: {strategies.UPSTREAM_MULTI_WORKER_BUG}. "
                         f"Set KERAS_BACKEND=jax on every process. {strategies.JAX_ROUTE}.")


@dataclasses.dataclass
class Runtime:
    """The engine a phase runs on, with its processes and devices.

    Attributes:
      backend: "tensorflow" or "jax".
      num_processes: processes training together.
      process_index: this process (0 writes the workdir).
      num_devices: replicas of the model over all processes; the global batch splits over them.
      local_devices: replicas on this process.
      platform: "cpu", "gpu" or "tpu".
      strategy: the tf.distribute strategy (TensorFlow backend), else None.
      distribution: the keras.distribution (JAX backend with several devices), else None.
    """
    backend: str
    num_processes: int
    process_index: int
    num_devices: int
    local_devices: int
    platform: str
    strategy: Any = None
    distribution: Any = None

    @property
    def writer(self):
        """True on the one process that writes summaries, logs, plots, checkpoints and exports."""
        return self.process_index == 0

    def scope(self):
        """Where models and optimizers are built (the strategy's scope; JAX: set globally already)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def check_batch(self, name, batch):
        """Raises if the global batch `batch` (config key `name`) does not split over the devices."""
        if batch % self.num_devices:
            raise errors.UserError(f"{name} = {batch} is the global batch and must split evenly over the "
                             f"{self.num_devices} replicas of this run ({self.num_processes} process(es)); use a "
                             f"multiple of {self.num_devices}.")

    def per_process_batch(self, batch):
        return batch // self.num_processes

    @property
    def full_batches_only(self):
        """TPUs need static shapes; several processes must run the same number of evaluation steps."""
        return strategies.is_tpu(self.strategy) or self.num_processes > 1

    def distribute(self, dataset_fn):
        """The dataset of this process: `dataset_fn(input_context)` built and distributed as the engine wants."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel  # tf.data, also under JAX
        if self.strategy is not None:
            if self.num_devices == 1 and not strategies.is_tpu(self.strategy):
                return dataset_fn(None)
            return self.strategy.distribute_datasets_from_function(dataset_fn)
        if self.num_processes == 1:
            return dataset_fn(None)  # keras.distribution splits the global batch over local devices
        # One input pipeline per process, each with its share of the global batch.
        return dataset_fn(tf.distribute.InputContext(num_input_pipelines=self.num_processes,
                                                     input_pipeline_id=self.process_index,
                                                     num_replicas_in_sync=self.num_processes))

    def describe(self):
        return (f"{self.num_processes} process(es) (this is process {self.process_index}), {self.num_devices} "
                f"{self.platform} device(s) ({self.local_devices} here), {self.backend} backend"
                f"{', ' + type(self.strategy).__name__ if self.strategy is not None else ''}")

    def log_start(self, phase, plan):
        """The process count, per-process batch and device count, when there is more than one of anything."""
        if self.num_processes > 1 or self.num_devices > 1:
            logging.info("%s: %s; global batch %d = %d per process", phase, self.describe(), plan.global_batch_size,
                         self.per_process_batch(plan.global_batch_size))

    def agree(self, what, text):
        """Checks that every process holds the same `text`; raises RuntimeError naming who differs.

        Every process must call it (a collective). One process: nothing to compare.
        """
        if self.num_processes == 1:
            return
        from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
        digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.uint8)
        digests = np.asarray(multihost_utils.process_allgather(digest)).reshape(self.num_processes, -1)
        differ = [i for i in range(self.num_processes) if not np.array_equal(digests[i], digests[0])]
        if differ:
            raise RuntimeError(
                f"The processes hold different {what}: process(es) {differ} differ from process 0 (sha256 "
                f"{digests[0].tobytes().hex()[:16]}... vs {digests[differ[0]].tobytes().hex()[:16]}...). They "
                "trained the same replicated weights, so this is a fault (a non-deterministic host computation, "
                "or processes that resumed from different checkpoints): nothing was written for them.")

    def save_everywhere(self, save, path):
        """Calls `save(path)` on the writer and `save(<temporary file>)` on every other process.

        A save reads the replicated variables, which under JAX with several
        processes every process must do together; only the writer's file is kept.
        """
        if self.writer:
            save(path)
            return
        suffix = "".join(os.path.basename(path).partition(".")[1:])  # ".weights.h5", ".keras": Keras checks it
        handle, scratch = tempfile.mkstemp(prefix="figs_not_written_", suffix=suffix)
        os.close(handle)
        try:
            save(scratch)
        finally:
            if os.path.exists(scratch):
                os.remove(scratch)

    def alone(self):
        """A Runtime for this process's first device only: with `local()`, for one process's own work."""
        strategy = None
        if self.backend == "tensorflow":
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            strategy = tf.distribute.get_strategy()
        return Runtime(self.backend, 1, 0, 1, 1, self.platform, strategy=strategy)

    @contextlib.contextmanager
    def local(self):
        """Inside, new models live on this process's first device only (no distribution):
        for work one process does alone, such as evaluating a slimmed copy."""
        if self.distribution is None:
            yield
            return
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(None)
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)


_RUNTIMES = {}


def make_runtime(config, processes=None):
    """The Runtime for `config.strategy` on the current Keras backend (made once per process)."""
    processes = processes or ProcessSettings.from_environment()
    processes.check()
    refuse_multi_worker(config, processes)
    key = (keras.backend.backend(), config.strategy, config.tpu, processes)
    if key not in _RUNTIMES:
        if keras.backend.backend() == "jax":
            _RUNTIMES[key] = _jax_runtime(config.strategy, processes)
        else:
            _RUNTIMES[key] = _tensorflow_runtime(config.strategy, config.tpu)
    return _RUNTIMES[key]


def _tensorflow_runtime(strategy_name, tpu):
    return tensorflow_runtime(strategies.make_strategy(strategy_name, tpu))


def tensorflow_runtime(strategy):
    """The Runtime of one process training under the tf.distribute `strategy`."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    platform = "tpu" if strategies.is_tpu(strategy) else ("gpu" if tf.config.list_logical_devices("GPU") else "cpu")
    replicas = strategy.num_replicas_in_sync
    return Runtime("tensorflow", 1, 0, replicas, replicas, platform, strategy=strategy)


_JAX_INITIALISED = []


def _jax_runtime(strategy_name, processes):
    import jax  # pylint: disable=import-outside-toplevel
    if processes.several and not _JAX_INITIALISED:
        # Collectives between CPU processes (launch/local.sh --processes N); GPUs and TPUs use their own.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        _join(processes)
        _JAX_INITIALISED.append(processes)
    devices = jax.devices()
    platform = devices[0].platform
    num_processes = jax.process_count()
    if strategy_name in ONE_DEVICE_STRATEGIES:
        if num_processes > 1:
            raise errors.UserError(f"config.strategy={strategy_name!r} trains on one device, but {num_processes} processes "
                             "train together; use config.strategy='auto' (the JAX backend then replicates the "
                             "model on every device of every process).")
        return Runtime("jax", 1, 0, 1, 1, platform)
    distribution = None
    if len(devices) > 1:
        # Each process feeds its own share of the batch (the input pipelines read disjoint shares).
        distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
        keras.distribution.set_distribution(distribution)
    return Runtime("jax", num_processes, jax.process_index(), len(devices), jax.local_device_count(), platform,
                   distribution=distribution)


def _join(processes):
    """Joins the other processes through the coordinator, with the heartbeat timeout of `processes`.

    What `keras.distribution.initialize` does, which has no timeout argument (the rest of
    it, a random seed agreed by all processes, the binaries set themselves: `loop.prepare`).
    """
    import jax  # pylint: disable=import-outside-toplevel
    timeout = int(processes.peer_timeout_seconds)
    if processes.num_processes == AUTO:  # a Cloud TPU slice: JAX reads the hosts from the TPU metadata
        jax.distributed.initialize(heartbeat_timeout_seconds=timeout)
    else:
        # Keras's variable may list every process's address; the first is the coordinator's.
        jax.distributed.initialize(coordinator_address=processes.coordinator_address.split(",")[0].strip(),
                                   num_processes=processes.num_processes, process_id=processes.process_id,
                                   heartbeat_timeout_seconds=timeout)
    logging.info("Process %d of %d joined (coordinator %s). If a process is lost (killed, its host down or "
                 "unreachable), the others stop within about %d s (--peer_timeout_seconds): JAX ends them with "
                 "\"Terminating process because the JAX distributed service detected fatal errors\" (exit "
                 "status 134). Then rerun the same command on every process to resume from the last checkpoint.",
                 jax.process_index(), jax.process_count(), processes.coordinator_address or "found by JAX",
                 timeout)
