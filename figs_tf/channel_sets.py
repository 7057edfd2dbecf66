"""Channel sets: which channel group owns each channel of a tensor.

A tensor's channel axis (the last one, or axis 1 after a channels_first layer:
`ChannelGraph.tensor_axes`) is described by a tuple of `Segment`s. A segment is
a run of channels that belong to one channel group (or to no group: channels
that are never pruned, such as image channels and class scores). `repeat`
covers the depthwise multiplier, where each input channel owns `repeat`
consecutive output channels. A Concatenate on the channel axis joins segment
tuples; a Flatten of (H, W, C) repeats the C-channel tuple H*W times, a
Flatten of (C, H, W) repeats each channel H*W times (`repeat=H*W`).

    x_set = (Segment(group=0, size=64),)                 # conv output
    cat = x_set + (Segment(group=None, size=3),)         # concat with the image
    count(cat, widths)                                   # widths[0] + 3
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Segment:
    """`size` channels of channel group `group` (None: never pruned), each repeated."""

    group: object  # int group id, or None for channels that are never pruned
    size: int
    repeat: int = 1

    def __post_init__(self):
        if self.size is None:
            # an axis of unknown static length (a mask's key positions at a variable sequence length): never
            # pruned, its channels count as none; liveness treats fixed channels as alive (figs_tf.cost)
            if self.group is not None:
                raise ValueError("A searched channel group needs a known width.")
            object.__setattr__(self, "size", 0)

    @property
    def channels(self):
        return self.size * self.repeat


def num_channels(channel_set):
    """The tensor's channel count (length of its channel axis)."""
    return sum(segment.channels for segment in channel_set)


def groups_in(channel_set):
    """Group ids in the set, in order, without repeats; fixed segments omitted."""
    seen = []
    for segment in channel_set:
        if segment.group is not None and segment.group not in seen:
            seen.append(segment.group)
    return seen




def has_fixed_channels(channel_set):
    return any(segment.group is None for segment in channel_set)


def count(channel_set, widths):
    """Channels alive in the set when group g keeps `widths[g]` channels.

    `widths` may hold Python ints (exact counts), floats, or backend tensor
    elements (the differentiable expected width Σπ of each group).
    """
    total = 0
    for segment in channel_set:
        width = segment.size if segment.group is None else widths[segment.group]
        total = total + segment.repeat * width
    return total


def membership(channel_set, num_groups):
    """(coefficients over groups, constant) with count(set, w) == coef @ w + const."""
    coefficients = np.zeros(num_groups, dtype=np.int64)
    constant = 0
    for segment in channel_set:
        if segment.group is None:
            constant += segment.channels
        else:
            coefficients[segment.group] += segment.repeat
    return coefficients, constant


def alive_positions(channel_set, kept_channels):
    """Positions along the tensor's channel axis that survive pruning.

    `kept_channels[g]` is the sorted array of channel indices that group g keeps.
    """
    positions = []
    offset = 0
    for segment in channel_set:
        if segment.group is None:
            kept = np.arange(segment.size)
        else:
            kept = np.asarray(kept_channels[segment.group], dtype=np.int64)
        for channel in kept:
            start = offset + int(channel) * segment.repeat
            positions.extend(range(start, start + segment.repeat))
        offset += segment.channels
    return np.asarray(positions, dtype=np.int64)


def gate_indices(channel_set, group_offsets, always_on_index):
    """For each channel of the tensor, its index into the concatenated gate vector.

    Channels of group g map to `group_offsets[g] + channel`; never-pruned channels
    map to `always_on_index`, a slot of the gate vector that is always 1.
    """
    indices = []
    for segment in channel_set:
        for channel in range(segment.size):
            if segment.group is None:
                index = always_on_index
            else:
                index = group_offsets[segment.group] + channel
            indices.extend([index] * segment.repeat)
    return indices
