"""`CostCallback`: what the search is doing, in `logs`, JSON and a picture.

    callbacks = [figs_tf.CostCallback(workdir),          # before the loggers,
                 keras.callbacks.CSVLogger(...),         # so that they see
                 keras.callbacks.TensorBoard(...)]       # the figs_* numbers
    search.fit(data, epochs=40, callbacks=callbacks)

Each epoch it adds to `logs`:
- `figs_expected_<metric>`: the expected cost (eq. 6) at the current logits;
- `figs_exported_<metric>`: the exact cost of the architecture export would give;
- `figs_strength`: λ;
- `figs_width/<layer>`: the exported width of every layer that makes channels;
- with a target: `figs_target_<metric>` (the budget) and
  `figs_reference_<metric>` (where the controller's reference is now);
and writes `<workdir>/architecture.json` (atomically). At the end of training
it saves `<workdir>/widths.png`: per-layer widths of the supernet and of the
exported architecture.

With a target (`figs_tf.wrap(..., target=...)` or `CostCallback(target=...)`)
the callback also steers λ so that the exported cost lands within ±2 % of the
target at the end of this `fit` (figs_tf.budget explains how):

    figs_tf.CostCallback(workdir, target=2_000_000)

`ParetoCallback(workdir, budgets=[...])` instead lowers the budget step by step
over one AL run and saves `<workdir>/pareto/architecture_<budget>.json` for
each budget the exported cost gets below.
"""

import os
import tempfile

import keras
from keras import ops

from figs_tf import budget as budget_lib
from figs_tf import cost as cost_lib
from figs_tf import files
from figs_tf import export as export_lib
from figs_tf import handlers as handlers_lib
from figs_tf import wrapping as wrap_lib

ARCHITECTURE_FILE = "architecture.json"
WIDTHS_PLOT_FILE = "widths.png"


class CostCallback(keras.callbacks.Callback):
    """Logs expected/exported cost and widths, writes the architecture JSON,
    and, given a target, steers λ to it.

    Args:
      workdir: directory for architecture.json and widths.png (None: no files).
      metrics: costs to report; default both "params" and "flops" (FLOPs are
        skipped with a note if the model's input size is not static).
      plot: save the width plot at the end of training.
      target: budget for the exported cost, in the metric of the search
        model's cost; overrides the one given to `figs_tf.wrap` (and is stored
        on the model). None: use the model's target; if it has none, λ is left
        alone.
      controller: `figs_tf.ControllerSettings` (gains, update interval, λ
        bounds, warm-up and ramp fractions, tolerance); None: the defaults.

    Example:

        search = figs_tf.wrap(model, cost="flops")
        search.fit(data, epochs=40,
                   callbacks=[figs_tf.CostCallback(workdir, target=300e6),
                              keras.callbacks.CSVLogger(f"{workdir}/log.csv")])
    """

    def __init__(self, workdir=None, metrics=cost_lib.METRICS, plot=True, target=None, controller=None):
        super().__init__()
        self.workdir = workdir
        self.metrics = [cost_lib.check_metric(m) for m in metrics]
        self.plot = plot
        self.target = target
        self.settings = controller if controller is not None else budget_lib.ControllerSettings()
        if not isinstance(self.settings, budget_lib.ControllerSettings):
            raise ValueError(f"controller must be a figs_tf.ControllerSettings, got {type(controller).__name__}.")
        self.history = []  # one dict per epoch: the figs_* numbers
        self.controller = None  # a budget_lib.StrengthController while steering λ
        self.trace = []  # one dict per λ update: step, mode, reference, expected, exported, strength
        if workdir is not None and not files.is_url(workdir):
            os.makedirs(workdir, exist_ok=True)

    def _supernet_costs(self):
        """{metric: supernet cost} for the metrics this model can be counted in."""
        costs = {}
        for metric in self.metrics:
            try:
                costs[metric] = export_lib.supernet_cost(self.model, metric)
            except handlers_lib.UnsupportedLayerError as error:
                print(f"figs_tf.CostCallback: not reporting {metric}: {error}")
        return costs

    def on_train_begin(self, logs=None):
        wrap_lib.gates_of(self.model)  # fail early with a clear message
        self.supernet = self._supernet_costs()
        self._metrics = list(self.supernet)
        self.controller = self._make_controller()

    # --- budget control ---------------------------------------------------------------------

    def _schedule(self, start_cost, total_steps):
        """The reference-cost schedule; ParetoCallback overrides it."""
        return budget_lib.TargetSchedule(self.target, start_cost, total_steps, self.settings, self._path)

    def _total_steps(self):
        if self.settings.total_steps is not None:
            return int(self.settings.total_steps)
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        if not epochs or not steps:
            raise ValueError(
                "figs_tf.CostCallback with a target needs the length of AL in steps to plan the "
                f"schedule of λ, but fit does not know it (epochs={epochs}, steps per epoch={steps}). "
                "Pass steps_per_epoch to fit, or ControllerSettings(total_steps=...).")
        return int(epochs) * int(steps)

    def _resolve_target(self, layer):
        """Decides what to steer to; returns False when λ is to be left alone."""
        # checks the target against this model (a target given to wrap too) and stores it on the model
        wrap_lib.set_target(self.model, self.target if self.target is not None else layer.target)
        self.target = layer.target
        return self.target is not None

    def _make_controller(self):
        """A StrengthController if there is a target, else None (λ left alone)."""
        layer = wrap_lib.cost_layer_of(self.model)
        if not self._resolve_target(layer):
            return None
        self.control_metric = layer.metric
        graph = wrap_lib.channel_graph_of(self.model)
        gates = wrap_lib.gates_of(self.model)
        supernet = budget_lib.cost_range(graph, layer.metric)[1]
        reference_strength = 1.0 / supernet
        start_cost = budget_lib.initial_exported_cost(graph, gates, layer.metric)
        self._path = budget_lib.GatePath(layer.polynomial, gates.group_sizes)
        initial = self.settings.initial_strength
        if initial is None:
            initial = layer.initial_strength or reference_strength
        controller = budget_lib.StrengthController(
            self._schedule(start_cost, self._total_steps()), self.settings, initial)
        if self._step() == 0:  # a fresh AL run; on resume λ comes back with the weights
            wrap_lib.set_strength(self.model, initial)
        self._batches_since_update = 0
        return controller

    def _step(self):
        """The optimizer's iteration counter: the AL step, restored on resume."""
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def control_costs(self):
        """(expected, exported) cost of the controlled metric at the current logits."""
        graph = wrap_lib.channel_graph_of(self.model)
        gates = wrap_lib.gates_of(self.model)
        layer = wrap_lib.cost_layer_of(self.model)
        logits = budget_lib.host_logits(gates)
        return (budget_lib.expected_cost_at(layer.polynomial, gates, logits),
                budget_lib.exported_cost_at(graph, gates, layer.metric, logits))

    def on_train_batch_end(self, batch, logs=None):
        if self.controller is None:
            return
        # counted on the host: between updates nothing is read from the device (with
        # steps_per_execution > 1 this counts executions, so updates come that much rarer)
        self._batches_since_update += 1
        if self._batches_since_update < self.controller.interval:
            return
        self._batches_since_update = 0
        step = self._step()
        expected, exported = self.control_costs()
        strength = self.controller.update(step, expected, exported, wrap_lib.get_strength(self.model))
        wrap_lib.cost_layer_of(self.model).set_strength(strength, signed=True)  # a multiplier: may be < 0
        schedule = self.controller.schedule
        self.trace.append({"step": step, "mode": self.controller.mode(step, exported),
                           "reference": schedule.reference(step), "expected": expected, "exported": exported,
                           "strength": strength})
        self._after_update(step, exported)

    def _after_update(self, step, exported):
        """Hook for ParetoCallback: runs after every λ update."""

    # --- reporting --------------------------------------------------------------------------

    def summary(self):
        """The figs_* numbers at the current logits."""
        network = export_lib.exported_network(self.model)
        numbers = {"figs_strength": wrap_lib.get_strength(self.model)}
        for metric in getattr(self, "_metrics", self.metrics):
            numbers[f"figs_expected_{metric}"] = export_lib.expected_cost(self.model, metric)
            numbers[f"figs_exported_{metric}"] = network.cost(metric)
        if self.controller is not None:
            step = self._step()
            numbers[f"figs_target_{self.control_metric}"] = self.controller.schedule.budget(step)
            numbers[f"figs_reference_{self.control_metric}"] = self.controller.schedule.reference(step)
        for name, width in network.architecture().items():
            numbers[f"figs_width/{name}"] = width
        return numbers, network

    def on_epoch_end(self, epoch, logs=None):
        numbers, network = self.summary()
        if logs is not None:
            logs.update(numbers)
        self.history.append(dict(numbers, epoch=epoch))
        if self.workdir is not None:
            self._write_architecture(network, epoch)

    def _write_architecture(self, network, epoch):
        metadata = {"epoch": int(epoch),
                    "exported_cost": {m: network.cost(m) for m in self._metrics},
                    "supernet_cost": self.supernet,
                    "strength": wrap_lib.get_strength(self.model)}
        self._save(network, files.join(self.workdir, ARCHITECTURE_FILE), metadata)

    def _save(self, network, path, metadata):
        """Writes the network's architecture JSON (with channels), locally or to gs:// (atomically)."""
        export_lib.save_architecture(network.architecture(), path, channels=network.channels(), **metadata)
        return path

    def _report_landing(self):
        """Says so when the exported cost missed the target at the end of AL."""
        exported = export_lib.exported_network(self.model).cost(self.control_metric)
        error = exported / self.target - 1
        if abs(error) > self.settings.tolerance:
            print(f"figs_tf.CostCallback: the exported {self.control_metric} ({exported:,}) missed the "
                  f"target {self.target:,.0f} by {error:+.1%} (tolerance ±{self.settings.tolerance:.0%}). "
                  "`callback.trace` shows how it moved: a jump across the band (one channel of a narrow "
                  "layer, or several groups at once) needs a larger model or a wider tolerance; a drift "
                  "after reaching the band, a decaying learning rate; a late arrival, more AL steps.")

    def on_train_end(self, logs=None):
        if self.controller is not None:
            self._report_landing()
        if self.plot and self.workdir is not None:
            path = files.join(self.workdir, WIDTHS_PLOT_FILE)
            if files.is_url(path):  # matplotlib writes local files: plot, then copy up
                import tensorflow as tf  # pylint: disable=g-import-not-at-top
                local = plot_widths(self.model, os.path.join(tempfile.gettempdir(), f"figs_widths_{os.getpid()}.png"))
                tf.io.gfile.copy(local, path, overwrite=True)
            else:
                plot_widths(self.model, path)


PARETO_DIR = "pareto"


class ParetoCallback(CostCallback):
    """A Pareto set from one AL run: the budget steps down, one file per budget.

    The reference cost of CostCallback's λ controller steps down through
    `budgets` (largest first, an equal share of the AL steps each; see
    figs_tf.budget.ParetoSchedule), so the pressure rises over the run.
    Whenever the exported cost is at or below a budget whose segment has not
    ended yet, the exported architecture (widths and kept channels) is written
    to `<workdir>/pareto/architecture_<budget>.json`: each file ends up holding
    the last architecture within its budget from that budget's segment (the
    one trained longest at that pressure), or, for a budget first reached
    later, the first one below it. Budgets never reached are listed at the end
    (`missing`).

        callback = figs_tf.ParetoCallback(workdir, budgets=[40_000, 25_000, 12_000])
        search.fit(data, epochs=30, callbacks=[callback])
        callback.paths     # {budget: path of its architecture JSON}

    Args:
      workdir: where `pareto/` goes (required).
      budgets: costs in the metric of the search model's cost.
      metrics, plot, controller: as for CostCallback.
    """

    def __init__(self, workdir, budgets, metrics=cost_lib.METRICS, plot=True, controller=None):
        if workdir is None:
            raise ValueError("ParetoCallback writes one architecture per budget: give it a workdir.")
        if not budgets:
            raise ValueError("ParetoCallback needs at least one budget, e.g. budgets=[4e6, 3e6, 2e6].")
        super().__init__(workdir, metrics=metrics, plot=plot, controller=controller)
        self.budgets = sorted((float(b) for b in budgets), reverse=True)
        if len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"ParetoCallback budgets must differ from each other, got {list(budgets)}.")
        self.paths = {}  # budget -> path of the architecture file written for it
        self._saved_widths = {}  # budget -> widths last written, to skip identical rewrites

    def _resolve_target(self, layer):
        graph = wrap_lib.channel_graph_of(self.model)
        for budget in self.budgets:
            budget_lib.check_target(budget, layer.metric, graph, model_name=f"'{self.model.name}'")
            if _exists(self.path_for(budget)):  # written before a restart
                self.paths.setdefault(budget, self.path_for(budget))
        return True

    def _schedule(self, start_cost, total_steps):
        return budget_lib.ParetoSchedule(self.budgets, start_cost, total_steps, self.settings, self._path)

    def path_for(self, budget):
        name = f"{int(budget)}" if float(budget).is_integer() else f"{budget:g}"
        return files.join(self.workdir, PARETO_DIR, f"architecture_{name}.json")

    def _after_update(self, step, exported):
        segment = self.controller.schedule.segment(step)
        gates = wrap_lib.gates_of(self.model)
        # the widths as the host computes them: cheap, so unchanged architectures cost nothing
        widths = tuple(budget_lib.exported_widths(budget_lib.host_logits(gates), gates.group_sizes,
                                                  gates.keep_one_sets))
        due = [b for j, b in enumerate(self.budgets)
               if exported <= b and (j >= segment or b not in self.paths) and self._saved_widths.get(b) != widths]
        if not due:
            return
        network = export_lib.exported_network(self.model)
        for budget in due:
            if network.cost(self.control_metric) > budget:
                continue  # the backend's rule is the one that counts (float32 sums)
            metadata = {"budget": budget, "metric": self.control_metric, "step": step,
                        "exported_cost": {m: network.cost(m) for m in self._metrics},
                        "supernet_cost": self.supernet, "strength": wrap_lib.get_strength(self.model)}
            self.paths[budget] = self._save(network, self.path_for(budget), metadata)
            self._saved_widths[budget] = widths

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self._after_update(self._step(), self.control_costs()[1])

    @property
    def missing(self):
        """Budgets the exported cost has not got below (yet)."""
        return [b for b in self.budgets if b not in self.paths]

    def _report_landing(self):
        if self.missing:
            print(f"figs_tf.ParetoCallback: the exported {self.control_metric} never got below "
                  f"{self.missing}; give AL more steps (or a learning rate that has not decayed "
                  "to nothing by the last segment).")


def _exists(path):
    return files.exists(path)


def plot_widths(search, path):
    """Bar chart of per-layer widths: supernet vs exported architecture."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    network = export_lib.exported_network(search)
    exported = network.architecture()
    names = list(exported)
    supernet = [network.graph.out_sets(c)[0] for c in network.graph.producer_calls()]
    supernet = [sum(s.channels for s in channel_set) for channel_set in supernet]
    figure, axis = plt.subplots(figsize=(max(6, 0.25 * len(names) + 2), 4))
    positions = range(len(names))
    axis.bar(positions, supernet, color="#d0d7e1", label="supernet")
    axis.bar(positions, [exported[n] for n in names], color="#3566a8", label="exported")
    axis.set_xticks(list(positions))
    axis.set_xticklabels(names, rotation=90, fontsize=6)
    axis.set_ylabel("output channels")
    axis.set_title(f"{search.name}: widths per layer")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
