"""Every handler's claim that a constant stays a constant (`uniform_output`), checked by running the layer.

A dead summed branch is folded into a bias only where the handlers say its
constant is the same at every position (figs_tf.branches, docs/dead_branches.md);
a wrong "yes" makes `slim` fail or compute something else. For every layer type
of figs_tf's default tables (and keras_hub's, when it is installed) whose
handler can claim it, each sample configuration below (the options that change
the answer: padding, strides, Resizing's aspect-ratio options and
interpolation, normalised axes, shared axes) is called in inference on a
per-channel constant (the same value at every position, one per channel and
example; and on zeros, what a layer reading a closed branch sees) and its
output compared with the claim:

- a claim of "uniform" must hold (checked to 1e-5 of the output's scale);
- an output that is uniform where the handler says it may not be is a missed
  fold: allowed only where the sample names why the handler cannot know it
  (the sample's last entry).

A layer type in the tables without a sample fails the test, naming the type:
add its configurations to SAMPLES.
"""

import importlib
import keras
import numpy as np
import pytest

import figs_tf
from figs_tf import handlers
from figs_tf.handlers.base import LayerHandler

from helpers import runs_channels_first_convolutions, to_numpy

L = keras.layers
IMAGE = (6, 6, 3)
# Keras 3.15's Equalization returns its input tensor when called symbolically: no functional model holds it
NOT_IN_A_FUNCTIONAL_MODEL = {"Equalization"}


def _ops(name):
    """Builds `keras.ops.<name>` on the inputs (the op classes have no layer to construct)."""
    def build(inputs):
        if name == "divide":
            return inputs[0] / 3.0  # keras.ops.true_divide
        if name == "multiply":
            return inputs[0] * 0.5
        if name in ("gelu", "silu", "relu"):
            return getattr(keras.ops, name)(inputs[0])
        return getattr(keras.ops, name)(inputs[0], inputs[1])
    return build


def _grouped_depthwise(**kwargs):
    """Builds keras_hub MobileNet's depthwise convolution, a Conv2D with one group per channel, as its blocks'
    equivalents call it (figs_tf.handlers.keras_hub_convblocks.GroupedDepthwise)."""
    def build(inputs):
        from figs_tf.handlers.keras_hub_convblocks import GroupedDepthwise  # pylint: disable=g-import-not-at-top
        return GroupedDepthwise(L.Conv2D(6, 3, groups=3, **kwargs))(inputs[0])
    return build


def _padded(value):
    """Builds `keras.ops.pad` of the rows and columns with `value` (ResNetV2 pads with -inf)."""
    return lambda inputs: keras.ops.pad(inputs[0], [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=value)


def _samples():
    """{layer class name: [(label, constructor or kwargs, input shapes, None or why a miss is expected)]}."""
    same_valid = [("same", dict(padding="same")), ("valid", dict(padding="valid"))]
    conv2d = [(f"k3 {p}", dict(filters=2, kernel_size=3, **kw), [IMAGE], None) for p, kw in same_valid]
    conv2d += [("k1 same", dict(filters=2, kernel_size=1, padding="same"), [IMAGE], None),
               ("k3 valid strides 2 dilation 1", dict(filters=2, kernel_size=3, strides=2), [IMAGE], None),
               ("k2 valid dilation 2", dict(filters=2, kernel_size=2, dilation_rate=2), [IMAGE], None)]
    if runs_channels_first_convolutions():
        conv2d += [("channels_first k3 same", dict(filters=2, kernel_size=3, padding="same",
                                                   data_format="channels_first"), [(3, 6, 6)], None)]
    pool = [("same", dict(pool_size=3, strides=1, padding="same")), ("valid", dict(pool_size=2))]
    resize = []
    for interpolation in ("bilinear", "nearest", "bicubic", "area", "lanczos3"):
        resize += [(f"{interpolation} stretch", dict(height=6, width=6, interpolation=interpolation), [(6, 4, 3)],
                    None),
                   (f"{interpolation} crop_to_aspect_ratio", dict(height=6, width=6, interpolation=interpolation,
                                                                  crop_to_aspect_ratio=True), [(6, 4, 3)], None)]
    resize += [("pad_to_aspect_ratio", dict(height=6, width=6, pad_to_aspect_ratio=True), [(6, 4, 3)], None),
               ("pad_to_aspect_ratio fill 1", dict(height=6, width=6, pad_to_aspect_ratio=True, fill_value=1.0),
                [(6, 4, 3)], None),
               ("pad_to_aspect_ratio, same aspect ratio (nothing padded)",
                dict(height=6, width=6, pad_to_aspect_ratio=True), [(3, 3, 3)],
                "padding depends on the input's aspect ratio; the claim is made for any input")]
    identity_in_inference = {
        "RandomCrop": dict(height=4, width=4), "RandomFlip": {}, "RandomRotation": dict(factor=0.2),
        "RandomZoom": dict(height_factor=0.2), "RandomTranslation": dict(height_factor=0.2, width_factor=0.2),
        "RandomShear": dict(x_factor=0.2), "RandomContrast": dict(factor=0.2),
        "RandomGaussianBlur": {}, "RandomSharpness": dict(factor=0.2), "RandomBrightness": dict(factor=0.2),
        "RandomInvert": {}, "Solarization": dict(addition_factor=0.2), "RandomHue": dict(factor=0.2),
        "RandomSaturation": dict(factor=0.2), "RandomGrayscale": {}, "RandomColorDegeneration": dict(factor=0.2),
        "RandAugment": {}, "AugMix": {}, "RandomElasticTransform": {}, "RandomPerspective": {},
        "RandomPosterization": dict(factor=(4, 6)), "RandomColorJitter": dict(brightness_factor=0.2),
        "RandomErasing": {}, "CutMix": {}, "MixUp": {}, "AutoContrast": {}, "Equalization": {},
        "ContrastLimitedAdaptiveHistogramEqualization": dict(value_range=(0, 255)),
        "MaxNumBoundingBoxes": dict(max_number=2), "GaussianNoise": dict(stddev=0.1),
        "GaussianDropout": dict(rate=0.2), "AlphaDropout": dict(rate=0.2), "Dropout": dict(rate=0.2),
        "SpatialDropout2D": dict(rate=0.2), "Identity": {}, "ReLU": {}, "LeakyReLU": {}, "ELU": {},
    }
    samples = {name: [("default", kwargs, [IMAGE], None)] for name, kwargs in identity_in_inference.items()}
    samples.update({
        "Conv1D": [("k3 same", dict(filters=2, kernel_size=3, padding="same"), [(8, 3)], None),
                   ("k3 valid", dict(filters=2, kernel_size=3), [(8, 3)], None),
                   ("k3 causal", dict(filters=2, kernel_size=3, padding="causal"), [(8, 3)], None)],
        "Conv2D": conv2d,
        "Conv3D": [("k3 same", dict(filters=2, kernel_size=3, padding="same"), [(4, 4, 4, 2)], None),
                   ("k2 valid", dict(filters=2, kernel_size=2), [(4, 4, 4, 2)], None)],
        "Dense": [("on positions", dict(units=2), [IMAGE], None), ("on a vector", dict(units=2), [(3,)], None)],
        "SeparableConv1D": [(p, dict(filters=2, kernel_size=3, **kw), [(8, 3)], None) for p, kw in same_valid],
        "SeparableConv2D": [(p, dict(filters=2, kernel_size=3, **kw), [IMAGE], None) for p, kw in same_valid],
        "DepthwiseConv1D": [(p, dict(kernel_size=3, **kw), [(8, 3)], None) for p, kw in same_valid],
        "DepthwiseConv2D": [(p, dict(kernel_size=3, **kw), [IMAGE], None) for p, kw in same_valid]
        + [("k1", dict(kernel_size=1), [IMAGE], None)],
        "Conv1DTranspose": [("k3 s1 same", dict(filters=2, kernel_size=3, padding="same"), [(8, 3)], None)],
        "Conv2DTranspose": [("k3 s1 same", dict(filters=2, kernel_size=3, padding="same"), [IMAGE], None),
                            ("k2 s2", dict(filters=2, kernel_size=2, strides=2), [IMAGE], None),
                            ("k1 s1", dict(filters=2, kernel_size=1), [IMAGE],
                             "a 1x1 transposed convolution spreads nothing; the handler treats all alike")],
        "Conv3DTranspose": [("k2 s2", dict(filters=2, kernel_size=2, strides=2), [(4, 4, 4, 2)], None)],
        "BatchNormalization": [("channels", {}, [IMAGE], None), ("rows (axis 1)", dict(axis=1), [IMAGE], None)],
        "LayerNormalization": [("channels", {}, [IMAGE], None),
                               ("positions and channels", dict(axis=(1, 2, 3)), [IMAGE], None),
                               ("positions", dict(axis=(1, 2)), [IMAGE], None)],
        "GroupNormalization": [("groups of channels", dict(groups=3), [IMAGE], None)],
        "Softmax": [("channels", {}, [IMAGE], None), ("positions", dict(axis=(1, 2)), [IMAGE], None)],
        "Activation": [(name, dict(activation=name), [IMAGE], None) for name in ("relu", "sigmoid", "softmax")],
        "PReLU": [("alpha per position", {}, [IMAGE], None),
                  ("alpha shared over positions", dict(shared_axes=[1, 2]), [IMAGE], None),
                  ("alpha shared over rows", dict(shared_axes=[1]), [IMAGE], None)],
        "ZeroPadding1D": [("1", dict(padding=1), [(8, 3)], None)],
        "ZeroPadding2D": [("1", dict(padding=1), [IMAGE], None)],
        "ZeroPadding3D": [("1", dict(padding=1), [(4, 4, 4, 2)], None)],
        "Cropping1D": [("1", dict(cropping=1), [(8, 3)], None)],
        "Cropping2D": [("1", dict(cropping=1), [IMAGE], None)],
        "Cropping3D": [("1", dict(cropping=1), [(4, 4, 4, 2)], None)],
        "UpSampling1D": [("2", dict(size=2), [(8, 3)], None)],
        "UpSampling2D": [(i, dict(size=2, interpolation=i), [IMAGE], None) for i in ("nearest", "bilinear")],
        "UpSampling3D": [("2", dict(size=2), [(4, 4, 4, 2)], None)],
        "MaxPooling1D": [(p, kw, [(8, 3)], None) for p, kw in pool],
        "MaxPooling2D": [(p, kw, [IMAGE], None) for p, kw in pool]
        + ([("channels_first same", dict(pool_size=3, strides=1, padding="same", data_format="channels_first"),
             [(3, 6, 6)], None)]),
        "MaxPooling3D": [("valid", dict(pool_size=2), [(4, 4, 4, 2)], None)],
        "AveragePooling1D": [(p, kw, [(8, 3)], None) for p, kw in pool],
        "AveragePooling2D": [(p, kw, [IMAGE], None) for p, kw in pool],
        "AveragePooling3D": [("same", dict(pool_size=3, strides=1, padding="same"), [(4, 4, 4, 2)], None)],
        "GlobalAveragePooling1D": [("keepdims", dict(keepdims=True), [(8, 3)], None)],
        "GlobalAveragePooling2D": [("keepdims", dict(keepdims=True), [IMAGE], None)],
        "GlobalAveragePooling3D": [("keepdims", dict(keepdims=True), [(4, 4, 4, 2)], None)],
        "GlobalMaxPooling1D": [("keepdims", dict(keepdims=True), [(8, 3)], None)],
        "GlobalMaxPooling2D": [("keepdims", dict(keepdims=True), [IMAGE], None)],
        "GlobalMaxPooling3D": [("keepdims", dict(keepdims=True), [(4, 4, 4, 2)], None)],
        "SpatialDropout1D": [("0.2", dict(rate=0.2), [(8, 3)], None)],
        "SpatialDropout3D": [("0.2", dict(rate=0.2), [(4, 4, 4, 2)], None)],
        "CenterCrop": [("smaller", dict(height=4, width=4), [IMAGE], None),
                       ("larger (resized up)", dict(height=8, width=8), [IMAGE], None)],
        "Resizing": resize,
        "Rescaling": [("scalar with offset", dict(scale=0.5, offset=0.1), [IMAGE], None),
                      ("per channel", dict(scale=[0.5, 1.0, 2.0]), [IMAGE], None)],
        "Normalization": [("per channel", dict(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0]), [IMAGE], None),
                          ("per position and channel", dict(axis=(1, 2, 3), mean=np.linspace(-1, 1, 108).reshape(
                              6, 6, 3).tolist(), variance=np.linspace(1, 2, 108).reshape(6, 6, 3).tolist()),
                           [IMAGE], None),
                          ("one statistic", dict(axis=None, mean=0.5, variance=2.0), [IMAGE], None)],
        "Masking": [("0", dict(mask_value=0.0), [(8, 3)], None)],
        "Add": [("two", {}, [IMAGE, IMAGE], None)], "Subtract": [("two", {}, [IMAGE, IMAGE], None)],
        "Average": [("two", {}, [IMAGE, IMAGE], None)], "Maximum": [("two", {}, [IMAGE, IMAGE], None)],
        "Minimum": [("two", {}, [IMAGE, IMAGE], None)], "Multiply": [("two", {}, [IMAGE, IMAGE], None)],
        "Concatenate": [("channels", {}, [IMAGE, IMAGE], None), ("rows", dict(axis=1), [IMAGE, IMAGE], None)],
        "numpy.Add": [("x + y", _ops("add"), [IMAGE, IMAGE], None)],
        "numpy.Subtract": [("x - y", _ops("subtract"), [IMAGE, IMAGE], None)],
        "numpy.Multiply": [("x * 0.5", _ops("multiply"), [IMAGE], None)],
        "numpy.TrueDivide": [("x / 3", _ops("divide"), [IMAGE], None)],
        "Gelu": [("gelu(x)", _ops("gelu"), [IMAGE], None)],
        "Silu": [("silu(x)", _ops("silu"), [IMAGE], None)],
        "Relu": [("relu(x)", _ops("relu"), [IMAGE], None)],
        "numpy.Split": [("channels in two", lambda inputs: keras.ops.split(inputs[0], [1], axis=-1), [IMAGE], None),
                        ("rows in two", lambda inputs: keras.ops.split(inputs[0], 2, axis=1), [IMAGE], None)],
        "numpy.Pad": [(f"rows and columns with {value}", _padded(value), [IMAGE], None)
                      for value in (0.0, 1.0, float("-inf"))],
        "EinsumDense": [("a Dense on positions", dict(equation="abc,cd->abd", output_shape=(None, 2), bias_axes="d"),
                         [(8, 3)], None),
                        ("a Dense without bias", dict(equation="abc,cd->abd", output_shape=(None, 2)), [(8, 3)],
                         None)],
        "RMSNormalization": [("channels", {}, [IMAGE], None),
                             ("positions and channels", dict(axis=(1, 2, 3)), [IMAGE],
                              "zeros stay zeros (no β); the handler shares LayerNormalization's rule")],
        **{name: [("channels", {}, [IMAGE], None)] for name in (
            "LlamaLayerNorm", "MistralLayerNormalization", "Phi3LayerNorm", "keras_hub.RMSNormalization",
            "T5LayerNorm")},
        "Qwen3LayerNorm": [("channels", dict(head_dim=3), [IMAGE], None)],
        "Flatten": [("image", {}, [IMAGE], None)],
        "Reshape": [("positions as a sequence", dict(target_shape=(36, 3)), [IMAGE], None),
                    ("rows as features", dict(target_shape=(6, 18)), [IMAGE],
                     "the channels are mixed into the features; the handler claims nothing of such reshapes")],
        "Permute": [("rows and columns swapped", dict(dims=(2, 1, 3)), [IMAGE], None)],
        "LayerScale": [("per channel", dict(init_values=0.5, projection_dim=3), [IMAGE], None)],
        "ChannelBias": [("per channel", {}, [IMAGE], None)],
        "PositionEmbedding": [("a sequence", dict(sequence_length=8), [(8, 3)], None)],
        "GroupedDepthwise": [(f"Conv2D(groups=3) k3 {p}", _grouped_depthwise(padding=p), [IMAGE], None)
                             for p in ("same", "valid")],
        "ViTPatchingAndEmbedding": [("8x8 image, 4x4 patches", dict(image_size=(8, 8), patch_size=(4, 4),
                                                                    hidden_dim=4, num_channels=3), [(8, 8, 3)],
                                     None)],
        "DropPath": [("Swin's stochastic depth, in inference", dict(drop_prob=0.5), [IMAGE], None)],
        "DeiTEmbeddings": [("8x8 image, 4x4 patches", dict(image_size=(8, 8), patch_size=(4, 4), hidden_dim=4),
                            [(8, 8, 3)], None)],
        "DINOV2Embedding": [("8x8 image, 4x4 patches, registers", dict(hidden_dim=4, patch_size=4, image_shape=(8, 8),
                                                                     num_register_tokens=1,
                                                                     position_embedding_shape=(12, 12)),
                             [(8, 8, 3)], None)],
        "SigLIPVisionEmbedding": [("8x8 image, 4x4 patches", dict(hidden_dim=4, patch_size=4, image_size=8),
                                   [(8, 8, 3)], None)],
        "DINOV2LayerScale": [("per channel", dict(hidden_dim=3, init_values=0.5), [IMAGE], None)],
        "DINOV2DropPath": [("rate 0.5 (identity in inference)", dict(rate=0.5), [IMAGE], None)],
        "DINOV3Embedding": [("8x8 image, 4x4 patches, registers", dict(hidden_dim=4, patch_size=4,
                                                                     num_register_tokens=1), [(8, 8, 3)], None)],
        "DINOV3LayerScale": [("per channel", dict(hidden_dim=3, init_values=0.5), [IMAGE], None)],
        "DINOV3DropPath": [("rate 0.5 (identity in inference)", dict(rate=0.5), [IMAGE], None)],
    })
    return samples


def _tables():
    """{class: handler} of figs_tf's default table, plus keras_hub's where keras_hub is installed."""
    table = dict(handlers.DEFAULT_HANDLERS)
    try:
        import keras_hub  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
        keras_hub = None
    if keras_hub is not None:
        for module_name, table_function in handlers._KERAS_HUB_TABLES:  # pylint: disable=protected-access
            table.update(getattr(importlib.import_module(f"figs_tf.handlers.{module_name}"), table_function)())
    from figs_tf.channel_bias import ChannelBias  # pylint: disable=g-import-not-at-top
    from figs_tf.handlers.registry import find_handler_of_class  # pylint: disable=g-import-not-at-top
    table[ChannelBias] = find_handler_of_class(ChannelBias)
    return table


def _key(cls):
    if cls.__module__.startswith("keras_hub") and hasattr(keras.layers, cls.__name__):
        return f"keras_hub.{cls.__name__}"  # Gemma's RMSNormalization is not Keras's
    return f"numpy.{cls.__name__}" if cls.__module__.endswith("ops.numpy") else cls.__name__


def _claims_anything(handler):
    return type(handler).uniform_output is not LayerHandler.uniform_output


def _randomize(layer, rng):
    """Float weights drawn at random (position-dependent weights then show), variances positive."""
    for weight in getattr(layer, "weights", []):  # a keras.ops operation has none
        if "float" in str(weight.dtype) and (weight.trainable or "moving" in weight.path):
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(weight.dtype))


def _constant(shape, axis, rng, zero):
    """A batch of 2 with one value per (example, channel) along `axis`, the same at every other position."""
    shape = (2,) + tuple(shape)
    if zero:
        return np.zeros(shape, np.float32)
    values = rng.uniform(-1.0, 1.0, (2, shape[axis])).astype(np.float32)
    values[1] = np.abs(values[1]) + 0.1  # one example all positive (value ranges, log-like layers)
    values[0, 0] = -abs(values[0, 0]) - 0.1  # and one negative value whatever the draw (PReLU's alpha shows)
    index = [slice(None)] + [None] * (len(shape) - 1)
    index[axis] = slice(None)
    return np.broadcast_to(values[tuple(index)], shape).copy()


def _is_uniform(value, axis):
    if value.ndim <= 2:
        return True  # no positions (what figs_tf.branches assumes too)
    moved = np.moveaxis(value, axis, -1).reshape(value.shape[0], -1, value.shape[axis])
    finite = moved[np.isfinite(moved)]  # -inf padding (ResNetV2's) is compared as a value, not a scale
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    return bool(np.allclose(moved, moved[:, :1], rtol=0, atol=1e-5 * scale, equal_nan=True))


def _run(cls, handler, label, make, shapes, rng):
    """(claimed, observed) for a non-zero constant and for zeros."""
    inputs = [keras.Input(shape) for shape in shapes]
    if callable(make) and not isinstance(make, dict):
        outputs = make(inputs)
    else:
        layer = cls(**make)
        outputs = layer(inputs[0] if len(inputs) == 1 else inputs)
    model = keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs)
    graph = figs_tf.analyze(model)
    call = next(c for c in graph.calls if type(c.layer) is cls)
    _randomize(call.layer, rng)
    results = []
    for zero in (False, True):
        # figs_tf.branches does not ask about outputs without positions (rank <= 2): they are uniform
        claim = all(len(t.shape) <= 2 for t in call.output_tensors) or bool(
            handler.uniform_output(call, [True] * len(shapes), [zero] * len(shapes)))
        x = [_constant(s, axis, rng, zero) for s, axis in zip(shapes, call.read_axes)]
        y = keras.tree.flatten(model(x if len(x) > 1 else x[0], training=False))
        out_axes = [len(t.shape) - 1 if a is None else a for t, a in zip(call.output_tensors, call.output_axes)]
        observed = all(_is_uniform(to_numpy(v), a) for v, a in zip(y, out_axes))
        results.append((("zeros" if zero else "constant"), claim, observed))
    return results


def test_every_uniform_claim_holds_on_a_per_channel_constant():
    samples = _samples()
    table = _tables()
    missing = sorted(_key(cls) for cls, handler in table.items() if _claims_anything(handler) and
                     _key(cls) not in samples)
    assert not missing, (f"layer types whose handler has uniform_output but no sample configuration: {missing}; "
                         "add them to SAMPLES in tests/test_uniform_claims.py")
    rng = np.random.default_rng(0)
    wrong, missed, checked = [], [], 0
    for cls, handler in table.items():
        if not _claims_anything(handler):
            continue
        for label, make, shapes, why_missed in samples[_key(cls)]:
            if _key(cls) in NOT_IN_A_FUNCTIONAL_MODEL:
                with pytest.raises(ValueError, match="cycle"):  # when this fails, Keras fixed it: drop the entry
                    _run(cls, handler, label, make, shapes, rng)
                continue
            for case, claim, observed in _run(cls, handler, label, make, shapes, rng):
                checked += 1
                if claim and not observed:
                    wrong.append(f"{_key(cls)} ({label}, {case})")
                elif observed and not claim and not why_missed:
                    missed.append(f"{_key(cls)} ({label}, {case})")
    print(f"\nuniform claims: {checked} checked over {len(table)} layer types")
    assert not wrong, f"handlers claim a constant stays uniform, the layer says otherwise: {wrong}"
    assert not missed, (f"the output stayed uniform but the handler does not claim it (a branch keeps a channel "
                        f"for nothing): {missed}; make the claim, or give the sample the reason it cannot")
