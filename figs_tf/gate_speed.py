"""Gate speed: how far the compiled optimizer can move the gate logits in a planned AL run.

The gate logits are ν = s·θ (`figs_tf.MaskLayer`): θ is the trainable
variable, s the gate speed. An optimizer step of size Δθ moves ν by s·Δθ, so s
sets how far the gates can travel in a run whatever the optimizer does to the
size of its steps. `figs_tf.BudgetController` uses this module at the start of
a fresh AL run to choose s (`gate_speed="auto"`) and, for a fixed s, to say
before training when the target is out of reach. The rule (docs/budget.md,
"Gate speed"):

- The optimizer's step response r(x, t): its step Δθ per unit learning rate
  under a constant gradient x at step t (`step_response`): a closed form for
  Keras's SGD, Adam/AdamW, Adamax, RMSprop, Lion and Adagrad (SGD:
  x/(1 − momentum) once the velocity has built up; Adam: about x/(x + ε), so
  ≈ 1 at the usual ε and ≈ x for the paper's ε = 1; Lion: 1), measured on a
  copy of the optimizer for any other class.
- The learning rate summed over the planned steps (`learning_rate_sums`; a
  float, or a `LearningRateSchedule` evaluated along the run).
- The gradient a logit gets from the cost at λ: λ·M·∂E[cost]/∂ν, computed
  from the cost polynomial along the path on which all logits move together
  (`figs_tf.budget.GatePath`); on θ it is s times that.
- Simulated travel: starting at the initial logit, the logits move
  s·lr(t)·V(ν) per step, V the cost-weighted mean of r over the channel
  groups (1 for an optimizer that normalises the step).
- Demand: the distance the controller's reference path has travelled by
  each step (`figs_tf.budget.TargetSchedule`, `ParetoSchedule`).

`plan_gate_speed` returns the smallest power of two s ≥ 1 for which the
travel at the given λ (the controller passes λ's ceiling) is at least
`margin` × the demand at every step of the run; powers of two make rescaling
θ exact (ν does not move). With `end_step` it also plans the lower speed for
the rest of the run once the path has come to rest: a power of two that may be
below 1 (the ramp's s is never slower than the paper's gates; the hold's may be).

    plan = plan_gate_speed(path, schedule, optimizer, total_steps, strength=λ,
                           multiplier=M, initial_logit=2.5)
    plan.speed        # s
    plan.reachable    # False: no s up to 2**30 moves the logits far enough
"""

import dataclasses
import math
import warnings

import keras
import numpy as np
from keras import ops

MAX_SAMPLES = 256  # time points along the run at which the plan is evaluated
PROBE_STEPS = 64  # steps of the probe optimizer; the step is read over the second half
PROBE_MAGNITUDES = np.logspace(-12, 6, 145)  # gradient magnitudes probed, 8 per decade
MAX_EXPONENT = 30  # 2**-30 ≤ s ≤ 2**30
DEFAULT_MARGIN = 2.0

# what a copy of the optimizer must not do while it is probed: clip, average, accumulate or decay
_PROBE_OVERRIDES = {"clipnorm": None, "clipvalue": None, "global_clipnorm": None, "use_ema": False,
                    "gradient_accumulation_steps": None, "loss_scale_factor": None}


def base_optimizer(optimizer):
    """The optimizer that updates the variables (the inner one of a LossScaleOptimizer)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def learning_rate_function(optimizer):
    """step -> learning rate, for a float, a variable, a schedule or a callable learning rate."""
    optimizer = base_optimizer(optimizer)
    rate = getattr(optimizer, "_learning_rate", None)  # Keras 3 keeps the schedule object here
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return lambda step: float(ops.convert_to_numpy(rate(step)))
    if rate is not None and callable(rate) and not isinstance(rate, keras.Variable):
        return lambda step: float(rate())
    value = float(ops.convert_to_numpy(optimizer.learning_rate))
    return lambda step: value


def sample_steps(total_steps):
    """Optimizer steps at which the plan is evaluated: every step up to MAX_SAMPLES, then spread evenly."""
    total_steps = max(1, int(total_steps))
    count = min(total_steps, MAX_SAMPLES)
    return np.unique(np.round(np.linspace(0, total_steps, count + 1)).astype(np.int64))


def learning_rate_sums(optimizer, steps):
    """Σ_{t < steps[k]} lr(t) for each k: the learning rate summed along the run.

    Step t is taken at learning rate `schedule(t)` (Keras evaluates the schedule
    at `optimizer.iterations` before incrementing it). Exact when the sample
    points are consecutive steps; otherwise the trapezoid rule between them
    (a staircase schedule's jumps are then placed within one sample interval).
    """
    rate = learning_rate_function(optimizer)
    steps = np.asarray(steps, dtype=np.int64)
    values = np.array([rate(int(t)) for t in steps], dtype=np.float64)
    widths = np.diff(steps).astype(np.float64)
    exact = np.all(widths == 1)
    pieces = values[:-1] * widths if exact else 0.5 * (values[:-1] + values[1:]) * widths
    return np.concatenate([[0.0], np.cumsum(pieces)])


class StepResponse:
    """r(x, t): an optimizer's step on a parameter per unit learning rate, under a constant gradient x > 0.

    `t` is the 1-based optimizer step (time matters for Adam at a large ε,
    whose bias-corrected second moment grows over ~1 / (1 − β2) steps, and
    for momentum). Either a closed form for a Keras optimizer
    (`STEP_RESPONSES`), or the steady step measured on a copy of the optimizer
    (`measure_steps`), interpolated in log x between the probed magnitudes.
    """

    def __init__(self, formula=None, magnitudes=None, steps=None, source=""):
        self.formula = formula
        self.source = source
        if formula is None:
            self.magnitudes = np.asarray(magnitudes, dtype=np.float64)
            self.steps = np.maximum(np.asarray(steps, dtype=np.float64), 0.0)
            self._log_magnitudes = np.log(self.magnitudes)

    def __call__(self, gradient, step=None):
        gradient = np.asarray(gradient, dtype=np.float64)
        positive = np.maximum(gradient, 1e-300)
        if self.formula is not None:
            steady = step is None
            value = self.formula(positive, np.inf if steady else max(1.0, float(step)))
            return np.where(gradient <= 0, 0.0, np.maximum(value, 0.0))
        inside = np.interp(np.log(np.clip(positive, self.magnitudes[0], self.magnitudes[-1])),
                           self._log_magnitudes, self.steps)
        below = self.steps[0] * positive / self.magnitudes[0]
        return np.where(gradient <= 0, 0.0, np.where(positive < self.magnitudes[0], below, inside))

    def normalises(self, gradient=1e-3):
        """True when the steady step hardly depends on the gradient's size near `gradient` (Adam, Lion)."""
        low, high = float(self(gradient / 10)), float(self(gradient * 10))
        return bool(high > 0 and low / high > 0.5)


def _power(base, step):
    return 0.0 if np.isinf(step) else base ** step


def _sgd(optimizer):
    momentum, nesterov = float(optimizer.momentum), bool(optimizer.nesterov)

    def formula(x, t):  # velocity v_t = μ v_{t-1} − lr·x; Nesterov's step is μ v_t − lr·x
        built = 1.0 if momentum == 0 else (1.0 - _power(momentum, t)) / (1.0 - momentum)
        return x * (momentum * built + 1.0 if nesterov and momentum else built)
    return formula


def _adam(optimizer):
    beta_2, epsilon = float(optimizer.beta_2), float(optimizer.epsilon)

    def formula(x, t):  # Keras folds the bias correction into the rate: sqrt(1 − β2^t)·x / (sqrt(1 − β2^t)·x + ε)
        corrected = math.sqrt(1.0 - _power(beta_2, t))
        return corrected * x / (corrected * x + epsilon)
    return formula


def _adamax(optimizer):
    epsilon = float(optimizer.epsilon)
    return lambda x, t: x / (x + epsilon)  # the infinity norm of a constant gradient is x from the first step


def _rmsprop(optimizer):
    rho, epsilon, momentum = float(optimizer.rho), float(optimizer.epsilon), float(optimizer.momentum)
    centered = bool(optimizer.centered)

    def increment(x, t):
        decayed = _power(rho, t)
        second = x * x * (1.0 - decayed)
        if centered:  # minus the square of the running mean (1 − ρ^t)·x
            second = second - (x * (1.0 - decayed)) ** 2
        return x / np.sqrt(second + epsilon)

    def formula(x, t):
        if momentum == 0:
            return increment(x, t)
        # the momentum buffer sums the increments of earlier steps, μ^j back: those older than
        # ~40 / (1 − μ) steps weigh < 1e-17 and are left out
        back = np.arange(int(min(t, 1.0 + 40.0 / (1.0 - momentum))))
        times = np.maximum(1.0, (1e6 if np.isinf(t) else t) - back)
        return sum(momentum ** j * increment(x, time) for j, time in zip(back, times))
    return formula


def _lion(optimizer):
    del optimizer
    return lambda x, t: np.ones_like(x)  # the sign of the interpolated momentum


def _adagrad(optimizer):
    initial, epsilon = float(optimizer.initial_accumulator_value), float(optimizer.epsilon)
    return lambda x, t: x / np.sqrt(initial + (1e12 if np.isinf(t) else t) * x * x + epsilon)


STEP_RESPONSES = {
    keras.optimizers.SGD: _sgd,
    keras.optimizers.Adam: _adam,
    keras.optimizers.AdamW: _adam,  # weight decay aside, AdamW's step is Adam's
    keras.optimizers.Adamax: _adamax,
    keras.optimizers.RMSprop: _rmsprop,
    keras.optimizers.Lion: _lion,
    keras.optimizers.Adagrad: _adagrad,
}


def register_step_response(optimizer_class, formula_of):
    """Adds a closed-form step response for an optimizer class (exact type).

    Args:
      optimizer_class: the optimizer's class.
      formula_of: optimizer -> f(x, t), the step per unit learning rate at the
        1-based step t (t = inf: the steady step) under a constant gradient x > 0.
    """
    STEP_RESPONSES[optimizer_class] = formula_of


def measure_steps(optimizer, magnitudes=PROBE_MAGNITUDES, steps=PROBE_STEPS):
    """Per-step moves of a copy of `optimizer` (learning rate 1, no clipping, EMA or weight decay).

    One probe parameter per magnitude x takes `steps` optimizer steps under the
    constant gradient x.

    Returns:
      Array (steps, len(magnitudes)): the move of each parameter at each step
      (positive: against the gradient).

    Raises:
      ValueError: the optimizer cannot be copied from its config.
    """
    optimizer = base_optimizer(optimizer)
    config = optimizer.get_config()
    config["learning_rate"] = 1.0
    for key, value in _PROBE_OVERRIDES.items():
        if key in config:
            config[key] = value
    if config.get("weight_decay") is not None:
        config["weight_decay"] = 0.0
    try:
        probe = type(optimizer).from_config(config)
    except Exception as error:  # a custom optimizer without a working from_config
        raise ValueError(
            f"figs_tf cannot copy the optimizer {type(optimizer).__name__} from its config to measure how far "
            f"it moves the gate logits ({error}). Give the gate speed explicitly, e.g. "
            "figs_tf.wrap(..., gate_speed=8.0) (1 is the paper).") from error
    magnitudes = np.asarray(magnitudes, dtype=np.float64)
    parameter = keras.Variable(np.zeros(len(magnitudes), np.float32), dtype="float32", name="figs_probe")
    gradient = ops.convert_to_tensor(magnitudes.astype(np.float32))
    positions = [np.zeros(len(magnitudes))]
    for _ in range(steps):
        probe.apply([gradient], [parameter])
        positions.append(np.asarray(ops.convert_to_numpy(parameter), dtype=np.float64))
    return -np.diff(np.array(positions), axis=0)


def step_response(optimizer):
    """The `StepResponse` of `optimizer`: its closed form if `STEP_RESPONSES` has its class, else measured.

    Measured: the mean move over the second half of `PROBE_STEPS` probe steps
    (`measure_steps`), used at every step of the run.
    """
    optimizer = base_optimizer(optimizer)
    formula_of = STEP_RESPONSES.get(type(optimizer))
    if formula_of is not None:
        return StepResponse(formula=formula_of(optimizer), source=type(optimizer).__name__)
    moves = measure_steps(optimizer)
    return StepResponse(magnitudes=PROBE_MAGNITUDES, steps=moves[PROBE_STEPS // 2:].mean(axis=0),
                        source=f"measured ({type(optimizer).__name__})")


def logit_gradients(path, logit):
    """∂E[cost]/∂ν of one channel of each group when every logit is `logit` (λ = 1, M = 1)."""
    probability = 1.0 / (1.0 + math.exp(-logit))
    return path.polynomial.gradient(path.sizes * probability) * probability * (1.0 - probability)


def travel(path, steps, learning_sums, response, speed, strength, multiplier, initial_logit, direction=-1.0):
    """How far the logits have moved (|ν − ν₀|) at each sample point when the cost pulls them at |λ|.

    Euler steps between the sample points: over a stretch with learning-rate
    sum ΔΛ the logits move s·ΔΛ·V(ν), where V is the mean of the groups' steps
    r(s·M·|λ|·∂E/∂ν), weighted by how fast each group's logits change the cost.
    `direction` -1: down (λ > 0, the cost falls); +1: up (λ < 0).
    """
    moved = np.zeros(len(learning_sums))
    position = float(initial_logit)
    for k in range(1, len(learning_sums)):
        rate = logit_rate(path, response, speed, strength, multiplier, position, 0.5 * (steps[k - 1] + steps[k]) + 1)
        if rate <= 0:
            moved[k:] = moved[k - 1]
            break
        position += direction * (learning_sums[k] - learning_sums[k - 1]) * rate
        moved[k] = abs(position - float(initial_logit))
    return moved


def logit_rate(path, response, speed, strength, multiplier, logit, step):
    """How far the logits move per unit learning rate when all are at `logit` and the cost pulls at |λ|.

    s·V(ν): V the mean of the groups' steps r(s·M·|λ|·∂E/∂ν), weighted by how
    fast each group's logits change the cost; 0 where no group's cost moves.
    """
    gradients = np.maximum(logit_gradients(path, logit), 0.0)
    weights = path.sizes * gradients
    if weights.sum() <= 0:
        return 0.0
    return speed * float(np.sum(weights * response(speed * multiplier * abs(strength) * gradients, step=step))
                         / weights.sum())


def demand(path, schedule, steps):
    """(How far the reference path has moved at each step, in logits all moving together; its direction).

    The direction is -1 when the path ends below its start (the usual case: the
    cost falls), +1 when it ends above (a run that starts under its target).
    """
    logits = np.array([path.uniform_logit(schedule.reference(int(t))) for t in steps])
    direction = 1.0 if logits[-1] > logits[0] else -1.0
    return np.maximum(direction * (logits - logits[0]), 0.0), direction


@dataclasses.dataclass(frozen=True)
class GateSpeedPlan:
    """What the gate-speed rule found for one AL run.

    Attributes:
      speed: the chosen s (a power of two ≥ 1), or the fixed one checked.
      reachable: the logits keep up with the reference path at this s.
      needed: the reference path's whole travel, in logit units.
      travelled: how far the logits move at this s over the run, at full pull.
      shortfall: max over the run of (margin × demand) / travel, ≥ 1 when the
        logits fall behind (the factor more learning rate, or s for an
        optimizer that normalises its steps, that would keep up).
      normalising: the optimizer's step hardly depends on the gradient's size.
      total_steps: the planned AL steps.
      end_speed: s after the reference path has come to rest (`end_step`; a
        power of two, may be below 1), or None.
      end_step: the step from which `end_speed` applies, or None.
      update_travel: how far the logits move at most between two λ updates at
        the chosen s (`update_steps` steps, at full pull), in widths of the
        band (the target's ±tolerance in the uniform logit); None when not
        planned.
      capped: s was lowered below the one that covers margin × demand, so
        that `update_travel` ≤ the allowed travel per update; `reachable`
        then only asks that the logits can travel the path's whole length
        within the run.
      lambda_slows: at the plan's pull a tenth of λ moves the logits less
        than half as fast (SGD-like steps: λ sets their speed, and the
        allowed travel per update is not enforced); None when not planned.
    """

    speed: float
    reachable: bool
    needed: float
    travelled: float
    shortfall: float
    normalising: bool
    total_steps: int
    end_speed: float = None
    end_step: int = None
    update_travel: float = None
    capped: bool = False
    lambda_slows: bool = None


def band_width(path, schedule, total_steps):
    """The width of the band at the end of the run, in the uniform logit (`GatePath`)."""
    low, high = schedule.band(int(total_steps))
    return abs(path.uniform_logit(high) - path.uniform_logit(low))


def plan_gate_speed(path, schedule, optimizer, total_steps, strength, multiplier=1.0, initial_logit=2.5,
                    margin=DEFAULT_MARGIN, speed=None, response=None, end_step=None, end_slowdown=4.0,
                    update_steps=None, max_update_travel=None):
    """The gate-speed rule: the smallest power of two s ≥ 1 whose travel covers margin × demand.

    Args:
      path: `figs_tf.budget.GatePath` of the search model's cost.
      schedule: the controller's reference schedule (`reference(step)`).
      optimizer: the compiled optimizer.
      total_steps: planned AL steps.
      strength: λ at which the cost pulls the logits.
      multiplier: the gates' logit_gradient_multiplier M.
      initial_logit: where the logits start.
      margin: travel needed, as a multiple of the reference path's.
      speed: check this fixed s instead of choosing one.
      response: a `StepResponse` (None: measured on `optimizer`).
      end_step: the step at which the reference path comes to rest (None: no
        end speed is planned).
      end_slowdown: from `end_step` on, the gates get the smallest power of two
        (down to 2**-MAX_EXPONENT: it may be below 1) at which the logits, at
        the path's end, move at least 1 / end_slowdown as fast per step as at
        the chosen s.
      update_steps: optimizer steps between two λ updates (the controller's
        interval, rounded up to whole `steps_per_execution` calls: Keras calls
        back once per call); None: not planned.
      max_update_travel: with `update_steps`, where λ cannot slow the logits
        down (a tenth of `strength` moves them at least half as fast: an
        optimizer that normalises its steps at this pull), how far the logits
        may move between two updates, in band widths (`band_width`): an
        automatic s above it is halved until it is not (down to 1). The
        controller cannot react within an update, and logits that cross the
        band between two looks at it land outside it (docs/budget.md,
        "steps_per_execution").

    Returns:
      A `GateSpeedPlan`.
    """
    steps = sample_steps(total_steps)
    sums = learning_rate_sums(optimizer, steps)
    response = step_response(optimizer) if response is None else response
    distances, direction = demand(path, schedule, steps)
    wanted = margin * distances

    def check(candidate):
        moved = travel(path, steps, sums, response, candidate, strength, multiplier, initial_logit, direction)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(wanted > 0, wanted / np.maximum(moved, 1e-300), 0.0)
        return moved, float(ratios.max()) if len(ratios) else 0.0

    candidates = [float(speed)] if speed is not None else [2.0 ** k for k in range(MAX_EXPONENT + 1)]
    for candidate in candidates:
        moved, shortfall = check(candidate)
        if shortfall <= 1.0:
            break
    reachable = shortfall <= 1.0
    update_travel, capped, lambda_slows = None, False, None

    def pull_hardly_matters(candidate):
        def rate(pull):
            return logit_rate(path, response, candidate, pull, multiplier, initial_logit, 1 + int(total_steps) // 2)
        return rate(strength / 10) > 0.5 * rate(strength)

    if update_steps is not None:
        width = band_width(path, schedule, total_steps)

        def per_update(candidate, moved):
            # the fastest stretch while the logits are still on the path's way (SGD's speed depends on ν)
            within = np.flatnonzero(moved <= distances.max() + 1e-12)
            last = min(len(moved) - 1, int(within[-1]) + 1) if len(within) else 1
            speeds = np.diff(moved[:last + 1]) / np.maximum(np.diff(steps[:last + 1]), 1)
            return float(speeds.max(initial=0.0)) * int(update_steps) / max(width, 1e-12)

        update_travel = per_update(candidate, moved)
        # only where λ cannot slow the logits: at the pull of the plan an optimizer that normalises its
        # steps moves them about as fast at a tenth of λ (Adam, and RMSprop once the gradient is well
        # above √ε); under SGD-like steps λ sets their speed, and the controller lowers it
        lambda_slows = not pull_hardly_matters(candidate)
        if speed is None and max_update_travel is not None and not lambda_slows:
            while update_travel > max_update_travel and candidate > 1:
                candidate /= 2
                capped = True
                moved, shortfall = check(candidate)
                update_travel = per_update(candidate, moved)
            if capped:
                reachable = bool(moved[-1] >= distances.max())
    end_speed = None
    if end_step is not None and 0 < end_step < total_steps:
        # the speed of the logits where the path comes to rest (not a travel over the rest of the run:
        # holding the band keeps them there, and a travel away from it weighs in where the cost's
        # gradient differs); halved while it is at least 1 / end_slowdown of the ramp's, below 1 too:
        # an optimizer fast enough at s = 1 (SGD at a high rate) would otherwise keep its full speed
        rest = path.uniform_logit(schedule.reference(int(total_steps)))

        def end_rate(candidate):
            return logit_rate(path, response, candidate, strength, multiplier, rest, int(end_step) + 1)

        # the rate ∝ s (normalised steps) or s² (SGD-like) lands on a quarter up to ε terms (Adam's step
        # is x/(x + ε)) and rounding: 0.1 % slack, far below the factor 2 between candidates
        enough = end_rate(candidate) / end_slowdown * (1 - 1e-3)
        end_speed = candidate
        for k in range(int(math.floor(math.log2(candidate))) - 1, -MAX_EXPONENT - 1, -1):
            if end_rate(2.0 ** k) < enough:
                break
            end_speed = 2.0 ** k
    return GateSpeedPlan(speed=candidate, reachable=reachable, needed=float(distances.max()),
                         travelled=float(moved[-1]), shortfall=shortfall,
                         normalising=response.normalises(), total_steps=int(total_steps),
                         end_speed=end_speed, end_step=None if end_speed is None else int(end_step),
                         update_travel=update_travel, capped=capped, lambda_slows=lambda_slows)


# --- optimizer state that follows a change of the gate speed ---------------------------------
#
# Changing s to ρ·s divides θ by ρ (ν = s·θ does not move) and multiplies θ's gradient by ρ
# (∂L/∂θ = s·∂L/∂ν). A slot that holds the k-th power of the gradient's scale is multiplied by ρᵏ,
# so the optimizer's state is the one it would have had if the run had been at the new s from its
# first step (exactly so under constant gradients; a power of two makes each product exact), and
# the logits move at the new speed from the first step after the switch. Left alone, Adam's second
# moment keeps the old gradients for ~1 / (1 − β2) steps and the logits crawl (docs/budget.md,
# "Gate speed"). Keys are exact types, like STEP_RESPONSES: a subclass may update differently.
STATE_SCALINGS = {
    keras.optimizers.SGD: {"momentums": 1},  # velocity: a sum of lr·g
    keras.optimizers.Adam: {"_momentums": 1, "_velocities": 2, "_velocity_hats": 2},
    keras.optimizers.AdamW: {"_momentums": 1, "_velocities": 2, "_velocity_hats": 2},
    keras.optimizers.Nadam: {"_momentums": 1, "_velocities": 2},
    keras.optimizers.Adamax: {"_m": 1, "_u": 1},  # first moment, infinity norm
    # mean square ρ², mean gradient ρ; the momentum buffer sums normalised increments: unchanged
    keras.optimizers.RMSprop: {"_velocities": 2, "_average_gradients": 1, "_momentums": 0},
    # the accumulator starts at initial_accumulator_value: only the sum of squares on top of it scales
    keras.optimizers.Adagrad: {"_accumulators": lambda value, ratio, optimizer: (
        optimizer.initial_accumulator_value + ratio ** 2 * (value - optimizer.initial_accumulator_value))},
    keras.optimizers.Lion: {"_momentums": 1},  # its step is a sign: any positive factor would do
}
# what every Keras optimizer may hold per variable: the EMA copy of θ (use_ema) and the gradient sum
# (gradient_accumulation_steps)
_BASE_SCALINGS = {"_model_variables_moving_average": -1, "_accumulated_gradients": 1}


def register_state_scaling(optimizer_class, scalings):
    """Says how an optimizer's per-variable state follows a change of the gate speed.

    Args:
      optimizer_class: the optimizer's class (exact type).
      scalings: {attribute: k}: the attribute is a list with one slot per
        trainable variable (indexed by `optimizer._get_variable_index`), and a
        slot holding the k-th power of the gradient's scale is multiplied by
        ρᵏ when s becomes ρ·s (0: left as it is); or {attribute: f}, with
        f(value, ρ, optimizer) the slot's new value (a tensor). The EMA copy
        and gradient accumulators of the base class need no entry.

    Example:

    >>> figs_tf.gate_speed.register_state_scaling(MyAdam, {"_m": 1, "_v": 2})
    """
    STATE_SCALINGS[optimizer_class] = dict(scalings)


def per_variable_slots(optimizer):
    """Names of the optimizer's attributes that hold one state variable (or None) per trainable variable."""
    count = len(getattr(optimizer, "_trainable_variables", ()))
    names = []
    for name, value in vars(optimizer).items():
        if (isinstance(value, (list, tuple)) and count and len(value) == count and name != "_trainable_variables"
                and any(isinstance(v, keras.Variable) for v in value)
                and all(v is None or isinstance(v, keras.Variable) for v in value)):
            names.append(name)
    return names


def rescale_optimizer_state(optimizer, variable, ratio):
    """Rescales the optimizer's state of `variable` (θ) after s became `ratio` × s (θ became θ / ratio).

    Covered: the EMA copy of θ (`use_ema`) and accumulated gradients of any
    Keras optimizer, and the slots of the optimizers in `STATE_SCALINGS`
    (SGD, Adam, AdamW, Nadam, Adamax, RMSprop, Adagrad, Lion; the inner
    optimizer of a LossScaleOptimizer). Any other per-variable state is left
    as it is, with a warning: the speed of the logits after the change then
    differs from the rule's (docs/budget.md).

    Args:
      optimizer: the compiled optimizer (None, or one not built yet: nothing to do).
      variable: θ, the gates' trainable variable.
      ratio: s_new / s_old.

    Returns:
      The names of the rescaled slot lists.
    """
    optimizer = base_optimizer(optimizer)
    if optimizer is None or not getattr(optimizer, "built", False) or ratio == 1:
        return []
    try:
        index = optimizer._get_variable_index(variable)  # pylint: disable=protected-access
    except (KeyError, AttributeError):
        return []  # this optimizer does not train θ
    known = STATE_SCALINGS.get(type(optimizer))
    scalings = dict(_BASE_SCALINGS, **(known or {}))
    unknown = [name for name in per_variable_slots(optimizer) if name not in scalings]
    if unknown:
        warnings.warn(
            f"figs_tf: the gate speed changed, but figs_tf does not know how the state {unknown} of the optimizer "
            f"{type(optimizer).__name__} scales with the gradient, and left it as it was: the gate logits will move "
            "at another speed than the rule's until that state has forgotten the old gradients. Covered: "
            f"{sorted(cls.__name__ for cls in STATE_SCALINGS)}; for another optimizer call "
            "figs_tf.gate_speed.register_state_scaling(type(optimizer), {'slot_list': power, ...}).", stacklevel=3)
    rescaled = []
    for name, power in scalings.items():
        slots = getattr(optimizer, name, None) or []
        slot = slots[index] if index < len(slots) else None
        if slot is None or power == 0:
            continue
        if callable(power):
            slot.assign(ops.cast(power(ops.convert_to_tensor(slot), float(ratio), optimizer), slot.dtype))
        else:
            slot.assign(ops.multiply(slot, ops.cast(float(ratio) ** power, slot.dtype)))
        rescaled.append(name)
    return rescaled


def average_to_current(optimizer, variable):
    """Sets the optimizer's EMA copy of `variable` (use_ema) to its current value; no EMA: nothing.

    `finalize_variable_values` (called by `fit` at its end) then leaves the
    variable where it is.
    """
    optimizer = base_optimizer(optimizer)
    if optimizer is None or not getattr(optimizer, "use_ema", False) or not getattr(optimizer, "built", False):
        return
    try:
        index = optimizer._get_variable_index(variable)  # pylint: disable=protected-access
    except (KeyError, AttributeError):
        return
    average = optimizer._model_variables_moving_average[index]  # pylint: disable=protected-access
    if average is not None:
        average.assign(variable)
