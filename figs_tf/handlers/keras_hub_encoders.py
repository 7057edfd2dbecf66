"""keras_hub's DeBERTaV3 and T5 text encoders: their blocks as functional equivalents, their attention searched by head.

DeBERTaV3 (`DebertaV3Backbone`):

- `RelativeEmbedding` makes the (batch, 2·bucket_size, hidden) relative
  position embeddings, layer-normalised: its width is kept (the normalization
  mixes its channels), a leaf without channel groups;
- `DisentangledAttentionEncoder` is analysed through a functional equivalent
  of its own sublayers (post-LayerNorm, as keras_hub's TransformerEncoder):
  its padding mask becomes the attention's (batch, 1, T) mask, its MLP's
  hidden units are searched like a Dense's;
- `DisentangledSelfAttention` is one call searched by head. Content-to-content,
  content-to-position and position-to-content scores are all per head, and the
  relative embeddings go through the same query and key kernels as the tokens,
  so cutting a head cuts it out of every term; its head width (and with it the
  1/√(3·head width) scale) is kept. The search model multiplies each head's
  values by its gate (`HeadProjectionGate`): a closed head contributes exactly
  nothing. `figs_tf.slim` rebuilds it as `FixedHeadWidthDisentangledSelfAttention`
  (keras_hub's layer derives its head width from hidden_dim // num_heads).

T5 (`T5Backbone`, encoder and decoder):

- `T5TransformerLayer` is analysed through a functional equivalent: its
  T5LayerNorms (RMS-style, no mean: kept, with a note, as the decoder
  families' RMS norms), self-attention, cross-attention in the decoder, and the
  (gated) MLP, whose hidden units are searched (the two input projections
  share a channel through their product); the first decoder layer's causal
  mask is computed by a `T5CausalMask` layer;
- `T5MultiHeadAttention` is searched by head. The first layer of a stack
  computes the relative position bias, (batch, heads, T, S), from its own
  `relative_attention_bias` (buckets, heads), and every later layer of the
  stack adds that same tensor to its scores, head by head. The analysis reads
  the bias as a tensor whose channels are the heads (axis 1): the later layers
  take their heads from it, so every self-attention of a stack keeps the same
  heads (their gates are one group), and the slim first layer computes the
  bias of the kept heads only (its `relative_attention_bias` columns cut),
  exactly what every slim later layer reads. Cross-attention heads (no
  relative bias) are searched per layer.

This module reads keras_hub's internal module paths and the blocks' and
attention layers' private attributes (`_self_attention_layer`, `_value_dense`,
`_compute_attention`, ...); the gated stand-in swaps a value projection for the
duration of one call (`object.__setattr__`, bypassing Keras' tracking).
"""

import importlib.util
import math

import keras
import numpy as np
from keras import ops

from figs_tf.channel_sets import Segment, groups_in
from figs_tf.handlers.attention import HeadGatedAttentionHandler
from figs_tf.handlers.base import LayerHandler, Term, UnsupportedLayerError, clone_layer, to_numpy
from figs_tf.handlers.keras_hub import BlockHandler, _second_use
from figs_tf.handlers.keras_hub_decoders import DecoderMaskHandler, rebuilt_family_norm, untrack_sublayer
from figs_tf.handlers.per_channel import RMSNormalizationHandler
from figs_tf.wrapper_layer import WrapperLayer, take_gates


def _bound(names, args, kwargs):
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


def _refuse(layer, bound, names, what):
    passed = [name for name in names if bound.get(name) is not None]
    if passed:
        raise UnsupportedLayerError(f"'{layer.name}' is called with {passed}; figs_tf expands {what}.")


def argument_positions(call, names):
    """{argument name: index into call.input_keys} of the tensors the call was given, by parameter name."""
    positions = {key: i for i, key in reversed(list(enumerate(call.input_keys)))}
    args, kwargs = call.call_arguments({key: key for key in call.input_keys})
    bound = _bound(names, args, kwargs)
    return {name: positions[value] for name, value in bound.items()
            if isinstance(value, tuple) and value in positions}


def _sequence_length(call, index):
    length = call.input_tensors[index].shape[1]
    if length is None:
        raise UnsupportedLayerError(
            f"'{call.name}' reads a sequence of unknown length: its multiply-adds depend on it. Trace the backbone "
            "at a fixed length: keras.models.clone_model(backbone, input_tensors={name: keras.Input((T,), "
            "dtype='int32', name=name) for name in backbone.input}, clone_function=lambda layer: layer).")
    return length


def tensors_only(outputs):
    """A layer's outputs without the Nones (T5's attention returns a None cache when given none)."""
    return tuple(output for output in outputs if output is not None) if isinstance(outputs, tuple) else outputs


@keras.saving.register_keras_serializable(package="figs_tf")
class HeadProjectionGate(WrapperLayer):
    """An attention call with each head's values multiplied by its gate (the search model's stand-in).

    For attention layers that compute their value projection with one sublayer
    (`projection`, an attribute name) whose output has the heads on its last
    axes: (..., heads, head width), or (..., heads · head width) when
    `flat_head_width` is given. Head h's output is A_h·(g_h·V_h) = g_h·(A_h·V_h),
    so a closed head contributes exactly nothing. Outputs that are None (T5's
    absent cache) are left out: a functional graph holds tensors only.

    Args:
      layer: the attention layer (shared, not copied).
      projection: the attribute name of its value projection.
      head_gate_indices: each head's index in the gate vector.
      flat_head_width: None, or the head width of a projection whose output is
        flat (heads · head width).
      **kwargs: Layer arguments.

    Example:

        y = HeadProjectionGate(attention, projection="_value_dense", head_gate_indices=[0, 1])(
            gate_vector, x, rel_embeddings=r)
    """

    gate_positions = (0,)

    def __init__(self, layer, projection, head_gate_indices, flat_head_width=None, **kwargs):
        super().__init__(layer, **kwargs)
        self.projection = projection
        self.head_gate_indices = [int(i) for i in head_gate_indices]
        self.flat_head_width = flat_head_width

    def build(self, *args, **kwargs):
        self.built = True  # the wrapped layer builds itself on its first call

    def call(self, gate_vector, *args, **kwargs):
        gates = take_gates(gate_vector, self.head_gate_indices)
        if self.flat_head_width:
            gates = ops.repeat(gates, self.flat_head_width)
        else:
            gates = ops.reshape(gates, (-1, 1))
        attention = self.wrapped_layer
        projection = getattr(attention, self.projection)

        def gated_projection(inputs, *more, **options):
            values = projection(inputs, *more, **options)
            return values * ops.cast(gates, values.dtype)

        object.__setattr__(attention, self.projection, gated_projection)
        try:
            return tensors_only(attention(*args, **kwargs))
        finally:
            object.__setattr__(attention, self.projection, projection)

    def get_config(self):
        config = super().get_config()
        config.update(projection=self.projection, head_gate_indices=self.head_gate_indices,
                      flat_head_width=self.flat_head_width)
        return config


# --- DeBERTaV3 ---


class RelativeEmbeddingHandler(LayerHandler):
    """keras_hub DeBERTaV3's `RelativeEmbedding`: reads only its input's batch size; its (layer-normalised)
    width is kept."""

    def output_sets(self, call, in_sets, groups):
        return [(Segment(None, call.output_tensors[0].shape[-1]),)]

    def output_dirty(self, call, in_dirty):
        return False

    def param_terms(self, call, in_sets, out_sets):
        return [Term(call.layer.count_params(), ())]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        # rebuilt as a subclass whose build builds its LayerNorm, so that a saved slim model loads
        return built_relative_embedding().from_config(layer.get_config()), layer.get_weights()


class DisentangledAttentionEncoderHandler(BlockHandler):
    """keras_hub's `DisentangledAttentionEncoder`: x + attention → LayerNorm, then x + MLP → LayerNorm."""

    def body(self, layer, args, kwargs):
        bound = _bound(("inputs", "rel_embeddings", "padding_mask", "attention_mask"), args, kwargs)
        _refuse(layer, bound, ("attention_mask",), "DeBERTa blocks with a padding mask only")
        x = bound["inputs"]
        mask = bound.get("padding_mask")
        attention_kwargs = {} if mask is None else {"attention_mask": mask[:, None, :]}
        y = layer._self_attention_layer(x, rel_embeddings=bound["rel_embeddings"], **attention_kwargs)  # pylint: disable=protected-access
        x = layer._self_attention_layer_norm(layer._self_attention_dropout(y) + x)  # pylint: disable=protected-access
        y = layer._feedforward_output_dense(layer._feedforward_intermediate_dense(x))  # pylint: disable=protected-access
        return layer._feedforward_layer_norm(layer._feedforward_dropout(y) + x)  # pylint: disable=protected-access


class DisentangledSelfAttentionHandler(HeadGatedAttentionHandler):
    """keras_hub DeBERTaV3's `DisentangledSelfAttention`: heads an inner channel group, the output a new group.

    Its query and key kernels also project the relative embeddings, whose
    width is kept: the token input's channels are kept with them (in a DeBERTa
    block both are layer-normalised anyway).
    """

    mixes_channels = True
    names = ("inputs", "rel_embeddings", "attention_mask", "return_attention_scores", "training")

    def _positions(self, call):
        args, kwargs = call.call_arguments({key: key for key in call.input_keys})
        if _bound(self.names, args, kwargs).get("return_attention_scores"):
            raise UnsupportedLayerError(f"'{call.name}' returns attention scores; figs_tf searches "
                                        "DisentangledSelfAttention without them.")
        return argument_positions(call, self.names)

    def output_sets(self, call, in_sets, groups):
        positions = self._positions(call)
        groups.fix(in_sets[positions["inputs"]], f"the query and key kernels of '{call.name}' also project the "
                   "relative embeddings, whose channels are kept")
        if "attention_mask" in positions:
            groups.fix(in_sets[positions["attention_mask"]], f"'{call.name}' reads them as an attention mask")
        width = call.output_tensors[0].shape[-1]
        return [(Segment(groups.new_group(width, call.name), width),)]

    def param_terms(self, call, in_sets, out_sets):
        width = call.layer.attn_head_size
        positions = self._positions(call)
        in_set, out_set, heads = in_sets[positions["inputs"]], out_sets[0], out_sets[-1]
        return [Term(3 * width, (in_set, heads)), Term(3 * width, (heads,)),  # Q, K, V kernels and biases
                Term(width, (heads, out_set)), Term(1, (out_set,))]  # the output projection

    def flop_terms(self, call, in_sets, out_sets):
        width = call.layer.attn_head_size
        positions = self._positions(call)
        length = _sequence_length(call, positions["inputs"])
        relative = call.input_tensors[positions["rel_embeddings"]].shape[1]  # 2 · bucket_size
        in_set, rel_set = in_sets[positions["inputs"]], in_sets[positions["rel_embeddings"]]
        out_set, heads = out_sets[0], out_sets[-1]
        return [Term(3 * length * width, (in_set, heads)),  # Q, K, V of the tokens
                Term(2 * relative * width, (rel_set, heads)),  # Q, K of the relative embeddings
                # QKᵀ and AV over T × T pairs, content-to-position and position-to-content over T × 2·bucket
                Term((2 * length * length + 2 * length * relative) * width, (heads,)),
                Term(length * width, (heads, out_set))]

    def gated_layer(self, call, inner_gate_indices):
        return HeadProjectionGate(call.layer, projection="_value_dense", head_gate_indices=inner_gate_indices[0],
                                  name=call.name)

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        rows, kept, heads = kept_in[self._positions(call)["inputs"]], kept_out[0], kept_out[-1]
        width = layer.attn_head_size
        sliced = {}
        for dense in (layer._query_dense, layer._key_dense, layer._value_dense):  # pylint: disable=protected-access
            sliced[id(dense.kernel)] = to_numpy(dense.kernel)[rows][:, heads]  # (in, heads, width)
            sliced[id(dense.bias)] = to_numpy(dense.bias)[heads]  # (heads, width)
        output = layer._output_dense  # pylint: disable=protected-access
        kernel = to_numpy(output.kernel).reshape(layer.num_heads, width, -1)[heads][..., kept]
        sliced[id(output.kernel)] = kernel.reshape(len(heads) * width, len(kept))
        sliced[id(output.bias)] = to_numpy(output.bias)[kept]
        config = layer.get_config()
        config.update(num_heads=len(heads), hidden_dim=len(kept), head_dim=width)
        rebuilt = fixed_head_width_disentangled_self_attention().from_config(config)
        return rebuilt, [sliced[id(v)] for v in layer.weights]

    def output_channel_l1(self, layer):
        return np.abs(to_numpy(layer._output_dense.kernel)).sum(axis=0)  # pylint: disable=protected-access

    def inner_channel_l1(self, layer, label):
        kernel = np.abs(to_numpy(layer._output_dense.kernel))  # pylint: disable=protected-access
        return kernel.reshape(layer.num_heads, -1).sum(axis=1)


_CLASSES = {}


def fixed_head_width_disentangled_self_attention():
    """The class `FixedHeadWidthDisentangledSelfAttention` (made on first use: it subclasses keras_hub's layer)."""
    if "deberta" in _CLASSES:
        return _CLASSES["deberta"]
    from keras_hub.src.models.deberta_v3.disentangled_self_attention import DisentangledSelfAttention  # pylint: disable=g-import-not-at-top

    @keras.saving.register_keras_serializable(package="figs_tf")
    class FixedHeadWidthDisentangledSelfAttention(DisentangledSelfAttention):
        """keras_hub's DisentangledSelfAttention with its head width given (`head_dim`), not hidden_dim // heads.

        What `figs_tf.slim` rebuilds a DisentangledSelfAttention with fewer heads
        as: `hidden_dim` is its output width, the heads keep their width (and
        the scores their 1/√(3·head_dim) scale).

        Example:

            attention = FixedHeadWidthDisentangledSelfAttention(num_heads=1, hidden_dim=16, head_dim=8)
            y = attention(x, rel_embeddings=r)       # x: (B, T, 16), r: (B, 2·bucket_size, 16)
        """

        def __init__(self, head_dim=None, **kwargs):
            super().__init__(**kwargs)
            if head_dim is not None:
                self.attn_head_size = head_dim
                self.scale_factor = 1.0 / math.sqrt(3.0 * head_dim)

        def build(self, inputs_shape, rel_embeddings_shape=None):
            super().build(inputs_shape, rel_embeddings_shape)
            # the output projection reads num_heads · head_dim values, not the input width
            untrack_sublayer(self, self._output_dense)
            output = keras.layers.EinsumDense.from_config(self._output_dense.get_config())
            output.build((None, None, self.num_heads * self.attn_head_size))
            self._output_dense = output

        def call(self, inputs, rel_embeddings, attention_mask=None, return_attention_scores=False, training=None):
            attention, scores = self._compute_attention(
                query=self._query_dense(inputs), key=self._key_dense(inputs), value=self._value_dense(inputs),
                rel_embeddings=rel_embeddings, attention_mask=attention_mask, training=training)
            shape = ops.shape(attention)
            attention = self._output_dense(ops.reshape(attention, (shape[0], shape[1], -1)))
            return (attention, scores) if return_attention_scores else attention

        def get_config(self):
            config = super().get_config()
            config["head_dim"] = self.attn_head_size
            return config

    _CLASSES["deberta"] = FixedHeadWidthDisentangledSelfAttention
    return FixedHeadWidthDisentangledSelfAttention


def built_relative_embedding():
    """The class `BuiltRelativeEmbedding` (made on first use: it subclasses keras_hub's RelativeEmbedding)."""
    if "relative" in _CLASSES:
        return _CLASSES["relative"]
    from keras_hub.src.models.deberta_v3.relative_embedding import RelativeEmbedding  # pylint: disable=g-import-not-at-top

    @keras.saving.register_keras_serializable(package="figs_tf")
    class BuiltRelativeEmbedding(RelativeEmbedding):
        """keras_hub's RelativeEmbedding whose `build` builds its LayerNorm (Keras then loads its weights).

        Example:

            embeddings = BuiltRelativeEmbedding(hidden_dim=16, bucket_size=4)(x)   # (B, 8, 16)
        """

        def build(self, input_shape):
            self.layer_norm.build((1, 2 * self.bucket_size, self.hidden_dim))
            self.built = True

    _CLASSES["relative"] = BuiltRelativeEmbedding
    return BuiltRelativeEmbedding


def tensor_outputs_t5_attention():
    """The class `TensorOutputsT5MultiHeadAttention` (made on first use: it subclasses keras_hub's layer)."""
    if "t5" in _CLASSES:
        return _CLASSES["t5"]
    from keras_hub.src.models.t5.t5_multi_head_attention import T5MultiHeadAttention  # pylint: disable=g-import-not-at-top

    @keras.saving.register_keras_serializable(package="figs_tf")
    class TensorOutputsT5MultiHeadAttention(T5MultiHeadAttention):
        """keras_hub's T5MultiHeadAttention returning (output, position bias) when called without a cache.

        What `figs_tf.slim` rebuilds a T5MultiHeadAttention as (a functional
        graph holds tensors only; with a cache it returns the cache too).

        Example:

            attention = TensorOutputsT5MultiHeadAttention(is_decoder=False, hidden_dim=16, key_value_dim=4,
                                                          num_heads=2, dropout=0.0)
            y, bias = attention(x, mask=mask)
        """

        def call(self, hidden_states, mask=None, key_value_states=None, position_bias=None, cache=None,
                 cache_update_index=None, training=False):
            outputs = super().call(hidden_states, mask=mask, key_value_states=key_value_states,
                                   position_bias=position_bias, cache=cache, cache_update_index=cache_update_index,
                                   training=training)
            return outputs if cache is not None else outputs[:2]

        def get_config(self):
            config = super().get_config()
            config.update(is_decoder=self.is_decoder, hidden_dim=self.hidden_dim, key_value_dim=self.key_value_dim,
                          num_heads=self.num_heads, dropout=self.dropout_layer.rate,
                          use_relative_attention_bias=self.use_relative_attention_bias)
            return config

    _CLASSES["t5"] = TensorOutputsT5MultiHeadAttention
    return TensorOutputsT5MultiHeadAttention


# --- T5 ---


@keras.saving.register_keras_serializable(package="figs_tf")
class T5CausalMask(keras.layers.Layer):
    """The first T5 decoder layer's self-attention mask: causal, and-ed with the attention mask when there is one.

    Computes what `T5TransformerLayer` computes without a cache: (batch, T, T), bool.

    Example:

        mask = T5CausalMask()(x, attention_mask)      # x: (B, T, C), attention_mask: (B, 1, T)
    """

    def call(self, sequence, attention_mask=None):
        from keras_hub.src.layers.modeling import transformer_layer_utils as utils  # pylint: disable=g-import-not-at-top
        length = ops.shape(sequence)[1]
        causal = utils.compute_causal_mask(ops.shape(sequence)[0], length, length, 0)
        return causal if attention_mask is None else causal & ops.cast(attention_mask, "bool")

    def compute_output_spec(self, sequence, attention_mask=None):
        return keras.KerasTensor((sequence.shape[0], sequence.shape[1], sequence.shape[1]), dtype="bool")


@keras.saving.register_keras_serializable(package="figs_tf")
class T5AttentionTensors(WrapperLayer):
    """Calls a `T5MultiHeadAttention` without a cache and returns its tensors: (output, position bias).

    keras_hub's layer returns (output, position bias, None) without a cache,
    and a functional graph holds tensors only. The analysis reads its call as
    one of the wrapped layer; the search model calls the layer through it.

    Example:

        y, bias = T5AttentionTensors(attention)(x, mask=mask)
    """

    def call(self, *args, **kwargs):
        return tensors_only(self.wrapped_layer(*args, **kwargs))


class T5TransformerLayerHandler(BlockHandler):
    """keras_hub's `T5TransformerLayer`: T5LayerNorm → self-attention → +, (decoder: T5LayerNorm →
    cross-attention → +), T5LayerNorm → (gated) MLP → +; returns the position bias with the output."""

    def body(self, layer, args, kwargs):
        bound = _bound(("hidden_states", "attention_mask", "position_bias", "encoder_hidden_states",
                        "encoder_attention_mask", "use_causal_mask", "self_attention_cache",
                        "self_attention_cache_update_index", "cross_attention_cache",
                        "cross_attention_cache_update_index", "training"), args, kwargs)
        _refuse(layer, bound, ("self_attention_cache", "self_attention_cache_update_index", "cross_attention_cache",
                               "cross_attention_cache_update_index"), "T5 layers without a cache (training graphs)")
        x, mask, bias = bound["hidden_states"], bound.get("attention_mask"), bound.get("position_bias")
        if bias is not None:
            attention_kwargs = {"position_bias": bias}  # the mask is folded into it: T5 ignores `mask` then
        else:
            if bound.get("use_causal_mask"):
                mask = T5CausalMask(name="self_attention_mask")(x, mask)
            attention_kwargs = {} if mask is None else {"mask": mask}
        attention = T5AttentionTensors(layer.self_attention, name=layer.self_attention.name)
        y, bias = attention(layer.self_attention_layer_norm(x), **attention_kwargs)
        x = layer.self_attention_dropout(y) + x
        if layer.is_decoder:
            cross_kwargs = {"key_value_states": bound["encoder_hidden_states"]}
            if bound.get("encoder_attention_mask") is not None:
                cross_kwargs["mask"] = bound["encoder_attention_mask"]
            attention = T5AttentionTensors(layer.cross_attention, name=layer.cross_attention.name)
            y = attention(layer.cross_attention_layer_norm(x), **cross_kwargs)[0]
            x = layer.cross_attention_dropout(y) + x
        y = layer.layer_norm(x)
        if layer.use_gated_activation:
            y = layer.input_projector(y) * layer.gate_projector(y)
        else:
            y = layer.input_projector(y)
        y = layer.output_projector(layer.dropout_layer(y))
        return _second_use(layer.dropout_layer)(y) + x, bias


class T5MultiHeadAttentionHandler(LayerHandler):
    """keras_hub's `T5MultiHeadAttention`: heads an inner channel group, shared through the position bias.

    Its second output, the position bias (batch, heads, T, S), has the heads as
    its channels (axis 1): a layer that reads a position bias takes its heads
    from it (they are the bias's), a layer that makes one gives it its own.
    """

    mixes_channels = True
    names = ("hidden_states", "mask", "key_value_states", "position_bias", "cache", "cache_update_index", "training")

    def __init__(self):
        self._heads = {}  # id(call) -> its heads set, from output_sets to inner_sets

    def _positions(self, call):
        args, kwargs = call.call_arguments({key: key for key in call.input_keys})
        _refuse(call.layer, _bound(self.names, args, kwargs), ("cache", "cache_update_index"),
                "T5 attention without a cache")
        return argument_positions(call, self.names)

    def channel_axes(self, call, in_axes):
        bias = self._positions(call).get("position_bias")
        reads = [1 if i == bias else len(t.shape) - 1 for i, t in enumerate(call.input_tensors)]
        return reads, [len(call.output_tensors[0].shape) - 1, 1][:len(call.output_tensors)]

    def output_sets(self, call, in_sets, groups):
        positions = self._positions(call)
        if "mask" in positions and groups_in(in_sets[positions["mask"]]):
            groups.fix(in_sets[positions["mask"]], f"'{call.name}' reads them as an attention mask")
        if "position_bias" in positions:
            heads = tuple(in_sets[positions["position_bias"]])  # the heads of the layer that made the bias
        else:
            heads = (Segment(groups.new_group(call.layer.num_heads, f"{call.name}/heads"), call.layer.num_heads),)
        self._heads[id(call)] = heads
        width = call.output_tensors[0].shape[-1]
        return [(Segment(groups.new_group(width, call.name), width),), heads][:len(call.output_tensors)]

    def inner_sets(self, call, in_sets, groups):
        return [("heads", self._heads.pop(id(call)))]

    def inputs_to_clean(self, call, in_dirty, in_has_pruned):
        positions = self._positions(call)
        read = [positions[name] for name in ("hidden_states", "key_value_states") if name in positions]
        return [i for i in read if in_dirty[i] and in_has_pruned[i]]

    def output_dirty(self, call, in_dirty):
        return True

    def _sets(self, call, in_sets, out_sets):
        positions = self._positions(call)
        query = positions["hidden_states"]
        key_value = positions.get("key_value_states", query)
        return positions, in_sets[query], in_sets[key_value], out_sets[0], out_sets[-1]

    def param_terms(self, call, in_sets, out_sets):
        layer = call.layer
        _, query_set, key_value_set, out_set, heads = self._sets(call, in_sets, out_sets)
        width = layer.key_value_dim
        terms = [Term(width, (query_set, heads)), Term(2 * width, (key_value_set, heads)),
                 Term(width, (heads, out_set))]
        if layer.use_relative_attention_bias:
            terms.append(Term(layer.relative_attention_buckets, (heads,)))
        return terms

    def flop_terms(self, call, in_sets, out_sets):
        positions, query_set, key_value_set, out_set, heads = self._sets(call, in_sets, out_sets)
        width = call.layer.key_value_dim
        length = _sequence_length(call, positions["hidden_states"])
        source = _sequence_length(call, positions.get("key_value_states", positions["hidden_states"]))
        return [Term(length * width, (query_set, heads)), Term(2 * source * width, (key_value_set, heads)),
                Term(2 * length * source * width, (heads,)),  # QKᵀ and AV
                Term(length * width, (heads, out_set))]

    def search_call(self, call, args, kwargs, gating):
        if gating is not None and len(gating[1]) > len(call.output_keys):  # heads searched: HeadProjectionGate
            return super().search_call(call, args, kwargs, gating)
        return T5AttentionTensors(call.layer, name=call.name)(*args, **kwargs)

    def gated_layer(self, call, inner_gate_indices):
        return HeadProjectionGate(call.layer, projection="value_projector", head_gate_indices=inner_gate_indices[0],
                                  flat_head_width=call.layer.key_value_dim, name=call.name)

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        positions = self._positions(call)
        query = positions["hidden_states"]
        rows = {"query_projector": kept_in[query],
                "key_projector": kept_in[positions.get("key_value_states", query)]}
        rows["value_projector"] = rows["key_projector"]
        kept, heads = kept_out[0], kept_out[-1]
        width = layer.key_value_dim
        sliced = {}
        for name, kept_rows in rows.items():
            kernel = to_numpy(getattr(layer, name).kernel)
            kernel = kernel.reshape(kernel.shape[0], layer.num_heads, width)[kept_rows][:, heads]
            sliced[id(getattr(layer, name).kernel)] = kernel.reshape(len(kept_rows), len(heads) * width)
        kernel = to_numpy(layer.output_projector.kernel).reshape(layer.num_heads, width, -1)[heads][..., kept]
        sliced[id(layer.output_projector.kernel)] = kernel.reshape(len(heads) * width, len(kept))
        if layer.use_relative_attention_bias:
            sliced[id(layer.relative_attention_bias)] = to_numpy(layer.relative_attention_bias)[:, heads]
        # T5MultiHeadAttention has no get_config of its own: it is made from its attributes
        rebuilt = tensor_outputs_t5_attention()(is_decoder=layer.is_decoder, hidden_dim=len(kept), key_value_dim=width,
                              num_heads=len(heads), dropout=layer.dropout_layer.rate,
                              use_relative_attention_bias=layer.use_relative_attention_bias,
                              dtype=layer.dtype_policy, name=layer.name)
        return rebuilt, [sliced[id(v)] for v in layer.weights]

    def output_channel_l1(self, layer):
        return np.abs(to_numpy(layer.output_projector.kernel)).sum(axis=0)

    def inner_channel_l1(self, layer, label):
        return np.abs(to_numpy(layer.output_projector.kernel)).reshape(layer.num_heads, -1).sum(axis=1)


def keras_hub_encoder_handlers():
    """{keras_hub DeBERTaV3 / T5 layer class: handler} (imports keras_hub)."""
    from keras_hub.src.models.deberta_v3 import disentangled_attention_encoder, disentangled_self_attention, relative_embedding  # pylint: disable=g-import-not-at-top
    from keras_hub.src.models.t5 import t5_layer_norm, t5_multi_head_attention, t5_transformer_layer  # pylint: disable=g-import-not-at-top

    return {
        relative_embedding.RelativeEmbedding: RelativeEmbeddingHandler(),
        disentangled_attention_encoder.DisentangledAttentionEncoder: DisentangledAttentionEncoderHandler(),
        disentangled_self_attention.DisentangledSelfAttention: DisentangledSelfAttentionHandler(),
        fixed_head_width_disentangled_self_attention(): DisentangledSelfAttentionHandler(),
        built_relative_embedding(): RelativeEmbeddingHandler(),
        t5_transformer_layer.T5TransformerLayer: T5TransformerLayerHandler(),
        t5_multi_head_attention.T5MultiHeadAttention: T5MultiHeadAttentionHandler(),
        tensor_outputs_t5_attention(): T5MultiHeadAttentionHandler(),
        t5_layer_norm.T5LayerNorm: RMSNormalizationHandler(rebuild=rebuilt_family_norm),
        T5CausalMask: DecoderMaskHandler(),
    }


# Keras finds a serializable class only once it exists: figs_tf.load_model imports this module (where keras_hub is
# installed), which makes the subclasses of keras_hub's layers that slim models hold.
if importlib.util.find_spec("keras_hub") is not None:
    fixed_head_width_disentangled_self_attention()
    built_relative_embedding()
    tensor_outputs_t5_attention()
