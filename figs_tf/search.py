r"""Architecture learning (AL): train a supernet's weights and gates under a cost.

    python -m figs_tf.search --workdir=runs/demo                 # embedded default
    python -m figs_tf.search --config=experiments/one_shot_imagenet.py:A \
        --workdir=gs://my-bucket/one_shot_a
    figs-search --config=experiments/fashion_mnist.py --config.strength=5e-6 --workdir=runs/fm

Writes into `<workdir>/search/`: config.json, checkpoint/ (resume point),
history.csv, tensorboard/, architecture.json (the exported architecture,
rewritten every epoch), widths.png and, when done, summary.json. Run the same
command again after a preemption to resume; after completion it prints the
summary and does nothing else. `figs_tf.retrain` then reads the architecture.

With `config.pareto_budgets` (e.g. `--config.pareto_budgets="(60000,40000,20000)"`)
λ is steered down through the budgets (figs_tf.ParetoCallback) and each
budget's architecture goes to `pareto/architecture_<budget>.json`; retrain one
with `--config.retrain.architecture=<that file>` and a new --workdir.
"""

import keras
from absl import app

from figs_tf import callbacks as callbacks_lib
from figs_tf import export
from figs_tf import files
from figs_tf import flags as figs_flags
from figs_tf import recalibrate
from figs_tf.slim import build_from_architecture, slim
from figs_tf import strategies
from figs_tf import training
from figs_tf import wrapping


def run(config, workdir, callbacks=()):
    """Runs (or resumes) AL with `config` in `workdir`; returns the summary dict.

    `callbacks`: extra Keras callbacks, run after the CostCallback and before
    the checkpoint and the loggers.
    """
    directory = training.phase_dir(workdir, "search")
    finished = training.finished_summary(directory)
    if finished is not None:
        print(f"The search in {directory} has already finished; not touching it (use a new --workdir "
              f"to search again).")
        print_summary(finished)
        return finished
    training.prepare(config, directory)
    stopwatch = training.Stopwatch()
    strategy = strategies.make_strategy(config.strategy, config.tpu)
    plan = training.make_plan(config, "search", strategy)
    with strategy.scope():
        search = wrapping.wrap(training.build_supernet(config), cost=config.cost, strength=config.strength,
                               temperature=config.temperature, initial_logit=config.initial_logit,
                               logit_gradient_multiplier=config.logit_gradient_multiplier,
                               seed=config.seed)
        training.compile_model(search, config, plan)
    chief = strategies.is_chief(strategy)
    if config.pareto_budgets:
        # every worker runs the callback (the controller must move λ alike); the chief's files count
        cost_callback = callbacks_lib.ParetoCallback(directory if chief else _worker_scratch(directory, strategy),
                                                     budgets=list(config.pareto_budgets), plot=chief)
    else:
        cost_callback = callbacks_lib.CostCallback(directory if chief else None, **_target_kwargs(config))
    start_epoch = training.fit(search, config, plan, strategy, directory, callbacks=[cost_callback, *callbacks])

    # The final export (after the EMA weights, if any, were copied in).
    numbers, network = cost_callback.summary()
    if chief:
        export.save_architecture(network.architecture(), training.architecture_path(workdir),
                                 channels=network.channels(), final=True, steps=plan.total_steps,
                                 exported_cost={m: network.cost(m) for m in cost_callback.metrics},
                                 strength=numbers["figs_strength"])
    summary = {
        "phase": "search",
        "steps": int(search.optimizer.iterations.numpy()),
        "configured_steps": plan.total_steps,
        "resumed_from_epoch": start_epoch,
        "strength": numbers["figs_strength"],
        "supernet": {m: export.supernet_cost(search, m) for m in cost_callback.metrics},
        "exported": {m: network.cost(m) for m in cost_callback.metrics},
        "architecture": network.architecture(),
        "supernet_widths": training.producer_widths(search),
        "search_model_accuracy": training.evaluate(search, config, plan, strategy),
        "wall_seconds_this_process": stopwatch.seconds(),
    }
    if config.pareto_budgets:
        summary["pareto"] = {f"{budget:g}": str(path) for budget, path in sorted(cost_callback.paths.items())}
        summary["pareto_missing"] = list(cost_callback.missing)
    if config.search.recalibrated_eval:
        summary["exported_inherited_accuracy"] = exported_accuracy(search, config, plan)
    if chief:
        training.write_json(training.summary_path(directory), summary)
    print_summary(summary)
    return summary


def _target_kwargs(config):
    # Budget targeting (CostCallback's `target`) when the config names a budget.
    return {"target": config.target} if config.target is not None else {}


def _worker_scratch(directory, strategy):
    """Where a non-chief worker's ParetoCallback writes (its own copy, never read)."""
    return files.join(training.checkpoint_dir(directory, strategy), "pareto_scratch")


def exported_accuracy(search, config, plan):
    """Accuracy of the slimmed network with inherited weights, BatchNorm recomputed.

    The search model's BatchNorm statistics average over sampled sub-networks;
    the exported network's own statistics (recomputed on 4096 training images)
    show what the inherited weights are worth before retraining. Runs on the
    host without the strategy: meant for the small configs.
    """
    network = slim(search)
    training.compile_model(network, config, plan)
    recalibrate.recalibrate_batchnorm(network, training.training_images(config, 4096))
    return training.evaluate(network, config, plan, training.default_strategy())


def print_summary(summary):
    """Prints what was found: widths per layer, cost against the supernet, accuracy."""
    print("\nFiGS search: exported architecture (layer: supernet width -> exported width)")
    for name, full in summary["supernet_widths"].items():
        print(f"  {name:24s} {full:>6} -> {summary['architecture'].get(name, full)}")
    for metric, exported in summary["exported"].items():
        supernet = summary["supernet"][metric]
        unit = "parameters" if metric == "params" else "multiply-adds"
        print(f"  {unit:14s} supernet {supernet:,}  exported {exported:,} ({exported / supernet:.1%})")
    print(f"  λ at the end {summary['strength']:.3g}; {summary['steps']} steps")
    print(f"  search model accuracy (inference mode, inherited weights): {summary['search_model_accuracy']:.4f}")
    for budget, path in summary.get("pareto", {}).items():
        print(f"  Pareto budget {float(budget):,.0f}: {path} (retrain it with --config.retrain.architecture={path})")
    if summary.get("pareto_missing"):
        print(f"  Pareto budgets never reached: {summary['pareto_missing']} (more AL steps)")
    if "exported_inherited_accuracy" in summary:
        print(f"  exported network, inherited weights, BatchNorm recomputed: "
              f"{summary['exported_inherited_accuracy']:.4f} (retrain with figs-retrain)")


def main(argv):
    del argv
    figs_flags.quiet_logging()
    config, workdir = figs_flags.parsed()
    run(config, workdir)


def cli():
    """Console script `figs-search`."""
    figs_flags.define()
    app.run(main)


if __name__ == "__main__":
    cli()
