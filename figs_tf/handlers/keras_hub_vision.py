"""keras_hub's vision Transformers: DeiT, DINOv2, DINOv3 and SigLIP (both towers, attention pooling included).

Registered lazily with the other keras_hub tables (figs_tf.handlers), so
importing figs_tf never imports keras_hub.

- The patch embeddings (`DeiTEmbeddings` with its class and distillation
  tokens, `DINOV2Embedding` with its class, register and mask tokens and its
  interpolated position embeddings, `SigLIPVisionEmbedding` with its position
  Embedding) are leaves, handled like ViT's: their width (hidden_dim) is one
  channel group, cut at once in the patch convolution's filters, every token
  and every position embedding.
- Their encoders, blocks, attention wrappers and MLPs are expanded into
  functional equivalents that call the blocks' own sublayers
  (figs_tf/handlers/keras_hub.py's `BlockHandler`): the attention heads and
  the MLP widths are searched like those of a functional Transformer, and
  `slim` rebuilds the blocks as plain Keras layers. DINOv2's layer scales are
  per-channel scales on the residual stream.
- SigLIP's attention pooling ("MAP" head) attends from a learned probe: the
  probe becomes an `AttentionProbe` layer (the same variable), so the head's
  heads and MLP are searched too. SigLIP's text embedding (token and position
  tables) is a leaf whose width cuts both tables; the contrastive `SigLIPHead`
  divides both towers' outputs by their L2 norms, which keeps them out of
  search (a note).
- DINOv2's SwiGLU MLP splits one Dense's channels in two halves that multiply:
  that Dense is kept out of search (a note), its heads still searched.
- DINOv3 shares DINOv2's encoder and block handlers; its embedding has no
  position embeddings, its rotary (cos, sin) has no channels, and its rotary
  attention is a leaf whose heads are kept (a note): its MLP widths are
  searched.

keras_hub 0.32's `SigLIPVisionEmbedding` declares one position more than it
makes (`compute_output_shape`: patches + 1): every symbolic shape after it, and
so the FLOPs counted for its blocks, has that extra position.

The residual stream (the embedding width) runs through LayerNormalization,
which keeps it out of search (a note in `figs_tf.analyze(model).notes`), as
in every Transformer figs_tf wraps.

This module reads keras_hub's internal module paths (`keras_hub.src.models...`)
for classes keras_hub does not export, and their sublayer attributes.

Example:

    backbone = keras_hub.models.DINOV2Backbone(patch_size=4, num_layers=2, hidden_dim=8, num_heads=2,
                                               intermediate_dim=12, image_shape=(16, 16, 3),
                                               position_embedding_shape=(24, 24, 3))
    search = figs_tf.wrap(backbone, cost="flops")
"""

import math

import keras
import numpy as np
from keras import ops

from figs_tf.channel_sets import Segment
from figs_tf.handlers.base import LayerHandler, Term, UnsupportedLayerError, clone_layer, data_format_axis, to_numpy
from figs_tf.handlers.convolution import ChannelProducer
from figs_tf.handlers.embedding import EmbeddingHandler
from figs_tf.handlers.keras_hub import BlockHandler
from figs_tf.handlers.per_channel import PerChannel
from figs_tf.wrapper_layer import ScopedLayer


def _second_use(layer):
    """A fresh copy of `layer` (same config, no weights), for a block that applies one layer twice: its two uses
    read different tensors and must not be tied as a shared layer's are."""
    return clone_layer(layer, name=f"{layer.name}_second_use")


def _bound(names, args, kwargs):
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


def _refuse(layer, bound, names, why):
    """Raises if any of `names` is passed (not None, not False) to the call of `layer`."""
    passed = [name for name in names if bound.get(name) is not None and bound.get(name) is not False]
    if passed:
        raise UnsupportedLayerError(f"'{layer.name}' is called with {passed}; {why}")


class TokenPatchEmbeddingHandler(ChannelProducer):
    """A patch convolution, then tokens and position embeddings added or prepended per channel (a leaf).

    The output width (hidden_dim) is one channel group: the convolution's
    filters and bias, every token (class, distillation, register, mask) and
    every position embedding are cut with it. Every float weight of the layer
    but the kernel is such a per-channel weight (its last axis is hidden_dim);
    integer weights (SigLIP's position ids) are constants. Subclasses name the
    convolution and rebuild the layer at a new width.
    """

    width_key = "hidden_dim"
    extra_inputs = ()  # call arguments figs_tf does not support (masks)

    def convolution(self, layer):
        """The patch convolution (a keras Conv2D)."""
        raise NotImplementedError

    def rebuild(self, layer, hidden_dim):
        """A new layer of the same class and options with `hidden_dim` channels."""
        raise NotImplementedError

    def _per_channel_weights(self, layer):
        kernel = self.convolution(layer).kernel
        weights = [w for w in layer.weights if w is not kernel and "float" in str(w.dtype)]
        wrong = [w.path for w in weights if w.shape[-1] != layer.hidden_dim]
        if wrong:
            raise UnsupportedLayerError(f"'{layer.name}' has weights {wrong} that do not run along its width "
                                        f"{layer.hidden_dim}; figs_tf cannot cut them. Register a handler for "
                                        f"{type(layer).__name__} that knows them.")
        return weights

    def channel_axes(self, call, in_axes):
        image = call.input_tensors[0]
        return [data_format_axis(call.layer, len(image.shape))], [len(call.output_tensors[0].shape) - 1]

    def output_sets(self, call, in_sets, groups):
        args, kwargs = call.arguments()
        names = ("inputs",) + self.extra_inputs
        _refuse(call.layer, _bound(names, args, kwargs), self.extra_inputs,
                "figs_tf supports the embedding of images alone (as the backbone calls it).")
        return super().output_sets(call, in_sets, groups)

    def uniform_output(self, call, in_uniform, in_zero):
        return False  # position embeddings and tokens differ between positions, even on zeros

    def _patches(self, call):
        layer, image = call.layer, call.input_tensors[0]
        axis = data_format_axis(layer, len(image.shape))
        spatial = [d for i, d in enumerate(image.shape[1:], start=1) if i != axis]
        size = self.convolution(layer).kernel_size
        return math.prod(d // k for d, k in zip(spatial, size))

    def param_terms(self, call, in_sets, out_sets):
        layer = call.layer
        kernel = self.convolution(layer).kernel_size
        per_channel = sum(math.prod(w.shape) // layer.hidden_dim for w in self._per_channel_weights(layer))
        constant = sum(math.prod(w.shape) for w in layer.weights if "float" not in str(w.dtype))
        terms = [Term(math.prod(kernel), (in_sets[0], out_sets[0])), Term(per_channel, (out_sets[0],))]
        return terms + ([Term(constant, ())] if constant else [])

    def flop_terms(self, call, in_sets, out_sets):
        kernel = self.convolution(call.layer).kernel_size
        return [Term(math.prod(kernel) * self._patches(call), (in_sets[0], out_sets[0]))]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        kept_in, kept = kept_in[0], kept_out[0]
        kernel = self.convolution(layer).kernel
        per_channel = {id(w) for w in self._per_channel_weights(layer)}
        weights = []
        for weight in layer.weights:
            value = to_numpy(weight)
            if weight is kernel:
                value = value[..., kept_in, :][..., kept]
            elif id(weight) in per_channel:
                value = value[..., kept]
            weights.append(value)
        return self.rebuild(layer, len(kept)), weights

    def output_channel_l1(self, layer):
        kernel = np.abs(to_numpy(self.convolution(layer).kernel))
        return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)


class DeiTEmbeddingsHandler(TokenPatchEmbeddingHandler):
    """DeiT's embedding: patches, a class and a distillation token, position embeddings (and a mask token)."""

    extra_inputs = ("bool_masked_pos",)

    def convolution(self, layer):
        return layer.patch_embedding

    def rebuild(self, layer, hidden_dim):
        # get_config holds num_patches and num_positions, which __init__ does not take
        return type(layer)(image_size=layer.image_size, patch_size=layer.patch_size, hidden_dim=hidden_dim,
                           num_channels=layer.num_channels, data_format=layer.data_format,
                           use_mask_token=layer.use_mask_token, dropout_rate=layer.dropout_rate,
                           dtype=layer.dtype_policy, name=layer.name)


class DINOV2EmbeddingHandler(TokenPatchEmbeddingHandler):
    """DINOv2's embedding: patches, a class token, position embeddings interpolated to the image size, register
    tokens (and a mask token, counted though the backbone never passes masks)."""

    extra_inputs = ("masks",)

    def convolution(self, layer):
        return layer.patch_embeddings.projection

    def rebuild(self, layer, hidden_dim):
        # get_config leaves out data_format
        return type(layer)(hidden_dim=hidden_dim, patch_size=layer.patch_size, image_shape=layer.image_shape,
                           num_register_tokens=layer.num_register_tokens, use_mask_token=layer.use_mask_token,
                           dropout_rate=layer.dropout_rate, position_embedding_shape=layer.position_embedding_shape,
                           antialias_in_interpolation=layer.antialias_in_interpolation,
                           data_format=layer.data_format, dtype=layer.dtype_policy, name=layer.name)


class SigLIPVisionEmbeddingHandler(TokenPatchEmbeddingHandler):
    """SigLIP's vision embedding: patches plus a position Embedding (its integer position ids are constants)."""

    def convolution(self, layer):
        return layer.patch_embedding

    def rebuild(self, layer, hidden_dim):
        return type(layer)(hidden_dim=hidden_dim, patch_size=layer.patch_size, image_size=layer.image_size,
                           data_format=layer.data_format, dtype=layer.dtype_policy, name=layer.name)


class DeiTEncoderHandler(BlockHandler):
    """DeiT's encoder: every block, a final LayerNormalization.

    It also returns two empty tensors (no hidden states, no attention scores
    asked for) that the backbone drops: the equivalent returns an empty slice
    of its output for both (nothing reads them).
    """

    def body(self, layer, args, kwargs):
        bound = _bound(("hidden_states", "attention_masks", "output_hidden_states", "return_attention_scores"),
                       args, kwargs)
        _refuse(layer, bound, ("attention_masks", "output_hidden_states", "return_attention_scores"),
                "figs_tf expands the encoder as DeiTBackbone calls it (no masks, hidden states or scores).")
        x = bound["hidden_states"]
        for block in layer.encoder_layers:
            x = DeiTBlockOutput(block)(x)
        x = layer.layer_norm(x)
        empty = x[:0, :, :]  # stands for both empty outputs: their shapes matter to no reader
        return x, empty, empty


class DeiTBlockOutput(keras.layers.Layer):
    """A `DeiTEncoderBlock` returning its output alone (the block returns (output, None), which no functional
    graph can hold). Made and expanded by `DeiTEncoderHandler`; named as the block, so that its sublayers' calls
    are `<encoder>.<block>.<sublayer>`."""

    def __init__(self, block, **kwargs):
        super().__init__(name=block.name, dtype=block.dtype_policy, **kwargs)
        self.block = block

    def call(self, inputs):
        return self.block(inputs)[0]

    def compute_output_shape(self, input_shape):
        return input_shape


class DeiTEncoderBlockHandler(BlockHandler):
    """DeiT's block (through `DeiTBlockOutput`): x + mha(ln_1(x)), then output_layer(mlp(ln_2(x)), x)."""

    def body(self, layer, args, kwargs):
        layer = layer.block
        inputs = args[0]
        x = layer.layer_norm_1(inputs)
        x = layer.mha(x, x)
        x = x + inputs
        y = layer.layer_norm_2(x)
        y = layer.mlp(y)
        return layer.output_layer(y, x)


class DeiTIntermediateHandler(BlockHandler):
    """DeiT's MLP expansion: one Dense (gelu)."""

    def body(self, layer, args, kwargs):
        return layer.dense(args[0])


class DeiTOutputHandler(BlockHandler):
    """DeiT's MLP projection: Dense, dropout, plus the residual it is given."""

    def body(self, layer, args, kwargs):
        bound = _bound(("hidden_states", "input_tensor"), args, kwargs)
        return layer.dropout(layer.dense(bound["hidden_states"])) + bound["input_tensor"]


class DINOEncoderHandler(BlockHandler):
    """DINOv2's and DINOv3's encoder: every layer; it returns the last output and each layer's ("stage<i>").
    DINOv3's layers also read the rotary (cos, sin) and the number of prefix tokens, passed on."""

    def body(self, layer, args, kwargs):
        bound = _bound(("inputs", "attention_mask", "position_embeddings", "num_prefix_tokens"), args, kwargs)
        _refuse(layer, bound, ("attention_mask",), "figs_tf expands the encoder without a mask (as the backbone "
                "calls it).")
        extra = {name: bound[name] for name in ("position_embeddings", "num_prefix_tokens") if name in bound}
        x = bound["inputs"]
        stages = {}
        for index, block in enumerate(layer.layers, start=1):
            x = block(x, **extra)
            stages[f"stage{index}"] = x
        return x, stages


class DINOLayerHandler(BlockHandler):
    """DINOv2's and DINOv3's block: x + drop_path(scale1(attention(norm1(x)))), then
    + drop_path(scale2(mlp(norm2(x)))). DINOv3's attention also reads the rotary (cos, sin) and the number of
    prefix tokens (class and register tokens, which it does not rotate)."""

    def body(self, layer, args, kwargs):
        bound = _bound(("inputs", "attention_mask", "position_embeddings", "num_prefix_tokens"), args, kwargs)
        _refuse(layer, bound, ("attention_mask",), "figs_tf expands the block without a mask (as the backbone "
                "calls it).")
        extra = {name: bound[name] for name in ("position_embeddings", "num_prefix_tokens") if name in bound}
        inputs = bound["inputs"]
        # without a drop path rate, drop_path is a keras Identity (whose config cannot be cloned): left out
        first, second = ((layer.drop_path, _second_use(layer.drop_path))
                         if not isinstance(layer.drop_path, keras.layers.Identity) else (None, None))
        x = layer.layer_scale1(layer.attention(layer.norm1(inputs), **extra))
        hidden = (first(x) if first else x) + inputs
        x = layer.layer_scale2(layer.mlp(layer.norm2(hidden)))
        return (second(x) if second else x) + hidden


class DINOV2AttentionHandler(BlockHandler):
    """DINOv2's attention wrapper: a MultiHeadAttention on (x, x, x), then dropout."""

    def body(self, layer, args, kwargs):
        x = args[0]
        return layer.dropout(layer.attention(x, x, x))


class DINOV3EmbeddingHandler(TokenPatchEmbeddingHandler):
    """DINOv3's embedding: patches, a class token, register tokens (and a mask token); no position embeddings
    (its attention is rotary)."""

    extra_inputs = ("masks",)

    def convolution(self, layer):
        return layer.patch_embeddings.projection

    def rebuild(self, layer, hidden_dim):
        return type(layer)(hidden_dim=hidden_dim, patch_size=layer.patch_size,
                           num_register_tokens=layer.num_register_tokens, use_mask_token=layer.use_mask_token,
                           initializer_range=layer.initializer_range, data_format=layer.data_format,
                           dtype=layer.dtype_policy, name=layer.name)


class DINOV3RopeHandler(LayerHandler):
    """DINOv3's rotary embedding: (cos, sin) of the patch grid, read from the image's shape; no channels, no
    batch axis (never cut)."""

    def output_sets(self, call, in_sets, groups):
        return [(Segment(None, t.shape[-1]),) for t in call.output_tensors]

    def output_dirty(self, call, in_dirty):
        return False

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        return type(layer)(hidden_dim=layer.hidden_dim, num_heads=layer.num_heads, rope_theta=layer.rope_theta,
                           patch_size=layer.patch_size, data_format=layer.data_format, dtype=layer.dtype_policy,
                           name=layer.name), []


@keras.saving.register_keras_serializable(package="figs_tf")
class ScopedCallWithConstants(ScopedLayer):
    """A `ScopedLayer` that passes constant keyword arguments itself: Keras refuses a call whose `**kwargs`
    mix tensors and constants (DINOv3's attention reads `position_embeddings=(cos, sin)` and
    `num_prefix_tokens=3`).

    Args:
      layer: the wrapped layer.
      constants: {keyword: constant} passed to every call.
      **kwargs: Layer arguments (`name`).
    """

    def __init__(self, layer, constants, **kwargs):
        super().__init__(layer, **kwargs)
        self.constants = dict(constants)

    def call(self, *args, **kwargs):
        return self.wrapped_layer(*args, **kwargs, **self.constants)

    def get_config(self):
        config = super().get_config()
        config["constants"] = self.constants
        return config


class DINOV3AttentionHandler(LayerHandler):
    """DINOv3's rotary attention, a leaf: its heads are kept (a head handler for its Dense projections and
    rotary embedding of patch tokens only is not written yet); its input and output channels are kept too.

    Multiply-adds per example: the four projections at every position, QKᵀ and AV over every pair.
    """

    def output_sets(self, call, in_sets, groups):
        reason = f"'{call.name}' (DINOV3Attention) is a leaf: its heads are not searched"
        groups.fix(in_sets[0], reason)
        width = call.layer.hidden_dim
        out = (Segment(groups.new_group(width, call.name), width),)
        groups.fix(out, reason)
        return [out]

    def param_terms(self, call, in_sets, out_sets):
        return [Term(sum(math.prod(w.shape) for w in call.layer.weights), ())]

    def search_call(self, call, args, kwargs, gating):
        is_tensor = lambda value: any(isinstance(v, keras.KerasTensor) for v in keras.tree.flatten(value))
        constants = {name: value for name, value in kwargs.items() if not is_tensor(value)}
        tensors = {name: value for name, value in kwargs.items() if is_tensor(value)}
        return ScopedCallWithConstants(call.layer, constants, name=call.name)(*args, **tensors)

    def flop_terms(self, call, in_sets, out_sets):
        layer, positions = call.layer, call.input_tensors[0].shape[1]
        if positions is None:
            raise UnsupportedLayerError(f"'{call.name}' reads sequences of unknown length: its multiply-adds "
                                        "depend on it. Build the backbone with a fixed image shape.")
        width = layer.hidden_dim
        return [Term(4 * positions * width * width + 2 * positions * positions * width, ())]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        # get_config names the biases query_bias, ..., which __init__ does not take
        rebuilt = type(layer)(hidden_dim=layer.hidden_dim, num_heads=layer.num_heads,
                              dropout_rate=layer.dropout_rate, use_query_bias=layer.use_query_bias,
                              use_key_bias=layer.use_key_bias, use_value_bias=layer.use_value_bias,
                              use_proj_bias=layer.use_proj_bias, dtype=layer.dtype_policy, name=layer.name)
        return rebuilt, layer.get_weights()


class TwoDenseMLPHandler(BlockHandler):
    """An MLP of two Dense layers, named by the class (`first`, `second`): DINOv2's (fc1, fc2), SigLIP's."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def body(self, layer, args, kwargs):
        return getattr(layer, self.second)(getattr(layer, self.first)(args[0]))


class DINOV2SwiGLUFFNHandler(BlockHandler):
    """DINOv2's SwiGLU MLP: weights_in, split in two halves, silu(a) * b, weights_out."""

    def body(self, layer, args, kwargs):
        a, b = ops.split(layer.weights_in(args[0]), 2, axis=-1)
        return layer.weights_out(ops.silu(a) * b)


class GatedMLPHandler(BlockHandler):
    """DINOv3's gated MLP: down_proj(gate_proj(x) * up_proj(x)) (gate_proj has the activation)."""

    def body(self, layer, args, kwargs):
        return layer.down_proj(layer.gate_proj(args[0]) * layer.up_proj(args[0]))


class LayerScaleHandler(PerChannel):
    """A per-channel scale (DINOv2's `lambda1`), rebuilt at the kept width."""

    def __init__(self):
        super().__init__(zero_preserving=True)

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        return clone_layer(layer, hidden_dim=len(kept_in[0])), [to_numpy(layer.lambda1)[kept_in[0]]]


class SigLIPEncoderLayerHandler(BlockHandler):
    """SigLIP's block: x + self_attn(layer_norm1(x)), then x + mlp(layer_norm2(x))."""

    def body(self, layer, args, kwargs):
        inputs = args[0]
        x = layer.layer_norm1(inputs)
        x = layer.self_attn(x, x, x, use_causal_mask=layer.use_causal_mask) + inputs
        return x + layer.mlp(layer.layer_norm2(x))


@keras.saving.register_keras_serializable(package="figs_tf")
class AttentionProbe(keras.layers.Layer):
    """A learned query of one position, repeated over the batch: SigLIP's attention-pooling probe.

    Reads its input's batch size only. Built from an existing variable
    (`probe=`), it shares it (figs_tf's expansion of
    `SigLIPMultiHeadAttentionPooling`); otherwise it makes its own, of shape
    (1, 1, hidden_dim).

    Args:
      hidden_dim: the probe's width.
      probe: optional existing variable of shape (1, 1, hidden_dim) to use.
      **kwargs: Layer arguments.

    Example:

        query = AttentionProbe(8)(sequence)        # sequence: (B, T, C) -> (B, 1, 8)
        pooled = attention(query, sequence)
    """

    def __init__(self, hidden_dim, probe=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        if probe is not None:
            self.probe = probe
            self.built = True

    def build(self, input_shape):
        self.probe = self.add_weight((1, 1, self.hidden_dim), initializer="glorot_uniform",
                                     dtype=self.variable_dtype, name="probe")

    def call(self, inputs):
        return ops.repeat(ops.cast(self.probe, self.compute_dtype), ops.shape(inputs)[0], axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config["hidden_dim"] = self.hidden_dim
        return config


class AttentionProbeHandler(LayerHandler):
    """`AttentionProbe`: a constant query; its channels are kept (they feed only the query projection)."""

    def output_sets(self, call, in_sets, groups):
        return [(Segment(None, call.layer.hidden_dim),)]

    def output_dirty(self, call, in_dirty):
        return False

    def param_terms(self, call, in_sets, out_sets):
        return [Term(call.layer.hidden_dim, ())]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        return AttentionProbe(layer.hidden_dim, dtype=layer.dtype_policy, name=layer.name), [to_numpy(layer.probe)]


class SigLIPAttentionPoolingHandler(BlockHandler):
    """SigLIP's attention pooling: attention from the probe to the sequence, x + mlp(layernorm(x)), position 0."""

    def body(self, layer, args, kwargs):
        inputs = args[0]
        probes = AttentionProbe(layer.hidden_dim, probe=layer.probe, dtype=layer.dtype_policy, name="probe")(inputs)
        x = layer.attention(probes, inputs, inputs)
        x = x + layer.mlp(layer.layer_norm(x))
        return x[:, 0]


class SigLIPTextEmbeddingHandler(EmbeddingHandler):
    """SigLIP's text embedding: token and position lookups added (a leaf: its position ids are a weight).

    Its width (embedding_dim) is one channel group, cut in both tables; the
    integer position ids are constants. Like its `position_embedding`, the
    layer needs sequences of exactly `sequence_length` tokens.
    """

    def output_sets(self, call, in_sets, groups):
        layer = call.layer
        if layer.token_embedding.mask_zero:
            raise UnsupportedLayerError(f"'{call.name}' has mask_zero=True; figs_tf expands the model into plain "
                                        "layers, which would drop the mask.")
        width = layer.embedding_dim
        return [(Segment(groups.new_group(width, call.name), width),)]

    def param_terms(self, call, in_sets, out_sets):
        layer = call.layer
        tables = sum(math.prod(w.shape) // layer.embedding_dim for w in layer.weights if "float" in str(w.dtype))
        return [Term(tables, (out_sets[0],)), Term(layer.sequence_length, ())]  # the int32 position ids

    def slim(self, call, kept_in, kept_out):
        layer, kept = call.layer, kept_out[0]
        rebuilt = type(layer)(vocabulary_size=layer.vocabulary_size, sequence_length=layer.sequence_length,
                              embedding_dim=len(kept), tie_weights=layer.token_embedding.tie_weights,
                              embeddings_initializer=layer.embeddings_initializer, dtype=layer.dtype_policy,
                              name=layer.name)
        return rebuilt, [to_numpy(w)[..., kept] if "float" in str(w.dtype) else to_numpy(w) for w in layer.weights]

    def output_channel_l1(self, layer):
        return np.abs(to_numpy(layer.token_embedding.embeddings)).sum(axis=0)


class SigLIPHeadHandler(LayerHandler):
    """SigLIP's contrastive head: each embedding divided by its L2 norm over channels, then every text against
    every image (logits between the two batches). The norm mixes channels: both embeddings are kept out of
    search. Its two scalars are constants; its products, between batches, are not per-example multiply-adds."""

    def output_sets(self, call, in_sets, groups):
        for channel_set in in_sets:
            groups.fix(channel_set, f"'{call.name}' (SigLIPHead) divides them by their L2 norm")
        # the last axis is the other batch, of unknown size: one fixed entry stands for it (never cut, but alive)
        return [(Segment(None, t.shape[-1] or 1),) for t in call.output_tensors]

    def output_dirty(self, call, in_dirty):
        return False

    def param_terms(self, call, in_sets, out_sets):
        return [Term(2, ())]

    def slim(self, call, kept_in, kept_out):
        return clone_layer(call.layer), call.layer.get_weights()


def keras_hub_vision_handlers():
    """{keras_hub vision layer class: handler} (imports keras_hub)."""
    from keras_hub.src.models.deit import deit_layers  # pylint: disable=g-import-not-at-top  # not exported
    from keras_hub.src.models.dinov2 import dinov2_layers  # pylint: disable=g-import-not-at-top
    from keras_hub.src.models.dinov3 import dinov3_layers  # pylint: disable=g-import-not-at-top
    from keras_hub.src.models.siglip import siglip_layers  # pylint: disable=g-import-not-at-top

    return {
        deit_layers.DeiTEmbeddings: DeiTEmbeddingsHandler(),
        deit_layers.DeiTEncoder: DeiTEncoderHandler(),
        DeiTBlockOutput: DeiTEncoderBlockHandler(),
        deit_layers.DeiTIntermediate: DeiTIntermediateHandler(),
        deit_layers.DeiTOutput: DeiTOutputHandler(),
        dinov2_layers.DINOV2Embedding: DINOV2EmbeddingHandler(),
        dinov2_layers.DINOV2Encoder: DINOEncoderHandler(),
        dinov2_layers.DINOV2Layer: DINOLayerHandler(),
        dinov2_layers.DINOV2Attention: DINOV2AttentionHandler(),
        dinov2_layers.DINOV2LayerScale: LayerScaleHandler(),
        dinov2_layers.DINOV2DropPath: PerChannel(zero_preserving=True),  # one random factor per example
        dinov2_layers.DINOV2MLP: TwoDenseMLPHandler("fc1", "fc2"),
        dinov2_layers.DINOV2SwiGLUFFN: DINOV2SwiGLUFFNHandler(),
        dinov3_layers.DINOV3Embedding: DINOV3EmbeddingHandler(),
        dinov3_layers.DINOV3RopePositionEmbedding: DINOV3RopeHandler(),
        dinov3_layers.DINOV3Encoder: DINOEncoderHandler(),
        dinov3_layers.DINOV3Layer: DINOLayerHandler(),
        dinov3_layers.DINOV3Attention: DINOV3AttentionHandler(),
        dinov3_layers.DINOV3LayerScale: LayerScaleHandler(),
        dinov3_layers.DINOV3DropPath: PerChannel(zero_preserving=True),  # one random factor per example
        dinov3_layers.DINOV3MLP: TwoDenseMLPHandler("up_proj", "down_proj"),
        dinov3_layers.DINOV3GatedMLP: GatedMLPHandler(),
        siglip_layers.SigLIPVisionEmbedding: SigLIPVisionEmbeddingHandler(),
        siglip_layers.SigLIPEncoderLayer: SigLIPEncoderLayerHandler(),
        siglip_layers.SigLIPMLP: TwoDenseMLPHandler("fc1", "fc2"),
        siglip_layers.SigLIPMultiHeadAttentionPooling: SigLIPAttentionPoolingHandler(),
        siglip_layers.SigLIPTextEmbedding: SigLIPTextEmbeddingHandler(),
        siglip_layers.SigLIPHead: SigLIPHeadHandler(),
        AttentionProbe: AttentionProbeHandler(),
    }
