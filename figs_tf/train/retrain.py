r"""Retraining: the exported architecture, trained from scratch (the paper) or from the search's weights.

    python -m figs_tf.train.retrain --workdir=runs/demo          # after figs-search --workdir=runs/demo
    figs-retrain --config=experiments/one_shot_imagenet.py:A --workdir=gs://my-bucket/one_shot_a
    figs-retrain --config.retrain.architecture=path/to/architecture.json --workdir=runs/other
    figs-retrain --workdir=runs/demo --config.retrain.init=inherited --config.retrain.teacher=search

Reads `<workdir>/search/architecture.json` (or `config.retrain.architecture`),
builds the config's search space at those widths with fresh weights
(`figs_tf.build_from_architecture`) and trains it with `config.retrain`
(the paper: doubled batch and learning rate, to convergence). Writes into
`<workdir>/retrain/`: config.json, checkpoint/, history.csv, tensorboard/,
model.keras and summary.json. A rerun resumes after preemption.

Recovery instead of retraining (as pruning users fine-tune a slimmed net):
- `retrain.init="inherited"`: the network starts from the search model's
  weights (`figs_tf.slim` of `<workdir>/search/search_model.keras` at the
  architecture), not fresh ones;
- `retrain.teacher="search"`: it learns from the search model's exported
  network as well as the labels, with `keras.distillation.Distiller`: loss =
  w · cross-entropy + (1 − w) · T² · KL(softmax(teacher/T) ‖ softmax(student/T)),
  w = `retrain.distill_label_weight`, T = `retrain.distill_temperature`.
  The teacher is frozen and rebuilt from the same file on a resume, so the
  checkpoint (the student's weights, the optimizer) is all a resume needs.
"""

if __name__ == "__main__":  # python -m figs_tf.train.retrain: start as the console script does, flags first
    from figs_tf.train import startup  # pylint: disable=g-import-not-at-top
    startup.retrain()
    raise SystemExit(0)

import keras
from absl import logging

from figs_tf import export
from figs_tf import files
from figs_tf import load_model
from figs_tf.cost import count as count_cost
from figs_tf.slimming import build_from_architecture, slim
from figs_tf.train import errors
from figs_tf.train import flags as figs_flags
from figs_tf.train import loop
from figs_tf.train import report
from figs_tf.train import runtime as runtime_lib
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
            raise errors.MissingFileError(f"config.retrain.architecture = {path!r} does not exist.")
        return path
    path = workdir_lib.architecture_path(workdir)
    if not files.exists(path):
        raise errors.MissingFileError(
            f"No architecture at {path}. Run `figs-search` with the same --config and --workdir first, "
            f"or point --config.retrain.architecture at an architecture JSON.")
    if workdir_lib.finished_summary(workdir_lib.phase_dir(workdir, "search")) is None:
        raise errors.UserError(
            f"The search in {workdir_lib.phase_dir(workdir, 'search')} has not finished ({path} is the "
            f"architecture of its last epoch so far). Rerun `figs-search` with the same flags to finish it, "
            f"or pass --config.retrain.architecture={path} to retrain this intermediate architecture.")
    return path


def load_search_model(workdir):
    """The search model AL saved in `workdir`, with a clear error if there is none."""
    path = workdir_lib.search_model_path(workdir)
    if not files.exists(path):
        raise errors.MissingFileError(
            f"No search model at {path}: config.retrain.init='inherited' and config.retrain.teacher='search' "
            "start from the search's weights, which `figs-search` saves there when it finishes (a search "
            "run by an older figs_tf did not). Rerun figs-search in a new --workdir, or retrain from scratch "
            "(--config.retrain.init=scratch --config.retrain.teacher='').")
    return load_model(path, compile=False)  # its weights only: the optimizer is not needed


def run(config, workdir, callbacks=(), processes=None):
    """Runs (or resumes) retraining in `workdir`; returns the summary dict.

    `callbacks`: extra Keras callbacks, run before the checkpoint and the
    loggers. `processes`: as for `search.run`.
    """
    processes = processes or runtime_lib.ProcessSettings.from_environment()
    directory = workdir_lib.phase_dir(workdir, "retrain")
    finished = workdir_lib.finished_summary(directory)
    if finished is not None:
        if processes.process_id == 0:
            logging.info("The retraining in %s has already finished; not touching it.", directory)
            report.print_summary(finished)
        return finished
    loop.check(config, processes)
    path = architecture_source(config, workdir)
    architecture = export.load_architecture(path)
    run_ = runtime_lib.make_runtime(config, processes)
    loop.prepare(config, directory, run_)
    stopwatch = loop.Stopwatch()
    plan = loop.make_plan(config, "retrain", run_)
    settings = config.retrain
    with run_.scope():
        supernet = loop.build_supernet(config)
        search = load_search_model(workdir) if settings.init == "inherited" or settings.teacher else None
        try:
            if settings.init == "inherited":
                network = slim(search, path)
            else:
                network = build_from_architecture(supernet, architecture)
        except ValueError as error:
            raise errors.UserError(f"The architecture {path} does not fit the search space of this config "
                             f"(space {config.space!r}, {dict(config.space_kwargs)}): {error}") from None
        loop.set_batchnorm_momentum(network, config.bn_momentum)
        trained = network
        if settings.teacher:
            trained = keras.distillation.Distiller(
                teacher=slim(search, name="teacher"), student=network,
                distillation_losses=keras.distillation.LogitsDistillation(temperature=settings.distill_temperature),
                student_loss_weight=settings.distill_label_weight)
            trained.build(network.input_shape)  # a checkpoint can only be loaded into a built model
        loop.compile_model(trained, config, plan, no_decay=loop.variables_without_weight_decay(network))
        if trained is not network:  # evaluated and saved on its own, with the distiller's optimizer
            loop.compile_model(network, config, plan, optimizer=trained.optimizer)
    start_step = loop.fit(trained, config, plan, run_, directory, callbacks=callbacks)
    accuracy = loop.evaluate(network, config, run_)
    summary = {
        "phase": "retrain",
        "init": settings.init,
        "teacher": settings.teacher,
        "architecture_file": str(path),
        "architecture": architecture,
        "supernet_widths": loop.producer_widths(supernet),
        "supernet": {m: count_cost(supernet, m) for m in ("params", "flops")},
        "exported": {m: count_cost(network, m) for m in ("params", "flops")},
        "keras_count_params": int(network.count_params()),
        "steps": int(keras.ops.convert_to_numpy(trained.optimizer.iterations)),
        "configured_steps": plan.total_steps,
        "resumed_from_step": start_step,
        "processes": run_.num_processes,
        "devices": run_.num_devices,
        "test_accuracy": accuracy,
    }
    run_.save_everywhere(network.save, files.join(directory, MODEL_FILE))
    if run_.writer:
        summary["wall_seconds_this_process"] = stopwatch.seconds()
        workdir_lib.write_json(workdir_lib.summary_path(directory), summary)
        report.print_summary(summary)
    return summary


def cli():
    """The binary's body: `figs-retrain` runs it after figs_tf.train.startup parsed the flags."""
    figs_flags.run_binary(run)

