"""Keras's image preprocessing and augmentation layers: channels pass through them.

Random augmentations (RandomFlip, RandomRotation, RandomBrightness, ...) act in
training and are the identity in inference; Rescaling, Resizing, CenterCrop,
AutoContrast and CLAHE act in both. Either way the layer keeps the channel
axis, and what the analysis must know is

- whether a channel's output depends on other channels: colour-space layers
  (RandomHue, RandomSaturation, RandomGrayscale, RandomColorDegeneration, and
  RandAugment and AugMix, which contain them) mix channels, so the channels
  they read are kept out of search (`ChannelMixing`);
- whether f(0) == 0 per channel, in training as well as in inference (a gate
  that closes a channel in training must close it for every reader): a
  geometric transform keeps zeros unless it fills new pixels with a non-zero
  constant; a layer that adds (RandomBrightness), inverts (RandomInvert,
  Solarization) or clips to a value range without 0 does not; and the
  scale-normalising layers (AutoContrast, Equalization, CLAHE) map a gated
  channel x·m̂ back to full range, so they count as not keeping zeros either,
  and the gate acts after them.

When f(0) != 0 the analysis places the gate after the layer, so a pruned
channel still reads as exactly zero wherever it is read; the search model in
inference then computes what the slimmed model computes.
"""

import keras
import numpy as np

from figs_tf.handlers.base import clone_layer, following_axes, per_channel_weight_terms
from figs_tf.handlers.per_channel import ChannelMixing, PerChannel, only_the_channel_axis


def fill_keeps_zero(layer):
    """Geometric transforms: new pixels are copies of old ones, or the constant `fill_value`."""
    return getattr(layer, "fill_mode", "constant") != "constant" or float(layer.fill_value) == 0.0


def value_range_holds_zero(layer):
    """Layers that clip their result to `value_range`: 0 survives the clip only inside it."""
    low, high = layer.value_range
    return low <= 0 <= high


def elastic_keeps_zero(layer):
    return fill_keeps_zero(layer) and value_range_holds_zero(layer)


def posterization_keeps_zero(layer):
    # Maps value_range to 0..255, keeps the top bits, maps back: 0 stays 0 only if it is the range's start.
    return float(layer.value_range[0]) == 0.0


def resizing_keeps_zero(layer):
    return not layer.pad_to_aspect_ratio or float(layer.fill_value) == 0.0


def resizing_keeps_uniform(call):
    """Interpolation and cropping keep a constant; padding to the aspect ratio adds a border of `fill_value`."""
    return not call.layer.pad_to_aspect_ratio


class ColorJitterHandler(PerChannel):
    """RandomColorJitter: mixes channels when it shifts saturation or hue (through HSV)."""

    def __init__(self):
        super().__init__(zero_preserving=self._keeps_zero)

    @staticmethod
    def _mixes(layer):
        return layer.saturation_factor is not None or layer.hue_factor is not None

    @classmethod
    def _keeps_zero(cls, layer):
        if cls._mixes(layer) or layer.brightness_factor is not None:
            return False
        return layer.contrast_factor is None or value_range_holds_zero(layer)

    def output_sets(self, call, in_sets, groups):
        out_sets = super().output_sets(call, in_sets, groups)
        if self._mixes(call.layer):
            groups.fix(in_sets[0], f"'{call.layer.name}' (RandomColorJitter) shifts saturation or hue, "
                       "which mixes channels")
        return out_sets


class RandomErasingHandler(PerChannel):
    """RandomErasing: fills patches with `fill_value` (None: noise), one value per channel if a list."""

    def __init__(self):
        super().__init__(zero_preserving=self._keeps_zero)

    @staticmethod
    def _keeps_zero(layer):
        fill = layer.fill_value
        return isinstance(fill, (int, float)) and float(fill) == 0.0 and value_range_holds_zero(layer)

    def output_sets(self, call, in_sets, groups):
        out_sets = super().output_sets(call, in_sets, groups)
        if isinstance(call.layer.fill_value, (list, tuple)):
            groups.fix(in_sets[0], f"'{call.layer.name}' (RandomErasing) has one fill value per channel")
        return out_sets


def _per_channel_constant(value, channels):
    """A Rescaling scale or offset that holds one entry per channel, as an array; else None."""
    array = np.asarray(value)
    if array.ndim and array.shape[-1] == channels and channels != 1:
        return array
    return None


class RescalingHandler(PerChannel):
    """Rescaling: x * scale + offset, with scalars or per-channel arrays (sliced when slimming).

    A per-channel scale broadcasts against the last axis, or against axis -3
    when Keras's `image_data_format` is channels_first (as Rescaling does).
    """

    def __init__(self):
        super().__init__(zero_preserving=lambda layer: bool(np.all(np.asarray(layer.offset) == 0)))

    def channel_axes(self, call, in_axes):
        rank = len(call.input_tensors[0].shape)
        if np.ndim(call.layer.scale) and keras.config.image_data_format() == "channels_first":
            return [rank - 3], [rank - 3]
        if np.ndim(call.layer.scale) or np.ndim(call.layer.offset):
            return [rank - 1], [rank - 1]
        return following_axes(call, in_axes)

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        channels = call.input_tensors[0].shape[call.read_axes[0]]
        changes = {}
        for key in ("scale", "offset"):
            array = _per_channel_constant(getattr(layer, key), channels)
            if array is not None:
                changes[key] = array[..., kept_in[0]].tolist()
        return clone_layer(layer, **changes), []


class NormalizationHandler(PerChannel):
    """Normalization: (x - mean) / sqrt(variance), per position of the axes it keeps.

    Its statistics are weights (after `adapt`) or config entries (`mean=`,
    `variance=`); along the channel axis both are sliced when slimming. f(0) is
    -mean / std, so the gate acts after it. Statistics per position (`axis`
    naming position axes) do not keep a constant the same at every position.
    """

    def __init__(self):
        super().__init__(zero_preserving=False, keeps_uniform=only_the_channel_axis(lambda layer: layer.axis))

    @staticmethod
    def _channel_dim(call, statistic_rank):
        """Index of the channel axis in a statistic aligned right-to-left to the kept axes, or None."""
        rank = len(call.input_tensors[0].shape)
        keep = sorted(a % rank for a in call.layer.axis)
        aligned = keep[len(keep) - statistic_rank:] if statistic_rank else []
        return aligned.index(call.read_axes[0]) if call.read_axes[0] in aligned else None

    def param_terms(self, call, in_sets, out_sets):
        return per_channel_weight_terms(call.layer, in_sets[0], lambda w: self._channel_dim(call, len(w.shape)))

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        channels = call.input_tensors[0].shape[call.read_axes[0]]

        def cut(array):
            array = np.asarray(array)
            dim = self._channel_dim(call, array.ndim)
            if dim is None or array.shape[dim] != channels:
                return array  # a statistic broadcast along the channel axis
            return np.take(array, kept_in[0], axis=dim)

        changes = {}
        if layer.input_mean is not None:
            changes = {"mean": cut(layer.input_mean).tolist(), "variance": cut(layer.input_variance).tolist()}
        return clone_layer(layer, **changes), [cut(w) for w in layer.get_weights()]


# Keras image preprocessing layers by how they treat channels (names, so that a
# Keras release without one of them still imports). Every layer of
# keras.src.layers.preprocessing.image_preprocessing is in exactly one list;
# tests/test_preprocessing_layers.py checks that, and checks each claim by
# running the layer.
ZERO_KEEPING = ("CenterCrop", "RandomCrop", "RandomFlip", "CutMix", "MixUp", "MaxNumBoundingBoxes")
FILL_KEEPS_ZERO = ("RandomRotation", "RandomZoom", "RandomTranslation", "RandomShear")
RANGE_HOLDS_ZERO = ("RandomContrast", "RandomGaussianBlur", "RandomSharpness")
NOT_ZERO_KEEPING = ("RandomBrightness", "RandomInvert", "Solarization", "AutoContrast", "Equalization",
                    "ContrastLimitedAdaptiveHistogramEqualization")
CHANNEL_MIXING = ("RandomHue", "RandomSaturation", "RandomGrayscale", "RandomColorDegeneration", "RandAugment",
                  "AugMix")


def preprocessing_handlers(layers_module):
    """{layer class: handler} of the image preprocessing layers `layers_module` (keras.layers) has."""
    table = {}

    def add(names, handler):
        for name in names:
            cls = getattr(layers_module, name, None)
            if cls is not None:
                table[cls] = handler

    add(ZERO_KEEPING, PerChannel(zero_preserving=True))
    add(FILL_KEEPS_ZERO, PerChannel(zero_preserving=fill_keeps_zero))
    add(RANGE_HOLDS_ZERO, PerChannel(zero_preserving=value_range_holds_zero))
    add(NOT_ZERO_KEEPING, PerChannel(zero_preserving=False))
    add(CHANNEL_MIXING, ChannelMixing())
    add(("RandomElasticTransform",), PerChannel(zero_preserving=elastic_keeps_zero))
    add(("RandomPerspective",), PerChannel(zero_preserving=lambda layer: float(layer.fill_value) == 0.0))
    add(("RandomPosterization",), PerChannel(zero_preserving=posterization_keeps_zero))
    add(("Resizing",), PerChannel(zero_preserving=resizing_keeps_zero, keeps_uniform=resizing_keeps_uniform))
    add(("RandomColorJitter",), ColorJitterHandler())
    add(("RandomErasing",), RandomErasingHandler())
    add(("Rescaling",), RescalingHandler())
    add(("Normalization",), NormalizationHandler())
    return table


__all__ = ["ColorJitterHandler", "NormalizationHandler", "RandomErasingHandler", "RescalingHandler",
           "preprocessing_handlers"]
