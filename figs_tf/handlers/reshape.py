"""Flatten and Reshape: keep the channel axis, or fold positions into features."""

import math

import keras

from figs_tf.channel_sets import Segment
from figs_tf.handlers.base import LayerHandler, clone_layer


class ReshapeHandler(LayerHandler):
    """Flatten and Reshape: keep the last axis, or fold positions into features."""

    def output_sets(self, call, in_sets, groups):
        in_shape = tuple(call.input_tensors[0].shape)
        out_shape = tuple(call.output_tensors[0].shape)
        if out_shape[-1] == in_shape[-1] and math.prod(in_shape[1:-1] or (1,)) == math.prod(out_shape[1:-1] or (1,)):
            return [in_sets[0]]
        if len(out_shape) == 2 and None not in in_shape[1:] and out_shape[-1] == math.prod(in_shape[1:]):
            positions = math.prod(in_shape[1:-1])
            return [tuple(in_sets[0]) * positions]
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
            # The last target dim is the channel count (kept axis) or the flattened
            # feature count; either way it is the number of output positions kept.
            target = list(layer.target_shape)
            target[-1] = len(kept_out[0])
            return clone_layer(layer, target_shape=tuple(target)), []
        return clone_layer(layer), []
