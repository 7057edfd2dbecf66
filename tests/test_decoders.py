"""Decoder language models: grouped-query attention, RMS norms and gated MLPs searched exactly.

Independent truths: Keras's `count_params`, the unwrapped model's outputs,
and multiply-adds written out by hand below from the layer shapes (QKᵀ and AV
over every pair of the stated sequence length).
"""

import warnings

import keras
import numpy as np
import pytest

import figs_tf

from helpers import (check_all_gates_on_is_the_supernet, check_random_gates_slim_exactly, check_wrap_and_slim,
                     set_all_logits, set_group_logits, set_random_gates, to_numpy)

L = keras.layers
LENGTH, WIDTH, VOCABULARY = 6, 16, 11


def gqa_flops_by_hand(tokens, query_width, kv_heads, query_heads, head_dim, output_width, gate=False):
    """One grouped-query attention call: Q, K, V projections, QKᵀ and AV, the output projection."""
    flops = tokens * query_width * query_heads * head_dim  # query
    flops += 2 * tokens * query_width * kv_heads * head_dim  # key and value (self-attention)
    flops += 2 * query_heads * tokens * tokens * head_dim  # QKᵀ and AV, every (query, key) pair
    flops += tokens * query_heads * head_dim * output_width
    if gate:
        flops += tokens * query_width * query_heads * head_dim
    return flops


def gqa_decoder(query_heads=4, kv_heads=2, head_dim=4, mlp=24, searched_query=False, use_gate=False,
                stream_out=True):
    """Embedding → [RMS norm → GQA (causal) → +] → [RMS norm → gated MLP → +] → RMS norm → logits.

    `searched_query`: Dense layers (widths searched) before and after the attention. `stream_out`: the final
    norm's output is a model output too (as a backbone's), which keeps the residual stream out of search.
    """
    tokens = keras.Input((LENGTH,), dtype="int32", name="tokens")
    x = L.Embedding(VOCABULARY, WIDTH, name="embedding")(tokens)
    y = L.RMSNormalization(name="attention_norm")(x)
    if searched_query:
        y = L.Dense(12, name="pre_attention")(y)
    y = L.GroupQueryAttention(head_dim, query_heads, kv_heads, use_gate=use_gate, name="attention")(
        y, y, use_causal_mask=True)
    if searched_query:
        y = L.Dense(WIDTH, name="post_attention")(y)
    x = L.Add(name="attention_residual")([x, y])
    y = L.RMSNormalization(name="mlp_norm")(x)
    gate = L.Dense(mlp, activation="silu", name="mlp_gate")(y)
    up = L.Dense(mlp, name="mlp_up")(y)
    y = L.Dense(WIDTH, name="mlp_down")(L.Multiply(name="mlp_product")([gate, up]))
    x = L.Add(name="mlp_residual")([x, y])
    x = L.RMSNormalization(name="final_norm")(x)
    logits = L.Dense(VOCABULARY, name="logits")(x)
    return keras.Model(tokens, [logits, x] if stream_out else logits, name="gqa_decoder")


def decoder_flops_by_hand(query_heads=4, kv_heads=2, head_dim=4, mlp=24, query_width=WIDTH, pre=0, gate=False):
    """`pre`: the width of the Dense layers around the attention (0: none)."""
    flops = gqa_flops_by_hand(LENGTH, query_width, kv_heads, query_heads, head_dim, query_width, gate=gate)
    flops += LENGTH * (2 * WIDTH * mlp + mlp * WIDTH)  # gate, up, down
    flops += LENGTH * WIDTH * VOCABULARY + 2 * LENGTH * WIDTH * pre
    return flops


def decoder_params_by_hand(query_heads=4, kv_heads=2, head_dim=4, mlp=24):
    attention = (WIDTH + 1) * query_heads * head_dim + 2 * (WIDTH + 1) * kv_heads * head_dim
    attention += query_heads * head_dim * WIDTH + WIDTH
    mlp_params = 2 * (WIDTH * mlp + mlp) + mlp * WIDTH + WIDTH
    return VOCABULARY * WIDTH + 3 * WIDTH + attention + mlp_params + WIDTH * VOCABULARY + VOCABULARY


def token_batch(seed=0, batch=3, length=LENGTH, vocabulary=VOCABULARY):
    return np.random.default_rng(seed).integers(0, vocabulary, (batch, length)).astype("int32")


def test_grouped_query_attention_counts_match_a_hand_count():
    model = gqa_decoder()
    assert figs_tf.count(model, "params") == model.count_params() == decoder_params_by_hand()
    assert figs_tf.count(model, "flops") == decoder_flops_by_hand()
    graph = figs_tf.analyze(model)
    sizes = {producer: group.size for group in graph.groups for producer in group.producers}
    assert sizes["attention/kv_groups"] == 2 and sizes["attention/query_slots"] == 2
    assert sizes["mlp_gate"] == 24 and sizes["mlp_up"] == 24  # gate and up share a channel (the product ties them)
    assert "RMS normalization" in " ".join(graph.notes)


def test_grouped_query_attention_wraps_and_slims_exactly():
    model = gqa_decoder()
    x = token_batch()
    check_all_gates_on_is_the_supernet(model, x)
    for seed in range(3):
        _, slim, network = check_random_gates_slim_exactly(model, x, seed=seed)
        architecture = network.architecture()
        attention = slim.get_layer("attention")
        assert attention.num_key_value_heads == architecture["attention/kv_groups"]
        assert attention.num_query_heads == architecture["attention/kv_groups"] * architecture["attention/query_slots"]
        assert slim.get_layer("mlp_gate").units == slim.get_layer("mlp_up").units == architecture["mlp_gate"]


def test_closed_group_and_slot_leave_fewer_heads_and_the_cost_by_hand():
    model = gqa_decoder(query_heads=6, kv_heads=2)
    search = figs_tf.wrap(model, cost="flops")
    set_all_logits(search, 30.0)
    set_group_logits(search, "attention/kv_groups", [-30.0, 30.0])
    set_group_logits(search, "attention/query_slots", [30.0, -30.0, 30.0])
    set_group_logits(search, "mlp_gate", [30.0] * 10 + [-30.0] * 14)
    slim = figs_tf.slim(search)
    attention = slim.get_layer("attention")
    assert (attention.num_key_value_heads, attention.num_query_heads) == (1, 2)
    assert slim.get_layer("mlp_down").kernel.shape == (10, WIDTH)
    x = token_batch(1)
    expected = to_numpy(search(x, training=False)[0])  # the logits
    np.testing.assert_allclose(to_numpy(slim(x)[0]), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert figs_tf.count(slim, "flops") == decoder_flops_by_hand(query_heads=2, kv_heads=1, mlp=10)
    assert slim.count_params() == decoder_params_by_hand(query_heads=2, kv_heads=1, mlp=10)
    # the kept heads are the original ones: group 1, slots 0 and 2 (query heads 3 and 5)
    original = model.get_layer("attention")
    np.testing.assert_array_equal(to_numpy(attention._query_dense.kernel),
                                  to_numpy(original._query_dense.kernel)[:, [3, 5]])
    np.testing.assert_array_equal(to_numpy(attention._key_dense.kernel), to_numpy(original._key_dense.kernel)[:, [1]])


def test_searched_query_input_keeps_the_slots_and_says_why():
    model = gqa_decoder(searched_query=True, use_gate=True)
    assert figs_tf.count(model, "params") == model.count_params()
    assert figs_tf.count(model, "flops") == decoder_flops_by_hand(query_width=12, pre=12, gate=True)
    graph = figs_tf.analyze(model)
    assert "attention/query_slots" not in {p for g in graph.groups for p in g.producers}
    assert "multiply three searched widths" in " ".join(graph.notes)
    x = token_batch(2)
    check_all_gates_on_is_the_supernet(model, x)
    check_random_gates_slim_exactly(model, x, seed=4)


# --- keras_hub backbones (tiny random configs, built offline) ---

LLAMA = dict(vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=WIDTH,
             intermediate_dim=24)
GEMMA = dict(vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=4, num_key_value_heads=1, hidden_dim=WIDTH,
             intermediate_dim=48, head_dim=4)
GEMMA3 = dict(vocabulary_size=VOCABULARY, image_size=16, num_layers=2, num_query_heads=4, num_key_value_heads=2,
              hidden_dim=WIDTH, intermediate_dim=24, head_dim=4, use_sliding_window_attention=True,
              sliding_window_size=3)  # text only (no vision encoder), q/k norms, a window shorter than the sequence


def keras_hub_or_skip():
    return pytest.importorskip("keras_hub")


def randomize_norm_scales(backbone, seed=1):
    """Norm scales away from their initial 1 (Llama) or 0 (Gemma), so that a wrong scale would show."""
    rng = np.random.default_rng(seed)
    for weight in backbone.weights:
        if weight.path.endswith("scale"):
            weight.assign(rng.normal(0.5, 0.3, weight.shape).astype("float32"))
    return backbone


def at_fixed_length(backbone, length=LENGTH):
    """The backbone traced at `length` tokens (same layers and weights): FLOPs need a static length."""
    inputs = {name: keras.Input((length,), dtype="int32", name=name) for name in backbone.input}
    return keras.models.clone_model(backbone, input_tensors=inputs, clone_function=lambda layer: layer)


def backbone_inputs(seed=0, batch=3, length=LENGTH):
    padding = np.ones((batch, length), "int32")
    padding[1, length - 2:] = 0  # a padded sequence: the padding mask must reach every block's attention
    return {"token_ids": token_batch(seed, batch, length), "padding_mask": padding}


def decoder_layer_counts(tokens, width, query_heads, kv_heads, head_dim, mlp):
    """(params, FLOPs) of one decoder block by hand: two RMS norms, grouped-query attention (no biases),
    a gated MLP of `mlp` hidden units (gate, up, down)."""
    params = 2 * width + width * head_dim * (query_heads + 2 * kv_heads) + query_heads * head_dim * width
    params += 3 * width * mlp
    flops = gqa_flops_by_hand(tokens, width, kv_heads, query_heads, head_dim, width) + 3 * tokens * width * mlp
    return params, flops


def backbone_counts(config, mlp, head_dim, tables):
    """`tables`: 2 where the output projection is not tied to the embedding (Llama's default)."""
    params, flops = decoder_layer_counts(LENGTH, WIDTH, config["num_query_heads"], config["num_key_value_heads"],
                                         head_dim, mlp)
    layers = config["num_layers"]
    return tables * VOCABULARY * WIDTH + WIDTH + layers * params, layers * flops  # embeddings, final norm, blocks


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_keras_hub_backbone_wraps_and_slims_exactly(family):
    keras_hub = keras_hub_or_skip()
    keras.utils.set_random_seed(0)
    if family == "llama":
        backbone, config, head_dim, tables = keras_hub.models.LlamaBackbone(**LLAMA), LLAMA, WIDTH // 4, 2
        attention_name, block = "self_attention", "transformer_layer"
    else:  # Gemma's MLP has intermediate_dim // 2 units
        backbone, config, head_dim, tables = keras_hub.models.GemmaBackbone(**GEMMA), GEMMA, 4, 1
        attention_name, block = "attention", "decoder_block"
    model = at_fixed_length(randomize_norm_scales(backbone))
    params, flops = backbone_counts(config, 24, head_dim, tables)
    assert figs_tf.count(model, "params") == model.count_params() == params
    assert figs_tf.count(model, "flops") == flops
    slim, architecture = check_wrap_and_slim(model, backbone_inputs(), seed=1)
    for b in range(config["num_layers"]):
        name = f"{block}_{b}.{attention_name}"
        attention = slim.get_layer(name)
        assert attention.num_key_value_heads == architecture[f"{name}/kv_groups"]
        assert attention.num_query_heads == architecture[f"{name}/kv_groups"] * architecture[f"{name}/query_slots"]
    assert "RMS normalization" in " ".join(figs_tf.analyze(model).notes)


@pytest.mark.tensorflow_only
def test_llama_closed_group_and_slot_keep_the_head_width():
    keras_hub = keras_hub_or_skip()
    keras.utils.set_random_seed(1)
    model = at_fixed_length(randomize_norm_scales(keras_hub.models.LlamaBackbone(**LLAMA)))
    search = figs_tf.wrap(model, cost="flops")
    set_all_logits(search, 30.0)
    set_group_logits(search, "transformer_layer_0.self_attention/kv_groups", [-30.0, 30.0])
    set_group_logits(search, "transformer_layer_0.self_attention/query_slots", [30.0, -30.0])
    slim = figs_tf.slim(search)
    attention = slim.get_layer("transformer_layer_0.self_attention")
    assert (attention.num_key_value_heads, attention.num_query_heads) == (1, 1)
    assert attention._query_dense.kernel.shape == (WIDTH, 1, WIDTH // 4)  # one head of the original width
    x = backbone_inputs(2)
    expected = to_numpy(search(x, training=False))
    np.testing.assert_allclose(to_numpy(slim(x)), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    kept = decoder_layer_counts(LENGTH, WIDTH, 1, 1, WIDTH // 4, 24)
    full = decoder_layer_counts(LENGTH, WIDTH, 4, 2, WIDTH // 4, 24)
    assert figs_tf.count(slim, "flops") == kept[1] + full[1]
    assert slim.count_params() == 2 * VOCABULARY * WIDTH + WIDTH + kept[0] + full[0]


def greedy_by_hand(search, table, token_ids, padding_mask):
    """Greedy decoding with the search model in inference (`predict_on_batch`): the whole sequence for every token,
    its logits the final hidden state times the (tied or reverse) embedding table."""
    token_ids, padding_mask = token_ids.copy(), padding_mask.astype("int32")
    for position in range(int(padding_mask.sum(axis=1).min()), token_ids.shape[1]):
        hidden = to_numpy(search.predict_on_batch({"token_ids": token_ids, "padding_mask": padding_mask}))
        token_ids[:, position] = (hidden[:, position - 1] @ table.T).argmax(axis=-1)
        padding_mask[:, position] = 1
    return token_ids


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("family", ["llama", "gemma", "gemma3", "mistral", "qwen3", "phi3"])
def test_slim_backbone_generates_what_the_search_model_generates(family):
    """16 greedy tokens from the family's CausalLM on the slim backbone (cached decoding, a cache shaped for the
    most key/value heads any layer keeps) equal greedy decoding by hand with the search model."""
    keras_hub = keras_hub_or_skip()
    keras.utils.set_random_seed(2)
    prompt, new = 5, 16
    models = keras_hub.models
    backbone, causal_lm, block = {
        "llama": lambda: (models.LlamaBackbone(**LLAMA), models.LlamaCausalLM, "transformer_layer_0.self_attention"),
        "gemma": lambda: (models.GemmaBackbone(**dict(GEMMA, num_key_value_heads=2)), models.GemmaCausalLM,
                          "decoder_block_0.attention"),
        "gemma3": lambda: (models.Gemma3Backbone(**GEMMA3), models.Gemma3CausalLM, "decoder_block_0.attention"),
        # a sliding window shorter than the generated sequence
        "mistral": lambda: (models.MistralBackbone(**LLAMA, sliding_window=7), models.MistralCausalLM,
                            "transformer_layer_0.self_attention"),
        "qwen3": lambda: (models.Qwen3Backbone(**LLAMA, head_dim=WIDTH // 4), models.Qwen3CausalLM,
                          "transformer_layer_0.self_attention"),
        "phi3": lambda: (models.Phi3Backbone(**LLAMA), models.Phi3CausalLM, "transformer_layer_0.attention"),
    }[family]()
    embedding = backbone.token_embedding
    embedding.embeddings.assign(np.random.default_rng(0).normal(0, 1, embedding.embeddings.shape).astype("float32"))
    search = figs_tf.wrap(at_fixed_length(randomize_norm_scales(backbone), prompt + new))
    set_all_logits(search, 30.0)
    set_group_logits(search, f"{block}/kv_groups", [-30.0, 30.0])  # layer 0 keeps 1 key/value head, layer 1 two
    set_group_logits(search, f"{block}/query_slots", [30.0, -30.0])
    slim_backbone = figs_tf.keras_hub_backbone(figs_tf.slim(search), backbone)
    assert [b.num_key_value_heads for b in slim_backbone.transformer_layers] == [1, 2]
    language_model = causal_lm(backbone=slim_backbone, preprocessor=None)
    language_model.compile(sampler="greedy", jit_compile=False)
    token_ids = np.zeros((2, prompt + new), "int32")
    token_ids[:, :prompt] = token_batch(5, 2, prompt)
    padding_mask = np.zeros((2, prompt + new), bool)
    padding_mask[:, :prompt] = True
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    if family == "gemma3":  # keras_hub 0.32's Gemma3CausalLM without a preprocessor returns images=None unless given
        inputs["images"] = np.zeros((2, 0, GEMMA3["image_size"], GEMMA3["image_size"], 3), "float32")  # no images
    generated = language_model.generate(inputs, stop_token_ids=None)
    table = to_numpy(embedding.embeddings if embedding.tie_weights else keras.ops.transpose(embedding.reverse_embeddings))
    expected = greedy_by_hand(search, table, token_ids, padding_mask)
    np.testing.assert_array_equal(to_numpy(generated["token_ids"]), expected)



@pytest.mark.tensorflow_only
@pytest.mark.parametrize("family", ["llama3", "mistral", "qwen3", "phi3"])
def test_more_decoder_families_wrap_and_slim_exactly(family):
    """Llama 3, Mistral (a sliding window shorter than the sequence), Qwen3 (q/k norms over the head width, tied
    embedding) and Phi3: the same blocks as Llama's under other names."""
    keras_hub = keras_hub_or_skip()
    keras.utils.set_random_seed(3)
    make = {"llama3": lambda: keras_hub.models.Llama3Backbone(**LLAMA),
            "mistral": lambda: keras_hub.models.MistralBackbone(**LLAMA, sliding_window=3),
            "qwen3": lambda: keras_hub.models.Qwen3Backbone(**LLAMA, head_dim=WIDTH // 4),
            "phi3": lambda: keras_hub.models.Phi3Backbone(**LLAMA)}[family]
    model = at_fixed_length(randomize_norm_scales(make()))
    params, flops = backbone_counts(LLAMA, 24, WIDTH // 4, tables=1 if family == "qwen3" else 2)
    if family == "qwen3":
        params += LLAMA["num_layers"] * 2 * (WIDTH // 4)  # a query and a key norm per layer, over the head width
    assert figs_tf.count(model, "params") == model.count_params() == params
    assert figs_tf.count(model, "flops") == flops
    slim, architecture = check_wrap_and_slim(model, backbone_inputs(4), seed=5)
    attention = "attention" if family == "phi3" else "self_attention"
    for b in range(LLAMA["num_layers"]):
        name = f"transformer_layer_{b}.{attention}"
        layer = slim.get_layer(name)
        query_heads, kv_heads, _ = figs_tf.handlers.handler_for(layer).heads(layer)  # read off the kernels
        assert kv_heads == architecture[f"{name}/kv_groups"]
        assert query_heads == kv_heads * architecture[f"{name}/query_slots"]


def force_gates(search, channels):
    """Logits ±30: exactly the listed channels of each named group open (the search model at that architecture)."""
    graph = figs_tf.channel_graph_of(search)
    gates = figs_tf.gates_of(search)
    logits = np.full(gates.logits.shape, -30.0, "float32")
    for name, kept in channels.items():
        group = next(i for i, g in enumerate(graph.groups) if name in g.producers)
        logits[np.arange(gates.group_slice(group).start, gates.group_slice(group).stop)[kept]] = 30.0
    gates.set_logits(logits)


def logits_of(hidden, embedding):
    return to_numpy(embedding(keras.ops.convert_to_tensor(hidden), reverse=True))


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("family", ["llama", "gemma", "gemma3", "mistral", "qwen3"])
def test_uniform_export_is_a_stock_preset_with_the_search_models_logits(family, tmp_path):
    """The uniform export: one width per kind in every block (the rounded mean of the exported widths, each block's
    most probable channels), a stock config of the family; its logits are the search model's with the gates forced
    to those channels, before and after a round trip through a local preset directory."""
    keras_hub = keras_hub_or_skip()
    keras.utils.set_random_seed(6)
    make = {"llama": lambda: keras_hub.models.LlamaBackbone(**LLAMA),
            "gemma": lambda: keras_hub.models.GemmaBackbone(**dict(GEMMA, num_key_value_heads=2)),
            "gemma3": lambda: keras_hub.models.Gemma3Backbone(**GEMMA3),
            "mistral": lambda: keras_hub.models.MistralBackbone(**LLAMA),
            "qwen3": lambda: keras_hub.models.Qwen3Backbone(**LLAMA, head_dim=WIDTH // 4)}[family]
    backbone = randomize_norm_scales(make())
    search = figs_tf.wrap(at_fixed_length(backbone))
    set_random_gates(search, 7)
    architecture = figs_tf.export_architecture(search)
    logits = to_numpy(figs_tf.gates_of(search).logits)
    with_heads = family != "llama"  # Llama's config derives the head width from hidden_dim // num_query_heads
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config, channels = figs_tf.uniform_widths(search, backbone)
    blocks = [block.name for block in backbone.transformer_layers]
    graph = figs_tf.channel_graph_of(search)
    rounded_heads = []
    for kind in {name[len(blocks[0]) + 1:] for name in channels if name.startswith(blocks[0] + ".")}:
        names = [f"{block}.{kind}" for block in blocks]
        width = max(1, int(np.floor(np.mean([architecture[n] for n in names]) + 0.5)))  # rounded half up
        if "/" in kind:  # kv_groups, query_slots: 2 each in these configs
            rounded_heads.append(width)
            width = width if with_heads else 2
        for name in names:
            assert len(channels[name]) == width
            group = next(i for i, g in enumerate(graph.groups) if name in g.producers)
            own = logits[figs_tf.gates_of(search).group_slice(group)]
            assert own[channels[name]].min() >= np.delete(own, channels[name]).max(initial=-np.inf)
    assert bool(caught) == (not with_heads and min(rounded_heads) < 2)  # warned when heads had to be kept
    attention = f"{blocks[0]}.{'attention' if family.startswith('gemma') else 'self_attention'}"
    kv, slots = len(channels[f"{attention}/kv_groups"]), len(channels[f"{attention}/query_slots"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock = figs_tf.uniform_keras_hub_backbone(search, backbone)
    assert type(stock) is type(backbone)
    assert (stock.num_key_value_heads, stock.num_query_heads) == (kv, kv * slots)
    force_gates(search, channels)
    assert stock.count_params() == figs_tf.exported_network(search).cost("params") < backbone.count_params()
    x = backbone_inputs(8)
    want = logits_of(search(x, training=False), backbone.token_embedding)
    got = logits_of(stock(x), stock.token_embedding)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    stock.save_to_preset(str(tmp_path / "preset"))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path / "preset"))
    assert type(loaded) is type(backbone) and loaded.get_config() == stock.get_config()
    np.testing.assert_array_equal(logits_of(loaded(x), loaded.token_embedding), got)


# --- the residual stream, searched when a CausalLM (logits out) is wrapped ---

def causal_lm_at_fixed_length(language_model, length=LENGTH):
    """A keras_hub CausalLM (preprocessor=None: token ids and padding mask → logits) traced at `length` tokens, its
    backbone too (same layers and weights)."""
    inputs = {name: keras.Input((length,), dtype="int32", name=name) for name in language_model.input}
    return keras.models.clone_model(language_model, input_tensors=inputs, clone_function=lambda layer: (
        at_fixed_length(layer, length) if layer is language_model.backbone else layer))


# family: (backbone arguments, CausalLM class name, head width, embedding tables, attention layer of block 0)
CAUSAL = {
    "llama": (dict(LLAMA), "LlamaCausalLM", WIDTH // 4, 2, "transformer_layer_0.self_attention"),
    "gemma": (dict(GEMMA, num_key_value_heads=2), "GemmaCausalLM", 4, 1, "decoder_block_0.attention"),
    "qwen3": (dict(LLAMA, head_dim=WIDTH // 4), "Qwen3CausalLM", WIDTH // 4, 1, "transformer_layer_0.self_attention"),
    "mistral": (dict(LLAMA), "MistralCausalLM", WIDTH // 4, 2, "transformer_layer_0.self_attention"),
}


STREAM_EPSILON = 0.1  # RMS norms' ε, as large as the activations' mean square: unfolded, ε·n/k would show


def causal_lm(keras_hub, family, epsilon=STREAM_EPSILON, **changes):
    """The family's CausalLM on a tiny random backbone: norm scales away from their initial value, unit-variance
    embeddings (logits far from ties), and an ε that matters (ε·n/k must be folded)."""
    arguments, class_name, _, _, _ = CAUSAL[family]
    backbone_class = getattr(keras_hub.models, class_name.replace("CausalLM", "Backbone"))
    backbone = randomize_norm_scales(backbone_class(**arguments, layer_norm_epsilon=epsilon, **changes))
    rng = np.random.default_rng(0)
    for table in (backbone.token_embedding.embeddings, getattr(backbone.token_embedding, "reverse_embeddings", None)):
        if table is not None:
            table.assign(rng.normal(0, 1, table.shape).astype("float32"))
    return getattr(keras_hub.models, class_name)(backbone, preprocessor=None)


def stream_width(graph):
    return next(group.size for group in graph.groups if "token_embedding" in group.producers)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("family", ["llama", "gemma", "qwen3"])
def test_a_causal_lm_searches_its_residual_stream_exactly(family):
    """Wrapping the CausalLM searches the residual stream as one group (embedding, every residual add, the RMS
    norms, the projections in and out, the tied or reverse output projection); counts equal count_params and a hand
    count; every gate on gives the CausalLM's logits; random gates: the slim model (narrower stream, norms with
    √(n/k)·scale and ε·n/k) computes the search model's logits."""
    keras_hub = keras_hub_or_skip()
    keras.utils.set_random_seed(11)
    arguments, _, head_dim, tables, attention = CAUSAL[family]
    language_model = causal_lm(keras_hub, family)
    model = causal_lm_at_fixed_length(language_model)
    mlp = arguments["intermediate_dim"] // (2 if family == "gemma" else 1)
    params, flops = backbone_counts(arguments, mlp, head_dim, tables)
    if family == "qwen3":
        params += arguments["num_layers"] * 2 * head_dim  # a query and a key norm per layer, over the head width
    assert figs_tf.count(model, "params") == model.count_params() == params
    assert figs_tf.count(model, "flops") == flops + LENGTH * WIDTH * VOCABULARY  # + the logits
    graph = figs_tf.analyze(model)
    assert stream_width(graph) == WIDTH
    assert f"{attention}/query_slots" not in {p for g in graph.groups for p in g.producers}
    assert "multiply three searched widths" in " ".join(graph.notes)
    x = backbone_inputs(12)
    np.testing.assert_array_equal(to_numpy(model(x)), to_numpy(language_model(x)))
    slim, architecture = check_wrap_and_slim(model, x, seed=13)
    kept = architecture["token_embedding"]
    assert kept < WIDTH and slim.get_layer("token_embedding").output_dim == kept
    assert slim.output.shape[-1] == VOCABULARY
    final = "final_normalization" if family == "gemma" else "sequence_output_layernorm"
    assert slim.get_layer(final).epsilon == pytest.approx(STREAM_EPSILON * WIDTH / kept, rel=1e-12)
    assert slim.get_layer(final).scale.shape == (kept,)


def test_a_functional_decoder_searches_its_residual_stream():
    """keras.layers.RMSNormalization and GroupQueryAttention, logits out: the stream is one group; with it searched
    every query slot is kept (a query projection of three searched widths), with the note."""
    model = gqa_decoder(stream_out=False)
    assert figs_tf.count(model, "params") == model.count_params() == decoder_params_by_hand()
    assert figs_tf.count(model, "flops") == decoder_flops_by_hand()
    graph = figs_tf.analyze(model)
    sizes = {producer: group.size for group in graph.groups for producer in group.producers}
    assert sizes["embedding"] == WIDTH and "attention/query_slots" not in sizes
    assert "multiply three searched widths" in " ".join(graph.notes)
    x = token_batch(3)
    check_all_gates_on_is_the_supernet(model, x)
    _, slim, network = check_random_gates_slim_exactly(model, x, seed=2)
    kept = network.architecture()["embedding"]
    assert kept < WIDTH and slim.get_layer("final_norm").scale.shape == (kept,)


@pytest.mark.tensorflow_only
def test_a_layer_norm_causal_lm_keeps_its_stream_out_with_the_note():
    """GPT2CausalLM: its tied output projection is read like Llama's, but LayerNormalization (mean and variance over
    the channels) keeps the residual stream out of search."""
    keras_hub = keras_hub_or_skip()
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=VOCABULARY, num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=16, max_sequence_length=LENGTH)
    language_model = keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)
    model = causal_lm_at_fixed_length(language_model)
    graph = figs_tf.analyze(model)
    assert "token_embedding" not in {p for g in graph.groups for p in g.producers}
    assert "(LayerNormalization) mixes channels" in " ".join(graph.notes)
    assert figs_tf.count(model, "params") == model.count_params()
    check_wrap_and_slim(model, backbone_inputs(14), seed=15)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_a_slim_causal_lm_generates_what_the_search_model_generates(family):
    """The slim CausalLM's layers back in a backbone of the family (a narrower stream; Gemma's embedding still
    scaled by the searched √hidden_dim): the family's CausalLM generates 16 greedy tokens (cached decoding) equal to
    greedy decoding with the search model in inference, and its logits on them are the search model's."""
    keras_hub = keras_hub_or_skip()
    keras.utils.set_random_seed(16)
    prompt, new = 5, 16
    language_model = causal_lm(keras_hub, family)
    search = figs_tf.wrap(causal_lm_at_fixed_length(language_model, prompt + new))
    set_random_gates(search, 17)
    kept = figs_tf.export_architecture(search)["token_embedding"]
    slim_backbone = figs_tf.keras_hub_backbone(figs_tf.slim(search), language_model.backbone)
    assert slim_backbone.token_embedding.output_dim == kept < WIDTH
    generator = type(language_model)(backbone=slim_backbone, preprocessor=None)
    generator.compile(sampler="greedy", jit_compile=False)
    token_ids = np.zeros((2, prompt + new), "int32")
    token_ids[:, :prompt] = token_batch(5, 2, prompt)
    padding_mask = np.zeros((2, prompt + new), "int32")
    padding_mask[:, :prompt] = 1
    generated = to_numpy(generator.generate({"token_ids": token_ids, "padding_mask": padding_mask.astype(bool)},
                                            stop_token_ids=None)["token_ids"])
    expected, padding, gaps = token_ids.copy(), padding_mask.copy(), []
    for position in range(prompt, prompt + new):  # greedy by hand: the search model's logits, whole sequence
        logits = to_numpy(search.predict_on_batch({"token_ids": expected, "padding_mask": padding}))[:, position - 1]
        top = np.sort(logits, axis=-1)
        gaps.append((top[:, -1] - top[:, -2]).min())
        expected[:, position], padding[:, position] = logits.argmax(axis=-1), 1
    assert min(gaps) > 1e-3  # no near-tie: the tokens are not decided by rounding
    np.testing.assert_array_equal(generated, expected)
    want = to_numpy(search({"token_ids": expected, "padding_mask": padding}, training=False))
    got = to_numpy(generator({"token_ids": expected, "padding_mask": padding}))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("family", ["mistral", "gemma", "llama"])
def test_uniform_export_of_a_causal_lm_carries_the_slim_stream(family, tmp_path):
    """A CausalLM's search exported uniformly: the stock config takes the stream's exported width as hidden_dim
    and ε·n/k as layer_norm_epsilon (Gemma's embedding table √n/√k and its final norm √k/√n besides); Llama's
    config derives the head width from hidden_dim, so it keeps the stream (with a warning). The family's CausalLM
    on it gives the search model's logits with the gates forced to the exported channels, before and after a
    preset round trip."""
    keras_hub = keras_hub_or_skip()
    keras.utils.set_random_seed(18)
    language_model = causal_lm(keras_hub, family)
    backbone = language_model.backbone
    search = figs_tf.wrap(causal_lm_at_fixed_length(language_model))
    set_random_gates(search, 19)
    kept = figs_tf.export_architecture(search)["token_embedding"]
    assert kept < WIDTH
    width = WIDTH if family == "llama" else kept
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config, channels = figs_tf.uniform_widths(search, backbone)
        stock = figs_tf.uniform_keras_hub_backbone(search, backbone)
    assert any("whole residual stream" in str(w.message) for w in caught) == (family == "llama")
    assert config["hidden_dim"] == stock.hidden_dim == len(channels["token_embedding"]) == width
    assert stock.layer_norm_epsilon == pytest.approx(STREAM_EPSILON * WIDTH / width, rel=1e-12)
    force_gates(search, channels)
    assert stock.count_params() == figs_tf.exported_network(search).cost("params")
    x = backbone_inputs(20)
    want = to_numpy(search(x, training=False))
    got = to_numpy(type(language_model)(stock, preprocessor=None)(x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    stock.save_to_preset(str(tmp_path / "preset"))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path / "preset"))
    np.testing.assert_array_equal(to_numpy(type(language_model)(loaded, preprocessor=None)(x)), got)


def test_uniform_export_refuses_a_model_that_is_no_keras_hub_backbone():
    model = gqa_decoder()
    with pytest.raises(ValueError, match="uniform export writes configs of"):
        figs_tf.uniform_widths(figs_tf.wrap(model), model)


@pytest.mark.tensorflow_only
def test_gemma3_text_wraps_and_slims_exactly():
    """Gemma3Backbone without a vision encoder: q/k norms over the head width, a sliding window shorter than the
    sequence, Gemma3's own RMS norms and MLP (intermediate_dim units)."""
    keras_hub = keras_hub_or_skip()
    keras.utils.set_random_seed(9)
    model = at_fixed_length(randomize_norm_scales(keras_hub.models.Gemma3Backbone(**GEMMA3)))
    params, flops = backbone_counts(GEMMA3, GEMMA3["intermediate_dim"], GEMMA3["head_dim"], tables=1)
    params += GEMMA3["num_layers"] * 2 * GEMMA3["head_dim"]  # a query and a key norm per layer
    assert figs_tf.count(model, "params") == model.count_params() == params
    assert figs_tf.count(model, "flops") == flops
    slim, architecture = check_wrap_and_slim(model, backbone_inputs(9), seed=10)
    for b in range(GEMMA3["num_layers"]):
        name = f"decoder_block_{b}.attention"
        attention = slim.get_layer(name)
        assert attention.num_key_value_heads == architecture[f"{name}/kv_groups"]
        assert attention.num_query_heads == architecture[f"{name}/kv_groups"] * architecture[f"{name}/query_slots"]
        assert attention.query_norm.scale.shape == (GEMMA3["head_dim"],)
    assert "RMS normalization" in " ".join(figs_tf.analyze(model).notes)


@pytest.mark.tensorflow_only
def test_gemma3_bidirectional_attention_is_refused_with_the_reason():
    keras_hub = keras_hub_or_skip()
    model = at_fixed_length(keras_hub.models.Gemma3Backbone(**GEMMA3, use_bidirectional_attention=True))
    with pytest.raises(figs_tf.UnsupportedLayerError, match="attends bidirectionally"):
        figs_tf.analyze(model)
