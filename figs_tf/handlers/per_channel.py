"""Layers that keep the channel axis: per-channel layers, BatchNorm, activations, channel-mixing ones."""

import numpy as np

from figs_tf.channel_sets import num_channels
from figs_tf.handlers.base import (CHANNEL_MIXING_ACTIVATIONS, ZERO_PRESERVING_ACTIVATIONS, LayerHandler,
                                   UnsupportedLayerError, activation_name, clone_layer, data_format_axis,
                                   following_axes, per_channel_weight_terms, weight_channel_dim)


class PerChannel(LayerHandler):
    """A layer that acts on each channel separately and keeps the channel axis.

    The channel axis is the one the layer's `data_format` names (pooling,
    padding, image preprocessing), else wherever its input has it. Weights
    that run along the channel axis are sliced with the channels (a
    per-channel scale, BatchNorm's statistics); others are kept.

    Args:
      zero_preserving: f(0) == 0 channel-wise (ReLU, pooling, padding,
        dropout), so a pruned channel stays zero through it: a bool, or a
        function of the layer (an Activation depends on its function).
      keeps_uniform: an input with the same value at every position gives
        an output with the same value at every position (False for padding,
        whose border differs, and for weights or statistics per position):
        a bool, or a function of the `keras_graph.LayerCall` (its layer's
        options and shapes, `call.read_axes`). tests/test_uniform_claims.py
        checks each default entry's answer by running the layer.

    Example:

    >>> figs_tf.register_handler(MyGate, figs_tf.handlers.PerChannel(zero_preserving=True))
    """

    def __init__(self, zero_preserving, keeps_uniform=True):
        self.zero_preserving = zero_preserving
        self.keeps_uniform = keeps_uniform

    def _preserves_zero(self, layer):
        if callable(self.zero_preserving):
            return self.zero_preserving(layer)
        return self.zero_preserving

    def channel_axes(self, call, in_axes):
        layer = call.layer
        if getattr(layer, "data_format", None) is None:
            return following_axes(call, in_axes)
        read = data_format_axis(layer, len(call.input_tensors[0].shape))
        return [read] * len(call.input_tensors), [data_format_axis(layer, len(t.shape)) for t in call.output_tensors]

    def output_sets(self, call, in_sets, groups):
        layer = call.layer
        channels = call.input_tensors[0].shape[call.read_axes[0]]
        for out, axis in zip(call.output_tensors, call.output_axes):
            axis = len(out.shape) - 1 if axis is None else axis  # channels never pruned, read on the last axis
            if out.shape[axis] != channels:
                raise UnsupportedLayerError(
                    f"Layer '{layer.name}' ({type(layer).__name__}) changes its channel axis "
                    f"from {channels} to {out.shape[axis]} entries; figs_tf expected it to keep "
                    "channels. Register a handler for this use, or exclude the layer.")
        return [in_sets[0] for _ in call.output_tensors]

    def output_dirty(self, call, in_dirty):
        return in_dirty[0] or not self._preserves_zero(call.layer)

    def param_terms(self, call, in_sets, out_sets):
        shape, channels = tuple(call.input_tensors[0].shape), num_channels(in_sets[0])
        axis = call.read_axes[0] % len(shape)
        return per_channel_weight_terms(call.layer, in_sets[0],
                                        lambda w: weight_channel_dim(tuple(w.shape), shape, axis, channels))

    def uniform_output(self, call, in_uniform, in_zero):
        if all(in_zero) and self._preserves_zero(call.layer):
            return True  # zeros everywhere
        if not all(in_uniform):
            return False
        return bool(self.keeps_uniform(call)) if callable(self.keeps_uniform) else self.keeps_uniform

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        shape = tuple(call.input_tensors[0].shape)
        axis = call.read_axes[0]
        weights = []
        for weight in layer.get_weights():
            dim = weight_channel_dim(weight.shape, shape, axis, shape[axis])
            if dim is not None:
                weight = np.take(weight, kept_in[0], axis=dim)
            weights.append(weight)
        return clone_layer(layer), weights


class ChannelMixing(PerChannel):
    """Keeps the last axis but mixes channels (GroupNormalization, softmax over channels).

    Removing a channel would change every other channel's value, so these
    channels are kept out of search (their groups are fixed).
    """

    def __init__(self):
        super().__init__(zero_preserving=False)

    def output_sets(self, call, in_sets, groups):
        out_sets = super().output_sets(call, in_sets, groups)
        groups.fix(in_sets[0], f"'{call.name}' ({type(call.layer).__name__}) mixes channels")
        return out_sets


def only_the_channel_axis(axes):
    """keeps_uniform of a layer with statistics or weights along `axes(layer)`: a constant stays one
    only if they run along the channel axis alone (None or no axes: one value for every position)."""
    def keeps_uniform(call):
        rank = len(call.input_tensors[0].shape)
        chosen = axes(call.layer)
        chosen = [] if chosen is None else [chosen] if isinstance(chosen, int) else list(chosen)
        return all(a % rank == call.read_axes[0] for a in chosen)
    return keeps_uniform


def prelu_keeps_uniform(call):
    """PReLU's alpha is per position unless `shared_axes` covers every position axis."""
    rank = len(call.input_tensors[0].shape)
    shared = {a % rank for a in (call.layer.shared_axes or [])}
    return all(a in shared for a in range(1, rank) if a != call.read_axes[0])


class LayerNormalizationHandler(ChannelMixing):
    """LayerNormalization (or an RMS normalization) over the channel axis: its statistics mix channels.

    In a Transformer this keeps the residual stream (the embedding width and
    every layer added to it) out of search. Normalising over positions as well
    (axis=(1, 2, 3)) gives γ and β per position: a constant does not stay one.

    Args:
      kind: how the note names the normalization ("LayerNormalization",
        "RMS normalization").
    """

    def __init__(self, kind="LayerNormalization"):
        super().__init__()
        self.kind = kind
        # keras_hub's RMS norms have no `axis`: they normalise over the last one
        self.keeps_uniform = only_the_channel_axis(lambda layer: getattr(layer, "axis", -1))

    def output_sets(self, call, in_sets, groups):
        out_sets = PerChannel.output_sets(self, call, in_sets, groups)
        groups.fix(in_sets[0], f"'{call.name}' ({self.kind}) mixes channels: it normalises over them "
                   "(a Transformer's residual stream stays out of search)")
        return out_sets


def folded_rms_settings(scale, epsilon, full, kept, one_plus_scale=False):
    """(scale, ε) of an RMS norm over `kept` of `full` channels that equals the norm over all of them when the
    others are zero.

    x·rsqrt(mean_n(x²) + ε)·γ, with n − k channels zero, is
    x·rsqrt(mean_k(x²) + ε·n/k)·γ·√(n/k): the scale takes √(n/k) and ε takes
    n/k (both; the scale alone is off wherever ε matters). `one_plus_scale`:
    the norm multiplies by 1 + γ (Gemma's), which takes the factor instead.
    With every channel kept both are returned unchanged.
    """
    if kept in (0, full):  # 0: no channel left to normalise (a removed branch)
        return scale, epsilon
    factor = np.sqrt(full / kept).astype(scale.dtype)
    scale = (1 + scale) * factor - 1 if one_plus_scale else scale * factor
    return scale, folded_epsilon(epsilon, full, kept)


def folded_epsilon(epsilon, full, kept):
    """ε·n/k: the ε of an RMS norm over `kept` of `full` channels (see `folded_rms_settings`)."""
    return epsilon if kept in (0, full) else epsilon * full / kept


class RMSNormalizationHandler(PerChannel):
    """An RMS normalization over the channel axis (keras.layers.RMSNormalization, keras_hub's families' norms):
    searched exactly, its channels are those of its input.

    Pruned channels must read as zero (its statistic sums over every
    channel); the slim norm, over the k kept of n channels, folds √(n/k) into
    its scale and n/k into its ε (`folded_rms_settings`), which is exact. In a
    decoder every norm reads the residual stream (one channel group), so one
    ε·n/k serves them all. Where the stream is a model output (a bare
    backbone) it stays out of search, with a note saying how to search it.
    Normalising over other axes than the channels (keras RMSNormalization's
    `axis`) keeps the channels out of search, as LayerNormalization does.

    Args:
      kind: how notes name it.
      one_plus_scale: the norm multiplies by 1 + scale (Gemma's).
      rebuild: None (a keras layer: `clone_layer` with the new `epsilon`), or
        a function (layer, epsilon) -> a fresh layer (keras_hub's norms, some
        of whose configs omit settings).
    """

    def __init__(self, kind="RMS normalization", one_plus_scale=False, rebuild=None):
        # keras_hub's RMS norms have no `axis`: they normalise over the last one
        super().__init__(zero_preserving=True,
                         keeps_uniform=only_the_channel_axis(lambda layer: getattr(layer, "axis", -1)))
        self.kind = kind
        self.one_plus_scale = one_plus_scale
        self.rebuild = rebuild

    def _over_channels_only(self, call):
        axis = getattr(call.layer, "axis", -1)
        axes = [axis] if isinstance(axis, int) else list(axis)
        rank = len(call.input_tensors[0].shape)
        return [a % rank for a in axes] == [call.read_axes[0]]

    def output_sets(self, call, in_sets, groups):
        out_sets = PerChannel.output_sets(self, call, in_sets, groups)
        if not self._over_channels_only(call):
            groups.fix(in_sets[0], f"'{call.name}' ({self.kind}) normalises over more axes than the channels")
        groups.note_if_fixed(in_sets[0], (
            f"'{call.name}' ({self.kind}) could search the channels it normalises exactly (the slim norm folds "
            "√(n/k) into its scale and n/k into its ε), but they are kept out of search (see the note above); in "
            "a bare decoder backbone they are the residual stream, a model output: wrap the family's CausalLM "
            "(logits out, traced at a fixed length) to search it"))
        return out_sets

    def requires_clean_inputs(self, call):
        return True

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        full, kept = call.input_tensors[0].shape[call.read_axes[0]], len(kept_in[0])
        weights = [np.take(w, kept_in[0], axis=-1) for w in layer.get_weights()]  # the scale
        weights[0], epsilon = folded_rms_settings(weights[0], layer.epsilon, full, kept, self.one_plus_scale)
        rebuilt = clone_layer(layer, epsilon=epsilon) if self.rebuild is None else self.rebuild(layer, epsilon)
        return rebuilt, weights


class BatchNormalizationHandler(PerChannel):
    """BatchNormalization: per channel along its `axis` (1 after channels_first layers), but f(0) = β ≠ 0.

    Normalising another axis than the tensor's channel axis keeps those channels out of search.
    """

    def __init__(self):
        super().__init__(zero_preserving=False)

    def can_absorb_output_shift(self, call):
        return bool(call.layer.center)  # y = γ·(x − μ)/σ + β: a shift is a larger β

    def absorb_output_shift(self, call, weights, shift):
        index = [w.name.split("/")[-1] for w in call.layer.weights].index("beta")
        return weights[:index] + [weights[index] + shift] + weights[index + 1:]

    def channel_axes(self, call, in_axes):
        rank = len(call.input_tensors[0].shape)
        return [call.layer.axis % rank], [call.layer.axis % rank]


def activation_preserves_zero(layer):
    return activation_name(layer.activation) in ZERO_PRESERVING_ACTIVATIONS


class ActivationHandler(PerChannel):
    """Activation: per-channel unless its function mixes channels (softmax)."""

    def __init__(self):
        super().__init__(zero_preserving=activation_preserves_zero)

    def output_sets(self, call, in_sets, groups):
        out_sets = super().output_sets(call, in_sets, groups)
        if activation_name(call.layer.activation) in CHANNEL_MIXING_ACTIVATIONS:
            groups.fix(in_sets[0], f"'{call.name}' is a channel-mixing activation")
        return out_sets


class SoftmaxHandler(ChannelMixing):
    """Softmax: mixes channels when it normalises the channel axis, else per-channel."""

    def output_sets(self, call, in_sets, groups):
        axis = call.layer.axis
        rank = len(call.input_tensors[0].shape)
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if all(a % rank != call.read_axes[0] for a in axes):
            return PerChannel.output_sets(self, call, in_sets, groups)
        return super().output_sets(call, in_sets, groups)


class OperationHandler(PerChannel):
    """A `keras.ops` function of each element recorded in a graph (`ops.gelu(x)`): per channel; slim reuses the op."""

    def param_terms(self, call, in_sets, out_sets):
        return []  # a keras.ops operation holds no state

    def slim(self, call, kept_in, kept_out):
        return call.layer, []
