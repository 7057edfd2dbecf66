"""The gate-speed rule: how far an optimizer moves the gate logits, and the s that makes it far enough.

The truths these tests check against: Keras's own optimizers stepping a
variable (the closed-form step responses), a step-by-step sum of the
learning rate (the schedule integral), training itself (the planned travel),
and the closed form of a cost that is linear in one group's width (the rule's
choice of s, computed by hand).
"""

import math

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf import budget
from figs_tf import gate_speed
from figs_tf.wrapping import cost_layer_of, gates_of

from helpers import to_numpy

OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.1),
    "sgd_momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "sgd_nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: keras.optimizers.Adam(1e-3),
    "adam_paper": lambda: keras.optimizers.Adam(1.0, epsilon=1.0),  # ε = 1: the step grows over ~1/(1-β2) steps
    "adamw": lambda: keras.optimizers.AdamW(1e-3),
    "adamax": lambda: keras.optimizers.Adamax(1e-3),
    "rmsprop": lambda: keras.optimizers.RMSprop(1e-3),
    "rmsprop_momentum_centered": lambda: keras.optimizers.RMSprop(1e-3, momentum=0.5, centered=True),
    "lion": lambda: keras.optimizers.Lion(1e-4),
    "adagrad": lambda: keras.optimizers.Adagrad(1e-2),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_closed_form_step_responses_are_the_optimizers_own_steps(name):
    """r(x, t) of each closed form against the moves Keras's optimizer makes, step by step."""
    optimizer = OPTIMIZERS[name]()
    magnitudes = np.logspace(-6, 2, 9)
    measured = gate_speed.measure_steps(optimizer, magnitudes, steps=40)
    response = gate_speed.step_response(optimizer)
    assert response.formula is not None, name
    predicted = np.array([response(magnitudes, step=t) for t in range(1, 41)])
    np.testing.assert_allclose(predicted, measured, rtol=2e-3, atol=1e-9)


def test_an_optimizer_without_a_closed_form_is_measured():
    class ScaledSGD(keras.optimizers.SGD):  # a user's subclass: its step is not assumed to be SGD's
        def update_step(self, gradient, variable, learning_rate):
            super().update_step(gradient * 3.0, variable, learning_rate)

    response = gate_speed.step_response(ScaledSGD(0.1))
    assert response.formula is None and "measured" in response.source
    np.testing.assert_allclose(response(np.array([1e-4, 1e-2, 1.0])), [3e-4, 3e-2, 3.0], rtol=1e-5)
    assert not response.normalises()
    assert gate_speed.step_response(keras.optimizers.Adam(1e-3)).normalises()


@pytest.mark.parametrize("total", [100, 3000])
def test_learning_rate_sums_integrate_the_schedule(total):
    """Against each schedule's formula summed step by step (Keras evaluates it at the step count)."""
    t = np.arange(total, dtype=np.float64)
    warm = total // 10
    cosine = np.where(t < warm, 0.02 + (0.05 - 0.02) * t / warm,
                      0.05 * 0.5 * (1 + np.cos(np.pi * np.minimum(t - warm, total) / total)))
    cases = [
        (0.01, np.full(total, 0.01)),
        (keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=total // 3, decay_rate=0.5),
         0.1 * 0.5 ** (t / (total // 3))),
        (keras.optimizers.schedules.CosineDecay(0.02, total, warmup_target=0.05, warmup_steps=warm), cosine),
        (keras.optimizers.schedules.PiecewiseConstantDecay([total // 2], [0.1, 0.01]),
         np.where(t <= total // 2, 0.1, 0.01)),
    ]
    steps = gate_speed.sample_steps(total)
    assert steps[0] == 0 and steps[-1] == total and len(steps) <= gate_speed.MAX_SAMPLES + 1
    for rate, per_step in cases:
        brute = np.concatenate([[0.0], np.cumsum(per_step)])[steps]  # Σ_{t < step} lr(t)
        sums = gate_speed.learning_rate_sums(keras.optimizers.Lion(rate), steps)
        if total <= gate_speed.MAX_SAMPLES:
            np.testing.assert_allclose(sums, brute, rtol=1e-5)
        else:  # trapezoids between samples: a staircase's jump lands within one sample interval
            jump = 0.09 * (total / gate_speed.MAX_SAMPLES)
            np.testing.assert_allclose(sums, brute, rtol=2e-3, atol=jump)


# --- a linear cost: one searched Dense layer ----------------------------------------------------

INPUTS, WIDTH, OUTPUTS = 16, 8, 4
PER_CHANNEL = INPUTS + 1 + OUTPUTS  # parameters a channel of the hidden layer costs: kernel in, bias, kernel out


def dense_net():
    inputs = keras.Input((INPUTS,))
    hidden = keras.layers.Dense(WIDTH, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(OUTPUTS, name="out")(hidden))


def zero_task_loss(y_true, y_pred):
    return 0.0 * keras.ops.mean(y_pred)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _train_cost_only(optimizer, speed, strength, steps, initial_logit):
    """Mean gate logit after `steps` steps in which only the cost λ·E[params] acts."""
    keras.utils.set_random_seed(0)
    search = figs_tf.wrap(dense_net(), cost="params", strength=strength, gate_speed=speed, seed=0,
                          initial_logit=initial_logit)
    assert figs_tf.supernet_cost(search, "params") == PER_CHANNEL * WIDTH + OUTPUTS  # the cost is linear in w
    search.compile(optimizer=optimizer, loss=zero_task_loss)
    x = np.zeros((steps, INPUTS), np.float32)
    search.fit(x, np.zeros((steps, OUTPUTS), np.float32), batch_size=1, epochs=1, verbose=0, shuffle=False)
    logits = to_numpy(gates_of(search).logits)
    assert np.ptp(logits) < 1e-5  # one gradient for all: the logits move together
    return search, float(logits.mean())


def _planned_travel(search, optimizer, speed, strength, steps, initial_logit):
    path = budget.GatePath(cost_layer_of(search).polynomial, gates_of(search).group_sizes)
    points = gate_speed.sample_steps(steps)
    sums = gate_speed.learning_rate_sums(optimizer, points)
    return gate_speed.travel(path, points, sums, gate_speed.step_response(optimizer), speed, strength,
                             1.0, initial_logit)[-1]


def _by_hand(name, speed, strength, steps, initial_logit):
    """The optimizer's update on θ written out, gradient s·λ·PER_CHANNEL·σ'(ν), ν = s·θ; returns ν₀ − ν."""
    theta, velocity, m, v = initial_logit / speed, 0.0, 0.0, 0.0
    for t in range(1, steps + 1):
        nu = speed * theta
        gradient = speed * strength * PER_CHANNEL * _sigmoid(nu) * (1 - _sigmoid(nu))
        if name == "adam":
            m, v = 0.9 * m + 0.1 * gradient, 0.999 * v + 0.001 * gradient ** 2
            theta -= 1e-3 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (math.sqrt(v) + 1e-7)
        elif name == "lion":  # the sign of an interpolation of momentum and gradient (β1 0.9, β2 0.99)
            theta -= 1e-4 * np.sign(0.9 * m + 0.1 * gradient)
            m = 0.99 * m + 0.01 * gradient
        else:
            momentum = 0.9 if name == "sgd_momentum" else 0.0
            rate = 0.05 if name == "sgd_momentum" else 0.1
            velocity = momentum * velocity - rate * gradient
            theta += velocity
    return initial_logit - speed * theta


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("name, speed, initial_logit", [
    ("adam", 8.0, 0.8),  # ν from 0.8 to -0.8: the pull λ·∂E/∂ν = λ·21·σ'(ν) stays within 15 %
    ("sgd_momentum", 4.0, 2.5),
    ("sgd", 8.0, 2.5),
    ("lion", 64.0, 2.5),  # s·lr = 0.0064 per step whatever the pull: 1.28 in 200 steps
])
def test_a_logit_moves_the_planned_distance(name, speed, initial_logit):
    """Training moves the logits as far as the plan says, and as the optimizer's update written out does."""
    steps, strength = 200, 1e-3
    search, end = _train_cost_only(OPTIMIZERS[name](), speed, strength, steps, initial_logit)
    moved = initial_logit - end
    planned = _planned_travel(search, OPTIMIZERS[name](), speed, strength, steps, initial_logit)
    assert moved > 0.5  # far enough for the comparison to mean something
    assert moved == pytest.approx(_by_hand(name, speed, strength, steps, initial_logit), rel=1e-3)
    # the plan: one Euler step per optimizer step, with the step response of a constant gradient
    assert planned == pytest.approx(moved, rel=0.02)
    if name in ("adam", "lion"):  # an optimizer that normalises its steps: s × Σ lr, whatever λ
        rate = 1e-3 if name == "adam" else 1e-4
        assert planned == pytest.approx(speed * rate * steps, rel=1e-3)


@pytest.mark.tensorflow_only
def test_adam_goes_further_than_planned_while_the_pull_grows():
    """From ν = 2.5 the cost's pull grows ~3x as the logits fall (σ' rises): Adam's second moment
    still averages the smaller early gradients, so its steps exceed the learning rate and the
    logits travel further than the plan's s × Σ lr (which is a lower bound)."""
    steps, strength, speed = 200, 1e-3, 16.0
    search, end = _train_cost_only(OPTIMIZERS["adam"](), speed, strength, steps, 2.5)
    moved = 2.5 - end
    assert moved == pytest.approx(_by_hand("adam", speed, strength, steps, 2.5), rel=1e-3)
    planned = _planned_travel(search, OPTIMIZERS["adam"](), speed, strength, steps, 2.5)
    assert planned == pytest.approx(speed * 1e-3 * steps, rel=1e-3)
    assert 1.0 < moved / planned < 1.3


def test_the_rule_picks_the_smallest_power_of_two_that_keeps_up_with_the_path():
    """Adam (steps ≈ lr): the logits have moved s·Σlr by each step; the path's position is the
    uniform logit of its reference cost, here in closed form: 4 + 168·σ(ν) = cost."""
    search = figs_tf.wrap(dense_net(), cost="params")
    gates, polynomial = gates_of(search), cost_layer_of(search).polynomial
    path = budget.GatePath(polynomial, gates.group_sizes)
    settings = figs_tf.ControllerSettings()
    start = budget.initial_exported_cost(figs_tf.channel_graph_of(search), gates, "params")
    target, total = 0.4 * (PER_CHANNEL * WIDTH + OUTPUTS), 1000
    schedule = budget.TargetSchedule(target, start, total, settings, path)
    optimizer = keras.optimizers.Adam(1e-3)
    plan = gate_speed.plan_gate_speed(path, schedule, optimizer, total, strength=1e-3, initial_logit=2.5,
                                      margin=2.0)

    def uniform_logit(cost):
        fraction = (cost - OUTPUTS) / (PER_CHANNEL * WIDTH)
        return math.log(fraction / (1 - fraction))

    worst = 0.0
    for t in range(1, total + 1):
        demand = uniform_logit(start) - uniform_logit(schedule.reference(t))
        worst = max(worst, 2.0 * demand / (1e-3 * t))  # Σ_{t' < t} lr = 1e-3·t
    by_hand = 2.0 ** math.ceil(math.log2(worst))
    assert plan.speed == by_hand and plan.reachable
    assert plan.needed == pytest.approx(uniform_logit(start) - uniform_logit(target * 1.02), rel=1e-3)
    slower = gate_speed.plan_gate_speed(path, schedule, optimizer, total, strength=1e-3, initial_logit=2.5,
                                        margin=2.0, speed=by_hand / 2)
    assert not slower.reachable and slower.shortfall > 1


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("name, slowdown, strength", [("adam", 4.0, 1e-3), ("sgd_momentum", 2.0, 1e-3),
                                                      ("sgd_momentum", 2.0, 2e-2)])
def test_the_end_speed_moves_the_logits_a_quarter_as_fast(name, slowdown, strength):
    """Once the path is at rest the gates get the smallest power of two at which the logits, at the
    path's end, move at least a quarter as fast as at the ramp's s: s/4 when the optimizer normalises
    its steps (Adam), s/2 when the step grows with the gradient (SGD: ν moves s² as fast), below 1
    where s is 1. Checked against the optimizer's own steps from the rest logit."""
    search = figs_tf.wrap(dense_net(), cost="params")
    gates, polynomial = gates_of(search), cost_layer_of(search).polynomial
    path = budget.GatePath(polynomial, gates.group_sizes)
    settings = figs_tf.ControllerSettings()
    start = budget.initial_exported_cost(figs_tf.channel_graph_of(search), gates, "params")
    total = 1000
    schedule = budget.TargetSchedule(0.4 * (PER_CHANNEL * WIDTH + OUTPUTS), start, total, settings, path)
    plan = gate_speed.plan_gate_speed(path, schedule, OPTIMIZERS[name](), total, strength=strength,
                                      initial_logit=2.5, end_step=600, end_slowdown=4.0)
    assert plan.end_speed == plan.speed / slowdown and plan.end_step == 600
    rest = path.uniform_logit(schedule.reference(total))

    def moved(speed):  # the logits' move in a few steps from the rest logit, by the optimizer itself;
        # at λ/100 SGD's logits stay where σ' is the rest's (the ratio of SGD's or Adam's moves does not
        # depend on λ otherwise)
        keras.backend.clear_session()
        return rest - _train_cost_only(OPTIMIZERS[name](), speed, strength / 100, 30, rest)[1]

    ramp = moved(plan.speed)
    assert moved(plan.end_speed) / ramp == pytest.approx(0.25, rel=0.05)
    assert moved(plan.end_speed / 2) / ramp < 0.25 * 0.7  # the next power of two down is too slow
    if strength > 1e-3:  # SGD fast enough at the paper's s = 1: the gates get slower than the paper's
        assert plan.speed == 1.0 and plan.end_speed == 0.5


# --- a change of s inside a run: the optimizer's state follows --------------------------------

SWITCH_OPTIMIZERS = ["adam", "sgd_momentum", "rmsprop", "adamw", "adamax", "lion", "adagrad"]


def _moves_under_a_constant_pull(make_optimizer, speeds, steps, switch=None, rescale=True):
    """ν's move per step when the loss is c·Σν (θ's gradient c·s), s = speeds[0], then speeds[1] from `switch`."""
    gates = figs_tf.MaskLayer(group_sizes=[3], gate_speed=speeds[0])
    optimizer = make_optimizer()
    positions = [to_numpy(gates.logits)]
    for step in range(steps):
        if step == switch:
            gates.set_gate_speed(speeds[1], optimizer=optimizer if rescale else None)
        gradient = np.full(3, 1e-3 * gates.gate_speed, np.float32)
        optimizer.apply([keras.ops.convert_to_tensor(gradient)], [gates.logit_parameters])
        positions.append(to_numpy(gates.logits))
    return -np.diff(np.array(positions)[:, 0])


@pytest.mark.parametrize("name", SWITCH_OPTIMIZERS)
def test_after_a_speed_change_the_logits_move_as_in_a_fresh_run_at_the_new_speed(name):
    """s = 16 for 12 steps, then 4: every step after the switch moves ν as far as the same step of a run at
    s = 4 from the start (the rescaled state is the one that run has: the gradient on θ is s times that on
    ν). The docs' rule is then the fresh runs' ratio: 1/4 when the optimizer normalises its steps, 1/16
    for SGD. Left alone, the state of Adam-like optimizers still holds the old gradients."""
    make = OPTIMIZERS[name]
    before, after = 12, 6
    switched = _moves_under_a_constant_pull(make, (16.0, 4.0), before + after, switch=before)[before:]
    fresh = _moves_under_a_constant_pull(make, (4.0, 4.0), before + after)[before:]
    np.testing.assert_allclose(switched, fresh, rtol=2e-3)
    if name in ("adam", "rmsprop"):
        left = _moves_under_a_constant_pull(make, (16.0, 4.0), before + after, switch=before, rescale=False)[before:]
        assert left.mean() < 0.9 * fresh.mean()


def test_an_optimizer_state_figs_cannot_rescale_is_named_in_a_warning():
    gates = figs_tf.MaskLayer(group_sizes=[3], gate_speed=16.0)
    optimizer = keras.optimizers.Adadelta(1.0)
    optimizer.apply([keras.ops.ones((3,))], [gates.logit_parameters])
    logits = to_numpy(gates.logits)
    with pytest.warns(UserWarning, match=r"_accumulated_grads.*Adadelta"):
        gates.set_gate_speed(4.0, optimizer=optimizer)
    np.testing.assert_array_equal(to_numpy(gates.logits), logits)  # the change itself still holds ν


@pytest.mark.tensorflow_only
def test_a_speed_change_at_learning_rate_zero_leaves_the_logits_with_ema_on():
    """Adam(0, use_ema=True): fit at s = 16, set_gate_speed to 4, fit again. fit writes the moving average
    of θ back at its end; it was rescaled with θ, so ν is what it was, bit for bit."""
    search = figs_tf.wrap(dense_net(), cost="params", strength=1e-3, gate_speed=16.0, seed=0)
    search.compile(optimizer=keras.optimizers.Adam(0.0, use_ema=True, ema_momentum=0.99), loss=zero_task_loss)
    x, y = np.zeros((8, INPUTS), np.float32), np.zeros((8, OUTPUTS), np.float32)
    gates = gates_of(search)
    gates.set_logits(np.linspace(-2.0, 3.0, WIDTH))
    search.fit(x, y, batch_size=4, epochs=1, verbose=0)
    before = to_numpy(gates.logits)
    figs_tf.set_gate_speed(search, 4.0)
    search.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert figs_tf.get_gate_speed(search) == 4.0
    np.testing.assert_array_equal(to_numpy(gates.logits), before)
    np.testing.assert_array_equal(before, np.linspace(-2.0, 3.0, WIDTH).astype(np.float32))
