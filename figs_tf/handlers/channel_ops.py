"""`keras.ops.split` and `keras.ops.pad` in a functional graph.

CSPNet splits a convolution's output in two on the channel axis (one half
skips the stage's blocks, the other runs through them, and a concatenation
joins them again); ResNetV2 pads its stem with -inf before max-pooling.

A split on the channel axis hands each part the segments of the input's
channel set that fall into it: a part made of whole channel groups (a split
that undoes a concatenation) keeps them searched. A part boundary inside one
group would need the group's channels kept in two counts at once; that group
is kept out of search with a note, and the parts carry fixed channels. A split
on another axis gives every part the input's channels.

    xs, xb = keras.ops.split(x, 2, axis=-1)       # x: one conv's 16 channels -> kept out of search
    a, b = keras.ops.split(keras.ops.concatenate([p, q]), [8], axis=-1)   # a: p's group, b: q's

A pad on the other axes acts on each channel alike; with a constant other
than 0 (ResNetV2's -inf) a pruned channel is no longer zero at the border, so
a reader that needs clean inputs gets a mask after it.
"""

import keras
import numpy as np

from figs_tf.channel_sets import Segment
from figs_tf.handlers.base import LayerHandler, following_axes
from figs_tf.handlers.per_channel import PerChannel


def split_boundaries(total, indices_or_sections):
    """The part boundaries [0, ..., total] of `keras.ops.split(x, indices_or_sections)` along an axis of `total`."""
    if isinstance(indices_or_sections, (int, np.integer)):
        sections = int(indices_or_sections)
        return [total * i // sections for i in range(sections + 1)]
    return [0] + [int(i) for i in indices_or_sections] + [total]


def cut_channel_set(channel_set, boundaries, groups, where):
    """The channel set of each part [boundaries[i], boundaries[i+1]) of `channel_set`.

    A segment cut by a boundary has its group kept out of search (`groups.fix`)
    and its pieces become fixed channels.
    """
    parts = [[] for _ in boundaries[1:]]
    offset = 0
    for segment in channel_set:
        start, end = offset, offset + segment.channels
        offset = end
        pieces = [(i, max(start, lo), min(end, hi)) for i, (lo, hi) in enumerate(zip(boundaries, boundaries[1:]))
                  if max(start, lo) < min(end, hi)]
        if len(pieces) == 1:
            parts[pieces[0][0]].append(segment)
            continue
        if segment.group is not None:
            groups.fix((segment,), f"'{where}' splits their channels on the channel axis inside one group "
                                   f"(parts of {[hi - lo for _, lo, hi in pieces]} channels)")
        for i, lo, hi in pieces:
            parts[i].append(Segment(None, hi - lo))
    return [tuple(part) for part in parts]


class SplitHandler(LayerHandler):
    """keras.ops Split: on the channel axis each part gets its segments of the input's channels."""

    def channel_axes(self, call, in_axes):
        return following_axes(call, in_axes)

    def _on_channel_axis(self, call):
        rank = len(call.input_tensors[0].shape)
        return call.layer.axis % rank == call.read_axes[0]

    def output_sets(self, call, in_sets, groups):
        if not self._on_channel_axis(call):
            return [in_sets[0] for _ in call.output_tensors]
        total = call.input_tensors[0].shape[call.read_axes[0]]
        boundaries = split_boundaries(total, call.layer.indices_or_sections)
        return cut_channel_set(in_sets[0], boundaries, groups, call.name)

    def uniform_output(self, call, in_uniform, in_zero):
        return all(in_uniform)  # each part holds some of the input's channels (or positions) as they are

    def slim(self, call, kept_in, kept_out):
        if not self._on_channel_axis(call):
            return call.layer, []
        sizes = np.cumsum([len(kept) for kept in kept_out])[:-1]
        return _SlimSplit(call.layer.name, [int(s) for s in sizes], call.layer.axis), []


class _SlimSplit:
    """keras.ops.split at the kept channels' part boundaries (a slim model's split)."""

    def __init__(self, name, indices, axis):
        self.name = name
        self.indices = indices
        self.axis = axis

    def __call__(self, x):
        return keras.ops.split(x, self.indices, axis=self.axis)


class PadHandler(PerChannel):
    """keras.ops Pad on axes other than the channel axis: per channel; keeps zeros when it pads with 0.

    A pad of the channel axis adds channels of its own: the input's are kept
    out of search, with a note.
    """

    def __init__(self):
        super().__init__(zero_preserving=True, keeps_uniform=False)

    @staticmethod
    def _pads_with_zero(call):
        _, kwargs = call.arguments()
        value = kwargs.get("constant_values")
        return call.layer.mode != "constant" or value is None or float(value) == 0.0

    def _pads_channels(self, call):
        rank = len(call.input_tensors[0].shape)
        widths = np.broadcast_to(np.asarray(call.layer.pad_width), (rank, 2))  # an int or one pair: every axis
        return tuple(widths[call.read_axes[0]]) != (0, 0)

    def output_sets(self, call, in_sets, groups):
        if self._pads_channels(call):
            groups.fix(in_sets[0], f"'{call.name}' pads the channel axis")
            return [(Segment(None, call.output_tensors[0].shape[call.read_axes[0]]),)]
        return [in_sets[0]]

    def output_dirty(self, call, in_dirty):
        return in_dirty[0] or not self._pads_with_zero(call)

    def uniform_output(self, call, in_uniform, in_zero):
        # zeros padded with zeros stay zeros; otherwise the border holds the padding value, the inside the input's
        return all(in_zero) and self._pads_with_zero(call)

    def param_terms(self, call, in_sets, out_sets):
        return []

    def slim(self, call, kept_in, kept_out):
        return call.layer, []  # the channel axis is not padded: the op fits any channel count
