"""CPU inference latency of a supernet and of its slimmed models at two budgets.

    python benchmarks/slim_latency.py [--model ResNet50] [--size 96] [--batch 8]

Each budget keeps the given fraction of every prunable channel group (gates set
to ±30, so the exported widths are exact). The supernet and the slimmed model
run alternately in one process, each call a compiled tf.function on the same
batch; the table shows medians over repeats and their ratio.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import figs_tf  # noqa: E402


def keep_fraction(search, fraction):
    """Gates that keep the first ⌈fraction·size⌉ channels of every group."""
    gates = figs_tf.gates_of(search)
    logits = np.full(gates.logits.shape, -30.0, np.float32)
    for group, size in enumerate(gates.group_sizes):
        block = gates.group_slice(group)
        keep = max(1, int(np.ceil(fraction * size)))
        logits[block.start:block.start + keep] = 30.0
    gates.set_logits(logits)


def median_latency_ms(functions, batch, repeats, warmup=3):
    for function in functions:
        for _ in range(warmup):
            function(batch)
    times = [[] for _ in functions]
    for _ in range(repeats):
        for i, function in enumerate(functions):  # alternate: drift hits all alike
            start = time.perf_counter()
            function(batch).numpy()
            times[i].append(1000 * (time.perf_counter() - start))
    return [float(np.median(t)) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ResNet50")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.75, 0.5])
    args = parser.parse_args()
    model = getattr(keras.applications, args.model)(weights=None, input_shape=(args.size, args.size, 3),
                                                    classes=1000)
    search = figs_tf.wrap(model)
    batch = tf.constant(np.random.default_rng(0).random((args.batch, args.size, args.size, 3)), tf.float32)
    supernet_fn = tf.function(lambda x: model(x, training=False))
    print(f"{args.model} {args.size}x{args.size}, batch {args.batch}, {os.cpu_count()} CPU cores, "
          f"TensorFlow {tf.__version__}, median of {args.repeats}")
    print(f"{'kept per group':>15} {'params':>12} {'MAdds/image':>14} {'supernet ms':>12} {'slim ms':>9} {'ratio':>7}")
    for fraction in args.fractions:
        keep_fraction(search, fraction)
        slim = figs_tf.slim(search)
        slim_fn = tf.function(lambda x, slim=slim: slim(x, training=False))
        supernet_ms, slim_ms = median_latency_ms([supernet_fn, slim_fn], batch, args.repeats)
        print(f"{fraction:>15.0%} {slim.count_params():>12,} {figs_tf.count(slim, 'flops'):>14,} "
              f"{supernet_ms:>12.1f} {slim_ms:>9.1f} {slim_ms / supernet_ms:>7.2f}")
    print(f"{'supernet':>15} {model.count_params():>12,} {figs_tf.count(model, 'flops'):>14,}")


if __name__ == "__main__":
    main()
