"""tf.distribute strategies for the training binaries, chosen by name.

    strategy = strategies.make_strategy("auto")           # TPU VM, GPUs or CPU
    strategy = strategies.make_strategy("tpu", tpu="my-tpu-name")
    with strategy.scope():
        model = ...

Names (`config.strategy` or `--strategy`):
- "tpu": `TPUClusterResolver(tpu)` (`"local"` on a Cloud TPU VM, or a TPU name
  / grpc address), `connect_to_cluster`, `initialize_tpu_system`, `TPUStrategy`.
- "gpus": `MirroredStrategy` over all local GPUs (or the logical CPUs a test
  configured, when there is no GPU).
- "multi_worker": refused (`MULTI_WORKER_REFUSED`): Keras 3's `fit` under
  `MultiWorkerMirroredStrategy` is broken upstream; several processes train on
  the JAX backend (`figs_tf.train.runtime`), where "multi_worker" means the
  same as "auto".
- "one_device": `OneDeviceStrategy` on the first GPU, else the CPU.
- "cpu": `OneDeviceStrategy("/cpu:0")`, even where accelerators exist.
- "default": TensorFlow's default (no-op) strategy: TensorFlow places ops on
  the first GPU if there is one, else on the CPU.
- "auto": "tpu" on a TPU VM (a TPU device can be found locally), else "gpus"
  with more than one GPU, else "default".

"auto" does not pick OneDeviceStrategy for one device: a training step of the
default config takes about twice as long under it on a CPU (measured:
docs/results.md, "Why `strategy="auto"` uses TensorFlow's default strategy on
one device"; benchmarks/strategy_step.py).
"""

import os

import tensorflow as tf

from figs_tf.train import errors

STRATEGIES = ("auto", "tpu", "gpus", "multi_worker", "one_device", "cpu", "default")
UPSTREAM_MULTI_WORKER_BUG = (
    "Keras 3's fit under MultiWorkerMirroredStrategy fails at the first step on every worker "
    "(keras-team/keras#20585, tensorflow/tensorflow#72388)")
JAX_ROUTE = (
    "Train with several processes on the JAX backend instead, which runs the same configs: "
    "`launch/local.sh --processes N ...` on one machine, or on every host `KERAS_BACKEND=jax figs-search "
    "--coordinator_address=HOST0:PORT --num_processes=N --process_id=I ...` (launch/gpu.sh and launch/tpu_vm.sh "
    "start these; WORKSPACE.md says what each host needs)")
MULTI_WORKER_REFUSED = (f"config.strategy='multi_worker' (MultiWorkerMirroredStrategy) is refused on the TensorFlow "
                        f"backend: {UPSTREAM_MULTI_WORKER_BUG}. {JAX_ROUTE}.")


def _tpu_is_local():
    # A Cloud TPU VM exposes its chips as /dev/accel* (v2-v4) or /dev/vfio (v5+).
    return os.path.exists("/dev/accel0") or (os.path.isdir("/dev/vfio") and bool(os.listdir("/dev/vfio")))


_STRATEGIES_MADE = {}


def make_strategy(name="auto", tpu="local"):
    """Returns the `tf.distribute.Strategy` called `name` (see module docstring).

    One strategy per (name, tpu) per process: a second MirroredStrategy would
    reuse collective-op keys of the first (replicas then disagree on shapes),
    and initialising a TPU system again would wipe it.
    """
    key = (name, tpu)
    if key not in _STRATEGIES_MADE:
        _STRATEGIES_MADE[key] = _make_strategy(name, tpu)
    return _STRATEGIES_MADE[key]


def _make_strategy(name, tpu):
    if name not in STRATEGIES:
        raise errors.UserError(f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)} "
                         f"(config key `strategy`).")
    if name == "auto":
        if _tpu_is_local() or tpu not in (None, "", "local"):
            name = "tpu"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "gpus"
        else:
            name = "default"  # one device: the default strategy is the fast path (docstring)
    if name == "tpu":
        return tpu_strategy(tpu)
    if name == "gpus":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        raise errors.UserError(MULTI_WORKER_REFUSED)
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    return tf.distribute.get_strategy()


def tpu_strategy(tpu="local"):
    """Connects to the TPU `tpu` ("local" on a TPU VM) and returns a TPUStrategy."""
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    if tpu not in (None, "", "local"):
        # A remote TPU (TPU node): the host talks to it over grpc.
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_tpu(strategy):
    return isinstance(strategy, tf.distribute.TPUStrategy)
