"""keras_hub layers: embeddings, the ViT patch embedding, and Transformer blocks as functional equivalents.

Registered only when a model holds a keras_hub layer (figs_tf.handlers
registers them lazily), so importing figs_tf never imports keras_hub, which
imports TensorFlow under every Keras backend.

A Transformer block of keras_hub is one Keras layer holding its sublayers
(`TransformerEncoder`; ViT's `ViTEncoder` holds every block). Its handler
gives a functional equivalent built from the block's own sublayers (weights
shared), which the analysis inlines in the block's place: the attention's
heads and the MLP's hidden units are then searched like those of any
functional Transformer, and `slim` rebuilds the block as plain Keras layers
(a keras_hub block cannot be rebuilt with fewer heads: it derives key_dim from
hidden_dim // num_heads). Each equivalent computes exactly what the block's
`call` computes (tests/test_keras_hub.py checks it on every block kind).

This module reads keras_hub's internal module paths (`keras_hub.src...`) for
classes that keras_hub does not export (the ViT layers, CachedMultiHeadAttention)
and the private sublayer attributes of `TransformerEncoder` and
`TransformerDecoder` (`_self_attention_layer`, ...); it reads a symbolic
tensor's Keras mask through `keras.src.backend` to refuse implicit masks.
"""

import math

import keras
import numpy as np
from keras.src import backend as keras_backend  # get_keras_mask: no public name

from figs_tf.handlers.attention import AsMultiHeadAttention, MultiHeadAttentionHandler
from figs_tf.handlers.base import LayerHandler, Term, UnsupportedLayerError, equivalent_model, to_numpy
from figs_tf.handlers.convolution import ChannelProducer
from figs_tf.handlers.embedding import EmbeddingHandler
from figs_tf.handlers.per_channel import PerChannel


def _no_keras_mask(call):
    for tensor in call.input_tensors:
        if keras_backend.get_keras_mask(tensor) is not None:
            raise UnsupportedLayerError(
                f"'{call.name}' reads a tensor with an implicit Keras mask (mask_zero=True); figs_tf expands "
                f"{type(call.layer).__name__} into plain layers, which would drop it. Pass the mask explicitly "
                "(padding_mask=...) and build the embedding with mask_zero=False.")


class BlockHandler(LayerHandler):
    """A layer analysed through its functional equivalent (`body`); never seen by the other methods."""

    def body(self, layer, args, kwargs):
        """The block's computation on symbolic inputs, calling the block's own sublayers."""
        raise NotImplementedError

    def functional_equivalent(self, call):
        _no_keras_mask(call)
        return equivalent_model(call, lambda args, kwargs: self.body(call.layer, args, kwargs))

    def output_sets(self, call, in_sets, groups):
        raise UnsupportedLayerError(f"'{call.name}' should have been expanded into its sublayers.")


def _second_use(dropout):
    """A fresh Dropout like `dropout`, for a block that applies one Dropout twice (so that its two uses, which
    read different channels, are not tied as a shared layer's would be)."""
    return keras.layers.Dropout(dropout.rate, seed=dropout.seed, dtype=dropout.dtype_policy,
                                name=f"{dropout.name}_second_use")


class ViTMLPHandler(BlockHandler):
    """keras_hub ViT's MLP: dense_1 (gelu) → dropout → dense_2 → dropout."""

    def body(self, layer, args, kwargs):
        x = layer.dense_1(args[0])
        x = layer.dropout(x)
        x = layer.dense_2(x)
        return _second_use(layer.dropout)(x)


class ViTEncoderBlockHandler(BlockHandler):
    """keras_hub ViT's block: x + dropout(mha(ln_1(x))), then + mlp(ln_2(x))."""

    def body(self, layer, args, kwargs):
        inputs = args[0]
        x = layer.layer_norm_1(inputs)
        x = layer.mha(x, x)
        x = layer.dropout(x)
        x = x + inputs
        y = layer.layer_norm_2(x)
        y = layer.mlp(y)
        return x + y


class ViTEncoderHandler(BlockHandler):
    """keras_hub ViT's encoder: dropout, every block, a final LayerNormalization."""

    def body(self, layer, args, kwargs):
        x = layer.dropout(args[0])
        for block in layer.encoder_layers:
            x = block(x)
        return layer.layer_norm(x)


def _attention_and_feedforward(layer, inputs, attend):
    """keras_hub's TransformerEncoder/Decoder: x + attention, then x + feedforward, LayerNorms before or after."""
    attention_norm = layer._self_attention_layer_norm  # pylint: disable=protected-access
    feedforward_norm = layer._feedforward_layer_norm  # pylint: disable=protected-access
    x = residual = inputs
    if layer.normalize_first:
        x = attention_norm(x)
    x = attend(x)
    x = layer._self_attention_dropout(x)  # pylint: disable=protected-access
    x = x + residual
    if not layer.normalize_first:
        x = attention_norm(x)
    residual = x
    if layer.normalize_first:
        x = feedforward_norm(x)
    x = layer._feedforward_intermediate_dense(x)  # pylint: disable=protected-access
    x = layer._feedforward_output_dense(x)  # pylint: disable=protected-access
    x = layer._feedforward_dropout(x)  # pylint: disable=protected-access
    x = x + residual
    if not layer.normalize_first:
        x = feedforward_norm(x)
    return x


class TransformerEncoderHandler(BlockHandler):
    """keras_hub.layers.TransformerEncoder (BERT's block), post- or pre-LayerNorm.

    A padding mask (B, T) becomes the attention's `value_mask`: MultiHeadAttention
    turns it into the same (B, 1, T) attention mask the block builds.
    """

    def body(self, layer, args, kwargs):
        names = ("inputs", "padding_mask", "attention_mask", "training", "return_attention_scores")
        bound = dict(zip(names, args))
        bound.update(kwargs)
        if bound.get("return_attention_scores"):
            raise UnsupportedLayerError(f"'{layer.name}' returns attention scores; figs_tf expands the block "
                                        "only without them.")
        attention_kwargs = {}
        if bound.get("padding_mask") is not None:
            attention_kwargs["value_mask"] = bound["padding_mask"]
        if bound.get("attention_mask") is not None:
            attention_kwargs["attention_mask"] = bound["attention_mask"]
        attention = layer._self_attention_layer  # pylint: disable=protected-access
        return _attention_and_feedforward(layer, bound["inputs"], lambda x: attention(x, x, **attention_kwargs))


class TransformerDecoderHandler(BlockHandler):
    """keras_hub.layers.TransformerDecoder without cross-attention (GPT-2's block), post- or pre-LayerNorm.

    The block's causal and padding masks become the attention's
    `use_causal_mask` and `value_mask`, which MultiHeadAttention turns into the
    same mask; its CachedMultiHeadAttention is called with MultiHeadAttention's
    call (`AsMultiHeadAttention`), which without a cache computes the same.
    """

    def body(self, layer, args, kwargs):
        names = ("decoder_sequence", "encoder_sequence", "decoder_padding_mask", "decoder_attention_mask")
        bound = dict(zip(names, args))
        bound.update(kwargs)
        unsupported = [name for name in ("encoder_sequence", "encoder_padding_mask", "encoder_attention_mask",
                                         "self_attention_cache", "self_attention_cache_update_index",
                                         "cross_attention_cache", "cross_attention_cache_update_index")
                       if bound.get(name) is not None]
        if unsupported or layer._cross_attention_layer is not None:  # pylint: disable=protected-access
            raise UnsupportedLayerError(f"'{layer.name}' is called with {unsupported or 'cross-attention'}; figs_tf "
                                        "expands decoder-only blocks without a cache (a language model's training "
                                        "graph).")
        attention_kwargs = {"use_causal_mask": bool(bound.get("use_causal_mask", True))}
        if bound.get("decoder_padding_mask") is not None:
            attention_kwargs["value_mask"] = bound["decoder_padding_mask"]
        if bound.get("decoder_attention_mask") is not None:
            attention_kwargs["attention_mask"] = bound["decoder_attention_mask"]
        attention = AsMultiHeadAttention(layer._self_attention_layer,  # pylint: disable=protected-access
                                         name=layer._self_attention_layer.name)  # pylint: disable=protected-access
        return _attention_and_feedforward(layer, bound["decoder_sequence"],
                                          lambda x: attention(x, x, **attention_kwargs))


class TokenAndPositionEmbeddingHandler(BlockHandler):
    """keras_hub.layers.TokenAndPositionEmbedding: token embedding + position embedding."""

    def body(self, layer, args, kwargs):
        if layer.token_embedding.mask_zero:
            raise UnsupportedLayerError(f"'{layer.name}' has mask_zero=True; figs_tf expands it into plain layers, "
                                        "which would drop the mask. Pass a padding mask explicitly instead.")
        names = ("inputs", "start_index", "positions")
        bound = dict(zip(names, args))
        bound.update(kwargs)
        if bound.get("positions") is not None:
            raise UnsupportedLayerError(f"'{layer.name}' is called with explicit positions; figs_tf supports "
                                        "start_index only.")
        tokens = layer.token_embedding(bound["inputs"])
        return tokens + layer.position_embedding(tokens, start_index=bound.get("start_index", 0))


class ViTPatchingAndEmbeddingHandler(ChannelProducer):
    """keras_hub ViT's patch embedding: a patch convolution, a class token and position embeddings.

    Its width (hidden_dim) is a channel group: the convolution's filters, the
    class token and the position embeddings are all cut with it.
    """

    width_key = "hidden_dim"

    def uniform_output(self, call, in_uniform, in_zero):
        return False  # its position embeddings (and class token) differ between positions, even on zeros

    def param_terms(self, call, in_sets, out_sets):
        layer = call.layer
        per_channel = layer.num_positions + (1 if layer.use_class_token else 0) + (1 if layer.use_patch_bias else 0)
        return [Term(math.prod(layer.patch_size), (in_sets[0], out_sets[0])), Term(per_channel, (out_sets[0],))]

    def flop_terms(self, call, in_sets, out_sets):
        layer = call.layer
        return [Term(math.prod(layer.patch_size) * layer.num_patches, (in_sets[0], out_sets[0]))]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        kept_in, kept = kept_in[0], kept_out[0]
        convolution = layer.patch_embedding
        sliced = {id(convolution.kernel): to_numpy(convolution.kernel)[..., kept_in, :][..., kept],
                  id(layer.position_embedding.embeddings): to_numpy(layer.position_embedding.embeddings)[:, kept]}
        if layer.use_patch_bias:
            sliced[id(convolution.bias)] = to_numpy(convolution.bias)[kept]
        if layer.use_class_token:
            sliced[id(layer.class_token)] = to_numpy(layer.class_token)[..., kept]
        weights = [sliced[id(v)] for v in layer.weights]
        # get_config leaves out use_patch_bias and data_format, so the layer is made from its attributes
        rebuilt = type(layer)(image_size=layer.image_size, patch_size=layer.patch_size, hidden_dim=len(kept),
                              num_channels=len(kept_in), use_class_token=layer.use_class_token,
                              use_patch_bias=layer.use_patch_bias, data_format=layer.data_format,
                              dtype=layer.dtype_policy, name=layer.name)
        return rebuilt, weights

    def output_channel_l1(self, layer):
        kernel = np.abs(to_numpy(layer.patch_embedding.kernel))
        return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)


def keras_hub_handlers():
    """{keras_hub layer class: handler} (imports keras_hub)."""
    import keras_hub  # pylint: disable=g-import-not-at-top
    from keras_hub.src.layers.modeling import cached_multi_head_attention  # pylint: disable=g-import-not-at-top
    from keras_hub.src.models.vit import vit_layers  # pylint: disable=g-import-not-at-top  # not exported

    return {
        keras_hub.layers.ReversibleEmbedding: EmbeddingHandler(),
        keras_hub.layers.PositionEmbedding: PerChannel(zero_preserving=False, keeps_uniform=False),  # per position
        keras_hub.layers.TokenAndPositionEmbedding: TokenAndPositionEmbeddingHandler(),
        keras_hub.layers.TransformerEncoder: TransformerEncoderHandler(),
        keras_hub.layers.TransformerDecoder: TransformerDecoderHandler(),
        cached_multi_head_attention.CachedMultiHeadAttention: MultiHeadAttentionHandler(),
        vit_layers.ViTPatchingAndEmbedding: ViTPatchingAndEmbeddingHandler(),
        vit_layers.ViTEncoder: ViTEncoderHandler(),
        vit_layers.ViTEncoderBlock: ViTEncoderBlockHandler(),
        vit_layers.MLP: ViTMLPHandler(),
    }
