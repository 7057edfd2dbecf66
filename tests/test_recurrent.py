"""LSTM, GRU, SimpleRNN and Bidirectional: units searched exactly, gated inside the recurrence."""

import os

import keras
import numpy as np
import pytest

import figs_tf

from helpers import check_all_gates_on_is_the_supernet, check_fresh_build_matches_slim, set_random_gates, to_numpy

L = keras.layers
STEPS, FEATURES = 7, 5


def _sequence_model(*recurrent, name="rnn"):
    """Dense → the recurrent layers → Dense, on (STEPS, FEATURES) sequences."""
    inputs = keras.Input((STEPS, FEATURES))
    x = L.Dense(8, activation="relu", name="embed")(inputs)
    for layer in recurrent:
        x = layer(x)
    outputs = L.Dense(3, name="out")(x)
    return keras.Model(inputs, outputs, name=name)


def _states_model():
    """LSTM and Bidirectional returning their states, which are read too."""
    inputs = keras.Input((STEPS, FEATURES))
    x = L.Dense(6, name="embed")(inputs)
    sequence, h, c = L.LSTM(5, return_sequences=True, return_state=True, name="lstm")(x)
    y = L.Bidirectional(L.GRU(4, return_state=True), merge_mode=None, name="bi")(sequence)
    features = L.Concatenate(name="cat")([h, c, *y])
    return keras.Model(inputs, L.Dense(3, name="out")(features), name="states")


MODELS = {
    "dense_lstm_gru_dense": lambda: _sequence_model(L.LSTM(6, return_sequences=True, name="lstm"),
                                                    L.GRU(4, name="gru"), name="issue"),
    "simple_rnn_and_gru_without_reset_after": lambda: _sequence_model(
        L.SimpleRNN(6, return_sequences=True, name="simple"), L.GRU(5, reset_after=False, name="gru")),
    "bidirectional_concat_and_sum": lambda: _sequence_model(
        L.Bidirectional(L.LSTM(6, return_sequences=True), name="bi_lstm"),
        L.Bidirectional(L.GRU(4), merge_mode="sum", name="bi_gru")),
    "bidirectional_mul_and_ave": lambda: _sequence_model(
        L.Bidirectional(L.SimpleRNN(6, return_sequences=True), merge_mode="mul", name="bi_mul"),
        L.Bidirectional(L.LSTM(4), merge_mode="ave", name="bi_ave")),
    "returned_states": _states_model,
}


def _recurrent_flops(layer, steps):
    """Multiply-adds of one recurrent layer, from its own kernels: every step applies both."""
    if isinstance(layer, L.Bidirectional):
        return _recurrent_flops(layer.forward_layer, steps) + _recurrent_flops(layer.backward_layer, steps)
    return steps * (int(np.prod(layer.cell.kernel.shape)) + int(np.prod(layer.cell.recurrent_kernel.shape)))


def _hand_flops(model):
    """Multiply-adds per example counted from the model's kernels, independently of figs_tf."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, L.Dense):
            positions = int(np.prod(layer.output.shape[1:-1]))
            total += positions * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, (L.LSTM, L.GRU, L.SimpleRNN, L.Bidirectional)):
            total += _recurrent_flops(layer, layer.input.shape[1])
    return total


@pytest.mark.parametrize("name", list(MODELS))
def test_recurrent_models_count_wrap_and_slim_exactly(name):
    model = MODELS[name]()
    x = np.random.default_rng(0).normal(size=(3, STEPS, FEATURES)).astype(np.float32)
    assert figs_tf.count(model, "params") == model.count_params()
    assert figs_tf.count(model, "flops") == _hand_flops(model)
    check_all_gates_on_is_the_supernet(model, x)
    search = figs_tf.wrap(model)
    set_random_gates(search, 2)
    network = figs_tf.exported_network(search)
    slim = figs_tf.slim(search)
    expected = to_numpy(search(x, training=False))
    np.testing.assert_allclose(to_numpy(slim(x)), expected, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(expected).max()))
    assert slim.count_params() == network.cost("params") < model.count_params()
    assert figs_tf.count(slim, "flops") == network.cost("flops") == _hand_flops(slim)
    check_fresh_build_matches_slim(model)


def test_the_issue_model_prunes_units_of_every_gate_block():
    model = MODELS["dense_lstm_gru_dense"]()
    search = figs_tf.wrap(model)
    set_random_gates(search, 5)
    architecture = figs_tf.export_architecture(search)
    slim = figs_tf.slim(search)
    lstm, gru = slim.get_layer("lstm"), slim.get_layer("gru")
    assert 0 < architecture["lstm"] < 6 and 0 < architecture["gru"] < 4  # this seed prunes both
    assert lstm.units == architecture["lstm"] and gru.units == architecture["gru"]
    assert lstm.cell.kernel.shape == (architecture["embed"], 4 * lstm.units)
    assert lstm.cell.recurrent_kernel.shape == (lstm.units, 4 * lstm.units)
    assert gru.cell.kernel.shape == (lstm.units, 3 * gru.units)
    assert gru.cell.bias.shape == (2, 3 * gru.units)  # reset_after: input and recurrent biases


def _slice_by_hand(layer, kept, blocks):
    """The layer's weights restricted to the kept units, written out here (not figs_tf's code)."""
    units = layer.cell.units
    columns = [block * units + k for block in range(blocks) for k in kept]
    kernel, recurrent, bias = (to_numpy(w) for w in (layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias))
    return [kernel[:, columns], recurrent[kept][:, columns], bias[..., columns]]


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before", "simple_rnn"])
def test_a_gated_unit_stays_exactly_zero_and_the_others_compute_the_smaller_layer(kind):
    make, blocks = {
        "lstm": (lambda units: L.LSTM(units, return_sequences=True, unit_forget_bias=True), 4),
        "gru": (lambda units: L.GRU(units, return_sequences=True), 3),
        "gru_reset_before": (lambda units: L.GRU(units, return_sequences=True, reset_after=False), 3),
        "simple_rnn": (lambda units: L.SimpleRNN(units, return_sequences=True), 1),
    }[kind]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, STEPS, 3)).astype(np.float32)
    layer = make(5)
    layer(x)
    layer.cell.bias.assign(rng.normal(0, 0.5, layer.cell.bias.shape).astype(np.float32))  # a pruned unit has a bias
    gates = np.array([1, 0, 1, 1, 0, 1], np.float32)  # unit c reads gates[c]; the last slot is the always-on 1
    gated = to_numpy(figs_tf.GatedRecurrence(layer, gate_indices=range(5))(x, gates))
    assert np.all(gated[..., [1, 4]] == 0.0)
    kept = [0, 2, 3]
    smaller = make(3)
    smaller(x)
    smaller.set_weights(_slice_by_hand(layer, kept, blocks))
    np.testing.assert_allclose(gated[..., kept], to_numpy(smaller(x)), rtol=1e-5, atol=1e-6)
    # Gating the output alone would not do: the pruned units' states reach the kept ones.
    assert not np.allclose(to_numpy(layer(x))[..., kept], to_numpy(smaller(x)), atol=1e-3)


def test_a_search_model_with_recurrent_layers_saves_loads_and_trains(tmp_path):
    model = _sequence_model(L.LSTM(6, return_sequences=True, dropout=0.2, recurrent_dropout=0.2, name="lstm"),
                            L.Bidirectional(L.GRU(4, dropout=0.1), name="bi"))
    search = figs_tf.wrap(model)
    set_random_gates(search, 3)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, STEPS, FEATURES)).astype(np.float32)
    path = os.path.join(tmp_path, "search.keras")
    search.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded(x, training=False)), to_numpy(search(x, training=False)), atol=1e-6)
    assert figs_tf.export_architecture(loaded) == figs_tf.export_architecture(search)
    assert figs_tf.slim(loaded).count_params() == figs_tf.slim(search).count_params()
    search.compile(optimizer="adam", loss="mse")
    kernel = to_numpy(model.get_layer("lstm").cell.kernel).copy()
    history = search.fit(x, rng.normal(size=(4, 3)), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert np.abs(to_numpy(model.get_layer("lstm").cell.kernel) - kernel).max() > 1e-4  # gated inside, it trains


def test_masked_steps_reach_the_gated_recurrence():
    def masked_model(masking):
        inputs = keras.Input((STEPS, FEATURES))
        x = L.Masking(name="masking")(inputs) if masking else inputs
        x = L.Dense(8, name="embed")(x)
        x = L.LSTM(6, return_sequences=True, name="lstm")(x)
        return keras.Model(inputs, L.Dense(3, name="out")(L.GRU(4, name="gru")(x)))

    model, unmasked = masked_model(True), masked_model(False)
    unmasked.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(3, STEPS, FEATURES)).astype(np.float32)
    x[0, 4:] = 0.0  # padding: the last steps of the first sequence are masked
    x[2, :2] = 0.0
    assert not np.allclose(to_numpy(model(x)), to_numpy(unmasked(x)), atol=1e-4)  # the mask matters
    check_all_gates_on_is_the_supernet(model, x)
    search = figs_tf.wrap(model)
    set_random_gates(search, 4)
    expected = to_numpy(search(x, training=False))
    np.testing.assert_allclose(to_numpy(figs_tf.slim(search)(x)), expected, rtol=1e-4, atol=1e-5)


def test_an_rnn_started_from_given_states_keeps_its_units_out_of_search():
    inputs = keras.Input((STEPS, FEATURES))
    _, h, c = L.LSTM(4, return_state=True, name="encoder")(L.Dense(6, name="embed")(inputs))
    decoded = L.LSTM(4, name="decoder")(inputs, initial_state=[h, c])
    model = keras.Model(inputs, L.Dense(2, name="out")(decoded))
    graph = figs_tf.analyze(model)
    assert sorted(p for g in graph.groups for p in g.producers) == ["embed"]
    assert any("'decoder' starts from an initial_state" in note for note in graph.notes)
    assert figs_tf.count(model, "params") == model.count_params()
    x = np.random.default_rng(0).normal(size=(2, STEPS, FEATURES)).astype(np.float32)
    check_all_gates_on_is_the_supernet(model, x)


def test_stateful_rnn_is_refused_with_the_fix():
    inputs = keras.Input((STEPS, FEATURES), batch_size=2)
    model = keras.Model(inputs, L.Dense(2)(L.LSTM(4, stateful=True, name="lstm")(inputs)))
    with pytest.raises(figs_tf.UnsupportedLayerError, match="'lstm' is stateful.*stateful=False"):
        figs_tf.analyze(model)
