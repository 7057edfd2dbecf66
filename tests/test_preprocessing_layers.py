"""Image preprocessing and augmentation layers inside a model: channels pass through, exactly.

What each handler claims about a layer (does a channel's output depend on other
channels? is f(0) == 0 per channel, in training and in inference?) is checked
against the layer itself, run on an image with one all-zero channel.
"""

import inspect
import types

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.handlers import DEFAULT_HANDLERS, PerChannel

from helpers import (check_all_gates_on_is_the_supernet, check_fresh_build_matches_slim, check_random_gates_slim_exactly,
                     randomize_batchnorm, to_numpy)

L = keras.layers
IMAGE_PREPROCESSING_MODULE = "keras.src.layers.preprocessing.image_preprocessing"

# (layer name, constructor arguments): every image preprocessing layer, and the
# configurations that change its answer (a non-zero fill, a value range without 0).
CONFIGS = [
    ("CenterCrop", dict(height=6, width=6)),
    ("RandomCrop", dict(height=6, width=6)),
    ("RandomFlip", {}),
    ("CutMix", {}),
    ("MixUp", {}),
    ("MaxNumBoundingBoxes", dict(max_number=2)),
    ("RandomRotation", dict(factor=0.3)),
    ("RandomRotation", dict(factor=0.3, fill_mode="constant", fill_value=1.0)),
    ("RandomZoom", dict(height_factor=(0.3, 0.5), fill_mode="constant")),
    ("RandomZoom", dict(height_factor=(0.3, 0.5), fill_mode="constant", fill_value=2.0)),
    ("RandomTranslation", dict(height_factor=0.3, width_factor=0.3, fill_mode="nearest")),
    ("RandomTranslation", dict(height_factor=0.3, width_factor=0.3, fill_mode="constant", fill_value=0.5)),
    ("RandomShear", dict(x_factor=0.5, y_factor=0.5)),
    ("RandomShear", dict(x_factor=0.5, y_factor=0.5, fill_mode="constant", fill_value=1.0)),
    ("RandomElasticTransform", dict(factor=1.0)),
    ("RandomElasticTransform", dict(factor=1.0, scale=1.0, fill_mode="constant", fill_value=3.0)),
    ("RandomPerspective", dict(factor=1.0)),
    ("RandomPerspective", dict(factor=1.0, fill_value=1.0)),
    ("RandomContrast", dict(factor=0.5)),
    ("RandomContrast", dict(factor=0.5, value_range=(10, 255))),
    ("RandomGaussianBlur", dict(factor=1.0)),
    ("RandomSharpness", dict(factor=0.5)),
    ("RandomSharpness", dict(factor=0.5, value_range=(20, 255))),
    ("RandomPosterization", dict(factor=(1, 4))),
    ("RandomPosterization", dict(factor=(1, 4), value_range=(-255, 255))),
    ("Resizing", dict(height=5, width=5)),
    ("Resizing", dict(height=4, width=8, pad_to_aspect_ratio=True, fill_value=1.0)),
    ("RandomBrightness", dict(factor=0.3)),
    ("RandomInvert", dict(factor=1.0)),
    ("Solarization", dict(addition_factor=0.3, threshold_factor=0.5)),
    ("AutoContrast", {}),
    ("Equalization", {}),
    ("ContrastLimitedAdaptiveHistogramEqualization", {}),
    ("RandomErasing", dict(factor=1.0)),
    ("RandomErasing", dict(factor=1.0, fill_value=0.0)),
    ("RandomErasing", dict(factor=1.0, fill_value=[1.0, 2.0, 3.0])),
    ("RandomColorJitter", dict(brightness_factor=0.2)),
    ("RandomColorJitter", dict(contrast_factor=0.5)),
    ("RandomColorJitter", dict(hue_factor=0.3)),
    ("RandomHue", dict(factor=0.5)),
    ("RandomSaturation", dict(factor=0.5)),
    ("RandomGrayscale", dict(factor=1.0)),
    ("RandomColorDegeneration", dict(factor=0.5)),
    ("RandAugment", {}),
    ("AugMix", {}),
    ("Rescaling", dict(scale=0.5)),
    ("Rescaling", dict(scale=1 / 127.5, offset=-1.0)),
    ("Rescaling", dict(scale=[1.0, 2.0, 3.0], offset=[0.0, 0.0, 0.0])),
    ("Normalization", dict(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0])),
]
# Declared "f(0) != 0" although a zero channel stays zero: they rescale each channel to full range, so a
# channel the gate scales down comes back; the gate must act after them.
SCALE_NORMALISING = {"AutoContrast", "Equalization", "ContrastLimitedAdaptiveHistogramEqualization"}
# Random choice among many operations, some of which mix channels: a few draws may not show it.
SOMETIMES_MIXING = {"RandAugment", "AugMix"}


def _config_is_per_channel(kwargs):
    """A list of per-channel values in the config (RandomErasing's fill): slimming could not cut it."""
    return isinstance(kwargs.get("fill_value"), list)


def _make(name, kwargs, seed=None):
    cls = getattr(L, name)
    if seed is not None and "seed" in inspect.signature(cls.__init__).parameters:
        kwargs = dict(kwargs, seed=seed)
    return cls(**kwargs)


def _observed(name, kwargs):
    """(keeps a zero channel zero, leaves channel 0 alone when channel 2 changes), over draws and modes."""
    rng = np.random.default_rng(0)
    x = (rng.random((2, 8, 8, 3)) * 255).astype("float32")
    x[..., 1] = 0.0
    other = x.copy()
    other[..., 2] = 255.0 - other[..., 2]
    keeps_zero, independent = True, True
    for seed, training in ((1, True), (2, True), (3, True), (4, False)):
        a = to_numpy(_make(name, kwargs, seed)(x, training=training))
        b = to_numpy(_make(name, kwargs, seed)(other, training=training))
        keeps_zero &= bool(np.all(a[..., 1] == 0))
        independent &= a.shape == b.shape and bool(np.allclose(a[..., 0], b[..., 0]))
    return keeps_zero, independent


def _declared(name, kwargs):
    """What figs_tf's handler says: (keeps zeros, channels stay prunable through it)."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(3, 1, name="c")(inputs)
    layer = _make(name, kwargs)
    x = layer(x)
    outputs = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    try:
        model = keras.Model(inputs, outputs)
    except ValueError as error:  # Keras 3.15's Equalization returns its input tensor: no functional model has it
        assert name == "Equalization" and "cycle" in str(error)
        handler = DEFAULT_HANDLERS[type(layer)]
        return not handler.output_dirty(types.SimpleNamespace(layer=layer), [False]), type(handler) is PerChannel
    graph = figs_tf.analyze(model)
    call = graph.calls[1]
    return not graph.handler(call).output_dirty(call, [False]), graph.num_groups == 1


def test_every_image_preprocessing_layer_of_keras_has_a_handler():
    image_layers = {getattr(L, n) for n in dir(L) if isinstance(getattr(L, n), type)
                    and getattr(L, n).__module__.startswith(IMAGE_PREPROCESSING_MODULE)}
    assert len(image_layers) >= 30
    assert image_layers <= set(DEFAULT_HANDLERS), sorted(c.__name__ for c in image_layers - set(DEFAULT_HANDLERS))
    assert {getattr(L, name) for name, _ in CONFIGS} >= image_layers  # and the claims test below runs each one


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_handler_claims_match_what_the_layer_does(name, kwargs):
    if _config_is_per_channel(kwargs) and keras.backend.backend() != "tensorflow":
        pytest.skip("Keras 3.15's RandomErasing cannot fill with a list of values on this backend")
    declared_zero, declared_per_channel = _declared(name, kwargs)
    observed_zero, observed_independent = _observed(name, kwargs)
    # Soundness, which exactness needs: a layer said to keep zeros keeps them; one said to act per channel does.
    if declared_zero:
        assert observed_zero
    if declared_per_channel:
        assert observed_independent
    # Precision: nothing is masked or kept out of search without cause (except where the docstring says why).
    if name not in SCALE_NORMALISING:
        assert declared_zero == observed_zero or not declared_per_channel
    if name not in SOMETIMES_MIXING and not _config_is_per_channel(kwargs):
        assert declared_per_channel == observed_independent
    else:  # mixes channels in some draws, or fills with one value per channel: kept out of search
        assert not declared_per_channel


def _tutorial_model():
    """Keras's image-classification tutorial: augmentation and rescaling inside the model."""
    return keras.Sequential([
        keras.Input((24, 24, 3)),
        L.RandomFlip("horizontal", name="flip"),
        L.RandomRotation(0.1, name="rotate"),
        L.RandomZoom(0.1, name="zoom"),
        L.Rescaling(1.0 / 255, name="rescale"),
        L.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        L.MaxPooling2D(name="pool1"),
        L.Conv2D(12, 3, padding="same", activation="relu", name="conv2"),
        L.MaxPooling2D(name="pool2"),
        L.Dropout(0.2, name="dropout"),
        L.Flatten(name="flatten"),
        L.Dense(16, activation="relu", name="hidden"),
        L.Dense(5, name="logits"),
    ], name="tutorial")


def test_the_tutorial_model_with_augmentation_wraps_and_slims_exactly():
    model = _tutorial_model()
    x = np.random.default_rng(0).uniform(0, 255, (3, 24, 24, 3)).astype(np.float32)
    assert figs_tf.count(model, "params") == model.count_params()
    # FLOPs by hand: two 3x3 convs at 24x24 and 12x12, then the Dense layers on 6*6*12 features.
    assert figs_tf.count(model, "flops") == 24 * 24 * 9 * 3 * 8 + 12 * 12 * 9 * 8 * 12 + 6 * 6 * 12 * 16 + 16 * 5
    check_all_gates_on_is_the_supernet(model, x)
    search, slim, _ = check_random_gates_slim_exactly(model, x)
    # The augmentation stays in the slim model and still acts in training only.
    assert {"flip", "rotate", "zoom", "rescale"} <= {layer.name for layer in slim.layers}
    assert not np.allclose(to_numpy(slim(x, training=True)), to_numpy(slim(x, training=False)))
    search.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    kernel = to_numpy(model.layers[-1].kernel).copy()
    history = search.fit(x, np.array([0, 1, 2]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.abs(to_numpy(model.layers[-1].kernel) - kernel).max() > 0  # through the augmentation, it trains
    check_fresh_build_matches_slim(model)


# Augmentations between layers whose channels are searched: chains of per-channel
# layers (the gate has to act after those that do not keep zeros), and a
# channel-mixing one (its input channels are kept out of search).
CHAINS = {
    "zero_keeping": lambda: [L.RandomFlip(), L.RandomRotation(0.2, fill_mode="constant"), L.RandomZoom(0.2),
                     L.RandomTranslation(0.1, 0.1), L.RandomContrast(0.3), L.RandomGaussianBlur(),
                     L.CenterCrop(6, 6), L.Resizing(7, 7)],
    "not_zero_keeping": lambda: [L.RandomBrightness(0.2, value_range=(-100, 100)),
                         L.Rescaling([1.0, 2.0, 0.5, 1.5, 1.0, 3.0], offset=[0.1, 0.0, 0.2, 0.0, 0.0, 0.3]),
                         L.Normalization(mean=[0.1] * 6, variance=[2.0] * 6), L.AutoContrast(value_range=(-5, 5)),
                         L.RandomInvert(), L.Resizing(4, 8, pad_to_aspect_ratio=True, fill_value=0.5)],
    "mixing": lambda: [L.RandomGrayscale(0.5), L.RandomHue(0.2)],
}


@pytest.mark.parametrize("chain", list(CHAINS))
def test_augmentation_between_searched_layers_slims_exactly(chain):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6 if chain != "mixing" else 3, 3, padding="same", name="c")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    for layer in CHAINS[chain]():
        x = layer(x)
    x = L.Conv2D(5, 3, padding="same", activation="relu", name="d")(x)
    outputs = L.Dense(3, name="out")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    randomize_batchnorm(model, np.random.default_rng(0))
    graph = figs_tf.analyze(model)
    assert {p for g in graph.groups for p in g.producers} == ({"d"} if chain == "mixing" else {"c", "d"})
    x = np.random.default_rng(1).uniform(-2, 2, (2, 8, 8, 3)).astype(np.float32)
    assert figs_tf.count(model, "params") == model.count_params()
    check_all_gates_on_is_the_supernet(model, x)
    check_random_gates_slim_exactly(model, x, seed=3)


def test_an_adapted_normalization_between_searched_layers_is_sliced():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="c")(inputs)
    norm = L.Normalization(name="norm")
    norm.adapt(np.random.default_rng(0).normal(2.0, 3.0, (16, 6, 6, 8)).astype(np.float32))
    x = norm(x)
    outputs = L.Dense(2, name="out")(L.Flatten()(L.Conv2D(4, 1, name="d")(x)))
    model = keras.Model(inputs, outputs)
    assert figs_tf.count(model, "params") == model.count_params() == 3 * 3 * 3 * 8 + 8 + (8 + 8 + 1) + 8 * 4 + 4 + 144 * 2 + 2
    x = np.random.default_rng(1).random((2, 6, 6, 3)).astype(np.float32)
    _, slim, _ = check_random_gates_slim_exactly(model, x)
    kept = slim.get_layer("c").kernel.shape[-1]
    assert [w.shape for w in slim.get_layer("norm").get_weights()][:2] == [(kept,), (kept,)]
