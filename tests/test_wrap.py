"""wrap(): any Keras model, gates fully on, equals the original; options and errors."""

import warnings

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.wrapping import channel_graph_of, gates_of

from helpers import residual_concat_depthwise_model, set_all_logits, small_cnn, to_numpy

A = keras.applications

# Families covering residual adds, concatenation, depthwise and separable convs,
# squeeze-excite (layer and keras-ops forms), LayerNorm/LayerScale, and a nested model.
APPLICATIONS = {
    "ResNet50": lambda: A.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10),
    "DenseNet121": lambda: A.DenseNet121(weights=None, input_shape=(32, 32, 3), classes=10),
    "MobileNetV2": lambda: A.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10, alpha=0.35),
    "MobileNetV3Small": lambda: A.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=10),
    "EfficientNetB0": lambda: A.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=10),
    "Xception": lambda: A.Xception(weights=None, input_shape=(71, 71, 3), classes=10),
    "NASNetMobile": lambda: A.NASNetMobile(weights=None, input_shape=(32, 32, 3), classes=10),
    "ConvNeXtTiny": lambda: A.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), classes=10),
}


def _nested_mobilenet_classifier():
    backbone = A.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35)
    inputs = keras.Input((32, 32, 3))
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(10, name="classifier")(x)
    return keras.Model(inputs, outputs, name="nested_mobilenet")


APPLICATIONS["nested MobileNetV2"] = _nested_mobilenet_classifier


@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_gates_fully_on_reproduce_the_original_model(name):
    model = APPLICATIONS[name]()
    search = figs_tf.wrap(model, cost="params", strength=1e-6)
    set_all_logits(search, 30.0)
    x = np.random.default_rng(0).random((2,) + tuple(model.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(to_numpy(search(x, training=False)), to_numpy(model(x, training=False)),
                               rtol=1e-6, atol=1e-6)
    # every prunable channel has exactly one gate, and nothing else has one
    graph = channel_graph_of(search)
    assert gates_of(search).logits.shape == (sum(graph.group_sizes),)
    # the exported architecture with every gate on is the original network
    assert figs_tf.exported_network(search).cost("params") == model.count_params()


def test_weights_are_shared_with_the_original_model():
    model = small_cnn(input_shape=(8, 8, 1), widths=(4, 8))
    search = figs_tf.wrap(model, cost="params", strength=0.0)
    search.compile(optimizer=keras.optimizers.SGD(0.1),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = to_numpy(model.get_layer("conv0").kernel).copy()
    rng = np.random.default_rng(0)
    search.fit(rng.random((16, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, 16), epochs=1, verbose=0)
    assert not np.allclose(to_numpy(model.get_layer("conv0").kernel), before)


def test_outputs_keep_their_names_for_per_output_losses():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="c")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    a = keras.layers.Dense(3, name="head_a")(x)
    b = keras.layers.Dense(1, name="head_b")(x)
    search = figs_tf.wrap(keras.Model(inputs, {"a": a, "b": b}), strength=1e-3)
    assert set(search.output_names) == {"head_a", "head_b"}
    search.compile(optimizer="adam", loss={"a": "mse", "b": "mse"})
    rng = np.random.default_rng(0)
    search.fit(rng.random((8, 8, 8, 3)).astype(np.float32),
               {"a": rng.random((8, 3)), "b": rng.random((8, 1))}, epochs=1, verbose=0)


def test_strength_is_a_variable_that_changes_the_loss_without_retracing():
    search = figs_tf.wrap(residual_concat_depthwise_model(), cost="params", strength=1e-3)
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    search(x, training=True)
    loss_1 = float(to_numpy(search.losses[0]))
    figs_tf.set_strength(search, 2e-3)
    search(x, training=True)
    loss_2 = float(to_numpy(search.losses[0]))
    assert loss_2 == pytest.approx(2 * loss_1, rel=1e-6)
    assert figs_tf.get_strength(search) == pytest.approx(2e-3)
    search(x, training=False)
    assert not search.losses  # the cost is a training loss only


def test_no_cost_loss_with_zero_strength_prunes_nothing_when_logits_do_not_move():
    search = figs_tf.wrap(residual_concat_depthwise_model(), strength=0.0)
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    search(x, training=True)
    assert float(to_numpy(search.losses[0])) == 0.0


def test_bad_arguments_give_clear_errors():
    model = residual_concat_depthwise_model()
    with pytest.raises(ValueError, match="Unknown cost 'latency'.*'params'.*'flops'"):
        figs_tf.wrap(model, cost="latency")
    with pytest.raises(ValueError, match="strength.*>= 0.*-1"):
        figs_tf.wrap(model, strength=-1.0)
    with pytest.raises(ValueError, match="Unknown estimator"):
        figs_tf.wrap(model, estimator="median")
    with pytest.raises(ValueError, match="no figs_tf gates"):
        figs_tf.export_architecture(model)
    with pytest.raises(ValueError, match="strength"):
        figs_tf.set_strength(figs_tf.wrap(model), -0.5)


def test_sampled_estimator_uses_the_sampled_gates():
    search = figs_tf.wrap(residual_concat_depthwise_model(), cost="params", strength=1.0,
                          estimator="sampled", seed=0)
    set_all_logits(search, 30.0)  # every sample is 1: the sampled cost is the full cost
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    search(x, training=True)
    assert float(to_numpy(search.losses[0])) == pytest.approx(figs_tf.count(residual_concat_depthwise_model(), "params"),
                                                              rel=1e-6)


def _mlp():
    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(keras.layers.Dense(16, name="hidden")(inputs)))


def _fit_warnings(search, callbacks=()):
    search.compile(optimizer="adam", loss="mse", jit_compile=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(np.zeros((4, 4), "float32"), np.zeros((4, 2), "float32"), epochs=1, verbose=0,
                   callbacks=list(callbacks))
    return [str(w.message) for w in caught if "figs_tf: the search model's cost has no weight" in str(w.message)]


def test_fit_without_cost_pressure_warns_and_names_the_fixes():
    found = _fit_warnings(figs_tf.wrap(_mlp()))  # strength 0, no target
    assert len(found) == 1
    assert all(fix in found[0] for fix in ("strength=", "target=", "figs_tf.BudgetController(target="))
    assert not _fit_warnings(figs_tf.wrap(_mlp(), strength=1e-6))
    set_by_hand = figs_tf.wrap(_mlp())
    figs_tf.set_strength(set_by_hand, 1e-6)
    assert not _fit_warnings(set_by_hand)
    assert not _fit_warnings(figs_tf.wrap(_mlp()), callbacks=[figs_tf.BudgetController(target=80)])


def test_input_names_survive_wrap_and_slim():
    def model(names):
        inputs = [keras.Input((6, 6, 3), name=name) for name in names]
        x = keras.layers.Concatenate(name="cat")(inputs)
        x = keras.layers.Conv2D(8, 3, name="conv")(x)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        return keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))

    def input_layer_names(m):
        return [t._keras_history[0].name for t in m.inputs]  # pylint: disable=protected-access

    for names in (("image", "depth"), (None, None)):
        original = model(names)
        search = figs_tf.wrap(original, strength=1e-6)
        slim = figs_tf.slim(search)
        expected = input_layer_names(original)  # the user's names, or what Keras gave: input_layer_N
        assert input_layer_names(search) == expected and input_layer_names(slim) == expected
        assert [t.name for t in slim.inputs] == expected
        if names[0] is None:
            assert not any(name.startswith("keras_tensor") for name in expected)
        x = {name: np.ones((1, 6, 6, 3), "float32") for name in expected}
        np.testing.assert_allclose(np.asarray(slim(x)), np.asarray(search(x, training=False)), rtol=1e-5)


def test_removed_names_are_gone():
    assert not hasattr(figs_tf, "ParetoCallback") and "ParetoCallback" not in figs_tf.__all__
    with pytest.raises(TypeError):
        figs_tf.CostCallback(None, target=12_000)  # λ control is figs_tf.BudgetController's
