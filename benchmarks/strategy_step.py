"""Training-step time of the default config's AL under each single-device strategy.

    python benchmarks/strategy_step.py                    # default, one_device, cpu
    python benchmarks/strategy_step.py --steps 50 default

Builds what `figs-search` builds (the default config's search model, the
paper's optimizer, the binaries' distributed input pipeline on real
Fashion-MNIST) under each named strategy, in a fresh subprocess per strategy
(`figs_tf.train.strategies` makes one strategy per process), runs 10 untimed steps
and then times `--steps` steps of `fit`. Prints ms per step and the process's
user and system CPU seconds: the system time shows threads fighting for the
cores.
"""

import argparse
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def measure(name, steps):
    import keras  # pylint: disable=g-import-not-at-top

    from figs_tf import wrapping  # pylint: disable=g-import-not-at-top
    from figs_tf.train import default_config, loop, runtime, strategies  # pylint: disable=g-import-not-at-top

    config = default_config.get_config()
    strategy = strategies.make_strategy(name, config.tpu)
    run = runtime.tensorflow_runtime(strategy)
    plan = loop.make_plan(config, "search", run)
    train_data = loop.training_data(config, plan, run)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        search = wrapping.wrap(loop.build_supernet(config), cost=config.cost, strength=config.strength, seed=0)
        loop.compile_model(search, config, plan)
    search.fit(train_data, steps_per_epoch=10, epochs=1, verbose=0)
    start = time.perf_counter()
    search.fit(train_data, steps_per_epoch=steps, epochs=1, verbose=0)
    milliseconds = 1000 * (time.perf_counter() - start) / steps
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"| {name} | {type(strategy).__name__} | {milliseconds:.1f} | {usage.ru_utime:.1f} | {usage.ru_stime:.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strategies", nargs="*", default=["default", "one_device", "cpu"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args.strategies[0], args.steps)
        return
    print(f"default config AL step, batch 128, {os.cpu_count()} CPU cores; {args.steps} timed steps")
    print("| strategy | class | ms / step | user CPU s (process) | system CPU s (process) |")
    print("|---|---|---:|---:|---:|")
    for name in args.strategies:
        subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps), name], check=True)


if __name__ == "__main__":
    main()
