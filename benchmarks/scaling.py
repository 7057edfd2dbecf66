"""AL training steps with 1 and N processes on this machine (JAX backend), and bytes all-reduced per step.

    python benchmarks/scaling.py                        # 1 and 2 processes, 50 timed steps
    python benchmarks/scaling.py --processes 1 2 4 --steps 100

Builds what `figs-search` builds (the default config's search model, the
paper's optimizer, each process's share of real Fashion-MNIST through the
binaries' input pipeline, `figs_tf.train.runtime` joining the processes as
`launch/local.sh --processes N` does), with the config's global batch of 128
split over the processes. For each process count it starts that many
processes on 127.0.0.1, runs `--warmup` untimed steps, then times `--steps`
steps of `fit` on process 0 and prints steps/s and examples/s (global batch ×
steps/s).

Bytes all-reduced per step are read from the compiled training step itself:
process 0 lowers and compiles Keras's `train_step` with the run's own state
and batch shardings and adds up the result sizes of every `all-reduce` in the
optimised HLO (XLA may fuse several into one). For data parallelism that is
the gradient of every trainable variable plus a few scalars (loss, metrics);
the table shows the trainable variables' float32 bytes beside it as a check.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DTYPE_BYTES = {"f64": 8, "s64": 8, "u64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2, "s16": 2, "u16": 2,
                "s8": 1, "u8": 1, "pred": 1}
_ALL_REDUCE = re.compile(r"=\s*(.+?)\s+all-reduce(?:-start)?\(")
_SHAPE = re.compile(r"\b(f64|s64|u64|f32|s32|u32|bf16|f16|s16|u16|s8|u8|pred)\[([\d,]*)\]")


def all_reduced_bytes(hlo_text):
    """(bytes, number of all-reduce ops) of an optimised HLO module's text."""
    total, count = 0, 0
    for line in hlo_text.splitlines():
        match = _ALL_REDUCE.search(line)
        if not match:
            continue
        count += 1
        for dtype, dims in _SHAPE.findall(match.group(1)):
            size = 1
            for dim in filter(None, dims.split(",")):
                size *= int(dim)
            total += size * _DTYPE_BYTES[dtype]
    return total, count


def measure(num_processes, process_id, port, steps, warmup):
    import jax  # pylint: disable=import-outside-toplevel
    import keras  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel

    from figs_tf import wrapping  # pylint: disable=import-outside-toplevel
    from figs_tf.train import default_config, loop, runtime  # pylint: disable=import-outside-toplevel

    config = default_config.get_config()
    processes = runtime.ProcessSettings(f"127.0.0.1:{port}" if num_processes > 1 else None, num_processes, process_id)
    loop.check(config, processes)
    run = runtime.make_runtime(config, processes)
    keras.utils.set_random_seed(0)
    plan = loop.make_plan(config, "search", run)
    with run.scope():
        search = wrapping.wrap(loop.build_supernet(config), cost=config.cost, strength=config.strength, seed=0)
        loop.compile_model(search, config, plan)
    data = loop.training_data(config, plan, run)
    search.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    search.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    if process_id != 0:
        return
    state = tuple([v.value for v in variables] for variables in (
        search.trainable_variables, search.non_trainable_variables, search.optimizer.variables,
        search.metrics_variables))
    shape = (plan.global_batch_size, *search.input_shape[1:])
    if run.distribution is not None:
        sharding = jax.sharding.NamedSharding(run.distribution.device_mesh.backend_mesh,
                                              jax.sharding.PartitionSpec("batch"))
    else:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    batch = (jax.ShapeDtypeStruct(shape, np.float32, sharding=sharding),
             jax.ShapeDtypeStruct(shape[:1], np.int32, sharding=sharding))
    hlo = jax.jit(search.train_step).lower(state, batch).compile().as_text()
    reduced, ops = all_reduced_bytes(hlo)
    print("RESULT " + json.dumps({
        "processes": num_processes, "devices": run.num_devices, "global_batch": plan.global_batch_size,
        "steps_per_second": steps / seconds, "examples_per_second": plan.global_batch_size * steps / seconds,
        "all_reduced_bytes": reduced, "all_reduce_ops": ops,
        "trainable_float32_bytes": 4 * sum(int(np.prod(v.shape)) for v in search.trainable_variables)}), flush=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_processes(num_processes, steps, warmup):
    port = free_port()
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    children = [subprocess.Popen([sys.executable, __file__, "--child", str(num_processes), str(i), str(port),
                                  "--steps", str(steps), "--warmup", str(warmup)],
                                 stdout=subprocess.PIPE if i == 0 else subprocess.DEVNULL, text=True, env=env)
                for i in range(num_processes)]
    try:
        output, _ = children[0].communicate(timeout=1800)
        for child in children[1:]:
            child.wait(timeout=300)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    if any(child.returncode for child in children):
        raise RuntimeError(f"a process of the {num_processes}-process run failed:\n{output[-3000:]}")
    return json.loads([line for line in output.splitlines() if line.startswith("RESULT ")][-1][len("RESULT "):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--child", nargs=3, type=int, metavar=("N", "ID", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(*args.child, steps=args.steps, warmup=args.warmup)
        return
    print(f"default config AL, global batch 128, {os.cpu_count()} CPU cores, JAX backend; {args.steps} timed steps "
          f"after {args.warmup}")
    print("| processes | devices | per-process batch | steps/s | examples/s | all-reduced per step "
          "| all-reduce ops | trainable float32 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for count in args.processes:
        result = run_processes(count, args.steps, args.warmup)
        print(f"| {result['processes']} | {result['devices']} | {result['global_batch'] // result['processes']} "
              f"| {result['steps_per_second']:.2f} | {result['examples_per_second']:.0f} "
              f"| {result['all_reduced_bytes']:,} B | {result['all_reduce_ops']} "
              f"| {result['trainable_float32_bytes']:,} B |", flush=True)


if __name__ == "__main__":
    main()
