"""Property test: random functional graphs wrap, export and slim exactly.

Each example builds a random model from convolutions (plain, depthwise,
separable), Dense, BatchNorm, activations, pooling, image augmentation layers,
residual adds (with and without projections), concatenations, squeeze-excite
products, nested submodels, summed branches (the shape of FBNet's operators and
of bottlenecks), attention over the 36 positions as a sequence
(MultiHeadAttention, LayerNormalization, Reshape) or decoder blocks over them
(RMS norms, grouped-query attention, a gated MLP: Dense gate × Dense up → Dense
down), a token input through an
Embedding, RNNs over the positions read as a sequence, channels_first
sub-graphs between Permutes (where the backend runs them), image preprocessing
inside summed branches (a crop and Resizing back with each interpolation and
aspect-ratio option, padding back, Rescaling, Normalization, augmentation),
and one or two outputs; sets random gates (many
groups entirely off, which removes operators, and half of the summed branches
killed on purpose); and checks that the slimmed model computes what the search
model computes in inference mode, that its size is the exported cost and that
`build_from_architecture` builds the same layers.

CI runs FIGS_FUZZ_EXAMPLES (default 135, of which a few draw graphs with
nothing to prune) derandomized examples, then FIGS_FUZZ_EXAMPLES // 9 drawn with
decoder blocks in place of MultiHeadAttention and one before the first output
(a separate run, so the first examples stay what they were), then
FIGS_FUZZ_EXAMPLES // 15 drawn with channel splits (`keras.ops.split`), padding
(`keras.ops.pad`, with -inf before max-pooling) and shared layers (one layer
applied twice) in place of attention and nested models, and one of them before
the first output (a separate run likewise), then, where the
backend runs them, FIGS_FUZZ_EXAMPLES // 9 that may draw channels_first
sub-graphs; for a longer
manual run: FIGS_FUZZ_EXAMPLES=1000 pytest tests/test_fuzz_graphs.py -s
"""

import collections
import os

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import figs_tf
from figs_tf.channel_sets import groups_in
from figs_tf.wrapping import gates_of

from helpers import layer_structure, randomize_batchnorm, runs_channels_first_convolutions, to_numpy

EXAMPLES = int(os.environ.get("FIGS_FUZZ_EXAMPLES", "135"))
SPATIAL = 6
PREPROCESSING = {"Resizing", "CenterCrop", "Rescaling", "Normalization", "RandomFlip", "RandomRotation",
                 "RandomBrightness"}

L = keras.layers


class _Builder:
    """Grows a random graph from hypothesis draws; every tensor is (B, 6, 6, C)."""

    def __init__(self, draw):
        self.draw = draw
        self.count = 0

    def name(self, kind):
        self.count += 1
        return f"{kind}_{self.count}"

    def channels(self):
        return self.draw(st.integers(1, 6))

    def conv_block(self, x):
        kind = self.draw(st.sampled_from(["conv", "conv_bn", "conv_bn_relu", "separable", "depthwise"]))
        if kind == "separable":
            return L.SeparableConv2D(self.channels(), 3, padding="same", name=self.name("sep"),
                                     depth_multiplier=self.draw(st.integers(1, 2)))(x)
        if kind == "depthwise":
            x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=self.draw(st.integers(1, 2)),
                                  use_bias=self.draw(st.booleans()), name=self.name("dw"))(x)
            return L.BatchNormalization(name=self.name("bn"))(x) if self.draw(st.booleans()) else x
        x = L.Conv2D(self.channels(), self.draw(st.sampled_from([1, 3])), padding="same",
                     use_bias=self.draw(st.booleans()), name=self.name("conv"))(x)
        if kind != "conv":
            x = L.BatchNormalization(name=self.name("bn"))(x)
        if kind == "conv_bn_relu":
            x = L.ReLU(name=self.name("relu"))(x)
        return x

    def per_channel(self, x):
        kind = self.draw(st.sampled_from(["relu", "sigmoid", "tanh", "bn", "maxpool", "avgpool", "dropout"]))
        if kind in ("relu", "sigmoid", "tanh"):
            return L.Activation(kind, name=self.name(kind))(x)
        if kind == "bn":
            return L.BatchNormalization(name=self.name("bn"))(x)
        if kind == "dropout":
            return L.Dropout(0.3, name=self.name("dropout"))(x)
        pool = L.MaxPooling2D if kind == "maxpool" else L.AveragePooling2D
        return pool(3, strides=1, padding="same", name=self.name(kind))(x)

    def residual(self, x):
        branch = self.conv_block(x)
        if branch.shape[-1] != x.shape[-1] or self.draw(st.booleans()):
            branch = L.Conv2D(x.shape[-1], 1, name=self.name("proj"))(branch)
            if self.draw(st.booleans()):
                branch = L.BatchNormalization(name=self.name("bn"))(branch)
        return L.Add(name=self.name("add"))([x, branch])

    def concat(self, tensors):
        picked = self.draw(st.lists(st.sampled_from(tensors), min_size=2, max_size=3))
        parts = [self.conv_block(t) for t in picked]
        return L.Concatenate(name=self.name("concat"))(parts)

    def squeeze_excite(self, x):
        s = L.GlobalAveragePooling2D(keepdims=True, name=self.name("squeeze"))(x)
        s = L.Conv2D(self.channels(), 1, activation="relu", name=self.name("se_reduce"))(s)
        s = L.Conv2D(x.shape[-1], 1, activation="sigmoid", name=self.name("se_expand"))(s)
        return L.Multiply(name=self.name("excite"))([x, s])

    def augment(self, x):
        """Random in training, the identity in inference; some do not keep zeros (the gate acts after them)."""
        kind = self.draw(st.sampled_from(["flip", "rotate", "brightness", "rescale"]))
        if kind == "flip":
            return L.RandomFlip(name=self.name("flip"))(x)
        if kind == "rotate":
            return L.RandomRotation(0.2, fill_mode="constant", fill_value=1.0, name=self.name("rotate"))(x)
        if kind == "brightness":
            return L.RandomBrightness(0.2, value_range=(-10, 10), name=self.name("brightness"))(x)
        return L.Rescaling(0.5, offset=0.1, name=self.name("rescale"))(x)

    def preprocess(self, x, where=""):
        """An image preprocessing layer that keeps the 6×6 size (a crop and a resize back, a rescale,
        a normalisation, an augmentation), with the options that decide whether a constant stays one:
        Resizing's interpolation and its crop_to_aspect_ratio / pad_to_aspect_ratio, padding back."""
        kind = self.draw(st.sampled_from(["resize_back", "rescale", "normalize", "center_crop_back", "resize_back",
                                          "pad_back", "flip", "rotate"]))
        if kind == "rescale":
            return L.Rescaling(self.draw(st.sampled_from([0.5, 2.0])), offset=self.draw(st.sampled_from([0.0, 0.1])),
                               name=self.name("rescale"))(x)
        if kind == "normalize":
            channels = x.shape[-1]
            return L.Normalization(mean=list(np.linspace(-0.5, 0.5, channels)),
                                   variance=list(np.linspace(0.5, 2.0, channels)), name=self.name("normalize"))(x)
        if kind in ("flip", "rotate"):
            return self.augment(x)
        if kind == "center_crop_back":
            x = L.CenterCrop(4, 6, name=self.name("center_crop"))(x)
        else:
            x = L.Cropping2D(((0, 0), (1, 1)), name=self.name("crop"))(x)  # 6×4: another aspect ratio
        if kind == "pad_back":
            return L.ZeroPadding2D(((0, 0), (1, 1)), name=self.name("pad"))(x)
        aspect = self.draw(st.sampled_from(["pad_to_aspect_ratio", "crop_to_aspect_ratio", "stretch"]))
        options = {} if aspect == "stretch" else {aspect: True}
        if aspect == "pad_to_aspect_ratio":
            options["fill_value"] = self.draw(st.sampled_from([0.0, 1.0]))
        interpolation = self.draw(st.sampled_from(["bilinear", "nearest", "bicubic", "area", "lanczos3"]))
        return L.Resizing(SPATIAL, SPATIAL, interpolation=interpolation, name=self.name(f"{where}resize"), **options)(x)

    def channels_first(self, x):
        """A channels_first sub-graph between two Permutes: its layers gate and slim axis 1."""
        first = dict(data_format="channels_first")
        x = L.Permute((3, 1, 2), name=self.name("to_first"))(x)
        x = L.Conv2D(self.channels(), 3, padding="same", name=self.name("conv_first"), **first)(x)
        if self.draw(st.booleans()):
            x = L.BatchNormalization(axis=1, name=self.name("bn"))(x)
        if self.draw(st.booleans()):
            x = L.MaxPooling2D(3, strides=1, padding="same", name=self.name("maxpool"), **first)(x)
        return L.Permute((2, 3, 1), name=self.name("to_last"))(x)

    def recurrent(self, x, return_sequences=True):
        """An RNN over the 3x3 pooled positions read as a sequence (9 steps keep the test fast); back to
        (6, 6, units) when it returns them."""
        x = L.AveragePooling2D(2, name=self.name("avgpool"))(x)
        x = L.Reshape((9, x.shape[-1]), name=self.name("to_sequence"))(x)
        kind = self.draw(st.sampled_from([L.LSTM, L.GRU, L.SimpleRNN, "bidirectional"]))
        if kind == "bidirectional":
            layer = L.Bidirectional(L.GRU(self.channels(), return_sequences=return_sequences),
                                    merge_mode=self.draw(st.sampled_from(["concat", "sum"])), name=self.name("bi"))
        else:
            layer = kind(self.channels(), return_sequences=return_sequences, name=self.name("rnn"))
        x = layer(x)
        if return_sequences:
            x = L.Reshape((3, 3, x.shape[-1]), name=self.name("to_image"))(x)
            x = L.UpSampling2D(2, name=self.name("upsample"))(x)
        return x

    def summed_branches(self, x):
        """[x +] 1-3 branches summed (FBNet's operators, a bottleneck): chains of convolutions
        back to x's width, sometimes with a squeeze-excite inside, a non-affine tail (a ReLU
        or sigmoid of the last BatchNorm) or a padded depthwise tail (a constant that would
        differ at the borders: that branch must keep one channel)."""
        terms = [x] if self.draw(st.booleans()) else []
        for _ in range(self.draw(st.integers(1, 3))):
            y = x
            for _ in range(self.draw(st.integers(1, 2))):
                y = self.conv_block(y)
            if self.draw(st.integers(0, 3)) == 0:
                y = self.squeeze_excite(y)
            y = L.Conv2D(x.shape[-1], self.draw(st.sampled_from([1, 3])), padding="same",
                         use_bias=self.draw(st.booleans()), name=self.name("out"))(y)
            tail = self.draw(st.sampled_from(["bn", "bn", "none", "bn_relu", "bn_sigmoid", "bn_depthwise"]))
            preprocess = self.draw(st.sampled_from(["after", "none", "before", "after"]))
            if preprocess == "before":  # a preprocessing layer inside the branch, before its constant forms
                y = self.preprocess(y)
            if tail != "none":
                y = L.BatchNormalization(name=self.name("bn"))(y)
            if tail in ("bn_relu", "bn_sigmoid"):
                y = L.Activation(tail[3:], name=self.name(tail[3:]))(y)
            if tail == "bn_depthwise":
                y = L.DepthwiseConv2D(3, padding="same", name=self.name("dw"))(y)
            if preprocess == "after":  # whether the constant stays one decides the branch's fate
                y = self.preprocess(y, where="tail_")
            terms.append(y)
        return terms[0] if len(terms) == 1 else L.Add(name=self.name("sum"))(terms)

    def nested(self, x):
        inner_in = keras.Input(x.shape[1:])
        y = L.Conv2D(self.channels(), 3, padding="same", name=self.name("inner_conv"))(inner_in)
        y = L.BatchNormalization(name=self.name("inner_bn"))(y)
        if self.draw(st.booleans()):
            inner = keras.Model(inner_in, L.ReLU(name=self.name("inner_relu"))(y), name=self.name("submodel"))
        else:
            inner = keras.Sequential([keras.Input(x.shape[1:]),
                                      L.Conv2D(self.channels(), 1, name=self.name("seq_conv")),
                                      L.ReLU(name=self.name("seq_relu"))], name=self.name("sequential"))
        return inner(x)

    def attention(self, x):
        """x as a sequence of 36 tokens: [LayerNorm] → MultiHeadAttention → back to 6×6 [+ x]."""
        tokens = L.Reshape((SPATIAL * SPATIAL, x.shape[-1]), name=self.name("tokens"))(x)
        if self.draw(st.booleans()):
            tokens = L.LayerNormalization(name=self.name("ln"))(tokens)
        output_shape = self.draw(st.sampled_from([None, self.channels()]))
        y = L.MultiHeadAttention(self.draw(st.integers(1, 3)), self.draw(st.integers(1, 3)),
                                 value_dim=self.draw(st.sampled_from([None, 2])), output_shape=output_shape,
                                 use_bias=self.draw(st.booleans()), name=self.name("attention"))(tokens, tokens)
        y = L.Reshape((SPATIAL, SPATIAL, y.shape[-1]), name=self.name("grid"))(y)
        if y.shape[-1] == x.shape[-1] and self.draw(st.booleans()):
            y = L.Add(name=self.name("add"))([x, y])
        return y

    def decoder(self, x):
        """x as a sequence of 36 tokens through a decoder block: [RMS norm] → grouped-query attention (1-2
        key/value heads, 1-2 query heads each, maybe causal, maybe gated) [+], [RMS norm] → gated MLP (Dense
        gate × Dense up → Dense down) [+]; back to 6×6."""
        tokens = L.Reshape((SPATIAL * SPATIAL, x.shape[-1]), name=self.name("tokens"))(x)
        y = L.RMSNormalization(name=self.name("rms"))(tokens) if self.draw(st.booleans()) else tokens
        kv_heads = self.draw(st.integers(1, 2))
        y = L.GroupQueryAttention(self.draw(st.integers(1, 3)), kv_heads * self.draw(st.integers(1, 2)), kv_heads,
                                  use_gate=self.draw(st.booleans()), use_bias=self.draw(st.booleans()),
                                  name=self.name("gqa"))(y, y, use_causal_mask=self.draw(st.booleans()))
        tokens = L.Add(name=self.name("add"))([tokens, y]) if self.draw(st.booleans()) else y
        y = L.RMSNormalization(name=self.name("rms"))(tokens) if self.draw(st.booleans()) else tokens
        units = self.channels()
        gate = L.Dense(units, activation=self.draw(st.sampled_from(["silu", "gelu"])), name=self.name("mlp_gate"))(y)
        up = L.Dense(units, name=self.name("mlp_up"))(y)
        y = L.Dense(x.shape[-1], name=self.name("mlp_down"))(L.Multiply(name=self.name("mlp_product"))([gate, up]))
        tokens = L.Add(name=self.name("add"))([tokens, y]) if self.draw(st.booleans()) else y
        return L.Reshape((SPATIAL, SPATIAL, x.shape[-1]), name=self.name("grid"))(tokens)

    def tokens(self, x, tokens):
        """An Embedding of a second, integer input, laid out as 6×6 and concatenated to x."""
        e = L.Embedding(10, self.channels(), name=self.name("embedding"))(tokens)
        e = L.Reshape((SPATIAL, SPATIAL, e.shape[-1]), name=self.name("grid"))(e)
        return L.Concatenate(name=self.name("concat"))([x, e])

    def split(self, x):
        """keras.ops.split on the channel axis: of a concatenation at its seam (each part keeps its group) or
        at a random point inside one conv's channels (kept out of search); each part through a conv block
        or as it is, concatenated back in either order or summed."""
        if self.draw(st.booleans()):
            parts = [self.conv_block(x) for _ in range(2)]
            x = L.Concatenate(name=self.name("concat"))(parts)
            at = parts[0].shape[-1]
        else:
            x = L.Conv2D(self.draw(st.integers(2, 6)), 1, name=self.name("conv"))(x)
            at = self.draw(st.integers(1, x.shape[-1] - 1))
        first, second = keras.ops.split(x, [at], axis=-1)
        first = self.conv_block(first) if self.draw(st.booleans()) else first
        second = self.conv_block(second) if self.draw(st.booleans()) else second
        if first.shape[-1] == second.shape[-1] and self.draw(st.booleans()):
            return L.Add(name=self.name("add"))([first, second])
        ordered = [first, second] if self.draw(st.booleans()) else [second, first]
        return L.Concatenate(name=self.name("concat"))(ordered)

    def pad(self, x):
        """keras.ops.pad of the positions (with 0, 1 or ResNetV2's -inf), pooled back to 6x6."""
        value = self.draw(st.sampled_from([0.0, 1.0, float("-inf")]))
        x = keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=value)
        pool = L.MaxPooling2D if value == float("-inf") or self.draw(st.booleans()) else L.AveragePooling2D
        return pool(3, strides=1, name=self.name("pool"))(x)

    def shared(self, x, tensors):
        """One conv block's layers applied twice: to its own output (a residual chain, as ALBERT shares its
        encoder block across depth) or to another tensor of x's width."""
        conv = L.Conv2D(x.shape[-1], self.draw(st.sampled_from([1, 3])), padding="same", name=self.name("shared"))
        norm = L.BatchNormalization(name=self.name("shared_bn")) if self.draw(st.booleans()) else None

        def block(y):
            y = conv(y)
            return norm(y) if norm is not None else y

        others = [t for t in tensors if t.shape[-1] == x.shape[-1] and t is not x]
        if others and self.draw(st.booleans()):
            return L.Add(name=self.name("add"))([block(x), block(self.draw(st.sampled_from(others)))])
        y = x
        for _ in range(2):
            y = L.Add(name=self.name("add"))([y, block(y)]) if self.draw(st.booleans()) else block(y)
        return y

    def head(self, x, index):
        kind = self.draw(st.sampled_from(["gap", "flatten", "rnn"]))
        if kind == "gap":
            x = L.GlobalAveragePooling2D(name=self.name("gap"))(x)
        elif kind == "rnn":
            x = self.recurrent(x, return_sequences=False)
        else:
            x = L.Flatten(name=self.name("flatten"))(x)
            if self.draw(st.booleans()):
                x = L.Dense(self.channels(), activation="relu", name=self.name("hidden"))(x)
        return L.Dense(3, name=f"output_{index}")(x)


@st.composite
def random_models(draw, channels_first=True, decoders=False, channel_ops=False):
    """(a random model, a seed); `channels_first`: a channels_first sub-graph after the stem, and more may be
    drawn (False: none); `decoders`: decoder
    blocks in place of MultiHeadAttention, and one at the end (False draws exactly what it drew before decoders);
    `channel_ops`: channel splits, padding and shared layers in place of attention and nested models, and one
    of them at the end (False draws exactly what it drew before them)."""
    builder = _Builder(draw)
    inputs = keras.Input((SPATIAL, SPATIAL, 3), name="image")
    tensors = [builder.conv_block(inputs)]
    if channels_first:
        tensors = [builder.channels_first(tensors[0])]
    if draw(st.integers(0, 5)) == 0:
        inputs = [inputs, keras.Input((SPATIAL * SPATIAL,), dtype="int32", name="tokens")]
        tensors = [builder.tokens(tensors[0], inputs[1])]
    for _ in range(draw(st.integers(2, 7))):
        x = draw(st.sampled_from(tensors))
        step = draw(st.sampled_from(["conv", "per_channel", "residual", "concat", "se", "nested", "branches",
                                     "attention", "other_layout"]))
        if step == "attention" and decoders:
            step = "decoder"
        if step in ("attention", "nested") and channel_ops:
            step = draw(st.sampled_from(["split", "pad", "shared"]))
        if step == "other_layout":  # augmentation, RNNs, channels_first: one step, so the others keep their share
            step = draw(st.sampled_from(["augment", "recurrent", "channels_first" if channels_first else "augment"]))
        steps = {"conv": builder.conv_block, "per_channel": builder.per_channel, "residual": builder.residual,
                 "concat": lambda _: builder.concat(tensors), "se": builder.squeeze_excite,
                 "augment": builder.augment, "recurrent": builder.recurrent, "channels_first": builder.channels_first,
                 "branches": builder.summed_branches, "attention": builder.attention, "nested": builder.nested,
                 "decoder": builder.decoder, "split": builder.split, "pad": builder.pad,
                 "shared": lambda t: builder.shared(t, tensors)}
        y = steps[step](x)
        tensors.append(y)
    if decoders:  # the last tensor feeds the first output
        tensors.append(builder.decoder(tensors[-1]))
    if channel_ops:
        step = draw(st.sampled_from(["split", "pad", "shared"]))
        tensors.append(builder.shared(tensors[-1], tensors) if step == "shared" else steps[step](tensors[-1]))
    heads = draw(st.integers(1, 2))
    outputs = [builder.head(tensors[-1 - i] if i < len(tensors) else tensors[-1], i) for i in range(heads)]
    model = keras.Model(inputs, outputs if heads > 1 else outputs[0], name="random_graph")
    seed = draw(st.integers(0, 2**31 - 1))
    return model, seed


def _check_graph(model_and_seed, coverage):
    """Wraps, gates at random, exports and slims one random model; counts what it covered."""
    model, seed = model_and_seed
    rng = np.random.default_rng(seed)
    randomize_batchnorm(model, rng)
    if figs_tf.analyze(model).num_groups == 0:  # e.g. only depthwise layers on the image
        with pytest.raises(ValueError, match="no prunable channels"):
            figs_tf.wrap(model)
        return
    search = figs_tf.wrap(model)
    gates = gates_of(search)
    # a random level per group: some groups keep everything, some a few channels, some none
    logits = np.empty(gates.logits.shape, np.float32)
    for group in range(len(gates.group_sizes)):
        block = gates.group_slice(group)
        logits[block] = rng.normal(rng.uniform(-6, 5), 3.0, block.stop - block.start)
    for branch in figs_tf.channel_graph_of(search).branches:  # kill summed branches on purpose
        if rng.random() < 0.5:
            logits[gates.group_slice(int(rng.choice(branch.internal_groups)))] = -30.0
    gates.set_logits(logits)
    network = figs_tf.exported_network(search)
    slim = figs_tf.slim(search)
    x = rng.random((2, SPATIAL, SPATIAL, 3)).astype(np.float32)
    if len(model.inputs) == 2:
        x = [x, rng.integers(0, 10, (2, SPATIAL * SPATIAL))]
    expected = keras.tree.flatten(search(x, training=False))
    got = keras.tree.flatten(slim(x, training=False))  # augmentation layers act unless told otherwise
    for e, g in zip(expected, got, strict=True):
        e, g = to_numpy(e), to_numpy(g)
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(e).max()))
    assert slim.count_params() == network.cost("params")
    assert figs_tf.count(slim, "flops") == network.cost("flops")
    dead = [b for b in network.graph.branches if b.is_dead(network.widths)]
    if dead:  # the fresh build of the architecture has the slim model's layers and shapes
        assert layer_structure(figs_tf.build_from_architecture(model, network.architecture())) == \
            layer_structure(slim)
    removed = len(network.graph.calls) - len(network.live_calls)
    kinds = frozenset(type(c.layer).__name__ for c in network.graph.calls)
    coverage[kinds] += 1
    coverage[("removed layers", removed > 0)] += 1
    coverage["removed branches"] += len(dead)
    coverage["folded into a bias after the sum"] += sum(isinstance(l, figs_tf.ChannelBias) for l in slim.layers)
    for branch in dead:
        inside = {type(c.layer).__name__ for c in branch.calls} & PREPROCESSING
        coverage["removed branches with preprocessing"] += bool(inside)
        for kind in inside:
            coverage[("preprocessing in a removed branch", kind)] += 1
    coverage["channels_first sub-graphs"] += sum(c.name.startswith("conv_first") for c in network.graph.calls)
    coverage["padding Resizing at a summand's end"] += sum(  # its constant is not one: kept, not removed
        isinstance(c.layer, L.Resizing) and c.layer.pad_to_aspect_ratio and c.name.startswith("tail_")
        for c in network.graph.calls)
    coverage["gated MLPs"] += sum(c.name.startswith("mlp_product") for c in network.graph.calls)
    coverage["shared layers"] += sum(c.application == 1 for c in network.graph.calls)
    coverage["searched channels split apart"] += sum(  # a split whose parts hold searched channels
        type(c.layer).__name__ == "Split" and any(groups_in(s) for s in network.graph.out_sets(c))
        for c in network.graph.calls)
    slim_layers = {layer.name: layer for layer in slim.layers}
    coverage["grouped-query layers slimmed to fewer heads"] += sum(
        isinstance(c.layer, L.GroupQueryAttention) and c.name in slim_layers
        and slim_layers[c.name].num_query_heads < c.layer.num_query_heads for c in network.graph.calls)
    coverage["summed branches kept for a constant that differs between positions"] += sum(
        "may differ between positions" in note for note in network.graph.notes)


def test_random_graphs_wrap_export_and_slim_exactly():
    """EXAMPLES random graphs each slim exactly; then what they covered is reported and checked.

    One test, so that the coverage it checks is that of its own examples, run alone or in any
    order. The first run draws no channels_first sub-graph, so that its graphs, and the coverage
    checked below, are the same on every CPU (derandomized draws change with hypothesis's version:
    setup.py pins it). Where the backend runs channels_first convolutions (not TensorFlow on a CPU
    without oneDNN; tests/test_channels_first.py covers them there in a process with oneDNN on)
    a third run draws them too.
    """
    coverage = collections.Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, print_blob=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(random_models(channels_first=False))
    def check(model_and_seed):
        _check_graph(model_and_seed, coverage)

    check()

    @settings(max_examples=max(1, EXAMPLES // 9), deadline=None, derandomize=True, print_blob=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(random_models(channels_first=False, decoders=True))
    def check_decoders(model_and_seed):
        _check_graph(model_and_seed, coverage)

    check_decoders()

    @settings(max_examples=max(1, EXAMPLES // 15), deadline=None, derandomize=True, print_blob=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(random_models(channels_first=False, channel_ops=True))
    def check_channel_ops(model_and_seed):
        _check_graph(model_and_seed, coverage)

    check_channel_ops()
    channels_first = runs_channels_first_convolutions()
    if channels_first:
        @settings(max_examples=max(1, EXAMPLES // 9), deadline=None, derandomize=True, print_blob=True,
                  database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(random_models(channels_first=True))
        def check_channels_first(model_and_seed):
            _check_graph(model_and_seed, coverage)

        check_channels_first()
    combinations = [k for k in coverage if isinstance(k, frozenset)]
    layer_types = set().union(*combinations)
    graphs = sum(coverage[k] for k in combinations)
    padding_resizes = coverage["padding Resizing at a summand's end"]
    removed_preprocessing = {k[1] for k in coverage if isinstance(k, tuple) and k[0] == "preprocessing in a removed branch"}
    print(f"\nfuzz: {graphs} graphs, {len(combinations)} distinct "
          f"layer-type combinations, {len(layer_types)} layer types: {sorted(layer_types)}; "
          f"graphs with removed layers: {coverage[('removed layers', True)]}; summed branches removed: "
          f"{coverage['removed branches']} (sums given a ChannelBias for their constant: "
          f"{coverage['folded into a bias after the sum']}; the other constants went into a BatchNorm shift or bias), "
          f"{coverage['removed branches with preprocessing']} of them holding preprocessing layers "
          f"({sorted(removed_preprocessing)}); summands kept for a constant that "
          f"differs between positions: {coverage['summed branches kept for a constant that differs between positions']} "
          f"(a padding Resizing at a summand's end: {padding_resizes}); gated MLPs: {coverage['gated MLPs']}, "
          f"grouped-query layers slimmed to fewer heads: {coverage['grouped-query layers slimmed to fewer heads']}, "
          f"channels_first convolutions: {coverage['channels_first sub-graphs']}; shared layers: "
          f"{coverage['shared layers']}, splits of searched channels: {coverage['searched channels split apart']}")
    assert len(layer_types) >= 12
    if EXAMPLES >= 135:  # the CI budget: at least 100 graphs fully checked, attention and embeddings among them
        assert {"GroupedQueryAttention", "RMSNormalization"} <= layer_types  # the decoder examples
        assert coverage["gated MLPs"] >= 3 and coverage["grouped-query layers slimmed to fewer heads"] >= 2
        assert {"Split", "Pad"} <= layer_types  # the channel-op examples
        assert coverage["shared layers"] >= 2 and coverage["searched channels split apart"] >= 1
        assert graphs >= 100
        assert {"MultiHeadAttention", "LayerNormalization", "Embedding"} <= layer_types
        assert {"Resizing", "Rescaling", "Normalization"} <= removed_preprocessing
        assert coverage["summed branches kept for a constant that differs between positions"] > 0
        assert padding_resizes >= 3
        if channels_first:
            assert coverage["channels_first sub-graphs"] > 0
    assert coverage[("removed layers", True)] > 0
    assert coverage["removed branches"] > 0
