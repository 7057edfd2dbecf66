r"""Retraining: the exported architecture, built fresh, trained from scratch on the task loss.

    python -m figs_tf.train.retrain --workdir=runs/demo          # after figs-search --workdir=runs/demo
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
from absl import logging

from figs_tf import export
from figs_tf import files
from figs_tf.cost import count as count_cost
from figs_tf.slim import build_from_architecture
from figs_tf.train import flags as figs_flags
from figs_tf.train import loop
from figs_tf.train import report
from figs_tf.train import strategies
from figs_tf.train import workdir as workdir_lib

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
    path = workdir_lib.architecture_path(workdir)
    if not files.exists(path):
        raise FileNotFoundError(
            f"No architecture at {path}. Run `figs-search` with the same --config and --workdir first, "
            f"or point --config.retrain.architecture at an architecture JSON.")
    if workdir_lib.finished_summary(workdir_lib.phase_dir(workdir, "search")) is None:
        raise ValueError(
            f"The search in {workdir_lib.phase_dir(workdir, 'search')} has not finished ({path} is the "
            f"architecture of its last epoch so far). Rerun `figs-search` with the same flags to finish it, "
            f"or pass --config.retrain.architecture={path} to retrain this intermediate architecture.")
    return path


def run(config, workdir, callbacks=()):
    """Runs (or resumes) retraining in `workdir`; returns the summary dict.

    `callbacks`: extra Keras callbacks, run before the checkpoint and the loggers.
    """
    directory = workdir_lib.phase_dir(workdir, "retrain")
    finished = workdir_lib.finished_summary(directory)
    if finished is not None:
        logging.info("The retraining in %s has already finished; not touching it.", directory)
        report.print_summary(finished)
        return finished
    path = architecture_source(config, workdir)
    architecture = export.load_architecture(path)
    loop.prepare(config, directory)
    stopwatch = loop.Stopwatch()
    strategy = strategies.make_strategy(config.strategy, config.tpu)
    plan = loop.make_plan(config, "retrain", strategy)
    with strategy.scope():
        supernet = loop.build_supernet(config)
        try:
            network = build_from_architecture(supernet, architecture)
        except ValueError as error:
            raise ValueError(f"The architecture {path} does not fit the search space of this config "
                             f"(space {config.space!r}, {dict(config.space_kwargs)}): {error}") from None
        loop.set_batchnorm_momentum(network, config.bn_momentum)
        loop.compile_model(network, config, plan)
    start_epoch = loop.fit(network, config, plan, strategy, directory, callbacks=callbacks)
    accuracy = loop.evaluate(network, config, plan, strategy)
    summary = {
        "phase": "retrain",
        "architecture_file": str(path),
        "architecture": architecture,
        "supernet_widths": loop.producer_widths(supernet),
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
        workdir_lib.write_json(workdir_lib.summary_path(directory), summary)
    report.print_summary(summary)
    return summary


def cli():
    """Console script `figs-retrain`."""
    app.run(figs_flags.main_for(run))


if __name__ == "__main__":
    cli()
