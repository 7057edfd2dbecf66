"""Flatten, Reshape and Permute: keep the channel axis (maybe moved), or fold positions into features."""

import math

import keras

from figs_tf.channel_sets import Segment
from figs_tf.handlers.base import LayerHandler, clone_layer, last_axes


def _product(dims):
    return None if any(d is None for d in dims) else math.prod(dims)


class ReshapeHandler(LayerHandler):
    """Flatten and Reshape.

    The input's channel axis a splits its other dimensions into `before` (the
    product of those in front of it) and `after`. If the output has an axis of
    the same length with `before` elements in front and `after` behind, the
    channels are that axis. A flattened output (rank 2) holds each channel
    `after` times in a row, the whole run `before` times: a channels_last
    (H, W, C) tiles the channel set H*W times, a channels_first (C, H, W)
    repeats each channel H*W times. Flatten(data_format="channels_first")
    moves axis 1 last before flattening, as Keras does. Any other reshape
    mixes channels with positions: they are kept out of search.
    """

    def _layout(self, call, axis):
        """("axis", output axis) | ("flat", before, after) | ("mixed",) for channels on input axis `axis`."""
        layer = call.layer
        dims = list(call.input_tensors[0].shape[1:])
        out_dims = list(call.output_tensors[0].shape[1:])
        a = axis - 1
        if isinstance(layer, keras.layers.Flatten) and layer.data_format == "channels_first" and len(dims) > 1:
            dims = dims[1:] + dims[:1]  # Keras moves the channel axis last first
            a = len(dims) - 1 if a == 0 else a - 1
        if out_dims == dims:
            return ("axis", a + 1)
        before, after = _product(dims[:a]), _product(dims[a + 1:])
        if before is not None and after is not None:
            for b in reversed(range(len(out_dims))):
                if out_dims[b] == dims[a] and _product(out_dims[:b]) == before and _product(out_dims[b + 1:]) == after:
                    return ("axis", b + 1)
            if len(out_dims) == 1 and out_dims[0] == before * dims[a] * after:
                return ("flat", before, after)
        return ("mixed",)

    def channel_axes(self, call, in_axes):
        axis = last_axes(call.input_tensors)[0] if in_axes[0] is None else in_axes[0]
        layout = self._layout(call, axis)
        out_axis = layout[1] if layout[0] == "axis" else len(call.output_tensors[0].shape) - 1
        return [axis], [out_axis]

    def output_sets(self, call, in_sets, groups):
        layout = self._layout(call, call.read_axes[0])
        if layout[0] == "axis":
            return [in_sets[0]]
        if layout[0] == "flat":
            _, before, after = layout
            return [tuple(Segment(s.group, s.size, s.repeat * after) for s in in_sets[0]) * before]
        in_shape, out_shape = tuple(call.input_tensors[0].shape), tuple(call.output_tensors[0].shape)
        groups.fix(in_sets[0], f"'{call.layer.name}' reshapes {in_shape} to {out_shape}, "
                   "which mixes the channel axis with others")
        return [(Segment(None, out_shape[-1]),)]

    def requires_clean_inputs(self, call):
        return True

    def output_dirty(self, call, in_dirty):
        return False

    def uniform_output(self, call, in_uniform, in_zero):
        return all(in_uniform) and call.output_tensors[0].shape[-1] == call.input_tensors[0].shape[-1]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        if isinstance(layer, keras.layers.Reshape):
            # The target's channel dimension (a kept axis, or the flattened features) shrinks
            # to the output positions kept.
            target = list(layer.target_shape)
            target[call.output_axes[0] - 1] = len(kept_out[0])
            return clone_layer(layer, target_shape=tuple(target)), []
        return clone_layer(layer), []


class PermuteHandler(LayerHandler):
    """Permute: moves the channel axis with the others (channels_last to channels_first and back)."""

    def channel_axes(self, call, in_axes):
        if in_axes[0] is None:
            return last_axes(call.input_tensors), [None]
        return [in_axes[0]], [list(call.layer.dims).index(in_axes[0]) + 1]

    def output_sets(self, call, in_sets, groups):
        return [in_sets[0]]

    def uniform_output(self, call, in_uniform, in_zero):
        return all(in_uniform)  # the positions move among themselves, the channel axis with them

    def slim(self, call, kept_in, kept_out):
        return clone_layer(call.layer), []
