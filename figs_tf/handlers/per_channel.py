"""Layers that keep the channel axis: per-channel layers, BatchNorm, activations, channel-mixing ones."""

from figs_tf.handlers.base import (CHANNEL_MIXING_ACTIVATIONS, ZERO_PRESERVING_ACTIVATIONS, LayerHandler,
                                   UnsupportedLayerError, activation_name, check_channels_last, clone_layer,
                                   per_channel_weight_terms)


class PerChannel(LayerHandler):
    """A layer that acts on each channel separately and keeps the last axis.

    Weights whose last dimension is the channel count are sliced with the
    channels (a per-channel scale, BatchNorm's statistics); others are kept.

    Args:
      zero_preserving: f(0) == 0 channel-wise (ReLU, pooling, padding,
        dropout), so a pruned channel stays zero through it: a bool, or a
        function of the layer (an Activation depends on its function).
      keeps_uniform: an input with the same value at every position gives
        an output with the same value at every position (False for padding,
        whose border differs, and for weights per position such as PReLU's).

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

    def output_sets(self, call, in_sets, groups):
        layer = call.layer
        check_channels_last(layer)
        in_shape = call.input_tensors[0].shape
        for out in call.output_tensors:
            if out.shape[-1] != in_shape[-1]:
                raise UnsupportedLayerError(
                    f"Layer '{layer.name}' ({type(layer).__name__}) changes the last "
                    f"axis from {in_shape[-1]} to {out.shape[-1]}; figs_tf expected "
                    "it to keep channels. Register a handler for this use, or "
                    "exclude the layer.")
        return [in_sets[0] for _ in call.output_tensors]

    def output_dirty(self, call, in_dirty):
        return in_dirty[0] or not self._preserves_zero(call.layer)

    def param_terms(self, call, in_sets, out_sets):
        return per_channel_weight_terms(call.layer, in_sets[0])

    def uniform_output(self, call, in_uniform, in_zero):
        return self.keeps_uniform and all(in_uniform)

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        channels = call.input_tensors[0].shape[-1]
        weights = []
        for weight in layer.get_weights():
            if weight.ndim and weight.shape[-1] == channels:
                weight = weight[..., kept_in[0]]
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


class LayerNormalizationHandler(ChannelMixing):
    """LayerNormalization over the channel axis: its statistics mix channels.

    In a Transformer this keeps the residual stream (the embedding width and
    every layer added to it) out of search.
    """

    def output_sets(self, call, in_sets, groups):
        out_sets = PerChannel.output_sets(self, call, in_sets, groups)
        groups.fix(in_sets[0], f"'{call.name}' (LayerNormalization) mixes channels: it normalises over them "
                   "(a Transformer's residual stream stays out of search)")
        return out_sets


class BatchNormalizationHandler(PerChannel):
    """BatchNormalization over the channel axis: per-channel, but f(0) = β ≠ 0."""

    def __init__(self):
        super().__init__(zero_preserving=False)

    def can_absorb_output_shift(self, call):
        return bool(call.layer.center)  # y = γ·(x − μ)/σ + β: a shift is a larger β

    def absorb_output_shift(self, call, weights, shift):
        index = [w.name.split("/")[-1] for w in call.layer.weights].index("beta")
        return weights[:index] + [weights[index] + shift] + weights[index + 1:]

    def output_sets(self, call, in_sets, groups):
        axis = call.layer.axis
        rank = len(call.input_tensors[0].shape)
        if axis not in (-1, rank - 1):
            raise UnsupportedLayerError(
                f"BatchNormalization '{call.layer.name}' normalises axis "
                f"{call.layer.axis}, not the channel (last) axis.")
        return super().output_sets(call, in_sets, groups)


def activation_preserves_zero(layer):
    return activation_name(layer.activation) in ZERO_PRESERVING_ACTIVATIONS


def rescaling_preserves_zero(layer):
    try:
        return float(layer.offset) == 0.0
    except TypeError:
        return False


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
        if all(a not in (-1, rank - 1) for a in axes):
            return PerChannel.output_sets(self, call, in_sets, groups)
        return super().output_sets(call, in_sets, groups)
