"""Budget targeting: does one AL run land within ±2 % of the target?

    python benchmarks/budget.py                        # 4 targets × params, FLOPs
    python benchmarks/budget.py --targets 0.5 --metrics params --epochs 2   # shorter

For each metric and each target (a fraction of the supernet's cost) it runs
one architecture-learning run with `figs_tf.BudgetController(target=...)` on real
Fashion-MNIST and counts the exported network exactly
(`figs_tf.exported_network(search).cost(metric)`, cross-checked by counting
the slimmed model with `figs_tf.count`). Prints a table (markdown) and writes
`benchmarks/out/budget.png`: target vs exported cost with the ±2 % band.

The supernet is a small CNN: five Conv-BN-ReLU layers of widths
16/24/40/56/72 (max-pooling after the first and third), global average
pooling, a 10-way classifier. AL: Adam, learning rate 0.02 with cosine decay
over the run, batch 32, λ steered by the controller from its defaults.

    python benchmarks/budget.py --optimizers adam adamw sgd rmsprop --lengths 300 1000 3000

runs instead the user's-optimizer table: the README's CNN (the default
config's space: conv widths 32/64/128, flatten head), each optimizer as a user
would compile it (Adam 1e-3, AdamW 1e-3, SGD 0.05 with momentum 0.9, RMSprop
1e-3 at constant learning rates; Lion 1e-4 and `sgd_cosine`, SGD 0.05 with
momentum 0.9, with cosine decay over the run), batch 32 on real Fashion-MNIST,
`figs_tf.BudgetController(target=...)` with its defaults (the gate speed chosen
for the run), for each target fraction (`--targets`, default 25/50/75 %) and
AL length in steps (`--lengths`); `--space second` uses the issue's 2-conv
CNN (16/32, global average pooling) instead, `--space five` the five-conv CNN
above. `--flops-targets 0.5` adds FLOP targets to the parameter ones (the
issue's acceptance: `--lengths 1000 --metrics params --flops-targets 0.5`);
`--gate-speed 1` fixes the paper's gates, `--end-gate-slowdown 1` keeps the
chosen speed to the end of the run; `--steps-per-execution 8` compiles with
8 steps per call, `--ema 0.99` adds `use_ema=True, ema_momentum=0.99` to the
optimizer, and `--random-images 512` trains on 512 uniform random images
with random labels instead (issue 26's reproduction: `--space second --batch
16 --lengths 192 --random-images 512 --steps-per-execution 8`).

    python benchmarks/budget.py --lattice --widths 16 32 64 --pools 0 1

prints instead (no training) how finely a supernet's exported cost can be
placed near each target when every gate logit moves together, as they do in a
short AL run: the exported costs met on that path, how many fall in the ±2 %
band and the step of the exported cost across the target. A step larger than
the band (4 % wide) means a short run may have no architecture to land on.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import figs_tf  # noqa: E402
from figs_tf.spaces.small_cnn import small_cnn  # noqa: E402
from figs_tf import budget  # noqa: E402
from figs_tf.train import default_config  # noqa: E402
from figs_tf.train import fashion_mnist  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def run_one(metric, fraction, x, y, args):
    """One AL run aimed at `fraction` of the supernet; returns a result row."""
    keras.utils.set_random_seed(args.seed)
    search = figs_tf.wrap(small_cnn(args.widths, pools=args.pools, batchnorm_momentum=0.9), cost=metric, seed=args.seed)
    supernet_cost = figs_tf.supernet_cost(search, metric)
    target = fraction * supernet_cost
    steps = args.epochs * int(np.ceil(len(x) / args.batch))
    rate = keras.optimizers.schedules.CosineDecay(args.lr, steps) if args.schedule == "cosine" else args.lr
    search.compile(optimizer=keras.optimizers.Adam(rate),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    callback = figs_tf.BudgetController(target=target)
    start = time.time()
    history = search.fit(x, y, batch_size=args.batch, epochs=args.epochs, callbacks=[callback], verbose=0)
    seconds = time.time() - start
    exported = figs_tf.exported_network(search).cost(metric)
    counted = figs_tf.count(figs_tf.slim(search), metric)
    assert counted == exported, (counted, exported)
    return {"metric": metric, "fraction": fraction, "supernet": supernet_cost, "target": target,
            "exported": exported, "error": exported - target, "relative": exported / target - 1,
            "strength": figs_tf.get_strength(search), "accuracy": history.history["accuracy"][-1],
            "widths": list(figs_tf.export_architecture(search).values()), "seconds": seconds,
            "speed": callback.gate_plan.speed, "end_speed": figs_tf.get_gate_speed(search), "trace": callback.trace}


def print_landings(rows, tolerance):
    landed = sum(abs(r["relative"]) <= tolerance for r in rows)
    print(f"{landed}/{len(rows)} within ±{tolerance:.0%}; worst {max(abs(r['relative']) for r in rows):.2%}")


OPTIMIZERS = {  # name -> steps -> optimizer, as a user would compile it
    "adam": lambda steps: keras.optimizers.Adam(1e-3),
    "adamw": lambda steps: keras.optimizers.AdamW(1e-3),
    "sgd": lambda steps: keras.optimizers.SGD(0.05, momentum=0.9),
    "sgd_cosine": lambda steps: keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.05, steps), momentum=0.9),
    "rmsprop": lambda steps: keras.optimizers.RMSprop(1e-3),
    "lion": lambda steps: keras.optimizers.Lion(keras.optimizers.schedules.CosineDecay(1e-4, steps)),
}
OPTIMIZER_NAMES = {"adam": "Adam(1e-3)", "adamw": "AdamW(1e-3)", "sgd": "SGD(0.05, momentum 0.9)",
                   "sgd_cosine": "SGD(0.05, momentum 0.9, cosine decay)",
                   "rmsprop": "RMSprop(1e-3)", "lion": "Lion(1e-4, cosine decay)"}


def user_supernet(space):
    """The README's CNN (the default config's space), the issue's 2-conv CNN, or the five-conv CNN."""
    if space == "readme":
        config = default_config.get_config()
        return small_cnn(**config.space_kwargs.to_dict(), batchnorm_momentum=config.bn_momentum)
    if space == "five":
        return small_cnn((16, 24, 40, 56, 72), pools=(0, 2), batchnorm_momentum=0.9)
    return small_cnn((16, 32), head="gap", batchnorm_momentum=0.9)


def run_user(name, metric, fraction, steps, images, labels, args):
    """One AL run of `steps` steps with a user's optimizer; returns a result row."""
    keras.utils.set_random_seed(args.seed)
    search = figs_tf.wrap(user_supernet(args.space), cost=metric, seed=args.seed, gate_speed=args.gate_speed)
    target = fraction * figs_tf.supernet_cost(search, metric)
    epochs = int(np.ceil(steps * args.batch / len(images)))  # passes over the images (60,000 at most)
    per_epoch = steps // epochs
    examples = per_epoch * args.batch
    optimizer = OPTIMIZERS[name](epochs * per_epoch)
    if args.ema is not None:  # the same optimizer with a moving average of the weights
        optimizer = type(optimizer).from_config(dict(optimizer.get_config(), use_ema=True, ema_momentum=args.ema))
    search.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"], steps_per_execution=args.steps_per_execution)
    settings = figs_tf.ControllerSettings() if args.end_gate_slowdown is None else \
        figs_tf.ControllerSettings(end_gate_slowdown=args.end_gate_slowdown)
    callback = figs_tf.BudgetController(target=target, settings=settings)
    start = time.time()
    history = search.fit(images[:examples], labels[:examples], batch_size=args.batch, epochs=epochs,
                         callbacks=[callback], verbose=0)
    exported = figs_tf.exported_network(search).cost(metric)
    assert figs_tf.count(figs_tf.slim(search), metric) == exported
    return {"optimizer": name, "metric": metric, "fraction": fraction, "steps": epochs * per_epoch,
            "target": target, "exported": exported, "relative": exported / target - 1,
            "speed": callback.gate_plan.speed, "end_speed": figs_tf.get_gate_speed(search),
            "strength": figs_tf.get_strength(search),
            "accuracy": history.history["accuracy"][-1], "widths": list(figs_tf.export_architecture(search).values()),
            "seconds": time.time() - start}


def user_optimizers(args, tolerance):
    if args.random_images:  # the reproduction: uniform noise, random labels
        generator = np.random.default_rng(args.seed)
        images = generator.random((args.random_images, 28, 28, 1), dtype=np.float32)
        labels = generator.integers(0, 10, args.random_images)
    else:
        images, labels = fashion_mnist.load_fashion_mnist("train")
        images = images.astype("float32") / 255.0
    spaces = {"readme": "README CNN 32/64/128, flatten head", "second": "2-conv CNN 16/32, GAP",
              "five": "five-conv CNN 16/24/40/56/72, GAP"}
    settings = "defaults" if args.end_gate_slowdown is None else f"end_gate_slowdown={args.end_gate_slowdown:g}"
    data = f"{args.random_images} random images" if args.random_images else "real Fashion-MNIST"
    print(f"{spaces[args.space]}; {data}, batch {args.batch}, BudgetController {settings}, gate speed "
          f"{args.gate_speed}, steps_per_execution {args.steps_per_execution}, EMA {args.ema}, seed {args.seed}, "
          f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}, {os.cpu_count()} CPU cores")
    print("| optimizer | AL steps | metric | target (% supernet) | gate speed | exported / target − 1 | final λ "
          "| widths | s |")
    print("|---|---:|---|---:|---:|---:|---:|---|---:|")
    cases = [(metric, fraction) for metric in args.metrics for fraction in args.targets]
    cases += [("flops", fraction) for fraction in args.flops_targets if ("flops", fraction) not in cases]
    rows = []
    for name in args.optimizers:
        for steps in args.lengths:
            for metric, fraction in cases:
                row = run_user(name, metric, fraction, steps, images, labels, args)
                rows.append(row)
                mark = "" if abs(row["relative"]) <= tolerance else " **(miss)**"
                print(f"| {OPTIMIZER_NAMES[name]} | {row['steps']:,} | {metric} | {fraction:.0%} "
                      f"| {row['speed']:g} → {row['end_speed']:g} | {row['relative']:+.2%}{mark} | {row['strength']:.2g} "
                      f"| {'/'.join(str(w) for w in row['widths'][:-1])} | {row['seconds']:.0f} |", flush=True)
                keras.backend.clear_session()
    print_landings(rows, tolerance)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"budget_optimizers_{args.space}_{args.gate_speed}_"
                           f"{'_'.join(str(n) for n in args.lengths)}"
                           f"{'' if args.end_gate_slowdown is None else f'_slowdown{args.end_gate_slowdown:g}'}"
                           f"{'' if args.steps_per_execution == 1 else f'_spe{args.steps_per_execution}'}"
                           f"{'' if args.ema is None else f'_ema{args.ema:g}'}"
                           f"{'' if not args.random_images else f'_random{args.random_images}'}.json"), "w",
              encoding="utf-8") as f:
        json.dump(rows, f, indent=1)


def lattice(args, tolerance):
    """Exported costs along the path of uniformly moving logits, near each target."""
    model = small_cnn(args.widths, pools=args.pools, batchnorm_momentum=0.9)
    print(f"Supernet widths {args.widths}, max-pooling after layers {args.pools}: exported cost along "
          "uniformly moving gate logits (ν from 3 to -3)")
    print("| metric | target (% supernet) | architectures in ±2 % | step across the target (% of target) |")
    print("|---|---:|---:|---:|")
    search = figs_tf.wrap(model)
    graph, gates = figs_tf.channel_graph_of(search), figs_tf.gates_of(search)
    for metric in args.metrics:
        supernet_cost = figs_tf.supernet_cost(search, metric)
        costs = np.unique([budget.exported_cost_at(graph, gates, metric,
                                                   np.full(gates.num_channels, logit, np.float32))
                           for logit in np.linspace(3, -3, 3001)])
        for fraction in args.targets:
            target = fraction * supernet_cost
            inside = np.sum(np.abs(costs / target - 1) <= tolerance)
            above = np.searchsorted(costs, target)
            step = (costs[min(above, len(costs) - 1)] - costs[max(above - 1, 0)]) / target
            print(f"| {metric} | {fraction:.0%} | {inside} | {step:.1%} |")


def plot(rows, path, tolerance):
    """Top: exported vs target (fractions of the supernet). Bottom: the relative error and the band."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    metrics = sorted({r["metric"] for r in rows}, key=["params", "flops"].index)
    figure, axes = plt.subplots(2, len(metrics), figsize=(5 * len(metrics), 7.5), squeeze=False,
                                gridspec_kw={"height_ratios": [3, 2]})
    for column, metric in enumerate(metrics):
        chosen = [r for r in rows if r["metric"] == metric]
        supernet_cost = chosen[0]["supernet"]
        targets = np.array([r["target"] / supernet_cost for r in chosen])
        top, bottom = axes[0][column], axes[1][column]
        line = np.linspace(0, 1, 50)
        top.fill_between(line, line * (1 - tolerance), line * (1 + tolerance), color="#cfe3cf",
                         label=f"±{tolerance:.0%} band")
        top.plot(line, line, color="#5b8c5b", lw=0.8)
        top.scatter(targets, [r["exported"] / supernet_cost for r in chosen], color="#2b5ea8", zorder=3,
                    label="exported after one AL run")
        top.set_xlim(0, 0.8)
        top.set_ylim(0, 0.8)
        top.set_xlabel(f"target / supernet {metric} ({supernet_cost:,})")
        top.set_ylabel(f"exported / supernet {metric}")
        top.set_title(f"{metric}: target vs exported")
        top.legend(loc="upper left", fontsize=8)
        bottom.axhspan(-100 * tolerance, 100 * tolerance, color="#cfe3cf")
        bottom.axhline(0, color="#5b8c5b", lw=0.8)
        bottom.scatter(targets, [100 * r["relative"] for r in chosen], color="#2b5ea8", zorder=3)
        bottom.set_xlim(0, 0.8)
        limit = max(200 * tolerance, 120 * max(abs(r["relative"]) for r in chosen))
        bottom.set_ylim(-limit, limit)
        bottom.set_xlabel(f"target / supernet {metric}")
        bottom.set_ylabel("exported / target − 1 (%)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=float, nargs="+", default=None,
                        help="targets as fractions of the supernet's cost (default 0.2 0.35 0.5 0.7; with "
                             "--optimizers 0.25 0.5 0.75)")
    parser.add_argument("--metrics", nargs="+", default=None, choices=["params", "flops"],
                        help="costs (default params and flops; with --optimizers params)")
    parser.add_argument("--examples", type=int, default=4096, help="training images (real Fashion-MNIST)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.02, help="Adam's (initial) learning rate")
    parser.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                        help="learning rate: cosine decay to 0 over the run, or constant")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 24, 40, 56, 72])
    parser.add_argument("--pools", type=int, nargs="*", default=[0, 2], help="max-pool after these layers")
    parser.add_argument("--lattice", action="store_true", help="only print the exported-cost steps (no AL)")
    parser.add_argument("--optimizers", nargs="+", choices=sorted(OPTIMIZERS),
                        help="the user's-optimizer table: these optimizers × --targets × --lengths")
    parser.add_argument("--flops-targets", type=float, nargs="*", default=[],
                        help="with --optimizers: FLOP targets added to the --metrics × --targets cases (the "
                             "issue's acceptance: --metrics params --flops-targets 0.5)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[300, 1000, 3000],
                        help="AL lengths in steps for --optimizers")
    parser.add_argument("--space", default="readme", choices=["readme", "second", "five"],
                        help="supernet for --optimizers: the README's CNN, the issue's 2-conv CNN, or the "
                             "five-conv CNN of the table above")
    parser.add_argument("--gate-speed", default="auto", type=lambda v: v if v == "auto" else float(v),
                        help="with --optimizers: 'auto' (chosen by the controller) or a fixed gate speed "
                             "(1: the paper's gates, as before the gate speed existed)")
    parser.add_argument("--end-gate-slowdown", type=float, default=None,
                        help="with --optimizers: ControllerSettings.end_gate_slowdown (default: the controller's; "
                             "1: the chosen gate speed kept to the end)")
    parser.add_argument("--steps-per-execution", type=int, default=1,
                        help="with --optimizers: compile(steps_per_execution=...) (Keras calls back once per call)")
    parser.add_argument("--ema", type=float, default=None, metavar="MOMENTUM",
                        help="with --optimizers: the optimizer with use_ema=True and this ema_momentum (Keras's "
                             "default is 0.99)")
    parser.add_argument("--random-images", type=int, default=0, metavar="N",
                        help="with --optimizers: N uniform random images with random labels instead of "
                             "Fashion-MNIST (issue 26's reproduction: --space second --batch 16 --lengths 192 "
                             "--random-images 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    tolerance = figs_tf.ControllerSettings().tolerance
    if args.targets is None:
        args.targets = [0.25, 0.5, 0.75] if args.optimizers else [0.2, 0.35, 0.5, 0.7]
    if args.metrics is None:
        args.metrics = ["params"] if args.optimizers else ["params", "flops"]
    if args.optimizers:
        user_optimizers(args, tolerance)
        return
    if args.lattice:
        lattice(args, tolerance)
        return
    images, labels = fashion_mnist.load_fashion_mnist("train")
    x, y = images[:args.examples].astype("float32") / 255.0, labels[:args.examples]
    print(f"Supernet widths {args.widths} (max-pool after {args.pools}); {args.examples} Fashion-MNIST "
          f"images, {args.epochs} epochs, batch {args.batch}, Adam {args.lr} ({args.schedule}), seed {args.seed}, "
          f"{os.cpu_count()} CPU cores")
    print("| metric | target (% supernet) | target | exported | error | relative | final λ | gate speed | widths | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    rows = []
    for metric in args.metrics:
        for fraction in args.targets:
            row = run_one(metric, fraction, x, y, args)
            rows.append(row)
            print(f"| {metric} | {fraction:.0%} | {row['target']:,.0f} | {row['exported']:,} | {row['error']:+,.0f} "
                  f"| {row['relative']:+.2%} | {row['strength']:.3g} | {row['speed']:g} → {row['end_speed']:g} "
                  f"| {row['widths'][:-1]} "
                  f"| {row['seconds']:.0f} |", flush=True)
            keras.backend.clear_session()
    print_landings(rows, tolerance)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "budget.png")
    plot(rows, path, tolerance)
    with open(os.path.join(args.out, "budget.json"), "w", encoding="utf-8") as f:
        json.dump([{k: v for k, v in r.items() if k != "trace"} for r in rows], f, indent=1)
    print(f"wrote {path} and budget.json")


if __name__ == "__main__":
    main()
