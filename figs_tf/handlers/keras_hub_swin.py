"""keras_hub's Swin Transformer: patch embedding, shifted-window attention, MLP, patch merging and stages.

`SwinTransformerBackbone` is a functional model of keras_hub layers that are
each analysed as a functional equivalent built from their own sublayers
(weights shared), as figs_tf.handlers.keras_hub does for ViT:

- `PatchEmbedding`: its patch convolution, the positions flattened into a
  sequence (`Reshape`), and its optional LayerNormalization;
- `SwinTransformerStage`: its blocks, then its `PatchMerging` (called with the
  stage's resolution);
- `SwinTransformerBlock`: LayerNorm → windowed attention → DropPath → +,
  LayerNorm → `Mlp` → DropPath → +. The windowed attention (cyclic shift,
  window partition, attention with the relative position bias and the
  shifted windows' mask, window reverse, shift back) is one call of the
  block's own `WindowAttention`, through `WindowedAttention`, with the block's
  resolution, window and shift as its call arguments;
- `Mlp`: fc1 → the activation (an `Activation` layer) → dropout → fc2 → dropout;
- `DropPath` (stochastic depth: each example's output kept or zeroed) acts per
  channel, and is the identity in inference;
- `PatchMerging`: the sequence as an image, the four neighbours of each
  2×2 patch concatenated (`x[:, 0::2, 0::2]`, ...), LayerNorm, the reduction Dense.

`WindowAttention`'s heads are an inner channel group (one gate per head,
`HeadGatedWindowAttention` multiplies head h's values by its gate, so a
closed head adds exactly nothing); `slim` cuts each kept head's query, key
and value columns out of the qkv kernel, its rows out of the projection and
its column out of the relative position bias table, and rebuilds the layer
as `SwinWindowAttention` (keras_hub's WindowAttention reshapes its output to
its input width, so it cannot have fewer heads of the same width; nor can it
be rebuilt from its own config, so a saved search model holds it as a
`SwinWindowAttention` too, with the same weights). The MLP's
hidden width (fc1's units) is searched like any Dense. The residual stream
and what PatchMerging concatenates are normalised by LayerNorms (over C and
over 4C), so the stream widths stay out of search (the analysis' notes say
so); the patch embedding's filters are that stream too.

Multiply-adds per example of one windowed attention, at padded resolution
H×W (P = H·W positions, nW = P / N windows of N = window² tokens), with heads
h of width d, input width C and output width C': P·C·3hd (qkv),
nW·N²·hd twice (QKᵀ and AV) and P·hd·C' (the projection). The bias table has
(2·wh − 1)(2·ww − 1) entries per head.

This module reads keras_hub's internal module paths
(`keras_hub.src.models.swin_transformer...`, whose layers keras_hub does not
export) and the blocks' sublayer attributes.
"""

import weakref

import keras
import numpy as np
from keras import ops
from keras_hub.src.models.swin_transformer import swin_transformer_layers as swin

from figs_tf.channel_sets import Segment
from figs_tf.handlers.attention import HeadGatedAttentionHandler
from figs_tf.handlers.base import Term, UnsupportedLayerError, to_numpy
from figs_tf.handlers.keras_hub import BlockHandler, _no_keras_mask, _second_use
from figs_tf.handlers.per_channel import PerChannel
from figs_tf.wrapper_layer import WrapperLayer, take_gates

_GEOMETRY = ("input_resolution", "window_size", "shift_size")


def shift_mask(height, width, window_size, shift_size):
    """The shifted windows' additive attention mask, (windows, N, N) float32: −100 between tokens that come
    from different regions of the image before the cyclic shift, 0 elsewhere (what SwinTransformerBlock builds)."""
    padded_h, padded_w = height + (-height) % window_size, width + (-width) % window_size
    regions = np.zeros((padded_h, padded_w), np.int32)
    bounds_h = [(0, height - window_size), (height - window_size, height - shift_size), (height - shift_size, height)]
    bounds_w = [(0, width - window_size), (width - window_size, width - shift_size), (width - shift_size, width)]
    for i, (h0, h1) in enumerate(bounds_h):
        for j, (w0, w1) in enumerate(bounds_w):
            regions[h0:h1, w0:w1] = 3 * i + j
    windows = regions.reshape(padded_h // window_size, window_size, padded_w // window_size, window_size)
    windows = windows.transpose(0, 2, 1, 3).reshape(-1, window_size * window_size)
    return (windows[:, None, :] != windows[:, :, None]).astype(np.float32) * -100.0


def _attend(attention, windows, mask, head_gates, training):
    """WindowAttention's computation on windows (B·nW, N, C) with `attention`'s weights; head h's values
    times head_gates[h] (None: ungated)."""
    heads, head_dim = attention.num_heads, attention.head_dim
    tokens = windows.shape[1]
    qkv = ops.reshape(attention.qkv(windows), (-1, tokens, 3, heads, head_dim))
    qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B·nW, heads, N, d)
    query, key, value = qkv[0], qkv[1], qkv[2]
    query = query * ops.cast(attention.scale, query.dtype)
    scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
    bias = ops.take(attention.relative_position_bias_table, attention.relative_position_index, axis=0)
    scores = scores + ops.transpose(bias, (2, 0, 1))
    if mask is not None:
        scores = ops.reshape(scores, (-1, mask.shape[0], heads, tokens, tokens)) + ops.convert_to_tensor(mask)[:, None]
        scores = ops.reshape(scores, (-1, heads, tokens, tokens))
    scores = attention.attention_dropout_layer(ops.softmax(scores, axis=-1), training=training)
    if head_gates is not None:
        value = value * ops.cast(ops.reshape(head_gates, (1, heads, 1, 1)), value.dtype)
    out = ops.reshape(ops.transpose(ops.matmul(scores, value), (0, 2, 1, 3)), (-1, tokens, heads * head_dim))
    return attention.proj_drop(attention.proj(out), training=training)


def windowed_attention(attention, x, input_resolution, window_size, shift_size, head_gates=None, training=None):
    """A Swin block's attention on its normalised sequence x (B, H·W, C) → (B, H·W, C').

    The cyclic shift, the window partition (zero-padded to whole windows), the
    attention of `attention` (keras_hub's WindowAttention or a
    `SwinWindowAttention`) with the shift mask, the window reverse and the
    shift back, in SwinTransformerBlock's order.
    """
    height, width = input_resolution
    image = ops.reshape(x, (-1, height, width, x.shape[-1]))
    if shift_size:
        image = ops.roll(image, shift=(-shift_size, -shift_size), axis=(1, 2))
    pad_h, pad_w = (-height) % window_size, (-width) % window_size
    if pad_h or pad_w:
        image = ops.pad(image, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
    rows, cols = (height + pad_h) // window_size, (width + pad_w) // window_size
    windows = ops.reshape(image, (-1, rows, window_size, cols, window_size, x.shape[-1]))
    windows = ops.reshape(ops.transpose(windows, (0, 1, 3, 2, 4, 5)), (-1, window_size * window_size, x.shape[-1]))
    mask = shift_mask(height, width, window_size, shift_size) if shift_size else None
    out = _attend(attention, windows, mask, head_gates, training)
    channels = out.shape[-1]
    out = ops.reshape(out, (-1, rows, cols, window_size, window_size, channels))
    out = ops.reshape(ops.transpose(out, (0, 1, 3, 2, 4, 5)), (-1, rows * window_size, cols * window_size, channels))
    if shift_size:
        out = ops.roll(out, shift=(shift_size, shift_size), axis=(1, 2))
    if pad_h or pad_w:
        out = out[:, :height, :width, :]
    return ops.reshape(out, (-1, height * width, channels))


def _settings(attention):
    """The constructor arguments of a WindowAttention (its get_config has keys its __init__ does not take)."""
    return dict(dim=attention.dim, num_heads=attention.num_heads, head_dim=attention.head_dim,
                window_size=attention.window_size, qkv_bias=attention.qkv_bias, qk_scale=attention.scale,
                attention_dropout=attention.attn_drop_rate, proj_drop=attention.proj_drop_rate)


@keras.saving.register_keras_serializable(package="figs_tf")
class WindowedAttention(WrapperLayer):
    """Calls a WindowAttention on a whole sequence: shift, windows, attention, reverse (`windowed_attention`).

    How a Swin block's functional equivalent calls the block's own
    WindowAttention (weights shared); the analysis reads the call as one of
    the wrapped layer, with the geometry as its call arguments.

    Example:

        y = WindowedAttention(block.attn, name="attn")(x, input_resolution=(8, 8), window_size=4, shift_size=2)
    """

    def build(self, x_shape):
        if not self.wrapped_layer.built:  # a loaded search model: the call reads its sublayers
            self.wrapped_layer.build(x_shape)

    def call(self, x, input_resolution, window_size, shift_size, training=None):
        return windowed_attention(self.wrapped_layer, x, input_resolution, window_size, shift_size, training=training)

    def compute_output_spec(self, x, input_resolution, window_size, shift_size, training=None):
        return keras.KerasTensor(tuple(x.shape[:-1]) + (self.wrapped_layer.dim,), dtype=x.dtype)

    def get_config(self):
        # keras_hub's WindowAttention cannot be rebuilt from its own config: a saved search model holds it as a
        # SwinWindowAttention, which has the same weights under the same names
        config = super().get_config()
        attention = self.wrapped_layer
        config["layer"] = keras.saving.serialize_keras_object(SwinWindowAttention(
            **_settings(attention), dtype=attention.dtype_policy, name=attention.name))
        return config


@keras.saving.register_keras_serializable(package="figs_tf")
class HeadGatedWindowAttention(WindowedAttention):
    """`WindowedAttention` with one gate per head (the search model's stand-in).

    Args:
      layer: the WindowAttention (shared, not copied).
      head_gate_indices: for each head, its index in the gate vector.
      **kwargs: Layer arguments.
    """

    gate_positions = (0,)

    def __init__(self, layer, head_gate_indices, **kwargs):
        super().__init__(layer, **kwargs)
        self.head_gate_indices = [int(i) for i in head_gate_indices]

    def build(self, gate_vector_shape, x_shape):
        super().build(x_shape)

    def call(self, gate_vector, x, input_resolution, window_size, shift_size, training=None):
        return windowed_attention(self.wrapped_layer, x, input_resolution, window_size, shift_size,
                                  head_gates=take_gates(gate_vector, self.head_gate_indices), training=training)

    def compute_output_spec(self, gate_vector, x, input_resolution, window_size, shift_size, training=None):
        return super().compute_output_spec(x, input_resolution, window_size, shift_size)

    def get_config(self):
        config = super().get_config()
        config["head_gate_indices"] = self.head_gate_indices
        return config


@keras.saving.register_keras_serializable(package="figs_tf")
class SwinWindowAttention(swin.WindowAttention):
    """keras_hub's WindowAttention called on the whole sequence, with its heads' width given (`head_dim`).

    What `figs_tf.slim` rebuilds a Swin block's attention as: `num_heads` heads
    of width `head_dim` (not dim // num_heads), projected to `dim` channels;
    called as `WindowedAttention` is, with the block's geometry.

    Example:

        attention = SwinWindowAttention(dim=16, num_heads=1, head_dim=8, window_size=4, qk_scale=8 ** -0.5)
        y = attention(x, input_resolution=(8, 8), window_size=4, shift_size=2)     # x: (B, 64, C)
    """

    def build(self, input_shape):
        super().build(input_shape)
        # the call is not traced when the layer is called on symbolic inputs (compute_output_spec): build the
        # projections here, so that the layer has all its weights once called
        self.qkv.build(input_shape)
        self.proj.build(tuple(input_shape[:-1]) + (self.attn_dim,))

    def call(self, x, input_resolution, window_size, shift_size, training=None):
        return windowed_attention(self, x, input_resolution, window_size, shift_size, training=training)

    def compute_output_spec(self, x, input_resolution, window_size, shift_size, training=None):
        return keras.KerasTensor(tuple(x.shape[:-1]) + (self.dim,), dtype=x.dtype)

    def get_config(self):
        config = keras.layers.Layer.get_config(self)
        config.update(_settings(self))
        return config


class WindowAttentionHandler(HeadGatedAttentionHandler):
    """A Swin block's WindowAttention (called through `WindowedAttention`): heads are an inner channel group,
    the projection's output a new group."""

    mixes_channels = True

    def geometry(self, call):
        """(window size, (H, W) padded to whole windows) of the call; refuses a call without the geometry."""
        args, kwargs = call.arguments()
        bound = dict(zip(("x",) + _GEOMETRY, args))
        bound.update(kwargs)
        if any(name not in bound for name in _GEOMETRY) or len(call.input_tensors) != 1:
            raise UnsupportedLayerError(
                f"'{call.name}' ({type(call.layer).__name__}) is called on windows directly; figs_tf handles it "
                "inside a SwinTransformerBlock (called as WindowedAttention(layer)(x, input_resolution=..., "
                "window_size=..., shift_size=...) on the whole sequence).")
        (height, width), window = bound["input_resolution"], bound["window_size"]
        return window, (height + (-height) % window, width + (-width) % window)

    def output_sets(self, call, in_sets, groups):
        self.geometry(call)
        width = call.output_tensors[0].shape[-1]
        return [(Segment(groups.new_group(width, call.name), width),)]

    def param_terms(self, call, in_sets, out_sets):
        layer = call.layer
        in_set, out_set, heads_set = in_sets[0], out_sets[0], out_sets[-1]
        d = layer.head_dim
        terms = [Term(3 * d, (in_set, heads_set)), Term(d, (heads_set, out_set)), Term(1, (out_set,)),
                 Term(int(layer.relative_position_bias_table.shape[0]), (heads_set,))]
        if layer.qkv_bias:
            terms.append(Term(3 * d, (heads_set,)))
        return terms

    def flop_terms(self, call, in_sets, out_sets):
        window, (height, width) = self.geometry(call)
        in_set, out_set, heads_set = in_sets[0], out_sets[0], out_sets[-1]
        d, positions = call.layer.head_dim, height * width
        tokens = window * window
        return [Term(positions * 3 * d, (in_set, heads_set)),
                Term(positions * tokens * 2 * d, (heads_set,)),  # QKᵀ and AV: nW·N² pairs = P·N
                Term(positions * d, (heads_set, out_set))]

    def search_call(self, call, args, kwargs, gating):
        if gating is not None and len(gating[1]) > len(call.output_keys):
            return super().search_call(call, args, kwargs, gating)  # the heads gated
        return WindowedAttention(call.layer, name=call.name)(*args, **kwargs)

    def gated_layer(self, call, inner_gate_indices):
        return HeadGatedWindowAttention(call.layer, head_gate_indices=inner_gate_indices[0], name=call.name)

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        kept_in, kept_outputs, kept_heads = kept_in[0], kept_out[0], kept_out[-1]
        heads, d = layer.num_heads, layer.head_dim
        qkv, proj = layer.qkv, layer.proj
        sliced = {
            id(qkv.kernel): to_numpy(qkv.kernel).reshape(-1, 3, heads, d)[kept_in][:, :, kept_heads].reshape(
                len(kept_in), -1),
            id(proj.kernel): to_numpy(proj.kernel).reshape(heads, d, -1)[kept_heads][..., kept_outputs].reshape(
                len(kept_heads) * d, -1),
            id(proj.bias): to_numpy(proj.bias)[kept_outputs],
            id(layer.relative_position_bias_table): to_numpy(layer.relative_position_bias_table)[:, kept_heads],
        }
        if layer.qkv_bias:
            sliced[id(qkv.bias)] = to_numpy(qkv.bias).reshape(3, heads, d)[:, kept_heads].reshape(-1)
        weights = [sliced[id(v)] for v in layer.weights]
        settings = {**_settings(layer), "dim": len(kept_outputs), "num_heads": len(kept_heads)}
        rebuilt = SwinWindowAttention(**settings, dtype=layer.dtype_policy, name=layer.name)
        return rebuilt, weights

    def output_channel_l1(self, layer):
        return np.abs(to_numpy(layer.proj.kernel)).sum(axis=0)

    def inner_channel_l1(self, layer, label):
        return np.abs(to_numpy(layer.proj.kernel)).reshape(layer.num_heads, -1).sum(axis=1)


_EQUIVALENTS = weakref.WeakKeyDictionary()  # layer -> {(call signature, input shapes): functional equivalent}


class SwinBlockHandler(BlockHandler):
    """A Swin layer analysed through its functional equivalent, built once per layer and call.

    Building one calls the layer's sublayers on symbolic inputs, which traces
    each keras_hub block's `call` (seconds for a Swin stage under TensorFlow);
    every `figs_tf.analyze` of the model (wrap, count, export, slim) would
    otherwise trace them again. The equivalent holds the layer's own
    sublayers and reads no weight values, so it stays valid.
    """

    def functional_equivalent(self, call):
        _no_keras_mask(call)
        key = (call.signature(), tuple((tuple(t.shape), str(t.dtype)) for t in call.input_tensors))
        cached = _EQUIVALENTS.setdefault(call.layer, {})
        if key not in cached:
            cached[key] = super().functional_equivalent(call)
        return cached[key]


def _bound(names, args, kwargs):
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


class PatchEmbeddingHandler(SwinBlockHandler):
    """Swin's `PatchEmbedding`: the patch convolution, positions flattened to a sequence, the optional LayerNorm."""

    def body(self, layer, args, kwargs):
        x = layer.proj(args[0])
        if layer.data_format == "channels_first":
            x = keras.layers.Permute((2, 3, 1), name="channels_last")(x)
        x = keras.layers.Reshape((-1, layer.embed_dim), name="sequence")(x)
        return layer.norm(x) if layer.norm is not None else x


class SwinStageHandler(SwinBlockHandler):
    """`SwinTransformerStage`: its blocks, then its PatchMerging at the stage's resolution."""

    def body(self, layer, args, kwargs):
        x = args[0]
        for block in layer.blocks:
            x = block(x)
        if layer.downsample is not None:
            height, width = layer.input_resolution
            x = layer.downsample(x, H=height, W=width)
        return x


class SwinTransformerBlockHandler(SwinBlockHandler):
    """`SwinTransformerBlock`: x + drop_path(windowed attention(norm1(x))), then + drop_path(mlp(norm2(x))).

    Its DropPath, applied twice in the block, is applied once here and a copy
    of it (`<name>_second_use`) the second time, so that the two uses are not
    one shared layer; an Identity in its place (no stochastic depth) is left out.
    """

    def body(self, layer, args, kwargs):
        x = args[0]
        height, width = layer.input_resolution
        y = layer.norm1(x)
        y = WindowedAttention(layer.attn, name=layer.attn.name)(
            y, input_resolution=(height, width), window_size=layer.window_size, shift_size=layer.shift_size)
        drop_path = layer.drop_path
        if isinstance(drop_path, keras.layers.Identity):
            x = x + y
            return x + layer.mlp(layer.norm2(x))
        second = swin.DropPath(drop_path.drop_prob, seed=drop_path.seed, dtype=drop_path.dtype_policy,
                               name=f"{drop_path.name}_second_use")
        x = x + drop_path(y)
        return x + second(layer.mlp(layer.norm2(x)))


class SwinMlpHandler(SwinBlockHandler):
    """Swin's `Mlp`: fc1 → activation → dropout → fc2 → dropout."""

    def body(self, layer, args, kwargs):
        x = keras.layers.Activation(layer.act_layer, name="activation")(layer.fc1(args[0]))
        if layer.dropout is not None:
            x = layer.dropout(x)
        x = layer.fc2(x)
        return _second_use(layer.dropout)(x) if layer.dropout is not None else x


class PatchMergingHandler(SwinBlockHandler):
    """Swin's `PatchMerging`: the sequence as an H×W image (odd sides zero-padded), the 2×2 neighbours
    concatenated (4C channels), LayerNorm, the reduction Dense, back to a sequence."""

    def body(self, layer, args, kwargs):
        bound = _bound(("x", "H", "W"), args, kwargs)
        x, height, width = bound["x"], bound["H"], bound["W"]
        x = keras.layers.Reshape((height, width, x.shape[-1]), name="image")(x)
        if height % 2 or width % 2:
            x = ops.pad(x, [[0, 0], [0, height % 2], [0, width % 2], [0, 0]])
        x = keras.layers.Concatenate(axis=-1, name="neighbours")(
            [x[:, 0::2, 0::2, :], x[:, 1::2, 0::2, :], x[:, 0::2, 1::2, :], x[:, 1::2, 1::2, :]])
        x = layer.reduction(layer.norm(x))
        return keras.layers.Reshape((-1, layer.reduction.units), name="sequence")(x)


def keras_hub_swin_handlers():
    """{keras_hub Swin Transformer layer class: handler}."""
    attention = WindowAttentionHandler()
    return {
        swin.PatchEmbedding: PatchEmbeddingHandler(),
        swin.SwinTransformerStage: SwinStageHandler(),
        swin.SwinTransformerBlock: SwinTransformerBlockHandler(),
        swin.Mlp: SwinMlpHandler(),
        swin.PatchMerging: PatchMergingHandler(),
        swin.WindowAttention: attention,
        SwinWindowAttention: attention,
        swin.DropPath: PerChannel(zero_preserving=True),  # x / keep · (0 or 1) per example; identity in inference
    }
