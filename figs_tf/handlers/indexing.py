"""`x[...]` in a functional graph (keras.ops GetItem): picking positions keeps the channel axis.

BERT's pooled output reads `x[:, 0, :]` (the class token); a ViT head may do
the same. Indexing that leaves the last axis whole passes the channels on;
indexing into the channel axis of searched channels is refused. A tensor with
no searched channel (a model input such as T5's padding mask, indexed
`padding_mask[:, None, :]`) may be indexed any way: its output's channels are
never pruned either.
"""

from figs_tf.channel_sets import Segment, groups_in
from figs_tf.handlers.base import LayerHandler, UnsupportedLayerError


def _channel_axis_untouched(key, rank):
    """True if `x[key]` keeps the whole last axis of a rank-`rank` x as its last axis."""
    items = list(key) if isinstance(key, (tuple, list)) else [key]
    if any(item is None for item in items):
        return False  # a new axis: the channel axis may move
    if Ellipsis in items:
        after = items[items.index(Ellipsis) + 1:]
        last = after[-1] if after else slice(None)
    else:
        last = items[rank - 1] if len(items) >= rank else slice(None)
    return isinstance(last, slice) and last == slice(None)


class GetItemHandler(LayerHandler):
    """keras.ops GetItem (`x[:, 0, :]`): zero-preserving, per channel, when the last axis is left whole
    (any indexing of a tensor without searched channels)."""

    def output_sets(self, call, in_sets, groups):
        args, _ = call.arguments()
        if len(call.input_tensors) != 1 or len(args) != 2:
            raise UnsupportedLayerError(f"'{call.name}' indexes with a tensor; figs_tf supports constant indices.")
        if not groups_in(in_sets[0]):  # nothing searched to keep apart: a mask, token ids, fixed channels
            out_shape = call.output_tensors[0].shape
            return [(Segment(None, out_shape[-1] if len(out_shape) > 1 else 0),)]
        rank = len(call.input_tensors[0].shape)
        if not _channel_axis_untouched(args[1], rank):
            raise UnsupportedLayerError(
                f"'{call.name}' indexes the channel (last) axis or adds an axis ({args[1]!r}); figs_tf prunes the "
                "last axis, so indexing may only pick positions (e.g. x[:, 0, :]).")
        return [in_sets[0]]

    def slim(self, call, kept_in, kept_out):
        return call.layer, []  # a keras.ops operation holds no state
