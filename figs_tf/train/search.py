r"""Architecture learning (AL): train a supernet's weights and gates under a cost.

    python -m figs_tf.train.search --workdir=runs/demo                 # embedded default
    python -m figs_tf.train.search --config=experiments/one_shot_imagenet.py:A \
        --workdir=gs://my-bucket/one_shot_a
    figs-search --config=experiments/fashion_mnist.py --config.strength=5e-6 --workdir=runs/fm
    figs-search --help                # purpose and flags; --print_config: every config key

Writes into `<workdir>/search/`: config.json, checkpoint/ (resume point),
history.csv, tensorboard/, architecture.json (the exported architecture,
rewritten every epoch; in spaces with operators also the operators each layer
kept), widths.png, operators.png (FBNet, One-Shot, ResNet) and, when done,
search_model.keras (the trained search model, for `figs-retrain` with
`retrain.init="inherited"` or `retrain.teacher="search"`) and summary.json. Run the same
command again after a preemption to resume; after completion it prints the
summary and does nothing else. `figs-retrain` then reads the architecture.

With `config.pareto_budgets` (e.g. `--config.pareto_budgets="(60000,40000,20000)"`)
λ is steered down through the budgets (figs_tf.ParetoController) and each
budget's architecture goes to `pareto/architecture_<budget>.json`; retrain one
with `--config.retrain.architecture=<that file>` and a new --workdir.
"""

if __name__ == "__main__":  # python -m figs_tf.train.search: start as the console script does, flags first
    from figs_tf.train import startup  # pylint: disable=g-import-not-at-top
    startup.search()
    raise SystemExit(0)

import json

import keras
from absl import logging

from figs_tf import callbacks as callbacks_lib
from figs_tf import export
from figs_tf import recalibrate
from figs_tf import search_summary
from figs_tf import spaces
from figs_tf import wrapping
from figs_tf.slimming import slim
from figs_tf.train import flags as figs_flags
from figs_tf.train import loop
from figs_tf.train import report
from figs_tf.train import runtime as runtime_lib
from figs_tf.train import workdir as workdir_lib


def run(config, workdir, callbacks=(), processes=None):
    """Runs (or resumes) AL with `config` in `workdir`; returns the summary dict.

    `callbacks`: extra Keras callbacks, run after the budget controller and
    the CostCallback, before the checkpoint and the loggers. `processes`: a
    `runtime.ProcessSettings` (default: one process, or Keras's environment
    variables); every process runs this and process 0 writes the workdir.
    """
    processes = processes or runtime_lib.ProcessSettings.from_environment()
    directory = workdir_lib.phase_dir(workdir, "search")
    finished = workdir_lib.finished_summary(directory)
    if finished is not None:
        if processes.process_id == 0:
            logging.info("The search in %s has already finished; not touching it (use a new --workdir to "
                         "search again).", directory)
            report.print_summary(finished)
        return finished
    loop.check(config, processes)
    run_ = runtime_lib.make_runtime(config, processes)
    loop.prepare(config, directory, run_)
    stopwatch = loop.Stopwatch()
    plan = loop.make_plan(config, "search", run_)
    with run_.scope():
        search = wrapping.wrap(loop.build_supernet(config), cost=config.cost, strength=config.strength,
                               temperature=config.temperature, initial_logit=config.initial_logit,
                               logit_gradient_multiplier=config.logit_gradient_multiplier,
                               gate_speed="auto" if config.gate_speed is None else config.gate_speed,
                               seed=config.seed)
        loop.compile_model(search, config, plan)
    writer = run_.writer
    # every process steers λ alike (the controller reads the same logits); only the writer writes
    target = budget_target(config, search)
    controllers = []
    if config.pareto_budgets:
        controllers.append(callbacks_lib.ParetoController(directory if writer else None,
                                                          budgets=list(config.pareto_budgets)))
    elif target is not None:
        controllers.append(callbacks_lib.BudgetController(target=target))
    operators = spaces.operator_choices_function(config.space, **config.space_kwargs.to_dict())
    reporter = callbacks_lib.CostCallback(directory if writer else None, plot=writer, operators=operators)
    start_step = loop.fit(search, config, plan, run_, directory, callbacks=[*controllers, reporter, *callbacks])

    # The final export (after the EMA weights, if any, were copied in).
    numbers, network = reporter.summary()
    steps = int(keras.ops.convert_to_numpy(search.optimizer.iterations))
    widths = network.architecture()
    run_.agree("exported architectures",
               json.dumps({"widths": widths, "channels": network.channels(), "steps": steps}, sort_keys=True))
    exported = {m: network.cost(m) for m in reporter.reported_metrics}
    run_.save_everywhere(search.save, workdir_lib.search_model_path(workdir))  # for retrain.init / teacher
    if writer:
        callbacks_lib.save_network(network, workdir_lib.architecture_path(workdir),
                                   dict(final=True, steps=steps, exported_cost=exported,
                                        strength=numbers["figs_strength"]), operators)
    summary = {
        "phase": "search",
        "steps": steps,
        "configured_steps": plan.total_steps,
        "resumed_from_step": start_step,
        "processes": run_.num_processes,
        "devices": run_.num_devices,
        "strength": numbers["figs_strength"],
        "target": target,
        "supernet": {m: export.supernet_cost(search, m) for m in reporter.reported_metrics},
        "exported": exported,
        "architecture": widths,
        "operators": operators and operators(widths),
        "supernet_widths": loop.producer_widths(search),
        "search_model_accuracy": loop.evaluate(search, config, run_),
    }
    if config.pareto_budgets:
        pareto = controllers[0]
        summary["pareto"] = {f"{budget:g}": str(path) for budget, path in sorted(pareto.paths.items())}
        summary["pareto_missing"] = list(pareto.missing)
    if config.search.recalibrated_eval and writer:  # one process's own work: the others would only repeat it
        summary["exported_inherited_accuracy"] = exported_accuracy(search, config, run_)
    if writer:
        summary["wall_seconds_this_process"] = stopwatch.seconds()
        workdir_lib.write_json(workdir_lib.summary_path(directory), summary)
        report.print_summary(summary)
        print()
        search_summary.summary(search, operators=operators)  # per layer: kept / total, cost share
    return summary


def budget_target(config, search):
    """AL's budget in the cost's unit: `config.target`, or `config.target_fraction` of the
    supernet's cost in `config.cost`; None without either (a fixed λ)."""
    if config.target_fraction is not None:
        return config.target_fraction * export.supernet_cost(search, config.cost)
    return config.target


def exported_accuracy(search, config, run):
    """Accuracy of the slimmed network with inherited weights, BatchNorm recomputed.

    The search model's BatchNorm statistics average over sampled sub-networks;
    the exported network's own statistics (recomputed on 4096 training images)
    show what the inherited weights are worth before retraining. Runs on this
    process's first device, whatever the distribution: meant for the small configs.
    """
    with run.local():
        network = slim(search)
        plan = loop.make_plan(config, "search", run.alone())
        loop.compile_model(network, config, plan)
        recalibrate.recalibrate_batchnorm(network, loop.training_images(config, 4096))
        return loop.evaluate(network, config, run.alone())


def cli():
    """The binary's body: `figs-search` runs it after figs_tf.train.startup parsed the flags."""
    figs_flags.run_binary(run)

