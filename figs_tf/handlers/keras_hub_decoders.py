"""keras_hub's decoder language models: Llama and Gemma blocks as functional equivalents of their own sublayers.

A decoder block (`LlamaTransformerDecoder` and the blocks built like it,
`MistralTransformerDecoder`, `Qwen3TransformerDecoder`, `Phi3Decoder`;
`GemmaDecoderBlock`, `Gemma3DecoderBlock`) is analysed
through a functional equivalent built from the block's own sublayers (weights
shared), as figs_tf.handlers.keras_hub does for the generic Transformer blocks:

- the self-attention mask (causal ∧ padding) is computed by a `DecoderMask`
  layer from the block's padding mask, as the block computes it;
- the family's attention layer is one call, searched by key/value group and
  query slot (figs_tf.handlers.grouped_attention): `LlamaAttention` has
  hidden-first kernels (`"bqm,muh->bquh"`), `CachedGemmaAttention` and
  `CachedGemma3Attention` heads-first (`"btd,ndh->btnh"`); the head width is
  never cut, so the rotary embedding and the q/k norms are unchanged;
- the gated MLP is its projections (gate and up share a channel through their
  product; the down projection's input is cut), the activation a plain
  `Activation` layer (Llama) or `keras.ops.gelu` (Gemma, tanh-approximated);
- the RMS norms (`LlamaLayerNorm`, Gemma's `RMSNormalization`, ...) normalise
  over the residual stream, searched exactly (figs_tf.handlers.per_channel.
  RMSNormalizationHandler): x·rsqrt(mean_n(x²) + ε)·γ with n − k channels
  zero equals x·rsqrt(mean_k(x²) + ε·n/k)·γ·√(n/k), so the slim norm takes
  ε·n/k and γ·√(n/k) (Gemma's 1 + γ likewise); folding the scale alone is not
  exact (ε's share of the mean grows n/k times). The stream is searched when
  the model's outputs are not the stream: a family's CausalLM (its logits from
  the `ReversibleEmbedding` called again with reverse=True,
  figs_tf.handlers.embedding); in a bare backbone it is the output, kept,
  with a note. A searched stream fixes every attention's query slots (the
  query projection would multiply three searched widths).

`figs_tf.slim` rebuilds each block as these plain layers, the attention as a
subclass of the family's own class with fewer heads of the same width:
`FixedHeadWidthLlamaAttention` and `FixedHeadWidthPhi3Attention` (LlamaAttention and
Phi3Attention derive their head width from the model width),
`PaddedCacheMistralAttention`, `PaddedCacheQwen3Attention`,
`PaddedCacheGemmaAttention` and `PaddedCacheGemma3Attention`; they read a
generation cache shaped for more key/value heads than they keep
(`PaddedCacheAttention`), so `figs_tf.keras_hub_backbone` can hand the slim
layers to the family's CausalLM.

This module reads keras_hub's internal module paths (`keras_hub.src.models...`)
and the private sublayer attributes of the blocks and attention layers.
"""

import keras
from keras import ops

from figs_tf.channel_sets import Segment
from figs_tf.handlers.base import LayerHandler, UnsupportedLayerError, clone_layer
from figs_tf.handlers.grouped_attention import GroupedAttentionHandler
from figs_tf.handlers.keras_hub import BlockHandler
from figs_tf.handlers.per_channel import RMSNormalizationHandler


@keras.saving.register_keras_serializable(package="figs_tf")
class DecoderMask(keras.layers.Layer):
    """A decoder block's self-attention mask: causal, and-ed with the padding mask when there is one.

    Computes what keras_hub's decoder blocks compute before their attention
    (`compute_causal_mask`, `merge_padding_and_attention_mask`): (batch, T, T),
    int32 with a padding mask, bool without.

    Args:
      sliding_window: None, or Mistral's band: query i attends to key j only
        if i < j + sliding_window.
      **kwargs: Layer arguments.

    Example:

        mask = DecoderMask()(x, padding_mask)        # x: (B, T, C), padding_mask: (B, T)
        y = attention(x, attention_mask=mask)
    """

    def __init__(self, sliding_window=None, **kwargs):
        super().__init__(**kwargs)
        self.sliding_window = sliding_window

    def call(self, sequence, padding_mask=None):
        from keras_hub.src.layers.modeling import transformer_layer_utils as utils  # pylint: disable=g-import-not-at-top
        length = ops.shape(sequence)[1]
        causal = utils.compute_causal_mask(ops.shape(sequence)[0], length, length, 0)
        if self.sliding_window is not None:
            band = ops.arange(length)[:, None] < ops.arange(length)[None, :] + self.sliding_window
            causal = ops.minimum(ops.cast(causal, "int32"), ops.cast(band, "int32"))
        if padding_mask is None:
            return causal
        return ops.minimum(ops.cast(ops.expand_dims(padding_mask, axis=1), "int32"), causal)

    def compute_output_spec(self, sequence, padding_mask=None):
        shape = (sequence.shape[0], sequence.shape[1], sequence.shape[1])
        banded = padding_mask is not None or self.sliding_window is not None
        return keras.KerasTensor(shape, dtype="int32" if banded else "bool")

    def get_config(self):
        config = super().get_config()
        config["sliding_window"] = self.sliding_window
        return config


class DecoderMaskHandler(LayerHandler):
    """`DecoderMask`: reads its inputs' shapes and the padding mask, makes no channels."""

    def output_sets(self, call, in_sets, groups):
        return [(Segment(None, call.output_tensors[0].shape[-1] or 0),)]

    def output_dirty(self, call, in_dirty):
        return False

    def slim(self, call, kept_in, kept_out):
        return clone_layer(call.layer), []


def _bound(names, args, kwargs):
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


def _refuse_cache(layer, bound, names):
    passed = [name for name in names if bound.get(name) is not None]
    if passed:
        raise UnsupportedLayerError(f"'{layer.name}' is called with {passed}; figs_tf expands decoder blocks "
                                    "without a cache or a custom attention mask (a language model's training graph).")


def rebuilt_family_norm(layer, epsilon):
    """A keras_hub family's RMS norm (`LlamaLayerNorm`, Gemma's `RMSNormalization`, ...) made afresh with `epsilon`
    (Gemma's has no config of its own; Qwen3's omits its head_dim, None for a norm over the stream). The dtype
    policy goes by name, so that the automatic config of a norm without get_config (T5's) serializes."""
    return type(layer)(epsilon=epsilon, dtype=layer.dtype_policy.name, name=layer.name)


class LlamaDecoderHandler(BlockHandler):
    """keras_hub's `LlamaTransformerDecoder` (Llama, Llama 3), and the blocks built like it (Mistral's
    `MistralTransformerDecoder` with its sliding-window band, Qwen3's `Qwen3TransformerDecoder`):
    RMS norm → attention → +, RMS norm → gated MLP → +."""

    def body(self, layer, args, kwargs):
        bound = _bound(("decoder_sequence", "decoder_padding_mask", "decoder_attention_mask", "self_attention_cache",
                        "self_attention_cache_update_index", "training"), args, kwargs)
        _refuse_cache(layer, bound, ("decoder_attention_mask", "self_attention_cache",
                                     "self_attention_cache_update_index"))
        x = bound["decoder_sequence"]
        mask = DecoderMask(sliding_window=getattr(layer, "sliding_window", None), name="self_attention_mask")(
            x, bound.get("decoder_padding_mask"))
        y = layer._self_attention_layernorm(x)  # pylint: disable=protected-access
        y = layer._self_attention_layer(y, attention_mask=mask)  # pylint: disable=protected-access
        x = layer._self_attention_dropout(y) + x  # pylint: disable=protected-access
        y = layer._feedforward_layernorm(x)  # pylint: disable=protected-access
        gate = keras.layers.Activation(layer.activation, name="feedforward_activation")(
            layer._feedforward_gate_dense(y))  # pylint: disable=protected-access
        y = layer._feedforward_intermediate_dense(y) * gate  # pylint: disable=protected-access
        return layer._feedforward_output_dense(y) + x  # pylint: disable=protected-access


class GemmaDecoderHandler(BlockHandler):
    """keras_hub's `GemmaDecoderBlock`: RMS norm → attention (→ norm) → +, RMS norm → gelu-gated MLP (→ norm) → +."""

    arguments = ("x", "padding_mask", "cache", "cache_update_index")
    refused = ("cache",)

    def body(self, layer, args, kwargs):
        bound = _bound(self.arguments, args, kwargs)
        _refuse_cache(layer, bound, self.refused)
        x = bound["x"]
        normalized = layer.pre_attention_norm(x)
        mask = DecoderMask(name="attention_mask")(normalized, bound.get("padding_mask"))
        attention = layer.attention(normalized, attention_mask=mask)
        if layer.use_post_attention_norm:
            attention = layer.post_attention_norm(attention)
        if layer.dropout:
            attention = layer.attention_dropout(attention)
        x = x + attention
        normalized = layer.pre_ffw_norm(x)
        y = ops.gelu(layer.gating_ffw(normalized), approximate=True) * layer.gating_ffw_2(normalized)
        y = layer.ffw_linear(y)
        if layer.use_post_ffw_norm:
            y = layer.post_ffw_norm(y)
        return y + x


class Gemma3DecoderHandler(GemmaDecoderHandler):
    """keras_hub's `Gemma3DecoderBlock` (text): Gemma's block, its attention with q/k norms and a rotary
    wavelength of its own; images (`vision_mask`) and bidirectional attention (embedding models) are refused."""

    arguments = ("x", "padding_mask", "vision_mask", "cache", "cache_update_index", "cache_update_mask")
    refused = ("vision_mask", "cache", "cache_update_mask")

    def body(self, layer, args, kwargs):
        if layer.use_bidirectional_attention:
            raise UnsupportedLayerError(f"'{layer.name}' attends bidirectionally (an embedding model); figs_tf "
                                        "expands Gemma3 blocks with causal attention (use_bidirectional_attention=False).")
        return super().body(layer, args, kwargs)


class LlamaAttentionHandler(GroupedAttentionHandler):
    """keras_hub's `LlamaAttention` (hidden-first kernels, rotary embedding); rebuilt with its head width kept."""

    def rebuilt(self, layer, num_query_heads, num_key_value_heads):
        return fixed_head_width_llama_attention()(
            head_dim=self.heads(layer)[2], num_query_heads=num_query_heads, num_key_value_heads=num_key_value_heads,
            rope_max_wavelength=layer.rope_max_wavelength,
            rope_position_scaling_factor=layer.rope_position_scaling_factor,
            rope_frequency_adjustment_factor=layer.rope_frequency_adjustment_factor,
            rope_low_freq_factor=layer.rope_low_freq_factor, rope_high_freq_factor=layer.rope_high_freq_factor,
            rope_pretraining_sequence_length=layer.rope_pretraining_sequence_length,
            kernel_initializer=layer.kernel_initializer, dropout=layer.dropout, dtype=layer.dtype_policy,
            name=layer.name)


class GemmaAttentionHandler(GroupedAttentionHandler):
    """keras_hub's `CachedGemmaAttention` (heads-first kernels; its head width is in its config)."""

    projections = ("query_dense", "key_dense", "value_dense", "output_dense")

    def rebuilt(self, layer, num_query_heads, num_key_value_heads):
        # made from its attributes: its get_config fails when the block passed it a dtype policy
        return padded_cache_gemma_attention()(
            num_query_heads=num_query_heads, num_key_value_heads=num_key_value_heads, **self.settings(layer))

    def settings(self, layer):
        """The layer's arguments other than its heads."""
        return dict(head_dim=layer.head_dim, kernel_initializer=layer._kernel_initializer,  # pylint: disable=protected-access
                    logit_soft_cap=layer.logit_soft_cap, use_sliding_window_attention=layer.use_sliding_window_attention,
                    sliding_window_size=layer.sliding_window_size, query_head_dim_normalize=layer.query_head_dim_normalize,
                    dropout=layer.dropout, dtype=layer.dtype_policy, name=layer.name)

    def inner_sets(self, call, in_sets, groups):
        if not call.layer.query_head_dim_normalize:
            raise UnsupportedLayerError(f"'{call.name}' scales queries by the model width per head "
                                        "(query_head_dim_normalize=False), which changes with the heads; figs_tf "
                                        "searches Gemma attention with query_head_dim_normalize=True.")
        return super().inner_sets(call, in_sets, groups)


class Gemma3AttentionHandler(GemmaAttentionHandler):
    """keras_hub's `CachedGemma3Attention`: Gemma's, with q/k RMS norms over the head width (kept) and its own
    rotary wavelength."""

    def rebuilt(self, layer, num_query_heads, num_key_value_heads):
        return padded_cache_gemma3_attention()(
            num_query_heads=num_query_heads, num_key_value_heads=num_key_value_heads,
            use_query_key_norm=layer.use_query_key_norm, layer_norm_epsilon=layer.layer_norm_epsilon,
            rope_wavelength=layer.rope_wavelength, rope_scaling_factor=layer.rope_scaling_factor,
            use_bidirectional_attention=layer.use_bidirectional_attention, **self.settings(layer))


class PaddedCacheAttention:
    """Mixin: an attention layer that reads a key/value cache with more key/value heads than it has.

    keras_hub's CausalLMs stack one cache for every layer, shaped by the
    backbone's `num_key_value_heads`; a slim model whose layers keep different
    numbers of key/value heads gets a cache for the largest, and each layer
    reads and updates its first heads (the rest stay zero).
    """

    def padded_cache_call(self, parent_call, cache, **arguments):
        """`parent_call(cache=..., **arguments)` (the family's call) on this layer's heads of the cache."""
        heads = self.num_key_value_heads
        if cache is None or cache.shape[3] == heads:
            return parent_call(cache=cache, **arguments)
        output, updated = parent_call(cache=cache[:, :, :, :heads], **arguments)
        return output, ops.concatenate([updated, ops.zeros_like(cache[:, :, :, heads:])], axis=3)

    def padded_pair_cache_call(self, parent_call, cache, **arguments):
        """The same for a (key, value) pair of caches, each (batch, length, key/value heads, head width)."""
        heads = self.num_key_value_heads
        if cache is None or cache[0].shape[2] == heads:
            return parent_call(cache=cache, **arguments)
        output, updated = parent_call(cache=tuple(part[:, :, :heads] for part in cache), **arguments)
        return output, tuple(ops.concatenate([new, ops.zeros_like(old[:, :, heads:])], axis=2)
                             for new, old in zip(updated, cache))


class PaddedStackedCacheAttention(PaddedCacheAttention):
    """Mixin for the attention layers called as (hidden_states, attention_mask, cache, cache_update_index,
    training) with one stacked (batch, 2, length, key/value heads, head width) cache (Llama, Mistral, Qwen3, Phi3)."""

    def call(self, hidden_states, attention_mask=None, cache=None, cache_update_index=None, training=None):
        return self.padded_cache_call(super().call, cache, hidden_states=hidden_states, attention_mask=attention_mask,
                                      cache_update_index=cache_update_index, training=training)


class Phi3AttentionHandler(GroupedAttentionHandler):
    """keras_hub's `Phi3Attention` (separate Q, K, V projections; its head width from hidden_dim // heads)."""

    projections = ("query_dense", "key_dense", "value_dense", "output_dense")

    def rebuilt(self, layer, num_query_heads, num_key_value_heads):
        config = layer.get_config()
        config.update(num_query_heads=num_query_heads, num_key_value_heads=num_key_value_heads,
                      head_dim=self.heads(layer)[2])
        return fixed_head_width_phi3_attention().from_config(config)


class Phi3DecoderHandler(BlockHandler):
    """keras_hub's `Phi3Decoder`: RMS norm → attention → +, RMS norm → gated MLP → dropout → +."""

    def body(self, layer, args, kwargs):
        bound = _bound(("decoder_sequence", "decoder_padding_mask", "decoder_attention_mask", "attention_cache",
                        "attention_cache_update_index"), args, kwargs)
        _refuse_cache(layer, bound, ("decoder_attention_mask", "attention_cache", "attention_cache_update_index"))
        x = bound["decoder_sequence"]
        mask = DecoderMask(name="attention_mask")(x, bound.get("decoder_padding_mask"))
        y = layer.attention(layer.pre_attention_layernorm(x), attention_mask=mask)
        x = layer.attention_dropout(y) + x
        y = layer.post_attention_layernorm(x)
        gate = keras.layers.Activation(layer.activation, name="feedforward_activation")(layer.feedforward_gate_dense(y))
        y = layer.feedforward_output_dense(layer.feedforward_intermediate_dense(y) * gate)
        return layer.feedforward_dropout(y) + x


class Qwen3AttentionHandler(GroupedAttentionHandler):
    """keras_hub's `Qwen3Attention` (q/k RMS norms over the head width, which is kept; its config omits head_dim);
    rebuilt as `PaddedCacheQwen3Attention`."""

    def rebuilt(self, layer, num_query_heads, num_key_value_heads):
        config = layer.get_config()
        config.update(num_query_heads=num_query_heads, num_key_value_heads=num_key_value_heads,
                      head_dim=self.heads(layer)[2])
        return padded_cache_qwen3_attention().from_config(config)


class MistralAttentionHandler(GroupedAttentionHandler):
    """keras_hub's `CachedMistralAttention` (Llama's kernels, a sliding window); rebuilt as
    `PaddedCacheMistralAttention` with its head width given."""

    def rebuilt(self, layer, num_query_heads, num_key_value_heads):
        config = layer.get_config()
        config.update(num_query_heads=num_query_heads, num_key_value_heads=num_key_value_heads,
                      head_dim=self.heads(layer)[2])
        return padded_cache_mistral_attention().from_config(config)


def untrack_sublayer(layer, sublayer):
    """Stops `layer` tracking `sublayer` (its weights no longer `layer`'s) before it is replaced.

    Keras's tracker also keeps the ids of what it tracks: removing a sublayer
    from `layer._layers` alone leaves its id there, and a new sublayer that
    Python later places at the freed address would go untracked (its weights
    missing from `layer.weights`, depending on memory reuse).
    """
    layer._tracker.untrack(sublayer)  # pylint: disable=protected-access


_CLASSES = {}


def _fixed_head_width_class(base, projections):
    """A subclass of `base` (an attention layer sizing its heads as model width // num_query_heads) that takes
    its head width as `head_dim`; `projections`: its query, key, value and output EinsumDense attributes."""

    class FixedHeadWidth(PaddedStackedCacheAttention, base):

        def __init__(self, head_dim, **kwargs):
            super().__init__(**kwargs)
            self.head_dim = head_dim

        def build(self, inputs_shape):
            # the family's build sizes everything from hidden_dim // num_query_heads: build it at the model
            # width that gives head_dim, then rebuild the projections that read or make the real width.
            hidden_dim = inputs_shape[-1]
            super().build(tuple(inputs_shape[:-1]) + (self.num_query_heads * self.head_dim,))
            for name in projections[:3]:
                untrack_sublayer(self, getattr(self, name))
                dense = keras.layers.EinsumDense.from_config(getattr(self, name).get_config())
                dense.build(inputs_shape)
                setattr(self, name, dense)
            output = getattr(self, projections[3])
            untrack_sublayer(self, output)
            config = output.get_config()
            config["output_shape"] = (None, hidden_dim)
            output = keras.layers.EinsumDense.from_config(config)
            output.build((None, None, self.num_query_heads, self.head_dim))
            setattr(self, projections[3], output)
            self.built = True

        def get_config(self):
            config = super().get_config()
            config["head_dim"] = self.head_dim
            return config

    return FixedHeadWidth


def fixed_head_width_llama_attention():
    """The class `FixedHeadWidthLlamaAttention` (made on first use: it subclasses keras_hub's LlamaAttention)."""
    if "llama" not in _CLASSES:
        from keras_hub.src.models.llama.llama_attention import LlamaAttention  # pylint: disable=g-import-not-at-top

        @keras.saving.register_keras_serializable(package="figs_tf")
        class FixedHeadWidthLlamaAttention(_fixed_head_width_class(LlamaAttention, GroupedAttentionHandler.projections)):
            """keras_hub's LlamaAttention with its head width given (`head_dim`), not model width // heads.

            What `figs_tf.slim` rebuilds a LlamaAttention with fewer heads as: the
            heads keep their width, and the rotary embedding rotates the same pairs.
            It reads a cache with more key/value heads than it has (`PaddedCacheAttention`).
            """

            def get_config(self):  # LlamaAttention.get_config reads attributes it does not set (keras_hub 0.32)
                config = keras.layers.Layer.get_config(self)
                config.update(head_dim=self.head_dim, num_query_heads=self.num_query_heads,
                              num_key_value_heads=self.num_key_value_heads,
                              rope_max_wavelength=self.rope_max_wavelength,
                              rope_position_scaling_factor=self.rope_position_scaling_factor,
                              rope_frequency_adjustment_factor=self.rope_frequency_adjustment_factor,
                              rope_low_freq_factor=self.rope_low_freq_factor,
                              rope_high_freq_factor=self.rope_high_freq_factor,
                              rope_pretraining_sequence_length=self.rope_pretraining_sequence_length,
                              kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                              dropout=self.dropout)
                return config

        _CLASSES["llama"] = FixedHeadWidthLlamaAttention
    return _CLASSES["llama"]


def fixed_head_width_phi3_attention():
    """The class `FixedHeadWidthPhi3Attention`: keras_hub's Phi3Attention with its head width given."""
    if "phi3" not in _CLASSES:
        from keras_hub.src.models.phi3.phi3_attention import Phi3Attention  # pylint: disable=g-import-not-at-top

        @keras.saving.register_keras_serializable(package="figs_tf")
        class FixedHeadWidthPhi3Attention(_fixed_head_width_class(Phi3Attention, Phi3AttentionHandler.projections)):
            """keras_hub's Phi3Attention with its head width given (`head_dim`), not model width // heads."""

        _CLASSES["phi3"] = FixedHeadWidthPhi3Attention
    return _CLASSES["phi3"]


def padded_cache_gemma_attention():
    """The class `PaddedCacheGemmaAttention`: keras_hub's CachedGemmaAttention reading a larger cache."""
    if "gemma" in _CLASSES:
        return _CLASSES["gemma"]
    from keras_hub.src.models.gemma.gemma_attention import CachedGemmaAttention  # pylint: disable=g-import-not-at-top

    @keras.saving.register_keras_serializable(package="figs_tf")
    class PaddedCacheGemmaAttention(PaddedCacheAttention, CachedGemmaAttention):
        """CachedGemmaAttention that reads a cache with more key/value heads than it has."""

        def call(self, x, attention_mask=None, cache=None, cache_update_index=0, training=False):
            return self.padded_cache_call(super().call, cache, x=x, attention_mask=attention_mask,
                                          cache_update_index=cache_update_index, training=training)

    _CLASSES["gemma"] = PaddedCacheGemmaAttention
    return PaddedCacheGemmaAttention


def padded_cache_gemma3_attention():
    """The class `PaddedCacheGemma3Attention`: keras_hub's CachedGemma3Attention reading larger (key, value) caches."""
    if "gemma3" in _CLASSES:
        return _CLASSES["gemma3"]
    from keras_hub.src.models.gemma3.gemma3_attention import CachedGemma3Attention  # pylint: disable=g-import-not-at-top

    @keras.saving.register_keras_serializable(package="figs_tf")
    class PaddedCacheGemma3Attention(PaddedCacheAttention, CachedGemma3Attention):
        """CachedGemma3Attention that reads (key, value) caches with more key/value heads than it has."""

        def call(self, x, attention_mask=None, cache=None, cache_update_index=0, cache_update_mask=None,
                 training=False):
            return self.padded_pair_cache_call(super().call, cache, x=x, attention_mask=attention_mask,
                                               cache_update_index=cache_update_index,
                                               cache_update_mask=cache_update_mask, training=training)

    _CLASSES["gemma3"] = PaddedCacheGemma3Attention
    return PaddedCacheGemma3Attention


def _padded_cache_class(key, base, num_key_value_heads=None):
    """`base` (an attention layer as `PaddedStackedCacheAttention` describes) reading a cache with more key/value
    heads than it has; `num_key_value_heads`: a property for classes that keep the count privately."""
    if key in _CLASSES:
        return _CLASSES[key]

    class Padded(PaddedStackedCacheAttention, base):
        __doc__ = f"keras_hub's {base.__name__} reading a cache with more key/value heads than it has."

    if num_key_value_heads is not None:
        Padded.num_key_value_heads = property(num_key_value_heads)
    Padded.__name__ = Padded.__qualname__ = f"PaddedCache{base.__name__.replace('Cached', '')}"
    _CLASSES[key] = keras.saving.register_keras_serializable(package="figs_tf")(Padded)
    return Padded


def padded_cache_mistral_attention():
    """The class `PaddedCacheMistralAttention`: keras_hub's CachedMistralAttention reading a larger cache."""
    from keras_hub.src.models.mistral.mistral_attention import CachedMistralAttention  # pylint: disable=g-import-not-at-top
    return _padded_cache_class("mistral", CachedMistralAttention,
                               num_key_value_heads=lambda self: self._num_key_value_heads)  # pylint: disable=protected-access


def padded_cache_qwen3_attention():
    """The class `PaddedCacheQwen3Attention`: keras_hub's Qwen3Attention reading a larger cache."""
    from keras_hub.src.models.qwen3.qwen3_attention import Qwen3Attention  # pylint: disable=g-import-not-at-top
    return _padded_cache_class("qwen3", Qwen3Attention)


def keras_hub_decoder_handlers():
    """{keras_hub decoder layer class: handler} (imports keras_hub)."""
    from keras_hub.src.models.gemma import gemma_attention, gemma_decoder_block, rms_normalization  # pylint: disable=g-import-not-at-top
    from keras_hub.src.models.llama import llama_attention, llama_decoder, llama_layernorm  # pylint: disable=g-import-not-at-top

    from keras_hub.src.models.mistral import mistral_attention, mistral_layer_norm, mistral_transformer_decoder  # pylint: disable=g-import-not-at-top
    from keras_hub.src.models.qwen3 import qwen3_attention, qwen3_decoder, qwen3_layernorm  # pylint: disable=g-import-not-at-top

    from keras_hub.src.models.phi3 import phi3_attention, phi3_decoder, phi3_layernorm  # pylint: disable=g-import-not-at-top
    from keras_hub.src.models.gemma3 import gemma3_attention, gemma3_decoder_block, gemma3_layers  # pylint: disable=g-import-not-at-top

    rms = RMSNormalizationHandler(rebuild=rebuilt_family_norm)
    gemma_rms = RMSNormalizationHandler(one_plus_scale=True, rebuild=rebuilt_family_norm)  # x·(1 + scale)
    return {
        phi3_decoder.Phi3Decoder: Phi3DecoderHandler(),
        phi3_attention.Phi3Attention: Phi3AttentionHandler(),
        fixed_head_width_phi3_attention(): Phi3AttentionHandler(),
        phi3_layernorm.Phi3LayerNorm: rms,
        mistral_transformer_decoder.MistralTransformerDecoder: LlamaDecoderHandler(),
        mistral_attention.CachedMistralAttention: MistralAttentionHandler(),
        padded_cache_mistral_attention(): MistralAttentionHandler(),
        mistral_layer_norm.MistralLayerNormalization: rms,
        qwen3_decoder.Qwen3TransformerDecoder: LlamaDecoderHandler(),
        qwen3_attention.Qwen3Attention: Qwen3AttentionHandler(),
        padded_cache_qwen3_attention(): Qwen3AttentionHandler(),
        qwen3_layernorm.Qwen3LayerNorm: rms,
        llama_decoder.LlamaTransformerDecoder: LlamaDecoderHandler(),
        llama_attention.LlamaAttention: LlamaAttentionHandler(),
        fixed_head_width_llama_attention(): LlamaAttentionHandler(),
        llama_layernorm.LlamaLayerNorm: rms,
        gemma_decoder_block.GemmaDecoderBlock: GemmaDecoderHandler(),
        gemma_attention.CachedGemmaAttention: GemmaAttentionHandler(),
        padded_cache_gemma_attention(): GemmaAttentionHandler(),
        rms_normalization.RMSNormalization: gemma_rms,
        gemma3_decoder_block.Gemma3DecoderBlock: Gemma3DecoderHandler(),
        gemma3_attention.CachedGemma3Attention: Gemma3AttentionHandler(),
        padded_cache_gemma3_attention(): Gemma3AttentionHandler(),
        gemma3_layers.RMSNormalization: gemma_rms,
    }
