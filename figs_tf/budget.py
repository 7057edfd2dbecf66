"""The λ controller behind budget targeting: settings, reference schedules, a PI loop on log λ.

Pure Python and NumPy on the host; `figs_tf.BudgetController` and
`figs_tf.ParetoController` (figs_tf/callbacks.py) read the costs and assign λ.
How and why it works, and every knob: docs/budget.md.

    settings = figs_tf.ControllerSettings(tolerance=0.01)
    path = GatePath(cost_layer.polynomial, gates.group_sizes)
    schedule = TargetSchedule(target, start_cost, total_steps, settings, path)
    controller = StrengthController(schedule, settings, initial_strength=λ0)
    λ = controller.update(step, expected_cost, exported_cost, λ)
"""

import dataclasses
import math

import numpy as np
from keras import ops

from figs_tf import cost as cost_lib
from figs_tf.mask_layer import hard_widths_numpy

UPDATES_PER_RUN = 256  # default interval: total AL steps / this
EASE_POWER = 3  # the path's speed falls as (1 − p)²: slow at the end, for Adam's momentum


@dataclasses.dataclass(frozen=True)
class ControllerSettings:
    """Knobs of the λ controller (docs/budget.md says what each does and why).

    Args:
      interval: optimizer steps between λ updates; None: max(1, AL steps // 256).
      integral_gain: k_I, per update, on the log error of the exported cost.
      proportional_gain: k_P, on the change of log(expected / reference).
      hold_gain: k_H, damping of the expected cost while the export is held in the band.
      bounds: (knee, ceiling) as multiples of the initial λ: λ stays below
        ceiling × λ₀; below knee × λ₀ it passes linearly through 0.
      negative_bound: λ stays above −negative_bound × λ₀ (0: never below 0).
      initial_strength: λ₀; None: `wrap`'s strength if > 0, else 1 / supernet cost.
      warmup: fraction of the AL steps before λ moves.
      ramp: fraction of the AL steps at which the reference path reaches the band.
      tolerance: the band, relative to the target.
      total_steps: AL length in steps; None: epochs × steps per epoch of `fit`.
      gate_margin: with `gate_speed="auto"`, how far the gate logits must be
        able to travel at λ₀, as a multiple of the reference path's travel
        (figs_tf.gate_speed).
      end_gate_slowdown: with `gate_speed="auto"`, once the reference path has
        come to rest (at `ramp`) the gates are slowed so that, where the path
        ends, the logits move 1 / end_gate_slowdown as fast per step as before
        (a power of two, below 1 too; 1: they keep their speed).
      max_update_travel: with `gate_speed="auto"`, where λ cannot slow the
        gates down (an optimizer that normalises its steps at the gates'
        gradients: Adam, Lion, RMSprop well above √ε), how far the gate
        logits may move between two λ updates, in
        widths of the band (target × (1 ± tolerance) in the logit all gates
        share): s is lowered until they move no farther (down to 1). The
        updates are `interval` optimizer steps apart, rounded up to whole
        calls of `steps_per_execution` steps (Keras calls back once per
        call); inf: no limit.

    Raises:
      ValueError: a knob out of its range, naming it.

    Example:

    >>> settings = figs_tf.ControllerSettings(warmup=0.1, ramp=0.5, tolerance=0.01)
    >>> figs_tf.BudgetController(target=1e6, settings=settings)
    """

    interval: int = None
    integral_gain: float = 1.5
    proportional_gain: float = 40.0
    hold_gain: float = 100.0
    bounds: tuple = (0.03, 10.0)
    negative_bound: float = 1.0
    initial_strength: float = None
    warmup: float = 0.05
    ramp: float = 0.6
    tolerance: float = 0.02
    total_steps: int = None
    gate_margin: float = 2.0
    end_gate_slowdown: float = 4.0
    max_update_travel: float = 3.0

    def __post_init__(self):
        if self.interval is not None and int(self.interval) < 1:
            raise ValueError(f"ControllerSettings.interval must be >= 1 step, got {self.interval}.")
        if min(self.integral_gain, self.proportional_gain, self.hold_gain) < 0:
            raise ValueError("ControllerSettings gains must be >= 0, got integral_gain="
                             f"{self.integral_gain}, proportional_gain={self.proportional_gain}, "
                             f"hold_gain={self.hold_gain}.")
        low, high = self.bounds
        if not 0 < low <= 1 <= high:
            raise ValueError(f"ControllerSettings.bounds must satisfy 0 < low <= 1 <= high "
                             f"(multiples of the initial λ), got {self.bounds}.")
        if not 0 <= self.negative_bound < float("inf"):
            raise ValueError(f"ControllerSettings.negative_bound is how far below 0 λ may go, as a multiple "
                             f"of the initial λ: a finite number >= 0 (0: λ never goes below 0), "
                             f"got {self.negative_bound}.")
        for name in ("warmup", "ramp"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"ControllerSettings.{name} is a fraction of the AL steps in [0, 1], "
                                 f"got {getattr(self, name)}.")
        if self.warmup > self.ramp:
            raise ValueError(f"ControllerSettings needs warmup <= ramp (both fractions of the AL steps: "
                             f"the ramp ends after the warm-up), got warmup={self.warmup}, ramp={self.ramp}.")
        if not 1 <= self.gate_margin < float("inf"):
            raise ValueError(f"ControllerSettings.gate_margin is how much farther than the reference path the gate "
                             f"logits must be able to travel: a finite number >= 1, got {self.gate_margin}.")
        if not 1 <= self.end_gate_slowdown < float("inf"):
            raise ValueError(f"ControllerSettings.end_gate_slowdown divides how fast the gates move after the "
                             f"ramp: a finite number >= 1 (1: no slowdown), got {self.end_gate_slowdown}.")
        if not self.max_update_travel > 0:
            raise ValueError(f"ControllerSettings.max_update_travel is how far (in band widths) the gate logits may "
                             f"move between two λ updates: a number > 0 (inf: no limit), got "
                             f"{self.max_update_travel}.")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"ControllerSettings.tolerance is relative, in (0, 1), got {self.tolerance}.")


# --- costs the controller reads -------------------------------------------------------------


def host_logits(gates):
    """The gate logits as a NumPy array (one device-to-host copy)."""
    return np.asarray(ops.convert_to_numpy(gates.logits), dtype=np.float32)


def exported_cost_at(graph, gates, metric, logits=None):
    """Exact cost of the exported network at the gates' current logits.

    The widths-only part of `figs_tf.exported_network` (no per-channel ranking),
    cheap enough to run every step.
    """
    logits = host_logits(gates) if logits is None else logits
    return cost_lib.network_cost(graph, metric, hard_widths_numpy(logits, gates.group_sizes, gates.keep_one_sets))


def expected_cost_at(polynomial, gates, logits=None):
    """Expected cost (eq. 6) at the current logits, from the CostLayer's polynomial."""
    logits = host_logits(gates) if logits is None else logits
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    starts = np.cumsum([0] + gates.group_sizes[:-1])
    return polynomial.numpy(np.add.reduceat(probabilities, starts))


def initial_exported_cost(graph, gates, metric):
    """Exported cost at the gates' initial logit (⌊π₀·n⌋ per group): where the ramp starts.

    A function of the gates' config only, so a resumed run re-derives it.
    """
    probability = 1.0 / (1.0 + math.exp(-gates.initial_logit))
    widths = [int(math.floor(probability * size + 1e-9)) for size in gates.group_sizes]
    return cost_lib.network_cost(graph, metric, widths)


# --- schedules of the reference cost ---------------------------------------------------------


class GatePath:
    """Costs along a path on which every gate logit moves together.

    Under Adam every gate logit pushed by the cost moves at about the same
    speed (the step is normalised per parameter), so the natural way for the
    cost to fall is all logits sliding down together. `uniform_logit(cost)`
    finds the common logit ν whose expected cost is `cost`; `between(a, b, p)`
    is the cost at the logit a fraction `ease(p)` of the way from ν(a) to ν(b).
    """

    def __init__(self, polynomial, group_sizes):
        self.polynomial = polynomial
        self.sizes = np.asarray(group_sizes, dtype=np.float64)
        self._logits = {}

    def cost(self, logit):
        return self.polynomial.numpy(self.sizes / (1.0 + math.exp(-logit)))

    def uniform_logit(self, cost):
        if cost not in self._logits:
            low, high = -30.0, 30.0  # cost(ν) increases with ν
            for _ in range(60):
                middle = 0.5 * (low + high)
                low, high = (middle, high) if self.cost(middle) < cost else (low, middle)
            self._logits[cost] = 0.5 * (low + high)
        return self._logits[cost]

    def between(self, start_cost, end_cost, progress):
        if progress >= 1:
            return float(end_cost)
        start, end = self.uniform_logit(start_cost), self.uniform_logit(end_cost)
        return self.cost(start + (end - start) * ease_out(progress))


def ease_out(progress):
    """1 − (1 − p)³: the path is left fast and reached with zero speed.

    The cost is asked to fall fastest at the beginning and to come to rest at
    the end, so λ is back near the value that balances the task loss when the
    band is reached (the gates keep moving for a while after λ drops: Adam's
    first moment, and logits left near 0 where π is most sensitive).
    """
    progress = min(1.0, max(0.0, progress))
    return 1.0 - (1.0 - progress) ** EASE_POWER


class TargetSchedule:
    """Reference cost for one target: warm-up, then a GatePath to the top of the
    band target × (1 ± tolerance), then the target itself."""

    def __init__(self, target, start_cost, total_steps, settings, path):
        self.target = float(target)
        self.start_cost = float(start_cost)
        self.total_steps = max(1, int(total_steps))
        self.settings = settings
        self.path = path
        # the path comes to rest at the top of the band: the exported cost enters the band
        # from above, slowly, and is held at the first architecture inside it
        self.path_end = self.target * (1 + settings.tolerance)

    def phase(self, step):
        fraction = step / self.total_steps
        if fraction < self.settings.warmup:
            return "warmup"
        if fraction < self.settings.ramp:
            return "ramp"
        return "end"

    def reference(self, step):
        s = self.settings
        if s.ramp <= s.warmup:
            return self.target
        progress = (step / self.total_steps - s.warmup) / (s.ramp - s.warmup)
        return self.path.between(self.start_cost, self.path_end, progress)

    def aim(self, step):
        """What the approach mode steers to once the path is over."""
        del step
        return self.target

    def band(self, step):
        """(low, high): where the exported cost is held."""
        del step
        return self.target * (1 - self.settings.tolerance), self.target * (1 + self.settings.tolerance)

    def budget(self, step):
        """The budget being aimed at (logged as figs_target_<metric>)."""
        del step
        return self.target


class ParetoSchedule:
    """Reference cost stepping down through several budgets, one segment each.

    After warm-up the AL steps are split into equal segments, one per budget
    from the largest to the smallest. In segment j the reference moves along
    the GatePath (over the same share of the segment as the single-target
    ramp has of the run after warm-up) from the previous budget to budget_j,
    the top of its band budget_j · [1 − tolerance, 1]; the approach mode then
    steers to the middle of that band.
    """

    def __init__(self, budgets, start_cost, total_steps, settings, path):
        self.budgets = sorted((float(b) for b in budgets), reverse=True)
        self.start_cost = float(start_cost)
        self.total_steps = max(1, int(total_steps))
        self.settings = settings
        self.path = path
        self.aims = [b * (1 - settings.tolerance / 2) for b in self.budgets]  # the middles of the bands
        self.warmup_steps = settings.warmup * self.total_steps
        self.segment_steps = (self.total_steps - self.warmup_steps) / len(self.budgets)

    def segment(self, step):
        """Index of the budget whose segment `step` is in (-1 during warm-up)."""
        if step < self.warmup_steps:
            return -1
        return min(len(self.budgets) - 1, int((step - self.warmup_steps) // self.segment_steps))

    def _within(self, step):
        """Fraction of the current segment done."""
        j = self.segment(step)
        return (step - self.warmup_steps - j * self.segment_steps) / self.segment_steps

    def _ramp_share(self):
        """The ramp's share of a segment: the single-target ramp, rescaled."""
        s = self.settings
        return 1.0 if s.warmup >= 1 else (s.ramp - s.warmup) / (1 - s.warmup)

    def phase(self, step):
        if self.segment(step) < 0:
            return "warmup"
        return "ramp" if self._within(step) < self._ramp_share() else "end"

    def reference(self, step):
        j = self.segment(step)
        if j < 0:
            return self.start_cost
        previous = self.start_cost if j == 0 else self.budgets[j - 1]
        share = self._ramp_share()
        progress = 1.0 if share <= 0 else self._within(step) / share
        return self.path.between(previous, self.budgets[j], progress)

    def aim(self, step):
        return self.aims[max(0, self.segment(step))]

    def band(self, step):
        budget = self.budget(step)
        return budget * (1 - self.settings.tolerance), budget

    def budget(self, step):
        return self.budgets[max(0, self.segment(step))]


# --- the controller ---------------------------------------------------------------------------


class StrengthController:
    """Velocity-form PI controller on λ's log scale with a hold mode (module docstring).

        controller = StrengthController(schedule, settings, initial_strength=λ0, steps_per_execution=8)
        λ = controller.update(step, expected_cost, exported_cost, λ)

    Pure Python: the callback reads the costs and assigns λ.
    """

    def __init__(self, schedule, settings, initial_strength, steps_per_execution=1):
        self.schedule = schedule
        self.settings = settings
        # optimizer steps between updates: Keras calls back once per `steps_per_execution` steps,
        # so the interval is rounded up to whole calls
        interval = int(settings.interval) if settings.interval is not None else \
            max(1, schedule.total_steps // UPDATES_PER_RUN)
        calls = max(1, int(steps_per_execution))
        self.interval = -(-interval // calls) * calls
        # the controller's coordinate u: λ = 2·knee·sinh(u − log(knee/λ₀)), which is λ₀·e^u
        # (log λ) far above the knee, linear through 0 at u = log(knee/λ₀), and −knee²/λ₀·e^−u below
        self.knee = settings.bounds[0] * initial_strength
        self.log_knee = math.log(settings.bounds[0])
        self.min_strength = -settings.negative_bound * initial_strength
        self.max_strength = settings.bounds[1] * initial_strength
        self.previous = None  # (mode, log expected, log reference) at the last update; None after a (re)start

    def clip(self, strength):
        return float(min(self.max_strength, max(self.min_strength, strength)))

    def coordinate(self, strength):
        """u of a λ: log(λ/λ₀) far above the knee, continued through 0 to negative λ."""
        return self.log_knee + math.asinh(strength / (2.0 * self.knee))

    def strength_at(self, coordinate):
        return 2.0 * self.knee * math.sinh(coordinate - self.log_knee)

    def mode(self, step, exported):
        """"warmup", "track" (follow the path), "approach" (path over, steer to
        the aim) or "hold" (exported cost inside the band: keep the architecture).

        A function of the step and the logits only, so nothing is lost on resume.
        """
        phase = self.schedule.phase(step)
        if phase == "warmup":
            return "warmup"
        low, high = self.schedule.band(step)
        if low <= exported <= high:
            return "hold"
        return "approach" if phase == "end" else "track"

    def update(self, step, expected, exported, strength):
        """Returns the new λ after one control interval ending at `step`."""
        s = self.settings
        mode = self.mode(step, exported)
        if mode == "warmup":
            self.previous = None
            return strength
        log_expected = math.log(max(expected, 1.0))
        if mode == "hold":
            # inside the band: no integral term; λ only damps any motion of the expected cost
            reference = None
            change = 0.0
            gain = s.hold_gain
        else:
            reference = self.schedule.reference(step) if mode == "track" else self.schedule.aim(step)
            integral_error = max(-1.0, min(1.0, math.log(max(exported, 1.0) / reference)))
            change = s.integral_gain * integral_error
            gain = s.proportional_gain
        log_reference = None if reference is None else math.log(reference)
        if self.previous is not None:
            # velocity form of the proportional term: the change of log(expected / reference)
            previous_mode, previous_expected, previous_reference = self.previous
            reference_motion = log_reference - previous_reference \
                if mode == previous_mode and reference is not None else 0.0
            change += gain * ((log_expected - previous_expected) - reference_motion)
        self.previous = (mode, log_expected, log_reference)
        return self.clip(self.strength_at(self.coordinate(self.clip(strength)) + change))
