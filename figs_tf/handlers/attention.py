"""MultiHeadAttention: one gate per head, heads cut out of the kernels in `slim`.

The heads are an inner channel set of the layer (`LayerHandler.inner_sets`):
no tensor of the graph has a heads axis, so the search model calls a
`HeadGatedAttention` stand-in that multiplies each head's value projection
by its gate. Head h's output is A_h·(g_h·V_h) = g_h·(A_h·V_h), so a closed
head contributes exactly nothing, as in the slimmed layer that no longer has
it. The output projection's width is a channel group like a Dense's units
(in a Transformer it is tied to the residual stream, which LayerNormalization
keeps out of search).

Key and value widths per head are not searched: a shared per-head width times
the heads times the input width is a product of three searched widths, which
the cost polynomial (quadratic in the widths) cannot hold whenever the
attention's input is searched too, and keras_hub's Transformer blocks derive
the key width from the model width anyway.

Multiply-adds per example: the query, key, value (and gate) projections, QKᵀ
(heads × query positions × key positions × key_dim), AV (the same with
value_dim) and the output projection. The 1/√key_dim scaling, the softmax and
the gate's elementwise product are not multiply-adds (the convention of
figs_tf.handlers.base).

This module reads private Keras attention internals in `HeadGatedAttention`
(`_compute_attention_mask`, `_compute_attention`, `_use_gate`, `_gate_dense`,
and the Keras mask of a tensor through `keras.src.backend`): the gate has to
act between the value projection and the attention, inside the layer's call.
"""

import math

import keras
import numpy as np
from keras import ops
from keras.src import backend as keras_backend  # get/set_keras_mask: no public name

from figs_tf.channel_sets import Segment, groups_in
from figs_tf.handlers.base import LayerHandler, Term, UnsupportedLayerError, to_numpy
from figs_tf.wrapper_layer import WrapperLayer, take_gates

_ROLES = ("query", "value", "key")
_MASKS = ("query_mask", "value_mask", "key_mask", "attention_mask")


def attention_arguments(call):
    """{argument name: index into call.input_keys} of the tensors of a MultiHeadAttention call."""
    positions = {key: i for i, key in reversed(list(enumerate(call.input_keys)))}
    args, kwargs = call.call_arguments({key: key for key in call.input_keys})
    bound = dict(zip(_ROLES, args))
    bound.update(kwargs)
    return {name: positions[value] for name, value in bound.items()
            if isinstance(value, tuple) and value in positions}


class HeadGatedAttentionHandler(LayerHandler):
    """An attention layer with one gate per head (`"<layer>/heads"`), which it applies inside its call: it reads
    clean inputs and its outputs need no gate of their own (the heads' gates act before its output projection)."""

    def inner_sets(self, call, in_sets, groups):
        heads = call.layer.num_heads
        return [("heads", (Segment(groups.new_group(heads, f"{call.name}/heads"), heads),))]

    def requires_clean_inputs(self, call):
        return True

    def output_dirty(self, call, in_dirty):
        return True


class MultiHeadAttentionHandler(HeadGatedAttentionHandler):
    """keras.layers.MultiHeadAttention: heads are an inner channel group; the output is a new group."""

    mixes_channels = True

    def _check(self, call):
        layer = call.layer
        bound = attention_arguments(call)
        if any(name not in _ROLES + _MASKS for name in bound):
            raise UnsupportedLayerError(f"'{call.name}' ({type(layer).__name__}) is called with tensors "
                                        f"{sorted(bound)}; figs_tf knows query, value, key and the masks.")
        return bound

    def _output_is_channels(self, layer):
        output_shape = layer.get_config()["output_shape"]
        return output_shape is None or len(output_shape) == 1

    def output_sets(self, call, in_sets, groups):
        layer = call.layer
        bound = self._check(call)
        for name in _MASKS:
            if name in bound and groups_in(in_sets[bound[name]]):
                groups.fix(in_sets[bound[name]], f"'{call.name}' reads them as an attention mask")
        width = call.output_tensors[0].shape[-1]
        if self._output_is_channels(layer):
            outputs = [(Segment(groups.new_group(width, call.name), width),)]
        else:
            outputs = [(Segment(None, width),)]
        if len(call.output_tensors) > 1:  # return_attention_scores: (B, heads, T, S)
            outputs.append((Segment(None, call.output_tensors[1].shape[-1]),))
        return outputs

    def inner_sets(self, call, in_sets, groups):
        inner = super().inner_sets(call, in_sets, groups)
        if len(call.output_tensors) > 1:
            groups.fix(inner[0][1], f"'{call.name}' returns its attention scores, which have a heads axis")
        return inner

    def _shapes(self, call):
        bound = attention_arguments(call)
        query = call.input_tensors[bound["query"]].shape
        value = call.input_tensors[bound["value"]].shape
        key = call.input_tensors[bound["key"]].shape if "key" in bound else value
        for shape in (query, value, key):
            if any(d is None for d in shape[1:]):
                raise UnsupportedLayerError(
                    f"'{call.name}' has inputs of unknown size {tuple(shape)}: its multiply-adds depend on the "
                    "sequence length. Build the model with a fixed length (keras.Input((T, C))), or trace a "
                    "built one at a fixed length: keras.models.clone_model(model, input_tensors={name: "
                    "keras.Input((T,), dtype='int32', name=name) for name in ...}, clone_function=lambda "
                    "layer: layer) (the same layers and weights).")
        return bound, query, key

    def _sets(self, call, in_sets, out_sets):
        bound = attention_arguments(call)
        query_set = in_sets[bound["query"]]
        value_set = in_sets[bound["value"]]
        key_set = in_sets[bound["key"]] if "key" in bound else value_set
        out_set, heads_set = out_sets[0], out_sets[-1]
        return query_set, key_set, value_set, out_set, heads_set

    def _out_terms(self, call, out_set, heads_set, positions):
        """The output projection: (heads × value_dim) → the output width, `positions` times."""
        layer = call.layer
        if self._output_is_channels(layer):
            return [Term(positions * layer.value_dim, (heads_set, out_set))]
        return [Term(positions * layer.value_dim * math.prod(call.output_tensors[0].shape[-1:]), (heads_set,))]

    def param_terms(self, call, in_sets, out_sets):
        layer = call.layer
        query_set, key_set, value_set, out_set, heads_set = self._sets(call, in_sets, out_sets)
        key_dim, value_dim = layer.key_dim, layer.value_dim
        terms = [Term(key_dim, (query_set, heads_set)), Term(key_dim, (key_set, heads_set)),
                 Term(value_dim, (value_set, heads_set))]
        if layer._use_gate:  # pylint: disable=protected-access
            terms.append(Term(value_dim, (query_set, heads_set)))
        terms += self._out_terms(call, out_set, heads_set, 1)
        if layer.use_bias:
            per_head = 2 * key_dim + value_dim + (value_dim if layer._use_gate else 0)  # pylint: disable=protected-access
            terms.append(Term(per_head, (heads_set,)))
            if self._output_is_channels(layer):
                terms.append(Term(1, (out_set,)))
            else:
                terms.append(Term(math.prod(layer.get_config()["output_shape"]), ()))
        return terms

    def flop_terms(self, call, in_sets, out_sets):
        layer = call.layer
        query_set, key_set, value_set, out_set, heads_set = self._sets(call, in_sets, out_sets)
        _, query, key = self._shapes(call)
        key_dim, value_dim = layer.key_dim, layer.value_dim
        query_positions = math.prod(query[1:-1])
        key_positions = math.prod(key[1:-1])
        attention_axes = set(layer.attention_axes)
        # QKᵀ and AV: for every position outside the attention axes, every pair of query and key positions.
        batch_positions = math.prod(query[a] for a in range(1, len(query) - 1) if a not in attention_axes)
        pairs = batch_positions * math.prod(query[a] for a in attention_axes) * math.prod(key[a] for a in attention_axes)
        terms = [Term(query_positions * key_dim, (query_set, heads_set)),
                 Term(key_positions * key_dim, (key_set, heads_set)),
                 Term(key_positions * value_dim, (value_set, heads_set)),
                 Term(pairs * (key_dim + value_dim), (heads_set,))]
        if layer._use_gate:  # pylint: disable=protected-access
            terms.append(Term(query_positions * value_dim, (query_set, heads_set)))
        return terms + self._out_terms(call, out_set, heads_set, query_positions)

    def gated_layer(self, call, inner_gate_indices):
        return HeadGatedAttention(call.layer, head_gate_indices=inner_gate_indices[0], name=call.name)

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        bound = attention_arguments(call)
        kept_query = kept_in[bound["query"]]
        kept_value = kept_in[bound["value"]]
        kept_key = kept_in[bound["key"]] if "key" in bound else kept_value
        kept_heads, kept_outputs = kept_out[-1], kept_out[0]
        changes = {"num_heads": len(kept_heads)}
        if self._output_is_channels(layer):
            changes["output_shape"] = (len(kept_outputs),)
        sliced = {}
        for dense, kept_rows in ((layer.query_dense, kept_query), (layer.key_dense, kept_key),
                                 (layer.value_dense, kept_value),
                                 (getattr(layer, "_gate_dense", None), kept_query)):
            if dense is None:
                continue
            sliced[id(dense.kernel)] = to_numpy(dense.kernel)[kept_rows][:, kept_heads]  # (in, heads, dim)
            if dense.bias is not None:
                sliced[id(dense.bias)] = to_numpy(dense.bias)[kept_heads]  # (heads, dim)
        output = layer.output_dense
        kernel = to_numpy(output.kernel)[kept_heads]  # (heads, value_dim, *output_shape)
        if self._output_is_channels(layer):
            kernel = kernel[..., kept_outputs]
        sliced[id(output.kernel)] = kernel
        if output.bias is not None:
            bias = to_numpy(output.bias)
            sliced[id(output.bias)] = bias[..., kept_outputs] if self._output_is_channels(layer) else bias
        weights = [sliced[id(v)] if id(v) in sliced else to_numpy(v) for v in layer.weights]
        # keras_hub's CachedMultiHeadAttention is read with MultiHeadAttention's call (AsMultiHeadAttention);
        # its config is MultiHeadAttention's, so every kind is rebuilt as the plain layer
        config = layer.get_config()
        config.update(changes)
        return keras.layers.MultiHeadAttention.from_config(config), weights

    def output_channel_l1(self, layer):
        kernel = np.abs(to_numpy(layer.output_dense.kernel))
        return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)

    def inner_channel_l1(self, layer, label):
        kernel = np.abs(to_numpy(layer.output_dense.kernel))  # (heads, value_dim, ...)
        return kernel.reshape(kernel.shape[0], -1).sum(axis=1)


@keras.saving.register_keras_serializable(package="figs_tf")
class HeadGatedAttention(WrapperLayer):
    """A MultiHeadAttention call with one gate per head (the search model's stand-in).

    Computes what the wrapped layer computes, with head h's value projection
    multiplied by `gate_vector[head_gate_indices[h]]`.

    Args:
      layer: the keras.layers.MultiHeadAttention (shared, not copied).
      head_gate_indices: for each head, its index in the gate vector.
      **kwargs: Layer arguments.

    Example:

        gate_vector, _ = figs_tf.MaskLayer(group_sizes=[4])(x)
        y = HeadGatedAttention(attention, head_gate_indices=[0, 1, 2, 3])(gate_vector, x, x)
    """

    gate_positions = (0,)

    def __init__(self, layer, head_gate_indices, **kwargs):
        super().__init__(layer, **kwargs)
        self.head_gate_indices = [int(i) for i in head_gate_indices]

    def build(self, gate_vector_shape, query_shape, value_shape, key_shape=None):
        if not self.wrapped_layer.built:  # a loaded search model: the call below reads its sublayers
            self.wrapped_layer.build(query_shape, value_shape, key_shape)

    def call(self, gate_vector, query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
             attention_mask=None, return_attention_scores=False, training=None, use_causal_mask=False):
        attention = self.wrapped_layer
        if key is None:
            key = value
        query_mask = keras_backend.get_keras_mask(query)  # as MultiHeadAttention.call: the query's own mask
        attention_mask = attention._compute_attention_mask(  # pylint: disable=protected-access
            query, value, query_mask=query_mask, value_mask=value_mask, key_mask=key_mask,
            attention_mask=attention_mask, use_causal_mask=use_causal_mask)
        gate = attention._gate_dense(query) if attention._use_gate else None  # pylint: disable=protected-access
        projected_query = attention.query_dense(query)
        projected_key = attention.key_dense(key)
        projected_value = attention.value_dense(value)  # (B, S, heads, value_dim)
        head_gates = take_gates(gate_vector, self.head_gate_indices)
        projected_value = projected_value * ops.cast(ops.expand_dims(head_gates, -1), projected_value.dtype)
        output, scores = attention._compute_attention(  # pylint: disable=protected-access
            projected_query, projected_key, projected_value, attention_mask, training, return_attention_scores)
        if gate is not None:
            output = output * gate
        output = attention.output_dense(output)
        if query_mask is not None:
            keras_backend.set_keras_mask(output, query_mask)
        return (output, scores) if return_attention_scores else output

    def compute_output_spec(self, gate_vector, query, value, key=None, query_mask=None, value_mask=None,
                            key_mask=None, attention_mask=None, return_attention_scores=False, training=None,
                            use_causal_mask=False):
        return self.wrapped_layer.compute_output_spec(query, value, key, return_attention_scores=return_attention_scores)

    def get_config(self):
        config = super().get_config()
        config["head_gate_indices"] = self.head_gate_indices
        return config


class AsMultiHeadAttention(WrapperLayer):
    """Calls a MultiHeadAttention subclass with MultiHeadAttention's own `call` (masks and all).

    For functional equivalents of blocks whose attention is a subclass with
    another signature (keras_hub's CachedMultiHeadAttention takes a ready-made
    attention mask): the equivalent passes `value_mask` and `use_causal_mask`
    instead of building the mask from `keras.ops`, and the analysis reads the
    call as one of the wrapped layer (it is a `WrapperLayer`). It exists only
    inside equivalents; search and slim models never hold it.
    """

    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
             return_attention_scores=False, training=None, use_causal_mask=False):
        return keras.layers.MultiHeadAttention.call(
            self.wrapped_layer, query, value, key, query_mask=query_mask, value_mask=value_mask, key_mask=key_mask,
            attention_mask=attention_mask, return_attention_scores=return_attention_scores, training=training,
            use_causal_mask=use_causal_mask)

    def compute_output_spec(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
                            attention_mask=None, return_attention_scores=False, training=None, use_causal_mask=False):
        return self.wrapped_layer.compute_output_spec(query, value, key,
                                                      return_attention_scores=return_attention_scores)
