"""Grouped-query attention: key/value groups and query slots gated, head width never cut.

A grouped-query attention layer has `num_key_value_heads` key/value heads; query
head u reads key/value head u // R, where R = num_query_heads //
num_key_value_heads (`ops.repeat` on the heads axis in Keras's and keras_hub's
layers). Two inner channel sets (`LayerHandler.inner_sets`) search it:

- `kv_groups` (num_key_value_heads channels): a group is its key/value head and
  the R query heads that read it;
- `query_slots` (R channels): slot s is query head s of every group, so every
  surviving group keeps the same number of query heads and the slim layer is a
  valid grouped-query layer with len(groups) key/value heads and
  len(groups) × len(slots) query heads.

The search model multiplies the output projection's input, query head u, by
gate(group u // R) × gate(slot u % R): a closed group or slot contributes
exactly nothing, as in the slim layer that no longer has it. The head width is
never cut (rotary embeddings rotate pairs inside a head; q/k norms normalise
over it).

The output has the query's width (the output projection gives it back), so
its channels are the query's. Cost: the query and output projections cost
query width × groups × slots × head width. The cost polynomial holds products
of two searched widths, so the query slots are kept out of search (with a
note) when the query's channels are searched (in a decoder they are the
residual stream, searched when a CausalLM is wrapped: its key/value groups stay
searched, its query slots are kept). Multiply-adds per example: the projections at every position, QKᵀ
and AV over every (query, key) pair of the stated sequence length (a causal
mask is not subtracted, as for MultiHeadAttention), the output projection.

The kernels' layout is read from each sublayer's `EinsumDense` equation:
hidden-first (`"bqm,muh->bquh"`, Keras and Llama) and heads-first
(`"btd,ndh->btnh"`, Gemma) alike.

This module reads private sublayer attributes of the attention layers
(`_query_dense`, ...), and the gated stand-in swaps the layer's output
projection for the duration of one call (`object.__setattr__`, bypassing Keras'
tracking): the gate has to act between the attention and the output
projection, inside the layer's own call.
"""

import math

import keras
import numpy as np
from keras import ops

from figs_tf.channel_sets import Segment, groups_in
from figs_tf.handlers.attention import attention_arguments
from figs_tf.handlers.base import LayerHandler, Term, UnsupportedLayerError, clone_layer, to_numpy
from figs_tf.wrapper_layer import WrapperLayer, take_gates


def _equation_parts(dense):
    inputs, output = dense.equation.split("->")
    source, kernel = inputs.split(",")
    return source, kernel, output


def projection_axes(dense):
    """(input-width axis, heads axis) of a Q/K/V projection kernel ("bqm,muh->bquh", "btd,ndh->btnh")."""
    source, kernel, output = _equation_parts(dense)
    return kernel.index(source[-1]), kernel.index(output[-2])


def output_projection_axes(dense):
    """(heads axis, output-width axis) of an output projection kernel ("bquh,uhm->bqm")."""
    source, kernel, output = _equation_parts(dense)
    return kernel.index(source[-2]), kernel.index(output[-1])


def bias_heads_axis(dense, heads_letter_of):
    """The heads axis of a projection's bias, or None (no bias, or none along the heads)."""
    axes = getattr(dense, "bias_axes", None)
    if dense.bias is None or not axes:
        return None
    letter = heads_letter_of(dense)
    return axes.index(letter) if letter in axes else None


def _projection_heads_letter(dense):
    return _equation_parts(dense)[2][-2]


def _folded(coefficient, *channel_sets):
    """A Term with channel sets that have no searched group folded into its coefficient."""
    kept = []
    for channel_set in channel_sets:
        if groups_in(channel_set):
            kept.append(channel_set)
        else:
            coefficient *= sum(segment.channels for segment in channel_set)
    return Term(coefficient, tuple(kept))


class GroupedAttentionHandler(LayerHandler):
    """A grouped-query attention layer: `kv_groups` and `query_slots` inner sets, output width kept.

    Subclasses (one per layer type) name the sublayers and the arguments:

    - `projections`: attribute names of the query, key, value and output
      `EinsumDense`s; `query_side`: further query-side projections (Keras'
      `use_gate` gate), cut like the query;
    - `arguments(call)`: (query, key, value) input indices and those of masks;
    - `rebuilt(layer, num_query_heads, num_key_value_heads)`: a fresh layer with
      those heads and the same head width.
    """

    mixes_channels = True
    projections = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
    query_side = ()

    def arguments(self, call):
        """(query index, key index, value index, [mask indices]) into the call's inputs."""
        masks = list(range(1, len(call.input_keys)))
        return 0, 0, 0, masks

    def rebuilt(self, layer, num_query_heads, num_key_value_heads):
        return clone_layer(layer, num_query_heads=num_query_heads, num_key_value_heads=num_key_value_heads)

    # --- what every grouped layer shares ---

    def heads(self, layer):
        """(num_query_heads, num_key_value_heads, head width)."""
        query = getattr(layer, self.projections[0])
        _, heads_axis = projection_axes(query)
        key_heads = getattr(layer, self.projections[1]).kernel.shape[projection_axes(getattr(layer, self.projections[1]))[1]]
        width = query.kernel.shape[-1] if heads_axis != len(query.kernel.shape) - 1 else None
        if width is None:
            raise UnsupportedLayerError(f"'{layer.name}': its query kernel has the heads on the last axis; figs_tf "
                                        "expects (..., heads, head width).")
        return query.kernel.shape[heads_axis], key_heads, width

    def _sublayers(self, layer):
        found = [getattr(layer, name, None) for name in self.projections + self.query_side]
        return [dense for dense in found if dense is not None]

    def channel_axes(self, call, in_axes):
        return [len(t.shape) - 1 for t in call.input_tensors], [len(t.shape) - 1 for t in call.output_tensors]

    def output_sets(self, call, in_sets, groups):
        query, key, value, masks = self.arguments(call)
        for index in masks:
            if groups_in(in_sets[index]):
                groups.fix(in_sets[index], f"'{call.name}' reads them as an attention mask")
        outputs = [in_sets[query]]  # the output projection gives back the query's width
        if len(call.output_tensors) > 1:  # return_attention_scores: (B, heads, T, S)
            outputs.append((Segment(None, call.output_tensors[1].shape[-1] or 0),))
        return outputs

    def inner_sets(self, call, in_sets, groups):
        query_heads, key_heads, _ = self.heads(call.layer)
        repeats = query_heads // key_heads
        kv_groups = (Segment(groups.new_group(key_heads, f"{call.name}/kv_groups"), key_heads),)
        slots = (Segment(groups.new_group(repeats, f"{call.name}/query_slots"), repeats),)
        query = self.arguments(call)[0]
        if groups_in(in_sets[query]):
            groups.fix_if_searched(in_sets[query], slots, f"the query of '{call.name}' reads searched channels: query projection = input × "
                       "groups × slots would multiply three searched widths")
        if len(call.output_tensors) > 1:
            reason = f"'{call.name}' returns its attention scores, which have a heads axis"
            groups.fix(kv_groups, reason)
            groups.fix(slots, reason)
        return [("kv_groups", kv_groups), ("query_slots", slots)]

    def requires_clean_inputs(self, call):
        return True

    def output_dirty(self, call, in_dirty):
        return True

    def _roles(self, call, in_sets, out_sets):
        query, key, value, _ = self.arguments(call)
        return in_sets[query], in_sets[key], in_sets[value], out_sets[-2], out_sets[-1]

    def param_terms(self, call, in_sets, out_sets):
        layer = call.layer
        query_set, key_set, value_set, kv_groups, slots = self._roles(call, in_sets, out_sets)
        query_heads, key_heads, width = self.heads(layer)
        names = dict(zip(self.projections, (query_set, key_set, value_set, None)))
        counted, terms = set(), []
        for name in self.projections + self.query_side:
            dense = getattr(layer, name, None)
            if dense is None:
                continue
            per_head = math.prod(dense.kernel.shape) // (key_heads if name in self.projections[1:3] else query_heads)
            heads_sets = (kv_groups,) if name in self.projections[1:3] else (kv_groups, slots)
            if name == self.projections[3]:
                terms.append(_folded(per_head // sum(s.channels for s in query_set), query_set, *heads_sets))
            else:
                in_set = names.get(name, query_set)
                terms.append(_folded(per_head // sum(s.channels for s in in_set), in_set, *heads_sets))
            counted.add(id(dense.kernel))
            if dense.bias is not None:
                bias_size = math.prod(dense.bias.shape)
                if name == self.projections[3]:  # along the output width
                    terms.append(_folded(bias_size // sum(s.channels for s in query_set), query_set))
                else:
                    terms.append(_folded(bias_size // (key_heads if name in self.projections[1:3] else query_heads),
                                         *heads_sets))
                counted.add(id(dense.bias))
        rest = sum(math.prod(w.shape) for w in layer.weights if id(w) not in counted)
        if rest:
            terms.append(Term(rest, ()))
        return terms

    def _lengths(self, call):
        query, key, _, _ = self.arguments(call)
        lengths = []
        for index in (query, key):
            shape = call.input_tensors[index].shape
            if any(d is None for d in shape[1:]):
                raise UnsupportedLayerError(
                    f"'{call.name}' has inputs of unknown size {tuple(shape)}: its multiply-adds depend on the "
                    "sequence length. Build the model with a fixed length (keras.Input((T, C))), or trace a "
                    "built one at a fixed length with keras.models.clone_model(model, input_tensors=..., "
                    "clone_function=lambda layer: layer).")
            lengths.append(math.prod(shape[1:-1]))
        return lengths

    def flop_terms(self, call, in_sets, out_sets):
        layer = call.layer
        query_set, key_set, value_set, kv_groups, slots = self._roles(call, in_sets, out_sets)
        query_length, key_length = self._lengths(call)
        _, _, width = self.heads(layer)
        terms = [_folded(query_length * width, query_set, kv_groups, slots),
                 _folded(key_length * width, key_set, kv_groups),
                 _folded(key_length * width, value_set, kv_groups),
                 _folded(query_length * key_length * 2 * width, kv_groups, slots),  # QKᵀ and AV
                 _folded(query_length * width, kv_groups, slots, query_set)]  # output projection
        for name in self.query_side:
            if getattr(layer, name, None) is not None:
                terms.append(_folded(query_length * width, query_set, kv_groups, slots))
        return terms

    def gated_layer(self, call, inner_gate_indices):
        query_heads, key_heads, _ = self.heads(call.layer)
        return GroupGatedAttention(call.layer, output_projection=self.projections[3],
                                   group_gate_indices=inner_gate_indices[0], slot_gate_indices=inner_gate_indices[1],
                                   name=call.name)

    def kept_query_heads(self, layer, kept_groups, kept_slots):
        query_heads, key_heads, _ = self.heads(layer)
        repeats = query_heads // key_heads
        return np.asarray([g * repeats + s for g in kept_groups for s in kept_slots], dtype=np.int64)

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        query, key, value, _ = self.arguments(call)
        kept_groups, kept_slots = np.asarray(kept_out[-2]), np.asarray(kept_out[-1])
        kept_query = self.kept_query_heads(layer, kept_groups, kept_slots)
        rows = {self.projections[0]: kept_in[query], self.projections[1]: kept_in[key],
                self.projections[2]: kept_in[value]}
        sliced = {}
        for name in self.projections + self.query_side:
            dense = getattr(layer, name, None)
            if dense is None:
                continue
            heads = kept_groups if name in self.projections[1:3] else kept_query
            kernel = to_numpy(dense.kernel)
            if name == self.projections[3]:
                heads_axis, out_axis = output_projection_axes(dense)
                kernel = np.take(kernel, heads, axis=heads_axis)
                sliced[id(dense.kernel)] = np.take(kernel, kept_in[query], axis=out_axis)
                if dense.bias is not None:
                    sliced[id(dense.bias)] = np.take(to_numpy(dense.bias), kept_in[query], axis=-1)
                continue
            in_axis, heads_axis = projection_axes(dense)
            kernel = np.take(kernel, rows.get(name, kept_in[query]), axis=in_axis)
            sliced[id(dense.kernel)] = np.take(kernel, heads, axis=heads_axis)
            bias_axis = bias_heads_axis(dense, _projection_heads_letter)
            if bias_axis is not None:
                sliced[id(dense.bias)] = np.take(to_numpy(dense.bias), heads, axis=bias_axis)
        weights = [sliced.get(id(v), None) for v in layer.weights]
        weights = [to_numpy(v) if w is None else w for v, w in zip(layer.weights, weights)]
        return self.rebuilt(layer, len(kept_query), len(kept_groups)), weights

    def inner_channel_l1(self, layer, label):
        output = getattr(layer, self.projections[3])
        kernel = np.moveaxis(np.abs(to_numpy(output.kernel)), output_projection_axes(output)[0], 0)
        per_head = kernel.reshape(kernel.shape[0], -1).sum(axis=1)  # one value per query head
        query_heads, key_heads, _ = self.heads(layer)
        per_head = per_head.reshape(key_heads, query_heads // key_heads)
        return per_head.sum(axis=1) if label == "kv_groups" else per_head.sum(axis=0)


class KerasGroupedQueryAttentionHandler(GroupedAttentionHandler):
    """keras.layers.GroupQueryAttention (the class GroupedQueryAttention; query, value, key and masks; `use_gate`'s projection cut like the query)."""

    query_side = ("_gate_dense",)

    def arguments(self, call):
        bound = attention_arguments(call)
        known = ("query", "value", "key", "query_mask", "value_mask", "key_mask", "attention_mask")
        if any(name not in known for name in bound):
            raise UnsupportedLayerError(f"'{call.name}' is called with tensors {sorted(bound)}; figs_tf knows "
                                        "query, value, key and the masks.")
        masks = [index for name, index in bound.items() if name.endswith("mask")]
        return bound["query"], bound.get("key", bound["value"]), bound["value"], masks


@keras.saving.register_keras_serializable(package="figs_tf")
class GroupGatedAttention(WrapperLayer):
    """A grouped-query attention call with its key/value groups and query slots gated (the search model's stand-in).

    Computes what the wrapped layer computes, with query head u's attention
    output multiplied by gate_vector[group_gate_indices[u // R]] ×
    gate_vector[slot_gate_indices[u % R]] before the output projection.

    Args:
      layer: the attention layer (shared, not copied).
      output_projection: the attribute name of its output `EinsumDense`
        (input (batch, positions, query heads, head width)).
      group_gate_indices: each key/value group's index in the gate vector.
      slot_gate_indices: each query slot's index in the gate vector.
      **kwargs: Layer arguments.

    Example:

        y = GroupGatedAttention(gqa, output_projection="_output_dense", group_gate_indices=[0, 1],
                                slot_gate_indices=[2, 3])(gate_vector, x, x)
    """

    gate_positions = (0,)

    def __init__(self, layer, output_projection, group_gate_indices, slot_gate_indices, **kwargs):
        super().__init__(layer, **kwargs)
        self.output_projection = output_projection
        self.group_gate_indices = [int(i) for i in group_gate_indices]
        self.slot_gate_indices = [int(i) for i in slot_gate_indices]

    def build(self, *args, **kwargs):
        self.built = True  # the wrapped layer builds itself on its first call

    def call(self, gate_vector, *args, **kwargs):
        groups = take_gates(gate_vector, self.group_gate_indices)
        slots = take_gates(gate_vector, self.slot_gate_indices)
        head_gates = ops.reshape(groups[:, None] * slots[None, :], (-1,))  # query head u = group · R + slot
        attention = self.wrapped_layer
        projection = getattr(attention, self.output_projection)

        def gated_projection(heads, *more, **options):  # heads: (batch, positions, query heads, head width)
            gates = ops.cast(ops.reshape(head_gates, (-1, 1)), heads.dtype)
            return projection(heads * gates, *more, **options)

        object.__setattr__(attention, self.output_projection, gated_projection)
        try:
            return attention(*args, **kwargs)
        finally:
            object.__setattr__(attention, self.output_projection, projection)

    def get_config(self):
        config = super().get_config()
        config.update(output_projection=self.output_projection, group_gate_indices=self.group_gate_indices,
                      slot_gate_indices=self.slot_gate_indices)
        return config
