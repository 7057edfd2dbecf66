"""Decoder language models: grouped-query attention, RMS norms and gated MLPs searched exactly.

Independent truths: Keras's `count_params`, the unwrapped model's outputs,
and multiply-adds written out by hand below from the layer shapes (QKᵀ and AV
over every pair of the stated sequence length).
"""

import keras
import numpy as np
import pytest

import figs_tf

from helpers import (check_all_gates_on_is_the_supernet, check_random_gates_slim_exactly, set_all_logits,
                     set_group_logits, to_numpy)

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


def gqa_decoder(query_heads=4, kv_heads=2, head_dim=4, mlp=24, searched_query=False, use_gate=False):
    """Embedding → [RMS norm → GQA (causal) → +] → [RMS norm → gated MLP → +] → RMS norm → logits.

    `searched_query`: Dense layers (widths searched) before and after the attention.
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
    return keras.Model(tokens, L.Dense(VOCABULARY, name="logits")(x), name="gqa_decoder")


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
    expected = to_numpy(search(x, training=False))
    np.testing.assert_allclose(to_numpy(slim(x)), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
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
