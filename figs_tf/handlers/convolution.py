"""Layers that make new channels from all of their inputs' channels, and depthwise convolutions.

One handler class per kind: `ConvHandler` (Conv1D/2D/3D), `DenseHandler`,
`EinsumDenseHandler` (an EinsumDense acting as a Dense), `SeparableConvHandler`
(SeparableConv1D/2D), `ConvTransposeHandler` (Conv1D/2D/3DTranspose), all `ChannelProducer`s: their output starts a new
channel group. `DepthwiseConvHandler` passes its input's groups on, each
input channel owning `depth_multiplier` outputs. Convolutions read and make
channels on the axis of their `data_format` (1 for channels_first); Keras keeps
their kernels (..., in, out) in both formats, so slicing does not depend on it.
"""

import math

import numpy as np

from figs_tf.channel_sets import Segment, num_channels
from figs_tf.handlers.base import (CHANNEL_MIXING_ACTIVATIONS, ZERO_PRESERVING_ACTIVATIONS, LayerHandler, Term,
                                   UnsupportedLayerError, activation_name, clone_layer, data_format_axis, last_axes, spatial_positions,
                                   to_numpy)


def data_format_axes(call):
    """channel_axes of a layer with a data_format: its input and output channels on that format's axis."""
    layer = call.layer
    return ([data_format_axis(layer, len(t.shape)) for t in call.input_tensors],
            [data_format_axis(layer, len(t.shape)) for t in call.output_tensors])


class BiasedWindows:
    """What a kernel-and-bias layer does to a constant (dead-branch folding, figs_tf.branches).

    Mixed into the handlers of convolutions and Dense layers: on a zero input
    the output is the bias (through the activation) everywhere, and a linear
    one with a bias absorbs a constant shift of its output in that bias.
    """

    def uniform_output(self, call, in_uniform, in_zero):
        return all(in_zero) or (all(in_uniform) and self.reads_padding_free_windows(call.layer))

    def reads_padding_free_windows(self, layer):
        """True if every output position sees a window of real input positions (no padding)."""
        return all(k == 1 for k in layer.kernel_size) or layer.padding == "valid"

    def can_absorb_output_shift(self, call):
        return bool(call.layer.use_bias) and activation_name(call.layer.activation) == "linear"

    def absorb_output_shift(self, call, weights, shift):
        return weights[:-1] + [weights[-1] + shift]  # the bias is the last weight


class ChannelProducer(BiasedWindows, LayerHandler):
    """A layer whose output channels each read every input channel: its output is a new group.

    Subclasses say how many channels the layer makes (`width_key`), what its
    kernels cost, and how to cut them.
    """

    mixes_channels = True
    width_key = "filters"  # the config entry holding the output width

    def channel_axes(self, call, in_axes):
        return data_format_axes(call)

    def requires_clean_inputs(self, call):
        return True

    def output_dirty(self, call, in_dirty):
        return True

    def output_sets(self, call, in_sets, groups):
        layer = call.layer
        width = getattr(layer, self.width_key)
        out = (Segment(groups.new_group(width, call.name), width),)
        if activation_name(getattr(layer, "activation", None)) in CHANNEL_MIXING_ACTIVATIONS:
            groups.fix(out, f"'{layer.name}' ends in a channel-mixing activation")
        return [out]

    def param_terms(self, call, in_sets, out_sets):
        terms = self.kernel_param_terms(call.layer, in_sets[0], out_sets[0])
        if call.layer.use_bias:
            terms.append(Term(1, (out_sets[0],)))
        return terms

    def kernel_param_terms(self, layer, in_set, out_set):
        """Parameters of the kernels (the bias is added by `param_terms`)."""
        return [Term(math.prod(layer.kernel_size), (in_set, out_set))]

    def flop_terms(self, call, in_sets, out_sets):
        positions = spatial_positions(call.output_tensors[0].shape, call.layer.name, call.output_axes[0])
        return [Term(math.prod(call.layer.kernel_size) * positions, (in_sets[0], out_sets[0]))]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        kept_in, kept_out = kept_in[0], kept_out[0]
        weights = self.sliced_kernels(layer, kept_in, kept_out)
        if layer.use_bias:
            weights.append(to_numpy(layer.bias)[kept_out])
        return clone_layer(layer, **{self.width_key: len(kept_out)}), weights

    def sliced_kernels(self, layer, kept_in, kept_out):
        """The kernels restricted to the kept input and output channels; kernel is (..., in, out)."""
        return [to_numpy(layer.kernel)[..., kept_in, :][..., kept_out]]

    def output_channel_l1(self, layer):
        """L1 norm of each output channel's kernel slice (channel selection without gates)."""
        kernel = np.abs(to_numpy(layer.kernel))
        return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)


class ConvHandler(ChannelProducer):
    """Conv1D/2D/3D. A grouped convolution's channels are kept out of search."""

    def _groups(self, layer):
        return getattr(layer, "groups", 1) or 1

    def output_sets(self, call, in_sets, groups):
        layer = call.layer
        if self._groups(layer) > 1:
            groups.fix(in_sets[0], f"'{layer.name}' is a grouped convolution "
                       f"(groups={self._groups(layer)}); its channels are kept out of search")
            return [(Segment(None, layer.filters),)]
        return super().output_sets(call, in_sets, groups)

    def _grouped_fan_in(self, layer, in_set):
        return math.prod(layer.kernel_size) * (num_channels(in_set) // self._groups(layer))

    def kernel_param_terms(self, layer, in_set, out_set):
        if self._groups(layer) > 1:
            return [Term(self._grouped_fan_in(layer, in_set), (out_set,))]
        return super().kernel_param_terms(layer, in_set, out_set)

    def flop_terms(self, call, in_sets, out_sets):
        layer = call.layer
        if self._groups(layer) > 1:
            positions = spatial_positions(call.output_tensors[0].shape, layer.name, call.output_axes[0])
            return [Term(self._grouped_fan_in(layer, in_sets[0]) * positions, (out_sets[0],))]
        return super().flop_terms(call, in_sets, out_sets)

    def sliced_kernels(self, layer, kept_in, kept_out):
        if self._groups(layer) > 1:
            return [to_numpy(layer.kernel)[..., kept_out]]  # channels kept out of search
        return super().sliced_kernels(layer, kept_in, kept_out)


class DenseHandler(ChannelProducer):
    """Dense, on rank-2 inputs or on every position of a longer input (multiply-adds × positions)."""

    width_key = "units"

    def channel_axes(self, call, in_axes):
        return last_axes(call.input_tensors), last_axes(call.output_tensors)  # Dense acts on the last axis

    def reads_padding_free_windows(self, layer):
        return True  # acts on each position alone

    def kernel_param_terms(self, layer, in_set, out_set):
        return [Term(1, (in_set, out_set))]

    def flop_terms(self, call, in_sets, out_sets):
        positions = spatial_positions(call.output_tensors[0].shape, call.layer.name)
        return [Term(positions, (in_sets[0], out_sets[0]))]


class EinsumDenseHandler(DenseHandler):
    """EinsumDense that acts as a Dense on the last axis ("btd,df->btf"): a kernel (in, out), a bias along out.

    Other equations (attention projections with a heads axis) are handled by
    the layer that holds them (figs_tf.handlers.grouped_attention).
    """

    def _check(self, layer):
        inputs, output = layer.equation.split("->")
        source, kernel = inputs.split(",")
        dense_like = (len(kernel) == 2 and kernel == source[-1] + output[-1] and source[:-1] == output[:-1]
                      and (layer.bias_axes or output[-1]) == output[-1])
        if not dense_like:
            raise UnsupportedLayerError(
                f"'{layer.name}' is an EinsumDense with equation '{layer.equation}' (bias_axes={layer.bias_axes!r}); "
                "figs_tf searches EinsumDense layers that act as a Dense on the last axis ('btd,df->btf'). "
                "Register a handler for this equation, or keep the layer out of a wrapped model.")

    def output_sets(self, call, in_sets, groups):
        self._check(call.layer)
        width = call.layer.kernel.shape[-1]
        out = (Segment(groups.new_group(width, call.name), width),)
        if activation_name(call.layer.activation) in CHANNEL_MIXING_ACTIVATIONS:
            groups.fix(out, f"'{call.name}' ends in a channel-mixing activation")
        return [out]

    def param_terms(self, call, in_sets, out_sets):
        terms = [Term(1, (in_sets[0], out_sets[0]))]
        if call.layer.bias is not None:
            terms.append(Term(1, (out_sets[0],)))
        return terms

    def flop_terms(self, call, in_sets, out_sets):
        positions = spatial_positions(self.input_shape(call), call.layer.name)
        return [Term(positions, (in_sets[0], out_sets[0]))]

    def input_shape(self, call):
        """The input's shape, its positions found upstream where an EinsumDense left them unknown.

        An EinsumDense built with output_shape=(None, units) makes an output of
        unknown length even on a fixed-length input (keras_hub's MLPs); the
        positions are then those of the nearest input upstream of the same rank
        with a known shape, through layers and ops that keep the positions
        (EinsumDense as a Dense, elementwise activations and products).
        """
        tensor = call.input_tensors[0]
        for _ in range(8):
            if None not in tensor.shape[1:-1]:
                return tensor.shape
            history = getattr(tensor, "_keras_history", None)
            inputs = [t for t in (history.operation._inbound_nodes[history.node_index].input_tensors  # pylint: disable=protected-access
                                  if history else ()) if len(t.shape) == len(tensor.shape)]
            if not inputs:
                break
            tensor = inputs[0]
        return call.input_tensors[0].shape

    def can_absorb_output_shift(self, call):
        return call.layer.bias is not None and activation_name(call.layer.activation) == "linear"

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        weights = self.sliced_kernels(layer, kept_in[0], kept_out[0])
        if layer.bias is not None:
            weights.append(to_numpy(layer.bias)[kept_out[0]])
        leading = tuple(layer.get_config()["output_shape"])[:-1]
        positions = self.input_shape(call)[1:-1]  # the slim model's output gets its static length
        if len(positions) == len(leading):
            leading = tuple(p if d is None else d for d, p in zip(leading, positions))
        return clone_layer(layer, output_shape=leading + (len(kept_out[0]),)), weights


class SeparableConvHandler(ChannelProducer):
    """SeparableConv1D/2D: a depthwise kernel per input channel, then a pointwise kernel."""

    def kernel_param_terms(self, layer, in_set, out_set):
        multiplier = layer.depth_multiplier
        return [Term(math.prod(layer.kernel_size) * multiplier, (in_set,)), Term(multiplier, (in_set, out_set))]

    def flop_terms(self, call, in_sets, out_sets):
        layer = call.layer
        positions = spatial_positions(call.output_tensors[0].shape, layer.name, call.output_axes[0])
        multiplier = layer.depth_multiplier
        return [Term(math.prod(layer.kernel_size) * multiplier * positions, (in_sets[0],)),
                Term(multiplier * positions, (in_sets[0], out_sets[0]))]

    def sliced_kernels(self, layer, kept_in, kept_out):
        multiplier = layer.depth_multiplier
        depthwise = to_numpy(layer.depthwise_kernel)[..., kept_in, :]
        # the pointwise kernel reads the depthwise outputs: input channel c owns rows c·m .. c·m + m − 1
        rows = (kept_in[:, None] * multiplier + np.arange(multiplier)[None, :]).reshape(-1)
        pointwise = to_numpy(layer.pointwise_kernel)[..., rows, :][..., kept_out]
        return [depthwise, pointwise]

    def output_channel_l1(self, layer):
        kernel = np.abs(to_numpy(layer.pointwise_kernel))
        return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)


class ConvTransposeHandler(ChannelProducer):
    """Conv1D/2D/3DTranspose: kernel (..., out, in); each input position is scattered through it."""

    def flop_terms(self, call, in_sets, out_sets):
        positions = spatial_positions(call.input_tensors[0].shape, call.layer.name, call.read_axes[0])
        return [Term(math.prod(call.layer.kernel_size) * positions, (in_sets[0], out_sets[0]))]

    def sliced_kernels(self, layer, kept_in, kept_out):
        return [to_numpy(layer.kernel)[..., kept_out, :][..., kept_in]]

    def reads_padding_free_windows(self, layer):
        return False  # overlapping windows scatter a constant unevenly

    def output_channel_l1(self, layer):
        kernel = np.moveaxis(np.abs(to_numpy(layer.kernel)), -2, -1)
        return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)


class DepthwiseConvHandler(BiasedWindows, LayerHandler):
    """DepthwiseConv1D/2D: each input channel owns `depth_multiplier` outputs."""

    def channel_axes(self, call, in_axes):
        return data_format_axes(call)

    def output_sets(self, call, in_sets, groups):
        layer = call.layer
        multiplier = layer.depth_multiplier
        out = tuple(Segment(s.group, s.size, s.repeat * multiplier) for s in in_sets[0])
        if activation_name(layer.activation) in CHANNEL_MIXING_ACTIVATIONS:
            groups.fix(out, f"'{layer.name}' ends in a channel-mixing activation")
        return [out]

    def output_dirty(self, call, in_dirty):
        layer = call.layer
        zero_act = activation_name(layer.activation) in ZERO_PRESERVING_ACTIVATIONS
        return in_dirty[0] or layer.use_bias or not zero_act

    def param_terms(self, call, in_sets, out_sets):
        layer = call.layer
        terms = [Term(math.prod(layer.kernel_size) * layer.depth_multiplier, (in_sets[0],))]
        if layer.use_bias:
            terms.append(Term(1, (out_sets[0],)))
        return terms

    def flop_terms(self, call, in_sets, out_sets):
        layer = call.layer
        positions = spatial_positions(call.output_tensors[0].shape, layer.name, call.output_axes[0])
        k = math.prod(layer.kernel_size) * layer.depth_multiplier
        return [Term(k * positions, (in_sets[0],))]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        weights = [to_numpy(layer.kernel)[..., kept_in[0], :]]
        if layer.use_bias:
            weights.append(to_numpy(layer.bias)[kept_out[0]])
        return clone_layer(layer), weights
