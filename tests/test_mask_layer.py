"""The gate: initialisation, the Logistic-Sigmoid relaxation, the hard mask, serialisation."""

import os

import keras
import numpy as np
import pytest
from keras import ops

import figs_tf
from figs_tf.apply_mask import ApplyMask
from figs_tf.mask_layer import MaskLayer, hard_mask, hard_widths
from figs_tf.wrapping import gates_of

from helpers import residual_concat_depthwise_model, set_all_logits, to_numpy


def test_logits_weight_initial_value_and_dtype():
    gates = MaskLayer(group_sizes=[4, 3])
    assert [w.name for w in gates.trainable_weights] == ["logit_parameters"]
    assert [w.name for w in gates.non_trainable_weights] == ["gate_speed"]
    assert gates.logit_parameters.dtype == "float32" and gates.speed.dtype == "float32"
    assert gates.gate_speed == 1.0 and gates.automatic_gate_speed  # "auto" starts at the paper's s = 1
    np.testing.assert_array_equal(to_numpy(gates.logits), np.full(7, 2.5, np.float32))
    # π = sigmoid(2.5) ≈ 0.924 (method.md)
    np.testing.assert_allclose(gates.probabilities(), 1 / (1 + np.exp(-2.5)), rtol=1e-6)


def test_relaxed_gate_is_a_logistic_sigmoid_sample():
    # With τ = 1e-3 a sample is all but binary and P(m̂ > 1/2) = P(ν + ℓ > 0) = sigmoid(ν).
    # 3000 channels per logit value: independent samples within one step.
    logits = np.array([-2.0, 0.0, 1.0, 2.5], dtype=np.float32)
    gates = MaskLayer(group_sizes=[4 * 3000], seed=1)
    gates.set_logits(np.tile(logits, 3000))
    anchor = np.zeros((1, 1), np.float32)
    samples = to_numpy(gates(anchor, training=True)[0])[:-1].reshape(3000, 4)
    near_binary = np.mean((samples < 1e-3) | (samples > 1 - 1e-3))
    assert near_binary > 0.99
    frequency = (samples > 0.5).mean(axis=0)
    expected = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(frequency, expected, atol=0.035)


def test_each_training_call_draws_a_new_sample_and_inference_is_deterministic():
    gates = MaskLayer(group_sizes=[64], seed=3)
    gates.set_logits(np.zeros(64, np.float32))
    anchor = np.zeros((1, 1), np.float32)
    first = to_numpy(gates(anchor, training=True)[0])
    second = to_numpy(gates(anchor, training=True)[0])
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(to_numpy(gates(anchor, training=False)[0]),
                                  to_numpy(gates(anchor, training=False)[0]))


def test_hard_mask_keeps_floor_of_expected_width_channels_of_largest_logit():
    rng = np.random.default_rng(0)
    sizes = [5, 8, 3]
    logits = rng.normal(0.0, 2.0, sum(sizes)).astype(np.float32)
    mask = to_numpy(hard_mask(ops.convert_to_tensor(logits), sizes, []))
    offset = 0
    for size in sizes:
        group = logits[offset:offset + size]
        width = int(np.floor(np.sum(1 / (1 + np.exp(-group.astype(np.float64))))))
        expected = np.zeros(size)
        expected[np.argsort(-group, kind="stable")[:width]] = 1
        np.testing.assert_array_equal(mask[offset:offset + size], expected)
        offset += size


def test_hard_mask_breaks_ties_by_lower_channel_index():
    # 4 channels at ν = 2.5: Σπ = 3.70 -> width 3, the first three channels.
    mask = to_numpy(hard_mask(ops.convert_to_tensor(np.full(4, 2.5, np.float32)), [4], []))
    np.testing.assert_array_equal(mask, [1, 1, 1, 0])


def test_keep_one_rule_revives_the_best_group_of_an_empty_input_set():
    logits = np.array([-9, -8, -5, -6, -7], dtype=np.float32)  # groups [2] and [3]; all widths 0
    widths = to_numpy(hard_widths(ops.convert_to_tensor(logits), [2, 3], [[0, 1]]))
    # the largest logit (-5) is in group 1: it keeps one channel
    np.testing.assert_array_equal(widths, [0, 1])
    mask = to_numpy(hard_mask(ops.convert_to_tensor(logits), [2, 3], [[0, 1]]))
    np.testing.assert_array_equal(mask, [0, 0, 1, 0, 0])


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        MaskLayer(group_sizes=[4], temperature=0.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        figs_tf.wrap(residual_concat_depthwise_model(), temperature=-1.0)


def _one_sgd_step(multiplier):
    """Logit and kernel change of one SGD step (lr 1) of a wrapped CNN, fixed weights and noise."""
    keras.utils.set_random_seed(3)
    model = residual_concat_depthwise_model()
    search = figs_tf.wrap(model, cost="params", strength=1e-4, seed=7, temperature=0.5,
                          logit_gradient_multiplier=multiplier)
    search.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    x = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
    y = np.random.default_rng(1).random((4,) + tuple(search.output.shape[1:])).astype(np.float32)
    gates = gates_of(search)
    kernels = [w for w in search.trainable_weights if w.name == "kernel"]
    before = to_numpy(gates.logits), [to_numpy(k) for k in kernels]
    search.train_on_batch(x, y)
    return (to_numpy(gates.logits) - before[0],
            [to_numpy(k) - b for k, b in zip(kernels, before[1])])


def test_logit_gradient_multiplier_scales_only_the_gates_step():
    # SGD: a step is lr × gradient, so the logits move exactly M times as far while
    # every kernel takes the same step (the forward pass is unchanged)
    logit_step, kernel_steps = _one_sgd_step(1.0)
    assert kernel_steps  # the model's convolutions and dense layer
    scaled_logit_step, scaled_kernel_steps = _one_sgd_step(5.0)
    assert np.abs(logit_step).max() > 1e-3
    # atol: a few float32 ulps of ν ≈ 2.5, lost when the step is read back as a difference
    np.testing.assert_allclose(scaled_logit_step, 5.0 * logit_step, rtol=1e-4, atol=2e-6)
    for step, scaled in zip(kernel_steps, scaled_kernel_steps):
        np.testing.assert_allclose(scaled, step, rtol=1e-5, atol=1e-7)


def test_logit_gradient_multiplier_leaves_the_forward_pass_bit_identical():
    anchor = np.zeros((1, 1), np.float32)
    outputs = []
    for multiplier in (1.0, 100.0):
        gates = MaskLayer(group_sizes=[5, 3], seed=4, logit_gradient_multiplier=multiplier)
        gates.set_logits(np.linspace(-2, 2, 8).astype(np.float32))
        outputs.append([to_numpy(t) for t in gates(anchor, training=True)])
    for plain, scaled in zip(*outputs):
        np.testing.assert_array_equal(plain, scaled)
    with pytest.raises(ValueError, match="logit_gradient_multiplier must be > 0"):
        MaskLayer(group_sizes=[4], logit_gradient_multiplier=0.0)


def test_get_config_round_trip():
    gates = MaskLayer(group_sizes=[4, 2], temperature=0.01, initial_logit=1.0,
                      keep_one_sets=[[0, 1]], sampled_widths=True, group_keys=["a", "b"], seed=5,
                      logit_gradient_multiplier=30.0, gate_speed=4.0)
    clone = MaskLayer.from_config(gates.get_config())
    assert clone.get_config() == gates.get_config()
    assert clone.gate_speed == 4.0 and not clone.automatic_gate_speed
    np.testing.assert_array_equal(to_numpy(clone.logits), np.full(6, 1.0, np.float32))
    assert MaskLayer.from_config(MaskLayer(group_sizes=[3]).get_config()).automatic_gate_speed
    apply = ApplyMask([0, 2, 4])
    assert ApplyMask.from_config(apply.get_config()).gate_indices == [0, 2, 4]


def test_apply_mask_reads_its_channels_gates():
    gate_vector = np.array([0.0, 1.0, 0.5, 1.0], np.float32)
    x = np.ones((2, 3, 3), np.float32)
    y = to_numpy(ApplyMask([1, 0, 2])([x, gate_vector]))
    np.testing.assert_array_equal(y[0, 0], [1.0, 0.0, 0.5])


def test_search_model_saves_and_loads_as_keras_file(tmp_path):
    search = figs_tf.wrap(residual_concat_depthwise_model(), cost="params", strength=1e-4)
    gates = gates_of(search)
    rng = np.random.default_rng(1)
    gates.set_logits(rng.normal(0, 2, gates.logits.shape).astype(np.float32))
    figs_tf.set_gate_speed(search, 32.0)  # as the budget controller leaves it after choosing s
    figs_tf.set_strength(search, 3e-4)
    path = os.path.join(tmp_path, "search.keras")
    search.save(path)
    loaded = keras.models.load_model(path)
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(loaded(x, training=False)), to_numpy(search(x, training=False)), atol=1e-6)
    np.testing.assert_array_equal(to_numpy(gates_of(loaded).logits), to_numpy(gates.logits))
    assert figs_tf.get_gate_speed(loaded) == 32.0 and gates_of(loaded).automatic_gate_speed
    assert figs_tf.get_strength(loaded) == pytest.approx(3e-4)
    assert figs_tf.export_architecture(loaded) == figs_tf.export_architecture(search)


def test_gate_math_stays_float32_under_mixed_bfloat16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = residual_concat_depthwise_model()
        search = figs_tf.wrap(model, cost="params", strength=1e-4)
        gates = gates_of(search)
        assert gates.logits.dtype == "float32"
        assert gates.compute_dtype == "float32"
        x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
        gate_vector, widths = gates(x, training=True)
        assert keras.backend.standardize_dtype(gate_vector.dtype) == "float32"
        assert keras.backend.standardize_dtype(widths.dtype) == "float32"
        out = search(x, training=True)
        assert np.all(np.isfinite(to_numpy(ops.cast(out, "float32"))))
        losses = [float(to_numpy(loss)) for loss in search.losses]
        assert losses and all(np.isfinite(losses)) and losses[0] > 0
    finally:
        keras.config.set_dtype_policy(previous)


def test_fit_with_jit_compile():
    model = residual_concat_depthwise_model()
    search = figs_tf.wrap(model, cost="params", strength=1e-3)
    search.compile(optimizer=keras.optimizers.Adam(0.05),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    before = to_numpy(gates_of(search).logits).copy()
    history = search.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = to_numpy(gates_of(search).logits)
    assert np.all(after < before)  # the cost pushes every logit down


def test_all_gates_on_reproduces_the_original_model():
    model = residual_concat_depthwise_model()
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    x = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(to_numpy(search(x, training=False)), to_numpy(model(x, training=False)))


# --- gate speed: ν = s·θ -------------------------------------------------------------------------


def test_logits_are_the_gate_speed_times_the_trained_variable():
    gates = MaskLayer(group_sizes=[5, 3], gate_speed=8.0)
    np.testing.assert_array_equal(to_numpy(gates.logit_parameters), np.full(8, 2.5 / 8, np.float32))
    np.testing.assert_array_equal(to_numpy(gates.logits), np.full(8, 2.5, np.float32))
    values = np.linspace(-3, 3, 8).astype(np.float32)
    gates.set_logits(values)
    np.testing.assert_array_equal(to_numpy(gates.logits), values)
    np.testing.assert_array_equal(to_numpy(gates.logit_parameters), values / 8)
    # every reader of the gates sees ν: probabilities, the export, the controller's host copy
    np.testing.assert_allclose(gates.probabilities(), 1 / (1 + np.exp(-values)), rtol=1e-6)
    same = MaskLayer(group_sizes=[5, 3], gate_speed=1.0)
    same.set_logits(values)
    assert gates.exported_widths() == same.exported_widths()
    np.testing.assert_array_equal(gates.exported_mask(), same.exported_mask())
    from figs_tf.budget import host_logits  # pylint: disable=import-outside-toplevel
    np.testing.assert_array_equal(host_logits(gates), values)


def test_changing_the_gate_speed_does_not_move_the_logits():
    rng = np.random.default_rng(0)
    values = rng.normal(0.0, 3.0, 50).astype(np.float32)
    gates = MaskLayer(group_sizes=[50])
    gates.set_logits(values)
    anchor = np.zeros((1, 1), np.float32)
    before = [to_numpy(t) for t in gates(anchor, training=False)]
    for speed in (2.0, 64.0, 0.5, 2.0 ** 20, 1.0):  # powers of two: θ = ν / s is exact
        gates.set_gate_speed(speed)
        assert gates.gate_speed == speed
        np.testing.assert_array_equal(to_numpy(gates.logits), values)
        for plain, now in zip(before, gates(anchor, training=False)):
            np.testing.assert_array_equal(to_numpy(now), plain)
    gates.set_gate_speed(3.0)  # any other s: within a float32 rounding of ν
    np.testing.assert_allclose(to_numpy(gates.logits), values, rtol=2e-7, atol=0)


@pytest.mark.tensorflow_only
def test_one_step_moves_the_logits_gate_speed_times_as_far_under_adam():
    """Adam's step on θ is about its learning rate whatever the gradient: ν moves s times that."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    moves = {}
    for speed in (1.0, 16.0):
        gates = MaskLayer(group_sizes=[6], gate_speed=speed, temperature=0.5, seed=0)
        optimizer = keras.optimizers.Adam(1e-3)
        with tf.GradientTape() as tape:
            widths = gates(np.zeros((1, 1), np.float32), training=True)[1]
            loss = ops.sum(widths)
        gradient = tape.gradient(loss, gates.logit_parameters.value)
        optimizer.apply([gradient], [gates.logit_parameters])
        moves[speed] = 2.5 - to_numpy(gates.logits)
    np.testing.assert_allclose(moves[1.0], 1e-3, rtol=1e-3)
    np.testing.assert_allclose(moves[16.0], 16e-3, rtol=1e-3)


def test_gate_speed_must_be_auto_or_positive():
    for bad in (0.0, -1.0, float("inf"), "fast", True):
        with pytest.raises(ValueError, match="gate_speed must be 'auto' or a finite number > 0"):
            MaskLayer(group_sizes=[4], gate_speed=bad)
    with pytest.raises(ValueError, match="gate_speed must be"):
        figs_tf.wrap(residual_concat_depthwise_model(), gate_speed=0)
    with pytest.raises(ValueError, match="needs a number"):
        MaskLayer(group_sizes=[4]).set_gate_speed("auto")


def test_a_search_model_saved_before_the_gate_speed_existed_loads_its_logits(tmp_path):
    """Its weights file holds one gate variable, ν; it loads as θ = ν at s = 1."""
    search = figs_tf.wrap(residual_concat_depthwise_model(), cost="params")
    gates = gates_of(search)
    values = np.random.default_rng(3).normal(0, 2, gates.num_channels).astype(np.float32)
    gates.load_own_variables({"0": values})
    np.testing.assert_array_equal(to_numpy(gates.logits), values)
    assert gates.gate_speed == 1.0
