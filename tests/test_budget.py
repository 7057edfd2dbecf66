"""Budget targeting: a target instead of a λ sweep, and a Pareto set from one run.

The AL runs here are short (192 steps on 3,072 real Fashion-MNIST images), so
every gate logit still moves at about the same speed (Adam normalises each
step) and the exported widths ⌊Σπ⌋ of all groups drop at nearly the same
moments: near the target the exported cost moves in steps of a few per cent.
The supernet below has five convolutions of unlike widths, so those steps stay
under the benchmark's ±2 % band (the demo's 16/32/64 network jumps 5-7 % at
once near half its size; docs/results.md has the numbers). Where such a run
lands within the band depends on the CPU's kernels, so the tests here check
LANDING_TOLERANCE (below), and the ±2 % landing is measured by
benchmarks/budget.py.
"""

import json
import math
import os
import warnings

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf import budget
from figs_tf.cost import cost_range
from figs_tf.mask_layer import hard_widths_numpy
from figs_tf.train import fashion_mnist
from figs_tf.wrapping import cost_layer_of, gates_of
from helpers import residual_concat_depthwise_model, small_cnn

pytestmark = pytest.mark.tensorflow_only  # fit-based AL runs; the controller itself is backend-free

WIDTHS = (16, 24, 40, 56, 72)
EXAMPLES, BATCH, EPOCHS = 3072, 32, 2  # 192 AL steps
# What a test can keep on any CPU. The ±2 % landing is a benchmark (benchmarks/budget.py, its
# numbers in docs/results.md); these short runs land where floating-point differences between
# CPU kernels put them. Measured on one AMD EPYC (tests/test_budget.py's runs, exported / target - 1,
# TF_ENABLE_ONEDNN_OPTS=0 | =1): one AL run params +1.39 | +1.39 %, flops +0.61 | +0.61 %; the
# user's optimizer Adam(1e-3) -2.09 | +1.39 %, SGD(0.05, momentum 0.9) -1.34 | +2.84 %,
# Lion(cosine 1e-4) +0.43 | +0.58 %; started under the target -1.43 | -1.43 %. Switching kernels
# moved a landing by up to 4.2 points (SGD); the worst was 2.84 % off. ±5 % leaves two points over
# that and still fails a controller that misses (λ held at 0 stays 28 % under its target).
LANDING_TOLERANCE = 0.05


def budget_supernet(widths=WIDTHS):
    """Conv-BN-ReLU ×5 with two max-pools, global pooling and a classifier."""
    return small_cnn(widths, pools=(0, 2), batchnorm_momentum=0.9)


def _data():
    try:
        images, labels = fashion_mnist.load_fashion_mnist("train")
    except RuntimeError as error:
        pytest.skip(f"Fashion-MNIST is not available here: {error}")
    return images[:EXAMPLES].astype("float32") / 255.0, labels[:EXAMPLES]


def _compile(search, learning_rate=0.02, decay_steps=None):
    # AL runs decay the learning rate (the paper halves it every 35 epochs): the gates'
    # drift at the end of a run is what the controller cannot push back up
    rate = learning_rate if decay_steps is None else keras.optimizers.schedules.CosineDecay(learning_rate,
                                                                                          decay_steps)
    search.compile(optimizer=keras.optimizers.Adam(rate),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


# --- the target travels with the model ------------------------------------------------------


def test_target_survives_get_config_and_save_load(tmp_path):
    search = figs_tf.wrap(small_cnn(), cost="flops", target=300_000)
    assert figs_tf.get_target(search) == 300_000
    assert cost_layer_of(search).get_config()["target"] == 300_000
    path = os.path.join(tmp_path, "search.keras")
    search.save(path)
    loaded = keras.models.load_model(path)
    assert figs_tf.get_target(loaded) == 300_000
    assert cost_layer_of(loaded).metric == "flops"
    # no target: None, and an old config without the key loads as None
    plain = figs_tf.wrap(small_cnn())
    assert figs_tf.get_target(plain) is None
    config = cost_layer_of(plain).get_config()
    del config["target"]
    assert figs_tf.CostLayer.from_config(config).target is None


def test_cost_callback_target_overrides_and_is_stored_on_the_model():
    x = np.random.default_rng(0).random((64, 28, 28, 1)).astype("float32")
    y = np.zeros(64, dtype="int64")
    search = figs_tf.wrap(small_cnn(), cost="params", target=15_000)
    _compile(search)
    controller = figs_tf.BudgetController(target=12_000)
    reporter = figs_tf.CostCallback(None, ("params",), False)  # positional args as before
    history = search.fit(x, y, batch_size=16, epochs=1, callbacks=[controller, reporter], verbose=0)
    assert figs_tf.get_target(search) == 12_000
    assert history.history["figs_target_params"] == [12_000]
    assert "figs_strength" in history.history and "figs_reference_params" in history.history
    assert controller.trace and controller.trace[-1]["step"] == 4


def test_cost_callback_refuses_a_budget_that_no_controller_steers():
    # a budget on the model with nobody to steer λ is refused before the first step
    search = figs_tf.wrap(small_cnn(), cost="params", target=15_000)
    _compile(search)
    with pytest.raises(ValueError, match="no figs_tf.BudgetController steers"):
        search.fit(np.zeros((16, 28, 28, 1), "float32"), np.zeros(16, "int64"), verbose=0,
                   callbacks=[figs_tf.CostCallback()])
    assert int(search.optimizer.iterations.numpy()) == 0


@pytest.mark.parametrize("target, problem, fix", [
    (0, "positive", "positive budget"),
    (-5, "positive", "positive budget"),
    (float("nan"), "positive", "positive budget"),
    ("many", "a number", "number"),
    (10, "below the smallest network", "at least"),
    (10**9, "above the supernet", "below"),
])
def test_unreachable_or_invalid_targets_are_refused_with_the_fix(target, problem, fix):
    with pytest.raises(ValueError) as wrap_error:
        figs_tf.wrap(small_cnn(), cost="params", target=target)
    assert problem in str(wrap_error.value) and fix in str(wrap_error.value)
    search = figs_tf.wrap(small_cnn(), cost="params")
    search.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError) as callback_error:
        search.fit(np.zeros((4, 28, 28, 1), "float32"), np.zeros(4, "int64"), verbose=0,
                   callbacks=[figs_tf.BudgetController(target=target)])
    assert problem in str(callback_error.value)


def test_smallest_exportable_cost_is_the_network_with_every_gate_off():
    model = small_cnn()
    search = figs_tf.wrap(model)
    smallest, supernet = cost_range(figs_tf.channel_graph_of(search), "params")
    assert supernet == model.count_params()
    gates_of(search).set_logits(np.full(gates_of(search).logits.shape, -30.0, "float32"))
    assert smallest == figs_tf.exported_network(search).cost("params")
    figs_tf.wrap(model, target=smallest)  # reachable, accepted
    with pytest.raises(ValueError, match=f"at least {smallest:,}"):
        figs_tf.wrap(model, target=smallest - 1)


def test_host_side_widths_follow_the_one_export_rule():
    """The controller's NumPy widths equal the backend rule (floor, keep-one, ties)."""
    rng = np.random.default_rng(0)
    for model in (small_cnn(), residual_concat_depthwise_model()):
        search = figs_tf.wrap(model)
        gates = gates_of(search)
        graph = figs_tf.channel_graph_of(search)
        for trial in range(40):
            logits = rng.normal(rng.uniform(-3, 3), 2, gates.logits.shape).astype("float32")
            if trial % 2:
                logits[rng.random(logits.shape) < 0.7] = -30.0  # empty groups: the keep-one rule
            if trial % 4 == 3:
                logits[rng.random(logits.shape) < 0.2] = -200.0  # fast gates pulled far down: exp(200) overflows
            gates.set_logits(logits)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert hard_widths_numpy(logits, gates.group_sizes, gates.keep_one_sets) == \
                    gates.exported_widths()
            assert budget.exported_cost_at(graph, gates, "flops") == \
                figs_tf.exported_network(search).cost("flops")


# --- the controller -------------------------------------------------------------------------


def test_controller_state_is_rederived_after_a_restart():
    """A resumed fit keeps λ (a weight) and the step (the optimizer's counter)."""
    x = np.random.default_rng(0).random((64, 28, 28, 1)).astype("float32")
    y = np.zeros(64, dtype="int64")
    search = figs_tf.wrap(small_cnn(), cost="params", target=15_000)
    _compile(search)
    settings = figs_tf.ControllerSettings(total_steps=16, warmup=0.0)
    search.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[figs_tf.BudgetController(settings=settings)])
    strength = figs_tf.get_strength(search)
    assert strength != pytest.approx(1.0 / figs_tf.supernet_cost(search, "params"))  # λ moved
    resumed = figs_tf.BudgetController(settings=settings)
    resumed.set_model(search)
    resumed.params = {"epochs": 1, "steps": 4}
    resumed.on_train_begin()
    assert figs_tf.get_strength(search) == pytest.approx(strength)  # not reset to λ0
    assert resumed._step() == 4  # pylint: disable=protected-access
    assert resumed.strength_controller.previous is None  # the only memory not restored: one P step


class _Preempt(keras.callbacks.Callback):
    """Records λ, the gate speed and logits when training starts; stops it after `epoch` (once
    BackupAndRestore saved it)."""

    def __init__(self, epoch=None):
        super().__init__()
        self.epoch = epoch

    def _state(self):
        return (figs_tf.get_strength(self.model), figs_tf.get_gate_speed(self.model),
                keras.ops.convert_to_numpy(gates_of(self.model).logits).copy())

    def on_train_begin(self, logs=None):
        self.strength_at_start, self.speed_at_start, self.logits_at_start = self._state()

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.strength, self.speed, self.logits = self._state()
            raise RuntimeError("preempted")


def test_preempted_al_resumes_with_lambda_and_step_from_backup_and_restore(tmp_path):
    x = np.random.default_rng(0).random((64, 28, 28, 1)).astype("float32")
    y = np.random.default_rng(1).integers(0, 10, 64)
    backup = os.path.join(tmp_path, "backup")

    def run(*extra):
        keras.utils.set_random_seed(0)
        search = figs_tf.wrap(small_cnn(), cost="params", target=15_000, seed=0)
        _compile(search)
        callback = figs_tf.BudgetController(settings=figs_tf.ControllerSettings(warmup=0.0))
        # the controller before BackupAndRestore: its λ0 is overwritten by the restored weights
        search.fit(x, y, batch_size=16, epochs=4, verbose=0,
                   callbacks=[callback, keras.callbacks.BackupAndRestore(backup), *extra])
        return search, callback

    preempt = _Preempt(epoch=1)
    with pytest.raises(RuntimeError, match="preempted"):
        run(preempt)
    probe = _Preempt()
    search, callback = run(probe)
    assert preempt.strength != pytest.approx(1.0 / figs_tf.supernet_cost(search, "params"))  # λ had moved
    assert probe.strength_at_start == pytest.approx(preempt.strength)  # and came back with the weights
    assert callback.trace[0]["step"] == 9  # the schedule goes on from the restored optimizer step
    # the gate speed chosen at the first start comes back with the weights, and so do the logits, exactly
    assert preempt.speed > 1 and probe.speed_at_start == preempt.speed
    np.testing.assert_array_equal(probe.logits_at_start, preempt.logits)
    # (the controller runs before the restore here, so it chose again: the same s, then overwritten)
    assert callback.gate_plan.speed == preempt.speed


def test_controller_assigns_lambda_under_a_distribution_strategy():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        search = figs_tf.wrap(small_cnn(), cost="params", target=15_000)
        _compile(search)
    callback = figs_tf.BudgetController(settings=figs_tf.ControllerSettings(warmup=0.0))
    search.fit(np.zeros((32, 28, 28, 1), "float32"), np.zeros(32, "int64"), batch_size=16, verbose=0,
               callbacks=[callback])
    assert "Mirrored" in type(cost_layer_of(search).strength.value).__name__
    assert figs_tf.get_strength(search) == pytest.approx(callback.trace[-1]["strength"])
    # the gate speed is chosen and assigned from the host too, on every replica
    assert "Mirrored" in type(gates_of(search).speed.value).__name__
    plan = callback.gate_plan
    assert plan.speed > 1 and figs_tf.get_gate_speed(search) == plan.end_speed  # slowed after the ramp


def test_without_a_target_lambda_is_left_alone():
    search = figs_tf.wrap(small_cnn(), cost="params", strength=1e-5)
    _compile(search)
    search.fit(np.zeros((32, 28, 28, 1), "float32"), np.zeros(32, "int64"), batch_size=16, verbose=0,
               callbacks=[figs_tf.CostCallback()])
    assert figs_tf.get_strength(search) == pytest.approx(1e-5)
    assert figs_tf.get_gate_speed(search) == 1.0  # "auto" without a controller: the paper's gates
    with pytest.raises(ValueError, match="has no target"):  # a controller without a budget says so
        search.fit(np.zeros((32, 28, 28, 1), "float32"), np.zeros(32, "int64"), batch_size=16, verbose=0,
                   callbacks=[figs_tf.BudgetController()])


# --- the gate speed ----------------------------------------------------------------------------


class _LogitsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.speed = figs_tf.get_gate_speed(self.model)
        self.logits = keras.ops.convert_to_numpy(gates_of(self.model).logits).copy()


def test_the_controller_chooses_the_gate_speed_before_the_first_step_without_moving_the_logits():
    search = figs_tf.wrap(small_cnn(), cost="params", target=15_000)
    search.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    settings = figs_tf.ControllerSettings(end_gate_slowdown=1.0)  # keep the speed after the ramp here
    controller, start = figs_tf.BudgetController(settings=settings), _LogitsAtStart()
    history = search.fit(np.zeros((64, 28, 28, 1), "float32"), np.zeros(64, "int64"), batch_size=16, epochs=2,
                         verbose=0, callbacks=[controller, start])
    plan = controller.gate_plan
    # 8 steps of Adam at 1e-3 move θ about 0.008: the path to 15,000 parameters needs s in the hundreds
    assert plan.reachable and plan.speed == start.speed == figs_tf.get_gate_speed(search) >= 128
    assert math.log2(plan.speed).is_integer()
    np.testing.assert_array_equal(start.logits, np.full(start.logits.shape, 2.5, np.float32))  # ν unmoved
    assert history.history["figs_gate_speed"] == [plan.speed] * 2


def _controller_before_training(optimizer, gate_speed):
    """A BudgetController on a compiled 15,000-parameter budget, 1,000 planned steps, not yet started."""
    search = figs_tf.wrap(small_cnn(), cost="params", target=15_000, gate_speed=gate_speed)
    search.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    controller = figs_tf.BudgetController()
    controller.set_model(search)
    controller.params = {"epochs": 4, "steps": 250}
    return search, controller


def test_a_fixed_gate_speed_that_cannot_reach_the_target_is_reported_before_training():
    search, controller = _controller_before_training(keras.optimizers.Adam(1e-3), gate_speed=1.0)
    with pytest.warns(UserWarning, match=r"cannot be reached in this run.*gate_speed='auto'.*set_gate_speed"
                                         r"\(search, (\d+)\)"):
        controller.on_train_begin()
    assert int(search.optimizer.iterations.numpy()) == 0 and figs_tf.get_gate_speed(search) == 1.0
    assert not controller.gate_plan.reachable and controller.gate_plan.shortfall > 1
    # the paper's optimizer (Adam with ε = 1 at learning rate 1) reaches it at gate speed 1: no warning
    _, controller = _controller_before_training(keras.optimizers.Adam(1.0, epsilon=1.0), gate_speed=1.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="figs_tf")
        controller.on_train_begin()
    assert controller.gate_plan.reachable


def test_a_run_no_gate_speed_can_save_is_reported_before_training():
    """gate_speed='auto' with an optimizer that does not move the logits (learning rate 0): the
    warning names the optimizer's rate or schedule and the AL steps instead of a gate speed."""
    search, controller = _controller_before_training(keras.optimizers.Adam(0.0), gate_speed="auto")
    with pytest.warns(UserWarning, match=r"cannot be reached in this run.*No gate speed up to 2\*\*30 helps.*"
                                         r"learning rate or schedule"):
        controller.on_train_begin()
    assert not controller.gate_plan.reachable and int(search.optimizer.iterations.numpy()) == 0


# --- one AL run lands on the target ----------------------------------------------------------


@pytest.mark.parametrize("metric", ["params", "flops"])
def test_one_al_run_lands_on_the_target(metric):
    """Within LANDING_TOLERANCE on any CPU; the benchmark (benchmarks/budget.py) is where ±2 % is measured."""
    x, y = _data()
    keras.utils.set_random_seed(0)
    search = figs_tf.wrap(budget_supernet(), cost=metric, seed=0)
    target = 0.5 * figs_tf.supernet_cost(search, metric)
    steps = EPOCHS * EXAMPLES // BATCH
    _compile(search, decay_steps=steps)
    callback = figs_tf.BudgetController(target=target)
    history = search.fit(x, y, batch_size=BATCH, epochs=EPOCHS, callbacks=[callback], verbose=0)
    exported = figs_tf.exported_network(search).cost(metric)
    assert abs(exported / target - 1) <= LANDING_TOLERANCE, (exported, target, figs_tf.export_architecture(search))
    # the same number by an independent count of the slimmed network
    assert figs_tf.count(figs_tf.slim(search), metric) == exported
    assert history.history[f"figs_target_{metric}"] == [target] * EPOCHS
    assert len(callback.trace) == steps  # one λ update per step on runs shorter than 512 steps


@pytest.mark.parametrize("name", ["adam_1e-3", "sgd_momentum", "lion_cosine"])
def test_the_users_optimizer_as_it_is_lands_on_the_target(name):
    """Optimizers as a user compiles them, with the gate speed chosen for the run: at 1e-3 Adam
    moves θ ~0.2 in these 192 steps, far less than the ~1.5 the logits must fall. Lands within
    LANDING_TOLERANCE on any CPU; the ±2 % landing is measured by the benchmark (benchmarks/budget.py,
    docs/results.md)."""
    x, y = _data()
    steps = EPOCHS * EXAMPLES // BATCH
    optimizer = {"adam_1e-3": lambda: keras.optimizers.Adam(1e-3),
                 "sgd_momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
                 "lion_cosine": lambda: keras.optimizers.Lion(keras.optimizers.schedules.CosineDecay(1e-4, steps))}
    keras.utils.set_random_seed(0)
    search = figs_tf.wrap(budget_supernet(), cost="params", seed=0)
    target = 0.5 * figs_tf.supernet_cost(search, "params")
    search.compile(optimizer=optimizer[name](), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = figs_tf.BudgetController(target=target)
    history = search.fit(x, y, batch_size=BATCH, epochs=EPOCHS, callbacks=[callback], verbose=0)
    exported = figs_tf.exported_network(search).cost("params")
    assert abs(exported / target - 1) <= LANDING_TOLERANCE, (name, exported, target, callback.gate_plan)
    plan = callback.gate_plan
    assert plan.reachable and plan.speed > 1  # the paper's s = 1 would not get there
    # after the ramp the gates slow down, exactly to the plan's end speed
    assert history.history["figs_gate_speed"] == [plan.speed, plan.end_speed] and plan.end_speed < plan.speed


@pytest.mark.parametrize("calls", [1, 16])
def test_under_steps_per_execution_the_gates_cross_at_most_three_band_widths_between_updates(calls):
    """Keras calls back once per call of `steps_per_execution` steps, so λ changes only that often: the
    interval is rounded up to whole calls, and an automatic gate speed is halved until Adam's logits (about
    s·lr per step whatever λ is) cross at most `max_update_travel` (3) widths of the band between two
    updates. By hand: s·lr·interval over the band's width in the logit all gates share."""
    search = figs_tf.wrap(small_cnn(), cost="params", target=15_000)
    search.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                   steps_per_execution=calls)
    controller = figs_tf.BudgetController()
    controller.set_model(search)
    controller.params = {"epochs": 4, "steps": 50}  # 200 steps: one update per step without calls
    controller.on_train_begin()
    interval, plan = controller.strength_controller.interval, controller.gate_plan
    assert interval == calls
    path = budget.GatePath(cost_layer_of(search).polynomial, gates_of(search).group_sizes)
    width = path.uniform_logit(15_000 * 1.02) - path.uniform_logit(15_000 * 0.98)
    by_hand = plan.speed * 1e-3 * interval / width
    assert plan.update_travel == pytest.approx(by_hand, rel=1e-3) and by_hand <= 3.0
    assert figs_tf.get_gate_speed(search) == plan.speed
    if calls == 1:
        assert not plan.capped
    else:  # the speed that covers twice the path's pace would cross more than three widths per update
        assert plan.capped and 2 * by_hand > 3.0 and plan.reachable  # it still travels the path within the run


def test_with_ema_the_export_is_the_architecture_the_controller_steered_to():
    """use_ema: fit writes the optimizer's moving average of the weights back at its end. Under a
    BudgetController the gates are kept out of it, so the network exported after fit is the one the
    controller counted after the last step (the average of these 32 steps would lag far behind), while
    every other weight is its average."""
    keras.utils.set_random_seed(0)
    search = figs_tf.wrap(small_cnn(), cost="params", target=15_000, seed=0)
    search.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=True, ema_momentum=0.99),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    controller = figs_tf.BudgetController(settings=figs_tf.ControllerSettings(warmup=0.0, interval=1))
    images = np.random.default_rng(0).random((256, 28, 28, 1), dtype=np.float32)
    kernel = search.get_layer("conv0").kernel
    search.fit(images, np.zeros(256, "int64"), batch_size=16, epochs=2, verbose=0, callbacks=[controller])
    assert controller.trace[-1]["step"] == 32
    assert figs_tf.exported_network(search).cost("params") == controller.trace[-1]["exported"]
    assert controller.trace[-1]["exported"] < controller.trace[0]["exported"]  # the gates did move
    optimizer = search.optimizer
    np.testing.assert_array_equal(kernel.numpy(),
                                  optimizer._model_variables_moving_average[optimizer._get_variable_index(kernel)])


def test_steps_per_execution_counts_steps_between_updates():
    """With several steps per call of the train function the controller counts steps, not calls."""
    search = figs_tf.wrap(small_cnn(), cost="params", target=15_000)
    search.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                   steps_per_execution=4)
    controller = figs_tf.BudgetController(settings=figs_tf.ControllerSettings(interval=4, warmup=0.0))
    search.fit(np.zeros((256, 28, 28, 1), "float32"), np.zeros(256, "int64"), batch_size=16, epochs=2, verbose=0,
               callbacks=[controller])
    assert [row["step"] for row in controller.trace] == list(range(4, 33, 4))


def test_pareto_controller_saves_one_architecture_per_budget(tmp_path):
    x, y = _data()
    x, y = x[:2048], y[:2048]  # 128 steps: crossing below a budget needs no landing
    keras.utils.set_random_seed(0)
    model = budget_supernet()
    search = figs_tf.wrap(model, cost="params", seed=0)
    supernet = figs_tf.supernet_cost(search, "params")
    budgets = [0.7 * supernet, 0.45 * supernet]
    _compile(search)
    callback = figs_tf.ParetoController(str(tmp_path), budgets=budgets)
    history = search.fit(x, y, batch_size=BATCH, epochs=EPOCHS, callbacks=[callback], verbose=0)
    assert callback.missing == []
    files = sorted(os.listdir(os.path.join(tmp_path, "pareto")))
    assert files == sorted(f"architecture_{int(b)}.json" if float(b).is_integer() else f"architecture_{b:g}.json"
                           for b in budgets)
    for budget_value in budgets:
        path = callback.paths[budget_value]
        # an independent count: slim the plain supernet to the saved channels and count it
        slim = figs_tf.slim(model, architecture=path)
        assert figs_tf.count(slim, "params") <= budget_value
        with open(path) as f:
            metadata = json.load(f)["metadata"]
        assert metadata["budget"] == budget_value
        assert metadata["exported_cost"]["params"] == figs_tf.count(slim, "params")
    # the budget being worked on is logged, largest first
    assert history.history["figs_target_params"][0] == budgets[0]
    assert history.history["figs_target_params"][-1] == budgets[-1]


# --- λ is a multiplier: below the band it goes negative and pulls the gates up -----------------


def test_lambda_scale_is_log_above_the_knee_and_passes_through_zero_below_it():
    settings = figs_tf.ControllerSettings(bounds=(0.03, 10.0), negative_bound=1.0)
    schedule = budget.TargetSchedule(1000.0, 2000.0, 100, settings, path=None)
    controller = budget.StrengthController(schedule, settings, initial_strength=2e-6)
    for strength in (-2e-6, -1e-9, 0.0, 3e-9, 2e-6, 2e-5):
        assert controller.strength_at(controller.coordinate(strength)) == pytest.approx(strength, abs=1e-18)
    # far above the knee (0.03 λ₀) u is log(λ/λ₀): relative error (knee/λ)², at most 9e-4 from λ₀ up
    for ratio in (1.0, 3.0, 10.0):
        assert controller.strength_at(np.log(ratio)) == pytest.approx(ratio * 2e-6, rel=(0.03 / ratio) ** 2 + 1e-12)
    assert controller.strength_at(np.log(0.03)) == 0.0  # the knee is where λ crosses 0


@pytest.mark.parametrize("negative_bound", [1.0, 0.25, 0.0])
def test_below_the_band_lambda_goes_negative_down_to_its_bound(negative_bound):
    """After the ramp, an exported cost 40 % under the target drives λ through 0 to −bound × λ₀."""
    settings = figs_tf.ControllerSettings(negative_bound=negative_bound, warmup=0.0, ramp=0.5)
    schedule = budget.TargetSchedule(1000.0, 2000.0, 100, settings, path=None)  # approach mode needs no path
    controller = budget.StrengthController(schedule, settings, initial_strength=2e-6)
    strength, seen = 2e-6, []
    for step in range(60, 100):
        strength = controller.update(step, expected=600.0, exported=600, strength=strength)
        seen.append(strength)
    assert all(b <= a for a, b in zip(seen, seen[1:]))  # falls monotonically while E stays low
    assert min(seen) == pytest.approx(-negative_bound * 2e-6, abs=1e-15)
    # above the band the same controller drives it back up past 0
    for step in range(60, 100):
        strength = controller.update(step, expected=1100.0, exported=1100, strength=strength)
    assert strength > 0


def test_controller_settings_refuse_a_negative_bound_below_zero():
    with pytest.raises(ValueError, match="negative_bound"):
        figs_tf.ControllerSettings(negative_bound=-1.0)


@pytest.mark.parametrize("negative_bound, lands", [(1.0, True), (0.0, False)])
def test_a_run_that_starts_under_the_target_is_pulled_up_to_it(negative_bound, lands):
    """Gates initialised so the exported network is 37 % of the supernet, target 40 % (and λ₀
    pushes it further down during the warm-up): only a negative λ can raise the exported cost
    in a short run (the task loss barely moves the gates); with negative_bound = 0 (λ ≥ 0)
    the same run stays under the band (LANDING_TOLERANCE: measured 1.4 % off with a negative λ,
    28 % under without)."""
    x, y = _data()
    x, y = x[:2048], y[:2048]  # 128 steps
    keras.utils.set_random_seed(0)
    search = figs_tf.wrap(budget_supernet(), cost="params", seed=0, initial_logit=0.5)
    supernet = figs_tf.supernet_cost(search, "params")
    start = figs_tf.exported_network(search).cost("params")
    target = 0.40 * supernet
    assert start < 0.95 * target, (start, target)
    steps = EPOCHS * 2048 // BATCH
    _compile(search, decay_steps=steps)
    callback = figs_tf.BudgetController(target=target,
                                        settings=figs_tf.ControllerSettings(negative_bound=negative_bound))
    search.fit(x, y, batch_size=BATCH, epochs=EPOCHS, callbacks=[callback], verbose=0)
    exported = figs_tf.exported_network(search).cost("params")
    assert (abs(exported / target - 1) <= LANDING_TOLERANCE) == lands, (start, exported, target)
    strengths = [row["strength"] for row in callback.trace]
    assert (min(strengths) < 0) == (negative_bound > 0)
    if lands:  # and the λ that reached the model's loss is the trace's (signed) value
        assert figs_tf.get_strength(search) == pytest.approx(strengths[-1])


def test_a_model_saved_with_a_negative_lambda_loads_only_with_its_target():
    """The controller's λ may be < 0 mid-run; a user's λ may not."""
    search = figs_tf.wrap(small_cnn(), cost="params", target=15_000)
    cost_layer_of(search).set_strength(-2e-6, signed=True)
    config = cost_layer_of(search).get_config()
    assert figs_tf.CostLayer.from_config(config).initial_strength == pytest.approx(-2e-6)
    figs_tf.set_strength(search, figs_tf.get_strength(search))  # a round trip keeps working under a budget
    assert figs_tf.get_strength(search) == pytest.approx(-2e-6)
    with pytest.raises(ValueError, match=">= 0"):  # a user's λ without a budget may not go negative
        figs_tf.set_strength(figs_tf.wrap(small_cnn(), cost="params"), -2e-6)
    with pytest.raises(ValueError, match="must be finite"):
        cost_layer_of(search).set_strength(float("nan"), signed=True)
    with pytest.raises((ValueError, TypeError), match=">= 0"):  # Keras re-raises it as a TypeError
        figs_tf.CostLayer.from_config({**config, "target": None})
