"""Gate overhead: training-step time of the wrapped model over the plain model's.

    python benchmarks/overhead.py                                   # demo CNN, batch 128, CPU, TF
    KERAS_BACKEND=jax python benchmarks/overhead.py --model resnet50 --batch 256 \\
        --dtype mixed_bfloat16                                      # the GPU measurement
    KERAS_BACKEND=jax python benchmarks/overhead.py --model resnet50 --batch 2 --size 32 \\
        --dtype mixed_bfloat16 --repeats 3                          # the same mode, smoke-sized for a CPU

The plain model and its `figs_tf.wrap`ped search model (λ > 0, so the cost
loss and its gradient are live) are compiled alike (Adam, sparse cross-entropy)
and trained with `train_on_batch` on one fixed batch. After warm-up calls
(tracing / compilation, not timed) the variants run ALTERNATELY in one process,
`--steps` steps each per round, so that drift in machine load hits all alike;
the table gives the median over rounds of the time per step and the ratio to
the plain model, both as a ratio of medians and as the median of the per-round
ratios (less sensitive to load that changes between rounds). Extra variants say where the time goes:

- `wrapped, gates frozen`: the logits are not trained (no gradient for them,
  no optimizer update), the noise, masks and cost loss stay;
- `wrapped, λ = 0`: the cost is still computed and added, with weight 0.

Writes `benchmarks/out/overhead_<model>.png` (median step times, with the
interquartile range).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import figs_tf  # noqa: E402
from figs_tf.spaces.small_cnn import small_cnn  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def build(model_name, size, classes):
    if model_name == "demo":

        return small_cnn((32, 64, 128), classes=classes, batchnorm_momentum=0.9), (28, 28, 1)
    if model_name == "resnet50":
        shape = (size, size, 3)
        return keras.applications.ResNet50(weights=None, input_shape=shape, classes=classes), shape
    raise ValueError(f"Unknown --model {model_name}: use 'demo' or 'resnet50'.")


def compiled(model, jit_compile):
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=model.name == "fashion_supernet"),
                  jit_compile=jit_compile)
    return model


def variants(args):
    """{name: compiled model}: the plain model, the wrapped one, and the profiling variants."""
    plain, shape = build(args.model, args.size, args.classes)
    strength = 1.0 / figs_tf.count(plain, "params")  # the cost term about one nat: live, not dominating
    models = {"plain": compiled(plain, args.jit)}
    wrapped = figs_tf.wrap(plain, cost="params", strength=strength, seed=0)
    models["wrapped"] = compiled(wrapped, args.jit)
    if args.profile:
        # these share the plain model's layers (wrap does not copy weights): timing is all we read
        frozen = figs_tf.wrap(plain, cost="params", strength=strength, seed=0)
        figs_tf.gates_of(frozen).trainable = False
        models["wrapped, gates frozen"] = compiled(frozen, args.jit)
        models["wrapped, λ = 0"] = compiled(figs_tf.wrap(plain, cost="params", strength=0.0, seed=0), args.jit)
    return models, shape


def time_alternately(models, batch, repeats, steps, warmup):
    x, y = batch
    for model in models.values():
        for _ in range(warmup):  # tracing / XLA compilation, and the optimizer's variables
            model.train_on_batch(x, y)
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():  # alternate: load drift hits every variant alike
            start = time.perf_counter()
            for _ in range(steps):
                loss = model.train_on_batch(x, y)
            float(np.asarray(loss).ravel()[0])  # wait for the device
            times[name].append(1000 * (time.perf_counter() - start) / steps)
    return times


def plot(times, path, title):
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    names = list(times)
    medians = [np.median(times[n]) for n in names]
    low = [m - np.percentile(times[n], 25) for n, m in zip(names, medians)]
    high = [np.percentile(times[n], 75) - m for n, m in zip(names, medians)]
    figure, axis = plt.subplots(figsize=(1.9 * len(names) + 2, 4))
    axis.bar(range(len(names)), medians, yerr=[low, high], capsize=4,
             color=["#9aa7b8"] + ["#2b5ea8"] * (len(names) - 1))
    for i, median in enumerate(medians):
        axis.annotate(f"{median:.1f} ms\n×{median / medians[0]:.3f}", (i, median), ha="center",
                      textcoords="offset points", xytext=(0, 6), fontsize=8)
    axis.set_xticks(range(len(names)))
    axis.set_xticklabels(names, fontsize=8)
    axis.set_ylabel("ms per training step (median, IQR)")
    axis.set_ylim(0, 1.25 * max(medians))
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", choices=["demo", "resnet50"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224, help="input size of resnet50")
    parser.add_argument("--classes", type=int, default=None, help="default: 10 (demo), 1000 (resnet50)")
    parser.add_argument("--dtype", default="float32", help="Keras dtype policy, e.g. mixed_bfloat16")
    parser.add_argument("--jit", default="auto", help="compile(jit_compile=...): auto, true or false")
    parser.add_argument("--repeats", type=int, default=15, help="rounds; each round times every variant")
    parser.add_argument("--steps", type=int, default=5, help="training steps per variant per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="time only plain and wrapped")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    args.jit = {"auto": "auto", "true": True, "false": False}[args.jit.lower()]
    args.classes = args.classes or (10 if args.model == "demo" else 1000)
    keras.mixed_precision.set_global_policy(args.dtype)
    keras.utils.set_random_seed(0)
    models, shape = variants(args)
    rng = np.random.default_rng(0)
    batch = (rng.random((args.batch,) + shape).astype("float32"),
             rng.integers(0, args.classes, args.batch).astype("int32"))
    times = time_alternately(models, batch, args.repeats, args.steps, args.warmup)
    title = (f"{args.model}, batch {args.batch}, {args.dtype}, Keras {keras.__version__} on "
             f"{keras.backend.backend()}, jit_compile={args.jit} (resolved: {models['plain'].jit_compile}), "
             f"{os.cpu_count()} CPU cores")
    print(title)
    print(f"median of {args.repeats} alternating rounds × {args.steps} steps (warm-up {args.warmup} not timed)")
    # a ratio per round (both timed within seconds of each other) is less noisy under a
    # changing machine load than the ratio of the medians
    print("| variant | ms / step | IQR | ratio of medians | median of per-round ratios |")
    print("|---|---:|---:|---:|---:|")
    plain = np.asarray(times["plain"])
    for name, values in times.items():
        values = np.asarray(values)
        print(f"| {name} | {np.median(values):.2f} | {np.percentile(values, 25):.2f}-{np.percentile(values, 75):.2f} "
              f"| {np.median(values) / np.median(plain):.3f} | {np.median(values / plain):.3f} |")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"overhead_{args.model}.png")
    plot(times, path, title)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
