"""How fast the gate logits move after a change of the gate speed inside one run.

    python benchmarks/gate_speed_switch.py                      # the table in docs/budget.md, ~1 min
    python benchmarks/gate_speed_switch.py --before 300 --after 200 --speeds 16 4

The gate logits are ν = s·θ; `figs_tf.set_gate_speed` (and the
BudgetController's end-of-ramp slowdown) changes s inside a run. For each
optimizer this takes `--before` steps at s_old, switches to s_new and takes
`--after` more, and compares the logits' mean move per step after the switch
with a fresh run at s_new over the same steps (same step numbers, so Adam's
bias correction is the same). The pull on the logits is a constant c on every
channel (loss c·Σν; the gradient on θ is c·s), so the fresh run's speed is the
optimizer's steady speed at s_new and any difference is the optimizer state
carried over the switch. Two switched runs: the optimizer state rescaled with θ
(`MaskLayer.set_gate_speed(s, optimizer=...)`, what `figs_tf.set_gate_speed`
does) and left as it was (the behaviour before the rescale existed).

`--fit` adds the issue's end-to-end case: a wrapped CNN trained with `fit` and
zero task loss (only the cost pulls the gates, λ fixed), Adam(1e-3),
`figs_tf.set_gate_speed(search, s_new)` between two `fit` calls, against a
fresh `fit` at s_new.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import figs_tf  # noqa: E402
from figs_tf.mask_layer import MaskLayer  # noqa: E402
from figs_tf.spaces.small_cnn import small_cnn  # noqa: E402

OPTIMIZERS = {
    "adam": ("Adam(1e-3)", lambda: keras.optimizers.Adam(1e-3)),
    "adam_ema": ("Adam(1e-3, use_ema)", lambda: keras.optimizers.Adam(1e-3, use_ema=True)),
    "sgd_momentum": ("SGD(0.05, momentum 0.9)", lambda: keras.optimizers.SGD(0.05, momentum=0.9)),
    "rmsprop": ("RMSprop(1e-3)", lambda: keras.optimizers.RMSprop(1e-3)),
    "adamw": ("AdamW(1e-3)", lambda: keras.optimizers.AdamW(1e-3)),
    "nadam": ("Nadam(1e-3)", lambda: keras.optimizers.Nadam(1e-3)),
    "adamax": ("Adamax(1e-3)", lambda: keras.optimizers.Adamax(1e-3)),
    "adagrad": ("Adagrad(1e-2)", lambda: keras.optimizers.Adagrad(1e-2)),
    "lion": ("Lion(1e-4)", lambda: keras.optimizers.Lion(1e-4)),
}
PULL = 1e-3  # c: the loss is c·Σν


def speed_after(make_optimizer, speeds, before, after, switch=False, rescale=True, channels=4):
    """The logits' mean move per step (against the pull) over steps before … before + after − 1.

    `speeds` = (s for the first `before` steps, s after them: with `switch`
    set by `set_gate_speed` at step `before`, else the run is at speeds[0]
    throughout); `rescale`: pass the optimizer to set_gate_speed (its state
    follows), else leave it.
    """
    gates = MaskLayer(group_sizes=[channels], gate_speed=speeds[0])
    optimizer = make_optimizer()
    start = None
    for step in range(before + after):
        if step == before:
            if switch:
                gates.set_gate_speed(speeds[1], optimizer=optimizer if rescale else None)
            start = float(np.mean(ops.convert_to_numpy(gates.logits)))
        gradient = ops.full((channels,), PULL * gates.gate_speed, dtype="float32")  # ∂(c·Σ s·θ)/∂θ
        optimizer.apply([gradient], [gates.logit_parameters])
    return (start - float(np.mean(ops.convert_to_numpy(gates.logits)))) / after


def switch_table(args):
    old, new = args.speeds
    steps = (args.before, args.after)
    print(f"s = {old:g} for {args.before} steps, then s = {new:g} for {args.after}; constant pull c = {PULL:g} "
          "on every logit; mean move of ν per step over the steps after the switch")
    print("| optimizer | fresh at s_old | fresh at s_new | switched, state rescaled | switched, state left "
          "| rescaled / fresh | left / fresh | fresh s_new / s_old |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name in args.optimizers:
        label, make = OPTIMIZERS[name]
        fresh_old = speed_after(make, (old, old), *steps)
        fresh_new = speed_after(make, (new, new), *steps)
        rescaled = speed_after(make, (old, new), *steps, switch=True)
        left = speed_after(make, (old, new), *steps, switch=True, rescale=False)
        rows.append((name, rescaled / fresh_new))
        print(f"| {label} | {fresh_old:.3g} | {fresh_new:.3g} | {rescaled:.3g} | {left:.3g} | "
              f"{rescaled / fresh_new:.4f} | {left / fresh_new:.3f} | {fresh_new / fresh_old:.4f} |", flush=True)
    return rows


def fit_moves(speeds, before, after, switch, rescale=True):
    """The issue's case through `fit`: a wrapped CNN, zero task loss, Adam(1e-3), λ fixed; mean ν per step."""
    keras.utils.set_random_seed(0)
    search = figs_tf.wrap(small_cnn((16, 32), head="gap", batchnorm_momentum=0.9), cost="params", strength=1e-3,
                          gate_speed=speeds[0], seed=0)
    search.compile(optimizer=keras.optimizers.Adam(1e-3), loss=lambda y, p: 0.0 * ops.sum(p))
    images = np.zeros((8, 28, 28, 1), np.float32)
    labels = np.zeros((8,), np.int64)
    gates = figs_tf.gates_of(search)
    start = float(np.mean(ops.convert_to_numpy(gates.logits)))
    search.fit(images, labels, batch_size=8, epochs=before, verbose=0)
    middle = float(np.mean(ops.convert_to_numpy(gates.logits)))
    if switch and rescale:
        figs_tf.set_gate_speed(search, speeds[1])
    elif switch:  # θ rescaled, the optimizer's state left as it was (before the rescale existed)
        gates.set_gate_speed(speeds[1])
    search.fit(images, labels, batch_size=8, epochs=before + after, initial_epoch=before, verbose=0)
    end = float(np.mean(ops.convert_to_numpy(gates.logits)))
    return (start - middle) / before, (middle - end) / after


def fit_table(args):
    old, new = args.speeds
    _, switched = fit_moves((old, new), args.before, args.after, switch=True)
    _, left = fit_moves((old, new), args.before, args.after, switch=True, rescale=False)
    _, fresh = fit_moves((new, new), args.before, args.after, switch=False)
    print(f"\nfit, zero task loss, λ = 1e-3, Adam(1e-3): s = {old:g} → {new:g} after {args.before} steps, mean move "
          f"per step over the next {args.after}: {switched:.3g} (state rescaled), {left:.3g} (state left); fresh at "
          f"s = {new:g}: {fresh:.3g}; ratios {switched / fresh:.3f} and {left / fresh:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", nargs="+", choices=sorted(OPTIMIZERS),
                        default=["adam", "adam_ema", "sgd_momentum", "rmsprop", "adamw", "nadam", "adamax", "adagrad",
                                 "lion"])
    parser.add_argument("--speeds", type=float, nargs=2, default=[16.0, 4.0], metavar=("S_OLD", "S_NEW"))
    parser.add_argument("--before", type=int, default=300, help="steps at s_old")
    parser.add_argument("--after", type=int, default=200, help="steps at s_new (the measured window)")
    parser.add_argument("--fit", action="store_true", help="also the end-to-end case through fit (Adam)")
    args = parser.parse_args()
    switch_table(args)
    if args.fit:
        fit_table(args)


if __name__ == "__main__":
    main()
