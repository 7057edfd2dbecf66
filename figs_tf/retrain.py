r"""Retraining: the exported architecture, built fresh, trained from scratch on the task loss.

    python -m figs_tf.retrain --workdir=runs/demo          # after figs-search --workdir=runs/demo
    figs-retrain --config=experiments/one_shot_imagenet.py:A --workdir=gs://my-bucket/one_shot_a
    figs-retrain --config.retrain.architecture=path/to/architecture.json --workdir=runs/other

Reads `<workdir>/search/architecture.json` (or `config.retrain.architecture`),
builds the config's search space at those widths with fresh weights
(`figs_tf.build_from_architecture`) and trains it with `config.retrain`
(the paper: doubled batch and learning rate, to convergence). Writes into
`<workdir>/retrain/`: config.json, checkpoint/, history.csv, tensorboard/,
model.keras and summary.json. A rerun resumes after preemption.
"""

from absl import app

from figs_tf import count as count_cost
from figs_tf import export
from figs_tf import files
from figs_tf import flags as figs_flags
from figs_tf.slim import build_from_architecture, slim
from figs_tf import strategies
from figs_tf import training

MODEL_FILE = "model.keras"


def architecture_source(config, workdir):
    """The architecture JSON this retraining uses, with a clear error if there is none.

    By default the search run's final export; an unfinished search (its
    architecture.json is rewritten every epoch) is refused rather than used.
    """
    if config.retrain.architecture:
        path = config.retrain.architecture
        if not files.exists(path):
            raise FileNotFoundError(f"config.retrain.architecture = {path!r} does not exist.")
        return path
    path = training.architecture_path(workdir)
    if not files.exists(path):
        raise FileNotFoundError(
            f"No architecture at {path}. Run `figs-search` with the same --config and --workdir first, "
            f"or point --config.retrain.architecture at an architecture JSON.")
    if training.finished_summary(training.phase_dir(workdir, "search")) is None:
        raise ValueError(
            f"The search in {training.phase_dir(workdir, 'search')} has not finished ({path} is the "
            f"architecture of its last epoch so far). Rerun `figs-search` with the same flags to finish it, "
            f"or pass --config.retrain.architecture={path} to retrain this intermediate architecture.")
    return path


def run(config, workdir, callbacks=()):
    """Runs (or resumes) retraining in `workdir`; returns the summary dict.

    `callbacks`: extra Keras callbacks, run before the checkpoint and the loggers.
    """
    directory = training.phase_dir(workdir, "retrain")
    finished = training.finished_summary(directory)
    if finished is not None:
        print(f"The retraining in {directory} has already finished; not touching it.")
        print_summary(finished)
        return finished
    path = architecture_source(config, workdir)
    architecture = export.load_architecture(path)
    training.prepare(config, directory)
    stopwatch = training.Stopwatch()
    strategy = strategies.make_strategy(config.strategy, config.tpu)
    plan = training.make_plan(config, "retrain", strategy)
    with strategy.scope():
        supernet = training.build_supernet(config)
        try:
            network = build_from_architecture(supernet, architecture)
        except ValueError as error:
            raise ValueError(f"The architecture {path} does not fit the search space of this config "
                             f"(space {config.space!r}, {dict(config.space_kwargs)}): {error}") from None
        training.set_batchnorm_momentum(network, config.bn_momentum)
        training.compile_model(network, config, plan)
    start_epoch = training.fit(network, config, plan, strategy, directory, callbacks=callbacks)
    accuracy = training.evaluate(network, config, plan, strategy)
    summary = {
        "phase": "retrain",
        "architecture_file": str(path),
        "architecture": architecture,
        "supernet_widths": training.producer_widths(supernet),
        "supernet": {m: count_cost(supernet, m) for m in ("params", "flops")},
        "exported": {m: count_cost(network, m) for m in ("params", "flops")},
        "keras_count_params": int(network.count_params()),
        "steps": int(network.optimizer.iterations.numpy()),
        "configured_steps": plan.total_steps,
        "resumed_from_epoch": start_epoch,
        "test_accuracy": accuracy,
        "wall_seconds_this_process": stopwatch.seconds(),
    }
    if strategies.is_chief(strategy):
        network.save(files.join(directory, MODEL_FILE))
        training.write_json(training.summary_path(directory), summary)
    print_summary(summary)
    return summary


def print_summary(summary):
    print("\nFiGS retraining of the exported architecture (layer: supernet width -> exported width)")
    for name, full in summary["supernet_widths"].items():
        print(f"  {name:24s} {full:>6} -> {summary['architecture'].get(name, full)}")
    for metric in ("params", "flops"):
        supernet, exported = summary["supernet"][metric], summary["exported"][metric]
        unit = "parameters" if metric == "params" else "multiply-adds"
        print(f"  {unit:14s} supernet {supernet:,}  exported {exported:,} ({exported / supernet:.1%})")
    print(f"  retrained from scratch for {summary['steps']} steps: test accuracy {summary['test_accuracy']:.4f}")


def main(argv):
    del argv
    figs_flags.quiet_logging()
    config, workdir = figs_flags.parsed()
    run(config, workdir)


def cli():
    """Console script `figs-retrain`."""
    figs_flags.define()
    app.run(main)


if __name__ == "__main__":
    cli()
