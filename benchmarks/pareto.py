"""Accuracy vs parameters: FiGS against a uniform width multiplier and random widths.

    python benchmarks/pareto.py --logit-gradient-multiplier 300 --temperature 0.1 --strength 3e-6 \
        --search-decay-epochs 0.25 --out benchmarks/out/pareto_r5_m300   # docs/results.md's main table
    python benchmarks/pareto.py --seeds 1 --fractions 0.5 --search-epochs 0.1 --retrain-epochs 0.1  # smoke
    python benchmarks/pareto.py --retrain-epochs 2 --out benchmarks/out/pareto        # the paper's gates
    python benchmarks/pareto.py --retrain-epochs 2 --methods figs --logit-gradient-multiplier 300 \
        --temperature 0.1 --strength 3e-6 --out benchmarks/out/pareto_m300   # FiGS with the gates sped up
    python benchmarks/pareto.py --retrain-epochs 2 --logit-gradient-multiplier 300 --temperature 0.1 \
        --strength 3e-6 --search-decay-epochs 0.25 --out benchmarks/out/pareto_decay   # AL's rate annealed
    python benchmarks/pareto.py --retrain-epochs 2 --dense-width 256 --logit-gradient-multiplier 300 \
        --temperature 0.1 --strength 3e-6 --search-decay-epochs 0.25 \
        --out benchmarks/out/pareto_dense256                                  # + a searched hidden Dense
    python benchmarks/pareto.py --widths 16 32 64 --logit-gradient-multiplier 300 --temperature 0.1 \
        --strength 6e-6 --search-decay-epochs 0.25 --out benchmarks/out/pareto_w16   # a half-width supernet

On real Fashion-MNIST with the embedded default's search space (small CNN,
conv widths 32/64/128, flatten head; `--widths` sets other conv widths,
`--dense-width` adds a searched hidden Dense layer before the classifier)
and for each budget B (a fraction of the supernet's parameters) and seed:

- FiGS: one AL run of `figs_tf.train.search` with `config.target = B` (the budget
  controller lands the exported network within ±2 % of B), then
  `figs_tf.train.retrain` of the exported architecture from scratch (the gates'
  τ, logit_gradient_multiplier and λ₀ from the flags; the defaults are the
  paper's τ and M = 1 with the default config's λ);
- uniform: every searched width times one multiplier, the multiplier whose
  parameter count is closest to B (the same network for every seed);
- random: per-layer widths drawn at random (a random direction in width space,
  scaled to land within ±2 % of B; a new draw per seed).

Every network is retrained by the same binary with the same recipe: the
default config's 5 epochs (the README's `figs-retrain`), or `--retrain-epochs`
with the learning-rate anneal scaled along. Shorter retraining ranks networks
by how fast they train rather than by what they can learn: the same FiGS and
uniform networks at 25 % differ by 0.45 points after 2 epochs and by 0.03
after 5 (docs/results.md).

Each run has its own workdir under `--out`: the script can be stopped and
rerun, finished runs are read back, not repeated (one of another space or
retraining recipe is refused, so a table never mixes two). Prints a table
(mean ± std over seeds) and writes pareto.png and pareto.json.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from figs_tf import count  # noqa: E402
from figs_tf.train import default_config  # noqa: E402
from figs_tf.train import workdir as workdir_lib  # noqa: E402
from figs_tf import export  # noqa: E402
from figs_tf.train import retrain  # noqa: E402
from figs_tf.train import search  # noqa: E402
from figs_tf.train import loop  # noqa: E402
from figs_tf.slimming import build_from_architecture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "pareto")
METHODS = ("figs", "uniform", "random")
TOLERANCE = 0.02


def make_config(args, seed):
    config = default_config.get_config()
    config.seed = seed
    config.progress = "epoch"
    config.search.epochs = args.search_epochs
    config.retrain.epochs = args.retrain_epochs
    # the default anneals ×1/16 over its 5 epochs: keep that shape for a shorter run
    config.retrain.decay_epochs = args.retrain_epochs / 4
    config.search.recalibrated_eval = False
    if args.search_decay_epochs is not None:  # None: the default config's (constant over a short AL)
        config.search.decay_epochs = args.search_decay_epochs
    config.temperature = args.temperature
    config.logit_gradient_multiplier = args.logit_gradient_multiplier
    config.strength = args.strength  # FiGS runs: λ₀, where the budget controller starts
    if args.dense_width:
        config.space_kwargs.dense_width = args.dense_width
    if args.widths:
        config.space_kwargs.widths = tuple(args.widths)
    return config


class Counter:
    """Parameter count of the search space at given widths (cached; builds the network once per widths)."""

    def __init__(self, supernet):
        self.supernet = supernet
        widths = loop.producer_widths(supernet)
        self.fixed = {"classifier": widths.pop("classifier")}  # the output layer keeps its classes
        self.searched = widths
        self._cache = {}

    def architecture(self, widths):
        return {**dict(zip(self.searched, (int(w) for w in widths))), **self.fixed}

    def params(self, widths):
        key = tuple(int(w) for w in widths)
        if key not in self._cache:
            self._cache[key] = count(build_from_architecture(self.supernet, self.architecture(key)), "params")
        return self._cache[key]

    def scaled(self, direction, budget):
        """Widths round(s · direction), s by bisection, with the count closest to `budget`."""
        full = np.array(list(self.searched.values()))

        def widths(scale):
            return np.clip(np.round(scale * direction), 1, full).astype(int)

        low, high = 0.0, float(np.max(full / direction))
        for _ in range(40):
            middle = (low + high) / 2
            low, high = (middle, high) if self.params(widths(middle)) < budget else (low, middle)
        candidates = [widths(low), widths(high)]
        return min(candidates, key=lambda w: abs(self.params(w) - budget))


def uniform_widths(counter, budget):
    return counter.scaled(np.array(list(counter.searched.values()), dtype=float), budget)


def random_widths(counter, budget, seed):
    """A random direction (each layer's share drawn uniformly), scaled to the budget; redrawn until ±2 %."""
    rng = np.random.default_rng(1000 + seed)
    full = np.array(list(counter.searched.values()), dtype=float)
    for _ in range(100):
        widths = counter.scaled(full * rng.uniform(0.1, 1.0, size=len(full)), budget)
        if abs(counter.params(widths) / budget - 1) <= TOLERANCE:
            return widths
    raise RuntimeError(f"No random widths within ±{TOLERANCE:.0%} of {budget} parameters in 100 draws.")


# What a finished run read back must share with this invocation: the space and
# the retraining recipe (FiGS's own flags may differ: docs/results.md reuses AL runs).
MEASURED_KEYS = ("dataset", "space", "space_kwargs", "retrain")


def check_finished_run(config, workdir):
    """Refuses to read back a finished run of another space or recipe into this table."""
    path = os.path.join(workdir_lib.phase_dir(workdir, "retrain"), workdir_lib.CONFIG_FILE)
    if not os.path.exists(path):
        return
    recorded = workdir_lib.read_json(path)
    current = json.loads(config.to_json_best_effort(sort_keys=True))
    changed = [key for key in MEASURED_KEYS
               if _without_architecture(recorded.get(key)) != _without_architecture(current[key])]
    if changed:
        raise SystemExit(f"{workdir} holds a run of another space or recipe (different {', '.join(changed)}; "
                         f"see {path}). Pass a new --out, or the flags that run used.")


def _without_architecture(value):
    # uniform/random runs record their architecture file's path, FiGS runs None
    return {k: v for k, v in value.items() if k != "architecture"} if isinstance(value, dict) else value


def run_one(args, method, fraction, seed, counter, supernet_params):
    workdir = os.path.join(args.out, f"{method}_{round(100 * fraction)}_seed{seed}")
    config = make_config(args, seed)
    check_finished_run(config, workdir)
    budget = fraction * supernet_params
    if method == "figs":
        config.target = budget
        search.run(config, workdir)
    else:
        widths = uniform_widths(counter, budget) if method == "uniform" else random_widths(counter, budget, seed)
        path = os.path.join(workdir, "architecture.json")
        if not os.path.exists(path):  # a rerun keeps the architecture its first run drew
            os.makedirs(workdir, exist_ok=True)
            export.save_architecture(counter.architecture(widths), path)
        config.retrain.architecture = path
    summary = retrain.run(config, workdir)
    return {"method": method, "fraction": fraction, "seed": seed, "budget": budget,
            "architecture": summary["architecture"], "params": summary["exported"]["params"],
            "flops": summary["exported"]["flops"], "test_accuracy": summary["test_accuracy"]}


def table(rows, supernet_params):
    print(f"\nSupernet {supernet_params:,} parameters. Test accuracy after retraining from scratch, "
          f"mean ± std over seeds (n per cell in brackets).")
    print("| budget | method | params (mean) | vs budget | widths (seed 0) | test accuracy (%) | FiGS − method |")
    print("|---:|---|---:|---:|---|---:|---:|")
    summary = []
    for fraction in sorted({r["fraction"] for r in rows}):
        figs = [r["test_accuracy"] for r in rows if r["fraction"] == fraction and r["method"] == "figs"]
        for method in METHODS:
            chosen = [r for r in rows if r["fraction"] == fraction and r["method"] == method]
            if not chosen:
                continue
            accuracies = np.array([r["test_accuracy"] for r in chosen])
            spread = float(accuracies.std(ddof=1)) if len(chosen) > 1 else 0.0
            params = np.mean([r["params"] for r in chosen])
            widths = "/".join(str(v) for k, v in chosen[0]["architecture"].items() if k != "classifier")
            margin = (np.mean(figs) - accuracies.mean()) if figs and method != "figs" else None
            off_budget = params / chosen[0]["budget"] - 1
            print(f"| {fraction:.0%} | {method} | {params:,.0f} | {off_budget:+.1%} | {widths} | {100 * accuracies.mean():.2f} ± "
                  f"{100 * spread:.2f} ({len(chosen)}) | "
                  + (f"{100 * margin:+.2f}" if margin is not None else "") + " |")
            summary.append({"fraction": fraction, "method": method, "params": float(params),
                            "mean": float(accuracies.mean()), "std": spread, "n": len(chosen)})
    return summary


def plot(summary, rows, supernet_params, path):
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    colours = {"figs": "#2b5ea8", "uniform": "#c0504d", "random": "#8a8a8a"}
    labels = {"figs": "FiGS (target = budget)", "uniform": "uniform width multiplier",
              "random": "random per-layer widths"}
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    for method in METHODS:
        points = sorted((s for s in summary if s["method"] == method), key=lambda s: s["params"])
        if not points:
            continue
        single = [r for r in rows if r["method"] == method]
        axis.scatter([r["params"] for r in single], [100 * r["test_accuracy"] for r in single],
                     color=colours[method], alpha=0.3, s=12)
        axis.errorbar([s["params"] for s in points], [100 * s["mean"] for s in points],
                      yerr=[100 * s["std"] for s in points], color=colours[method], marker="o", capsize=4,
                      label=labels[method])
    axis.set_xlabel(f"parameters of the retrained network (supernet {supernet_params:,})")
    axis.set_ylabel("Fashion-MNIST test accuracy (%)")
    axis.set_title("Retrained from scratch, same recipe; mean ± std over seeds", fontsize=9)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75],
                        help="budgets as fractions of the supernet's parameters")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--search-epochs", type=float, default=1.0)
    parser.add_argument("--retrain-epochs", type=float, default=5.0,
                        help="retraining epochs (default: the default config's 5; the learning-rate "
                             "anneal, ×1/16 over the run, is scaled along)")
    parser.add_argument("--search-decay-epochs", type=float, default=None,
                        help="halve the AL learning rate every this many epochs (default: the default "
                             "config's 35, constant in a short run; 0.25 anneals one AL epoch ×1/16 and "
                             "lets fast gates settle before the export)")
    parser.add_argument("--temperature", type=float, default=1e-3, help="τ of FiGS's gates (paper: 1e-3)")
    parser.add_argument("--logit-gradient-multiplier", type=float, default=1.0,
                        help="M of FiGS's gates (paper: 1; figs_tf.mask_layer)")
    parser.add_argument("--strength", type=float, default=3e-5,
                        help="λ₀ of FiGS's budget controller (λ stays within −1..10 × λ₀; figs_tf.budget)")
    parser.add_argument("--dense-width", type=int, default=None,
                        help="a searched hidden Dense layer of this width between the flatten and the "
                             "classifier (small_cnn's dense_width; default: none, the README's space)")
    parser.add_argument("--widths", type=int, nargs="+", default=None,
                        help="the supernet's conv widths (small_cnn's widths; default: the default "
                             "config's 32 64 128, the README's space)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    if any(not 0 < f < 1 for f in args.fractions):
        parser.error(f"--fractions must lie in (0, 1), got {args.fractions}")
    if args.dense_width is not None and args.dense_width < 1:
        parser.error(f"--dense-width must be a positive number of units, got {args.dense_width}")
    if args.widths is not None and min(args.widths) < 1:
        parser.error(f"--widths must be positive numbers of channels, got {args.widths}")

    supernet = loop.build_supernet(make_config(args, 0))
    supernet_params = count(supernet, "params")
    counter = Counter(supernet)
    rows = []
    for seed in range(args.seeds):
        for fraction in args.fractions:
            for method in args.methods:
                rows.append(run_one(args, method, fraction, seed, counter, supernet_params))
    summary = table(rows, supernet_params)
    os.makedirs(args.out, exist_ok=True)
    plot(summary, rows, supernet_params, os.path.join(args.out, "pareto.png"))
    with open(os.path.join(args.out, "pareto.json"), "w", encoding="utf-8") as f:
        json.dump({"supernet_params": supernet_params, "args": vars(args), "runs": rows, "summary": summary},
                  f, indent=1)
    print(f"wrote {os.path.join(args.out, 'pareto.png')} and pareto.json")


if __name__ == "__main__":
    main()
