"""Keras callbacks for a search: one reports it, one steers λ to a budget.

    callbacks = [figs_tf.BudgetController(target=2e6),   # λ (only with a budget)
                 figs_tf.CostCallback(workdir),          # figs_* numbers, JSON, plot
                 keras.callbacks.CSVLogger(...),         # after both, so that they
                 keras.callbacks.TensorBoard(...)]       # see the figs_* numbers
    search.fit(data, epochs=40, callbacks=callbacks)

- `CostCallback` reports: each epoch it puts the expected and exported cost,
  λ and every exported width into `logs`, writes `<workdir>/architecture.json`,
  and saves `<workdir>/widths.png` at the end.
- `BudgetController` steers λ so that the exported cost lands within ±2 % of a
  target (docs/budget.md), in the spirit of Keras's `LearningRateScheduler`:
  it assigns one variable and writes its own numbers (`figs_target_<metric>`,
  `figs_reference_<metric>`) into `logs`.
- `ParetoController` is its variant for a Pareto set from one run: the budget
  steps down through several values and each budget's architecture is saved.
"""

import os
import tempfile
import warnings
import weakref

import keras
from keras import ops

from figs_tf import budget as budget_lib
from figs_tf import cost as cost_lib
from figs_tf import export as export_lib
from figs_tf import files
from figs_tf import gate_speed as gate_speed_lib
from figs_tf import handlers as handlers_lib
from figs_tf import plots
from figs_tf import wrapping as wrap_lib

ARCHITECTURE_FILE = "architecture.json"
WIDTHS_PLOT_FILE = "widths.png"
OPERATORS_PLOT_FILE = "operators.png"
PARETO_DIR = "pareto"


class CostCallback(keras.callbacks.Callback):
    """Reports the search: cost, λ and widths in `logs`, the architecture JSON, the width plot.

    Each epoch it adds to `logs` (so `History`, `CSVLogger` and `TensorBoard`
    placed after it record them):
    - `figs_expected_<metric>`: the expected cost (eq. 6) at the current logits;
    - `figs_exported_<metric>`: the exact cost of the architecture export gives;
    - `figs_strength`: λ;
    - `figs_width/<layer>`: the exported width of every layer that makes channels;
    and writes `<workdir>/architecture.json` (atomically, local or gs://). At
    the end of training it saves `<workdir>/widths.png`.

    Args:
      workdir: directory for architecture.json and widths.png (None: no files).
      metrics: costs to report, "params" and/or "flops" (FLOPs are skipped with
        a warning if the model's input size is not static).
      plot: save the width plot at the end of training.
      operators: optional function {layer: width} -> {layer: {operator: kept}}
        for a space whose layers choose among operators (e.g.
        `figs_tf.spaces.operator_choices_function("fbnet")`): the choices go
        into architecture.json, and `<workdir>/operators.png` is plotted.

    Raises:
      ValueError: at the start of training, when the search model has a target
        but no `BudgetController` steers λ.

    Example:

    >>> search.fit(data, epochs=40,
    ...            callbacks=[figs_tf.CostCallback("runs/a"),
    ...                       keras.callbacks.CSVLogger("runs/a/log.csv")])
    """

    def __init__(self, workdir=None, metrics=cost_lib.METRICS, plot=True, operators=None):
        super().__init__()
        self.workdir = workdir
        self.metrics = [cost_lib.check_metric(m) for m in metrics]
        self.plot = plot
        self.operators = operators
        self.history = []  # one dict per epoch: the figs_* numbers
        self.reported_metrics = list(self.metrics)  # those the model can be counted in (on_train_begin)
        self.supernet = {}
        self._checked_controller = False
        if workdir is not None and not files.is_url(workdir):
            os.makedirs(workdir, exist_ok=True)

    def on_train_begin(self, logs=None):
        wrap_lib.gates_of(self.model)  # fail early with a clear message
        self.supernet = {}
        for metric in self.metrics:
            try:
                self.supernet[metric] = export_lib.supernet_cost(self.model, metric)
            except handlers_lib.UnsupportedLayerError as error:
                warnings.warn(f"figs_tf.CostCallback: not reporting {metric}: {error}", stacklevel=2)
        self.reported_metrics = list(self.supernet)
        self._checked_controller = False

    def on_epoch_begin(self, epoch, logs=None):
        # every callback's on_train_begin has run by now, so a BudgetController has attached itself
        if not self._checked_controller:
            self._checked_controller = True
            target = wrap_lib.get_target(self.model)
            if target is not None and not BudgetController.is_steering(self.model):
                raise ValueError(
                    f"Search model '{self.model.name}' has a budget (target={target:,.0f}) but no "
                    "figs_tf.BudgetController steers λ in this fit, so the budget would be ignored. Add one: "
                    "callbacks=[figs_tf.BudgetController(), figs_tf.CostCallback(...)], or clear the budget "
                    "with figs_tf.set_target(search, None) to train at a fixed λ.")

    def summary(self):
        """(the figs_* numbers at the current logits, the ExportedNetwork they describe)."""
        network = export_lib.exported_network(self.model)
        numbers = {"figs_strength": wrap_lib.get_strength(self.model)}
        for metric in self.reported_metrics:
            numbers[f"figs_expected_{metric}"] = export_lib.expected_cost(self.model, metric)
            numbers[f"figs_exported_{metric}"] = network.cost(metric)
        for name, width in network.architecture().items():
            numbers[f"figs_width/{name}"] = width
        return numbers, network

    def on_epoch_end(self, epoch, logs=None):
        numbers, network = self.summary()
        if logs is not None:
            logs.update(numbers)
        self.history.append(dict(numbers, epoch=epoch))
        if self.workdir is not None:
            metadata = {"epoch": int(epoch),
                        "exported_cost": {m: network.cost(m) for m in self.reported_metrics},
                        "supernet_cost": self.supernet,
                        "strength": numbers["figs_strength"]}
            save_network(network, files.join(self.workdir, ARCHITECTURE_FILE), metadata, self.operators)

    def on_train_end(self, logs=None):
        if not (self.plot and self.workdir is not None):
            return
        self._plot(WIDTHS_PLOT_FILE, lambda path: plots.plot_widths(self.model, path))
        if self.operators is not None:
            choices = self.operators(export_lib.export_architecture(self.model))
            self._plot(OPERATORS_PLOT_FILE, lambda path: plots.plot_operators(choices, path,
                                                                              f"{self.model.name}: operators kept"))

    def _plot(self, name, draw):
        path = files.join(self.workdir, name)
        if files.is_url(path):  # matplotlib writes local files: plot, then copy up
            files.copy(draw(os.path.join(tempfile.gettempdir(), f"figs_{os.getpid()}_{name}")), path)
        else:
            draw(path)


def save_network(network, path, metadata, operators=None):
    """Writes an ExportedNetwork's architecture JSON with its kept channels (atomically).

    `operators`: optional function {layer: width} -> {layer: {operator: kept}}
    (a space's operator choices), stored in the file too.
    """
    architecture = network.architecture()
    return export_lib.save_architecture(architecture, path, channels=network.channels(),
                                        operators=None if operators is None else operators(architecture),
                                        **metadata)


class BudgetController(keras.callbacks.Callback):
    """Steers λ so that the exported cost lands within ±2 % of a target, in one AL run.

    Every few optimizer steps it counts the exported and the expected cost on
    the host and updates λ (the search model's `strength`, a variable) with a
    PI loop along a reference path from the supernet's cost down to the band
    (figs_tf.budget; docs/budget.md). λ is a Lagrange multiplier here: it goes
    below 0 when the exported cost falls under the band. Each epoch it writes
    `figs_target_<metric>` and `figs_reference_<metric>` into `logs`; at the end
    it warns if the export missed the band.

    Gate speed: at the start of a fresh AL run (optimizer step 0) it chooses
    the gates' speed s when they have `gate_speed="auto"` (the default of
    `figs_tf.wrap`): the smallest power of two ≥ 1 with which the compiled
    optimizer, over the planned steps and at its learning rate (or schedule),
    moves the gate logits at least `settings.gate_margin` times as far as the
    reference path at λ's ceiling (figs_tf.gate_speed; docs/budget.md, "Gate
    speed"), halved while, under an optimizer that normalises its steps, they
    would cross more than `settings.max_update_travel` band widths between
    two λ updates (`interval` steps, rounded up to whole calls of
    `steps_per_execution`: Keras calls back once per call), and lowers it
    once the path has come to rest (at `ramp`; `settings.end_gate_slowdown`).
    Each change of s goes through `figs_tf.set_gate_speed`, so the
    optimizer's state follows it. With a fixed gate speed it checks instead
    that the logits can keep up at λ's ceiling, and warns before training when
    they cannot, naming what to change. Without a BudgetController (a fixed
    λ) "auto" leaves the gate speed at 1, the paper's.

    EMA: with `use_ema=True` the gate logits are kept out of the optimizer's
    moving average (set to θ at the end of each epoch), so the average that
    `fit` writes back at its end leaves the architecture the controller
    steered to; every other weight is averaged.

    Preemption: its state is λ and the gate speed (both weights, restored with
    the others) and the optimizer's step counter; the reference path is
    re-derived from the gates' config.

    Args:
      target: budget for the exported cost, in the metric of the search
        model's cost (parameters, or multiply-adds per example); stored on the
        model. None: the target given to `figs_tf.wrap`.
      settings: `figs_tf.ControllerSettings` (gains, interval, λ bounds,
        warm-up, ramp, tolerance, AL length); None: the defaults.

    Attributes:
      trace: one dict per λ update: step, mode, reference, expected, exported, strength.
      strength_controller: the `figs_tf.budget.StrengthController` (during and after fit).
      gate_plan: the `figs_tf.gate_speed.GateSpeedPlan` of this fit (None on a resumed one).

    Raises:
      ValueError: (at the start of training) no target here or on the model,
        a target the model cannot reach, or an AL length `fit` does not know.

    Example:

    >>> search = figs_tf.wrap(model, cost="flops")
    >>> search.fit(data, epochs=40,
    ...            callbacks=[figs_tf.BudgetController(target=300e6), figs_tf.CostCallback(workdir)])
    """

    def __init__(self, target=None, settings=None):
        super().__init__()
        self.target = target
        self.settings = settings if settings is not None else budget_lib.ControllerSettings()
        if not isinstance(self.settings, budget_lib.ControllerSettings):
            raise ValueError(f"settings must be a figs_tf.ControllerSettings, got {type(settings).__name__}.")
        self.trace = []
        self.strength_controller = None
        self.metric = None
        self._path = None
        self.gate_plan = None
        self._gates_settled = False
        self._steps_since_update = 0
        self._steps_this_epoch = 0

    # search model -> the BudgetController steering it in the fit now running (weak: a model
    # dropped mid-fit is not kept alive)
    _steering = weakref.WeakKeyDictionary()

    @classmethod
    def steering(cls, search):
        """The BudgetController steering `search`'s λ in the fit now running, or None.

        A controller attaches itself in `on_train_begin` and lets go in
        `on_train_end`, so any callback can ask from its own `on_epoch_begin`
        on, whatever the order of the callbacks: `CostCallback` does, to refuse
        a search model that has a budget but nothing steering toward it.

        Example:

        >>> class Report(keras.callbacks.Callback):
        ...     def on_epoch_end(self, epoch, logs=None):
        ...         controller = figs_tf.BudgetController.steering(self.model)
        ...         if controller is not None:
        ...             print(controller.trace[-1])
        """
        return cls._steering.get(search)

    @classmethod
    def is_steering(cls, search):
        """True while a BudgetController is attached to `search` (between train begin and end)."""
        return cls.steering(search) is not None

    def on_train_begin(self, logs=None):
        layer = wrap_lib.cost_layer_of(self.model)
        self.metric = layer.metric
        self._resolve_target(layer)
        graph = wrap_lib.channel_graph_of(self.model)
        gates = wrap_lib.gates_of(self.model)
        start_cost = budget_lib.initial_exported_cost(graph, gates, layer.metric)
        self._path = budget_lib.GatePath(layer.polynomial, gates.group_sizes)
        initial = self.settings.initial_strength
        if initial is None:
            initial = layer.initial_strength or 1.0 / cost_lib.cost_range(graph, layer.metric)[1]
        total_steps = self._total_steps()
        self.strength_controller = budget_lib.StrengthController(
            self._schedule(start_cost, total_steps), self.settings, initial,
            steps_per_execution=self._steps_per_execution())
        fresh = self._step() == 0  # on resume λ and the gate speed come back with the weights
        if fresh:
            wrap_lib.set_strength(self.model, initial)
        self.gate_plan = self._plan_gate_speed(gates, total_steps, initial, fresh)
        self._gates_settled = False
        self._steps_since_update = 0
        self._steps_this_epoch = 0
        BudgetController._steering[self.model] = self  # read by CostCallback (`steering`)

    def _end_step(self, total_steps):
        """The step from which the gates slow down (the reference path has come to rest); None: never."""
        return int(self.settings.ramp * total_steps)

    def _plan_gate_speed(self, gates, total_steps, initial, fresh):
        """Chooses s ("auto"), or checks a fixed s at λ's ceiling; warns when the logits cannot keep up.

        On a resumed run (not `fresh`) s is the restored one: only the plan is
        re-derived (it is a function of the config), for the speed after the ramp.
        """
        schedule = self.strength_controller.schedule
        common = dict(path=self._path, schedule=schedule, optimizer=self.model.optimizer, total_steps=total_steps,
                      multiplier=gates.logit_gradient_multiplier, initial_logit=gates.initial_logit)
        response = gate_speed_lib.step_response(self.model.optimizer)
        ceiling = self.settings.bounds[1] * abs(initial)
        if gates.automatic_gate_speed:
            plan = gate_speed_lib.plan_gate_speed(strength=ceiling, margin=self.settings.gate_margin,
                                                  response=response, end_step=self._end_step(total_steps),
                                                  end_slowdown=self.settings.end_gate_slowdown,
                                                  update_steps=self.strength_controller.interval,
                                                  max_update_travel=self.settings.max_update_travel, **common)
            if not fresh:
                return plan
            wrap_lib.set_gate_speed(self.model, plan.speed)
            if not plan.lambda_slows and plan.update_travel > self.settings.max_update_travel:
                self._warn_fast_updates(plan)
            if plan.reachable:
                return plan
            full = plan
        elif not fresh:
            return None
        else:
            plan = gate_speed_lib.plan_gate_speed(strength=ceiling, margin=1.0, speed=gates.gate_speed,
                                                  response=response, **common)
            if plan.reachable:
                return plan
            full = gate_speed_lib.plan_gate_speed(strength=ceiling, margin=1.0, response=response, **common)
        self._warn_unreachable(plan, full, total_steps)
        return plan

    def _warn_fast_updates(self, plan):
        warnings.warn(
            f"figs_tf.BudgetController: λ is updated every {self.strength_controller.interval} optimizer steps "
            f"(steps_per_execution={self._steps_per_execution()}, interval={self.settings.interval}), and even at "
            f"gate speed {plan.speed:g} the gate logits can cross {plan.update_travel:.2g} widths of the ±"
            f"{self.settings.tolerance:.0%} band between two updates (ControllerSettings.max_update_travel="
            f"{self.settings.max_update_travel:g}): the export may jump across the band. Lower "
            "steps_per_execution in compile (or ControllerSettings.interval), or the learning rate.", stacklevel=3)

    def _steps_per_execution(self):
        """Optimizer steps per call of the compiled train function (Keras calls back once per call)."""
        return max(1, int(getattr(self.model, "steps_per_execution", 1) or 1))

    def _warn_unreachable(self, plan, full, total_steps):
        what = (f"the gate logits can travel about {plan.travelled:.2g} (logit units) over the {total_steps:,} "
                f"planned steps at gate speed {plan.speed:g}, while the reference path to the budget "
                f"{self.strength_controller.schedule.budget(total_steps):,.0f} needs {plan.needed:.2g} and moves faster than they can by a factor of "
                f"{plan.shortfall:.2g} at its worst")
        if full.reachable:
            fix = (f"Use gate_speed='auto' in figs_tf.wrap (or figs_tf.set_gate_speed(search, {full.speed:g})), "
                   f"or about {plan.shortfall:.2g}× the AL steps or the learning rate")
        else:
            fix = (f"No gate speed up to 2**{gate_speed_lib.MAX_EXPONENT} helps: the optimizer hardly moves "
                   "the logits (check its learning rate or schedule over the run), or give AL more steps")
        warnings.warn(f"figs_tf.BudgetController: the target cannot be reached in this run: {what}. {fix}. "
                      "(Checked before training, at λ's ceiling; docs/budget.md, 'Gate speed'.)", stacklevel=2)

    def _resolve_target(self, layer):
        """Checks the target against this model and stores it there."""
        target = self.target if self.target is not None else layer.target
        if target is None:
            raise ValueError(
                "figs_tf.BudgetController has no target: pass BudgetController(target=...) or "
                "figs_tf.wrap(model, target=...), in the metric of the search model's cost "
                f"({layer.metric}).")
        wrap_lib.set_target(self.model, target)
        self.target = layer.target

    def _schedule(self, start_cost, total_steps):
        """The reference-cost schedule; ParetoController overrides it."""
        return budget_lib.TargetSchedule(self.target, start_cost, total_steps, self.settings, self._path)

    def _total_steps(self):
        if self.settings.total_steps is not None:
            return int(self.settings.total_steps)
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        if not epochs or not steps:
            raise ValueError(
                "figs_tf.BudgetController needs the length of AL in steps to plan the schedule of λ, but "
                f"fit does not know it (epochs={epochs}, steps per epoch={steps}). Pass steps_per_epoch "
                "to fit, or ControllerSettings(total_steps=...).")
        return int(epochs) * int(steps)

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

    def on_epoch_begin(self, epoch, logs=None):
        self._steps_this_epoch = 0

    def on_train_batch_end(self, batch, logs=None):
        # steps counted on the host: between updates nothing is read from the device. `batch` is
        # the last step of this call, so with steps_per_execution > 1 one call counts several
        self._steps_since_update += max(1, batch + 1 - self._steps_this_epoch)
        self._steps_this_epoch = batch + 1
        if self._steps_since_update < self.strength_controller.interval:
            return
        self._steps_since_update = 0
        step = self._step()
        expected, exported = self.control_costs()
        controller = self.strength_controller
        strength = controller.update(step, expected, exported, wrap_lib.get_strength(self.model))
        wrap_lib.cost_layer_of(self.model).set_strength(strength, signed=True)  # a multiplier: may be < 0
        self.trace.append({"step": step, "mode": controller.mode(step, exported),
                           "reference": controller.schedule.reference(step), "expected": expected,
                           "exported": exported, "strength": strength})
        self._settle_gates(step)
        self._after_update(step, exported)

    def _settle_gates(self, step):
        """Once the reference path has come to rest, lowers an automatic gate speed to the plan's end speed.

        Exact in ν (powers of two); s is a weight, so a resumed run keeps it.
        """
        plan = self.gate_plan
        if self._gates_settled or plan is None or plan.end_step is None or step < plan.end_step:
            return
        gates = wrap_lib.gates_of(self.model)
        if gates.automatic_gate_speed and gates.gate_speed > plan.end_speed:
            wrap_lib.set_gate_speed(self.model, plan.end_speed)  # the optimizer's state follows
        self._gates_settled = True

    def get_state(self):
        """What a resumed fit needs that the model's weights (λ, the gate speed) do not hold: a JSON-able dict.

        The steps since the last λ update and the PI controller's memory; call
        after `on_train_begin`. `set_state` puts it back.
        """
        previous = self.strength_controller.previous
        return {"steps_since_update": self._steps_since_update, "previous": list(previous) if previous else None}

    def set_state(self, state):
        """Restores `get_state()`'s dict after `on_train_begin` of a resumed fit."""
        self._steps_since_update = int(state["steps_since_update"])
        self.strength_controller.previous = tuple(state["previous"]) if state["previous"] else None

    def _after_update(self, step, exported):
        """Hook for ParetoController: runs after every λ update."""

    def on_epoch_end(self, epoch, logs=None):
        # with use_ema, fit writes the optimizer's moving average of θ back at its end: for the gates that
        # would be an architecture the controller never steered to, so their average is kept at θ
        gate_speed_lib.average_to_current(self.model.optimizer, wrap_lib.gates_of(self.model).logit_parameters)
        if logs is not None:
            step = self._step()
            schedule = self.strength_controller.schedule
            logs[f"figs_target_{self.metric}"] = schedule.budget(step)
            logs[f"figs_reference_{self.metric}"] = schedule.reference(step)
            logs["figs_gate_speed"] = wrap_lib.get_gate_speed(self.model)

    def on_train_end(self, logs=None):
        if BudgetController._steering.get(self.model) is self:
            del BudgetController._steering[self.model]
        self._report_landing()

    def _report_landing(self):
        """Warns when the exported cost missed the target at the end of AL."""
        exported = export_lib.exported_network(self.model).cost(self.metric)
        error = exported / self.target - 1
        if abs(error) > self.settings.tolerance:
            warnings.warn(
                f"figs_tf.BudgetController: the exported {self.metric} ({exported:,}) missed the target "
                f"{self.target:,.0f} by {error:+.1%} (tolerance ±{self.settings.tolerance:.0%}). `.trace` "
                "shows how it moved: a jump across the band (one channel of a narrow layer, or several groups "
                "at once) needs a larger model or a wider tolerance; a drift after reaching the band, a "
                "decaying learning rate; a late arrival, more AL steps.", stacklevel=2)


class ParetoController(BudgetController):
    """A Pareto set from one AL run: the budget steps down, one architecture file per budget.

    The reference cost of `BudgetController`'s λ loop steps down through
    `budgets` (largest first, an equal share of the AL steps each;
    figs_tf.budget.ParetoSchedule), so the pressure rises over the run.
    Whenever the exported cost is at or below a budget whose segment has not
    ended yet, the exported architecture (widths and kept channels) is written
    to `<workdir>/pareto/architecture_<budget>.json`: each file ends up holding
    the last architecture within its budget from that budget's segment (the one
    trained longest at that pressure), or, for a budget first reached later,
    the first one below it. Budgets never reached are listed in `missing`, and
    a warning says so at the end.

    Args:
      workdir: where `pareto/` goes; None: track the budgets reached without
        writing (e.g. on every process but the one that writes).
      budgets: costs in the metric of the search model's cost.
      settings: `figs_tf.ControllerSettings`, as for BudgetController.

    Attributes:
      paths: {budget: path of its architecture JSON} written so far.
      reached: budgets the exported cost has got below.

    Raises:
      ValueError: no budgets, repeated budgets, or (at the start of training)
        a budget the model cannot reach.

    Example:

    >>> pareto = figs_tf.ParetoController("runs/a", budgets=[40_000, 25_000, 12_000])
    >>> search.fit(data, epochs=30, callbacks=[pareto, figs_tf.CostCallback("runs/a")])
    >>> pareto.paths
    """

    def __init__(self, workdir, budgets, settings=None):
        if not budgets:
            raise ValueError("ParetoController needs at least one budget, e.g. budgets=[4e6, 3e6, 2e6].")
        super().__init__(settings=settings)
        self.workdir = workdir
        self.budgets = sorted((float(b) for b in budgets), reverse=True)
        if len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"ParetoController budgets must differ from each other, got {list(budgets)}.")
        self.paths = {}
        self.reached = set()
        self._saved_widths = {}  # budget -> widths last saved, to skip identical rewrites

    def get_state(self):
        state = super().get_state()
        state["reached"] = sorted(self.reached)
        state["saved_widths"] = [[budget, list(widths)] for budget, widths in self._saved_widths.items()]
        return state

    def set_state(self, state):
        super().set_state(state)
        self.reached.update(state["reached"])
        self._saved_widths.update({budget: tuple(widths) for budget, widths in state["saved_widths"]})

    def _resolve_target(self, layer):
        graph = wrap_lib.channel_graph_of(self.model)
        for budget in self.budgets:
            cost_lib.check_target(budget, layer.metric, graph, model_name=f"'{self.model.name}'")
            if self.workdir is not None and files.exists(self.path_for(budget)):  # written before a restart
                self.paths.setdefault(budget, self.path_for(budget))
                self.reached.add(budget)

    def _schedule(self, start_cost, total_steps):
        return budget_lib.ParetoSchedule(self.budgets, start_cost, total_steps, self.settings, self._path)

    def _end_step(self, total_steps):
        return None  # every budget has its own segment of the path: the gates keep their speed

    def path_for(self, budget):
        name = f"{int(budget)}" if float(budget).is_integer() else f"{budget:g}"
        return files.join(self.workdir, PARETO_DIR, f"architecture_{name}.json")

    def _after_update(self, step, exported):
        segment = self.strength_controller.schedule.segment(step)
        gates = wrap_lib.gates_of(self.model)
        # the widths as the host computes them: cheap, so unchanged architectures cost nothing
        widths = tuple(budget_lib.hard_widths_numpy(budget_lib.host_logits(gates), gates.group_sizes,
                                                    gates.keep_one_sets))
        due = [b for j, b in enumerate(self.budgets)
               if exported <= b and (j >= segment or b not in self.reached) and self._saved_widths.get(b) != widths]
        if not due:
            return
        network = export_lib.exported_network(self.model)
        cost = network.cost(self.metric)
        for budget in due:
            if cost > budget:
                continue  # the backend's rule is the one that counts (float32 sums)
            self.reached.add(budget)
            self._saved_widths[budget] = widths
            if self.workdir is not None:
                metadata = {"budget": budget, "metric": self.metric, "step": step,
                            "exported_cost": {self.metric: cost}, "strength": wrap_lib.get_strength(self.model)}
                self.paths[budget] = save_network(network, self.path_for(budget), metadata)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self._after_update(self._step(), self.control_costs()[1])

    @property
    def missing(self):
        """Budgets the exported cost has not got below (yet)."""
        return [b for b in self.budgets if b not in self.reached]

    def _report_landing(self):
        if self.missing:
            warnings.warn(f"figs_tf.ParetoController: the exported {self.metric} never got below "
                          f"{self.missing}; give AL more steps (or a learning rate that has not decayed "
                          "to nothing by the last segment).", stacklevel=2)
