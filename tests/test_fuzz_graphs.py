"""Property test: random functional graphs wrap, export and slim exactly.

Each example builds a random model from convolutions (plain, depthwise,
separable), Dense, BatchNorm, activations, pooling, residual adds (with and
without projections), concatenations, squeeze-excite products, nested
submodels and one or two outputs; sets random gates (many groups entirely off,
which removes operators); and checks that the slimmed model computes what the
search model computes in inference mode and that its size is the exported cost.

CI runs FIGS_FUZZ_EXAMPLES (default 135, of which a few draw graphs with
nothing to prune) derandomized examples; for a longer
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
from figs_tf.wrapping import gates_of

from helpers import randomize_batchnorm, to_numpy

EXAMPLES = int(os.environ.get("FIGS_FUZZ_EXAMPLES", "135"))
SPATIAL = 6
COVERAGE = collections.Counter()  # layer-type combinations seen, reported at the end

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

    def head(self, x, index):
        if self.draw(st.booleans()):
            x = L.GlobalAveragePooling2D(name=self.name("gap"))(x)
        else:
            x = L.Flatten(name=self.name("flatten"))(x)
            if self.draw(st.booleans()):
                x = L.Dense(self.channels(), activation="relu", name=self.name("hidden"))(x)
        return L.Dense(3, name=f"output_{index}")(x)


@st.composite
def random_models(draw):
    builder = _Builder(draw)
    inputs = keras.Input((SPATIAL, SPATIAL, 3), name="image")
    tensors = [builder.conv_block(inputs)]
    for _ in range(draw(st.integers(2, 7))):
        x = draw(st.sampled_from(tensors))
        step = draw(st.sampled_from(["conv", "per_channel", "residual", "concat", "se", "nested"]))
        if step == "conv":
            y = builder.conv_block(x)
        elif step == "per_channel":
            y = builder.per_channel(x)
        elif step == "residual":
            y = builder.residual(x)
        elif step == "concat":
            y = builder.concat(tensors)
        elif step == "se":
            y = builder.squeeze_excite(x)
        else:
            y = builder.nested(x)
        tensors.append(y)
    heads = draw(st.integers(1, 2))
    outputs = [builder.head(tensors[-1 - i] if i < len(tensors) else tensors[-1], i) for i in range(heads)]
    model = keras.Model(inputs, outputs if heads > 1 else outputs[0], name="random_graph")
    seed = draw(st.integers(0, 2**31 - 1))
    return model, seed


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_models())
def test_random_graphs_wrap_export_and_slim_exactly(model_and_seed):
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
    gates.set_logits(logits)
    network = figs_tf.exported_network(search)
    slim = figs_tf.slim(search)
    x = rng.random((2, SPATIAL, SPATIAL, 3)).astype(np.float32)
    expected = keras.tree.flatten(search(x, training=False))
    got = keras.tree.flatten(slim(x))
    for e, g in zip(expected, got):
        e, g = to_numpy(e), to_numpy(g)
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(e).max()))
    assert slim.count_params() == network.cost("params")
    assert figs_tf.count(slim, "flops") == network.cost("flops")
    removed = len(network.graph.calls) - len(network.live_calls)
    kinds = frozenset(type(c.layer).__name__ for c in network.graph.calls)
    COVERAGE[kinds] += 1
    COVERAGE[("removed layers", removed > 0)] += 1


def test_fuzz_coverage_report():
    """Runs after the property test (file order); prints what it covered."""
    combinations = [k for k in COVERAGE if isinstance(k, frozenset)]
    if not combinations:
        return  # the property test was deselected
    layer_types = set().union(*combinations)
    print(f"\nfuzz: {sum(COVERAGE[k] for k in combinations)} graphs, {len(combinations)} distinct "
          f"layer-type combinations, {len(layer_types)} layer types: {sorted(layer_types)}; "
          f"graphs with removed layers: {COVERAGE[('removed layers', True)]}")
    assert len(layer_types) >= 12
    if EXAMPLES >= 135:  # the CI budget: at least 100 graphs fully checked
        assert sum(COVERAGE[k] for k in combinations) >= 100
    assert COVERAGE[("removed layers", True)] > 0
