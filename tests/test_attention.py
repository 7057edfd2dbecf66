"""Embeddings and attention: a text CNN and a functional ViT wrap, export and slim exactly.

Independent truths: Keras's `count_params`, the unwrapped model's outputs, and
multiply-adds written out by hand below from the layer shapes.
"""

import os

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.wrapping import channel_graph_of, gates_of

from helpers import (attention_flops_by_hand, check_all_gates_on_is_the_supernet, check_fresh_build_matches_slim,
                     check_random_gates_slim_exactly, set_all_logits, set_group_logits, to_numpy)

L = keras.layers


def text_cnn(vocabulary=50, length=12, width=16):
    """The issue's text CNN: Embedding → Conv1D → GlobalMaxPooling1D → Dense."""
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    x = L.Embedding(vocabulary, width, name="embedding")(tokens)
    x = L.Conv1D(8, 3, activation="relu", name="conv")(x)
    x = L.GlobalMaxPooling1D(name="pool")(x)
    x = L.Dense(6, activation="relu", name="hidden")(x)
    return keras.Model(tokens, L.Dense(3, name="classes")(x), name="text_cnn")


def functional_vit(blocks=2, width=16, heads=4, key_dim=4, mlp=24, classes=3, class_token=False):
    """A ViT from core layers: Conv2D patches + Reshape, pre-LayerNorm blocks, pooling or the first token."""
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(width, 4, strides=4, name="patches")(image)
    x = L.Reshape((4, width), name="tokens")(x)
    for b in range(blocks):
        y = L.LayerNormalization(name=f"ln_attention_{b}")(x)
        y = L.MultiHeadAttention(heads, key_dim, name=f"attention_{b}")(y, y)
        x = L.Add(name=f"residual_attention_{b}")([x, y])
        y = L.LayerNormalization(name=f"ln_mlp_{b}")(x)
        y = L.Dense(mlp, activation="gelu", name=f"mlp_up_{b}")(y)
        y = L.Dense(width, name=f"mlp_down_{b}")(y)
        x = L.Add(name=f"residual_mlp_{b}")([x, y])
    x = L.LayerNormalization(name="ln_final")(x)
    x = x[:, 0, :] if class_token else L.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(image, L.Dense(classes, name="classes")(x), name="functional_vit")


def vit_flops_by_hand(heads=(4, 4), mlp=(24, 24), width=16, key_dim=4, classes=3, tokens=4, patch_pixels=16):
    """Multiply-adds of `functional_vit` with heads[b] heads and mlp[b] hidden units in block b."""
    flops = tokens * patch_pixels * width + width * classes  # patches, classifier
    for block_heads, block_mlp in zip(heads, mlp, strict=True):
        flops += 3 * tokens * width * block_heads * key_dim  # query, key, value projections
        flops += block_heads * tokens * tokens * key_dim  # QKᵀ
        flops += block_heads * tokens * tokens * key_dim  # AV (value_dim = key_dim)
        flops += tokens * block_heads * key_dim * width  # output projection
        flops += 2 * tokens * width * block_mlp
    return flops


def attention_layers(model):
    return {layer.name: layer for layer in model.layers if isinstance(layer, L.MultiHeadAttention)}


def test_text_cnn_wraps_and_slims_exactly():
    model = text_cnn()
    tokens = np.random.default_rng(0).integers(0, 50, (4, 12))
    assert figs_tf.count(model, "params") == model.count_params()
    # by hand: a lookup costs nothing; conv 10 positions × 3 taps × 16 × 8; dense 8×6 and 6×3
    assert figs_tf.count(model, "flops") == 10 * 3 * 16 * 8 + 8 * 6 + 6 * 3
    check_all_gates_on_is_the_supernet(model, tokens)
    search, slim, network = check_random_gates_slim_exactly(model, tokens)
    width = network.architecture()["embedding"]
    assert slim.get_layer("embedding").output_dim == width < 16
    kept = network.channels()["embedding"]
    np.testing.assert_array_equal(to_numpy(slim.get_layer("embedding").embeddings),
                                  to_numpy(model.get_layer("embedding").embeddings)[:, kept])
    check_fresh_build_matches_slim(model)


def test_untied_reversible_embedding_cuts_both_tables():
    tokens = keras.Input((6,), dtype="int32")
    x = L.ReversibleEmbedding(20, 8, tie_weights=False, name="embedding")(tokens)
    x = L.GlobalAveragePooling1D()(x)
    model = keras.Model(tokens, L.Dense(2, name="classes")(x))
    assert figs_tf.count(model, "params") == model.count_params() == 2 * 20 * 8 + 8 * 2 + 2
    x = np.random.default_rng(1).integers(0, 20, (3, 6))
    check_all_gates_on_is_the_supernet(model, x)
    _, slim, network = check_random_gates_slim_exactly(model, x, seed=3)
    kept = network.channels()["embedding"]
    np.testing.assert_array_equal(to_numpy(slim.get_layer("embedding").reverse_embeddings),
                                  to_numpy(model.get_layer("embedding").reverse_embeddings)[kept])


def test_a_reverse_call_is_refused_with_the_reason():
    tokens = keras.Input((6,), dtype="int32")
    hidden = keras.Input((6, 8))
    embedding = L.ReversibleEmbedding(20, 8, name="embedding")
    model = keras.Model([tokens, hidden], [embedding(tokens), embedding(hidden, reverse=True)])
    with pytest.raises(figs_tf.UnsupportedLayerError, match="reverse=True"):
        figs_tf.analyze(model)
    only_reverse = keras.Model(hidden, L.ReversibleEmbedding(20, 8, name="projection")(hidden, reverse=True))
    with pytest.raises(figs_tf.UnsupportedLayerError, match="reverse=True"):
        figs_tf.analyze(only_reverse)


@pytest.mark.parametrize("class_token", [False, True])
def test_functional_vit_wraps_and_slims_exactly(class_token):
    model = functional_vit(class_token=class_token)
    images = np.random.default_rng(0).random((3, 8, 8, 1)).astype(np.float32)
    assert figs_tf.count(model, "params") == model.count_params()
    assert figs_tf.count(model, "flops") == vit_flops_by_hand()
    check_all_gates_on_is_the_supernet(model, images)
    _, slim, network = check_random_gates_slim_exactly(model, images)
    architecture = network.architecture()
    heads = [architecture[f"attention_{b}/heads"] for b in range(2)]
    assert [slim.get_layer(f"attention_{b}").num_heads for b in range(2)] == heads
    mlp = [architecture[f"mlp_up_{b}"] for b in range(2)]
    assert figs_tf.count(slim, "flops") == vit_flops_by_hand(heads=heads, mlp=mlp) < vit_flops_by_hand()
    check_fresh_build_matches_slim(model)


def test_the_residual_stream_stays_out_of_search_and_the_notes_say_so():
    graph = figs_tf.analyze(functional_vit())
    fixed = {"patches", "attention_0", "mlp_down_0", "attention_1", "mlp_down_1"}
    searched = {name for group in graph.groups for name in group.producers}
    assert searched == {"attention_0/heads", "mlp_up_0", "attention_1/heads", "mlp_up_1"}
    assert not fixed & searched
    notes = " ".join(graph.notes)
    assert "residual stream stays out of search" in notes
    for name in fixed:
        assert f"'{name}'" in notes


def test_a_closed_head_is_cut_out_of_every_kernel():
    model = functional_vit()
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    set_group_logits(search, "attention_0/heads", [30.0, -30.0, 30.0, -30.0])
    slim = figs_tf.slim(search)
    before, after = model.get_layer("attention_0"), slim.get_layer("attention_0")
    assert (before.num_heads, after.num_heads) == (4, 2)
    kept = [0, 2]
    for dense in ("query_dense", "key_dense", "value_dense"):
        np.testing.assert_array_equal(to_numpy(getattr(after, dense).kernel), to_numpy(getattr(before, dense).kernel)[:, kept])
        np.testing.assert_array_equal(to_numpy(getattr(after, dense).bias), to_numpy(getattr(before, dense).bias)[kept])
    np.testing.assert_array_equal(to_numpy(after.output_dense.kernel), to_numpy(before.output_dense.kernel)[kept])
    images = np.random.default_rng(2).random((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(slim(images)), to_numpy(search(images, training=False)), rtol=1e-5, atol=1e-6)
    # every other width is whole: the saving is exactly two heads' weights and multiply-adds
    head_params = 3 * 4 * (16 + 1) + 4 * 16  # q, k, v: 4 columns of 16 weights + bias each; 4 output rows of 16
    assert model.count_params() - slim.count_params() == 2 * head_params
    head_flops = 3 * 4 * 16 * 4 + 2 * 4 * 4 * 4 + 4 * 4 * 16
    assert figs_tf.count(model, "flops") - figs_tf.count(slim, "flops") == 2 * head_flops


def test_excluding_an_attention_layer_keeps_its_heads_too():
    graph = figs_tf.analyze(functional_vit(), exclude=["attention_0"])
    searched = {name for group in graph.groups for name in group.producers}
    assert "attention_0/heads" not in searched and "attention_1/heads" in searched


def test_every_head_closed_keeps_one():
    model = functional_vit(blocks=1)
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    set_group_logits(search, "attention_0/heads", [-30.0, -29.0, -31.0, -30.0])
    assert figs_tf.export_architecture(search)["attention_0/heads"] == 1
    slim = figs_tf.slim(search)
    assert slim.get_layer("attention_0").num_heads == 1
    np.testing.assert_array_equal(to_numpy(slim.get_layer("attention_0").output_dense.kernel),
                                  to_numpy(model.get_layer("attention_0").output_dense.kernel)[[1]])





@pytest.mark.tensorflow_only  # Keras's MultiHeadAttention with value_dim ≠ key_dim fails on JAX's dot_product_attention
def test_cross_attention_counts_and_slims_exactly():
    """Query and key/value of different lengths and widths, value_dim ≠ key_dim, an output width, a gate."""
    query_in, memory_in = keras.Input((5, 6), name="query"), keras.Input((7, 4), name="memory")
    query = L.Dense(10, name="query_proj")(query_in)
    value = L.Dense(9, name="value_proj")(memory_in)
    key = L.Dense(8, name="key_proj")(memory_in)
    y = L.MultiHeadAttention(3, 2, value_dim=5, output_shape=11, use_gate=True, name="cross")(query, value, key)
    model = keras.Model([query_in, memory_in], L.Dense(2, name="classes")(L.Flatten()(y)))
    assert figs_tf.count(model, "params") == model.count_params()
    dense = 5 * 6 * 10 + 7 * 4 * 9 + 7 * 4 * 8 + 5 * 11 * 2
    cross = attention_flops_by_hand(5, 7, 10, 8, 9, 3, 2, 5, 11, pairs=5 * 7, gate=True)
    assert figs_tf.count(model, "flops") == dense + cross
    rng = np.random.default_rng(4)
    x = [rng.random((2, 5, 6)).astype(np.float32), rng.random((2, 7, 4)).astype(np.float32)]
    check_all_gates_on_is_the_supernet(model, x)
    for seed in range(3):
        check_random_gates_slim_exactly(model, x, seed=seed)


def test_attention_over_two_axes_counts_pairs_of_positions():
    image = keras.Input((3, 4, 5))
    y = L.MultiHeadAttention(2, 3, attention_axes=(2,), name="rows")(image, image)  # attends along width only
    model = keras.Model(image, L.Dense(2, name="classes")(L.Flatten()(y)))
    rows = attention_flops_by_hand(12, 12, 5, 5, 5, 2, 3, 3, 5, pairs=3 * 4 * 4)
    assert figs_tf.count(model, "flops") == rows + 3 * 4 * 5 * 2
    x = np.random.default_rng(5).random((2, 3, 4, 5)).astype(np.float32)
    check_all_gates_on_is_the_supernet(model, x)
    check_random_gates_slim_exactly(model, x, seed=1)


def test_a_search_model_with_heads_saves_loads_and_slims_alike(tmp_path):
    model = functional_vit()
    search = figs_tf.wrap(model)
    gates = gates_of(search)
    gates.set_logits(np.random.default_rng(6).normal(0.5, 2.0, gates.logits.shape).astype(np.float32))
    path = os.path.join(tmp_path, "search.keras")
    search.save(path)
    loaded = keras.models.load_model(path)
    assert [g.key for g in channel_graph_of(loaded).groups] == [g.key for g in channel_graph_of(search).groups]
    assert figs_tf.export_architecture(loaded) == figs_tf.export_architecture(search)
    images = np.random.default_rng(7).random((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(figs_tf.slim(loaded)(images)), to_numpy(figs_tf.slim(search)(images)),
                               rtol=1e-5, atol=1e-6)


def test_a_plain_vit_slims_to_a_saved_architecture_with_heads(tmp_path):
    model = functional_vit()
    search = figs_tf.wrap(model)
    gates = gates_of(search)
    gates.set_logits(np.random.default_rng(8).normal(0.5, 2.0, gates.logits.shape).astype(np.float32))
    network = figs_tf.exported_network(search)
    path = os.path.join(tmp_path, "architecture.json")
    figs_tf.save_architecture(network.architecture(), path, channels=network.channels())
    images = np.random.default_rng(9).random((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(figs_tf.slim(model, architecture=path)(images)),
                               to_numpy(figs_tf.slim(search)(images)), rtol=1e-5, atol=1e-6)
    # without the channel lists, heads are ranked by the L1 norm of their output projection
    widths_only = figs_tf.slim(model, architecture=network.architecture())
    assert widths_only.count_params() == network.cost("params")


def test_indexing_the_channel_axis_is_refused():
    x = keras.Input((4, 6))
    model = keras.Model(x, L.Dense(2)(L.Dense(6, name="searched")(x)[:, 0, :3]))
    with pytest.raises(figs_tf.UnsupportedLayerError, match="indexes the channel"):
        figs_tf.analyze(model)


def test_indexing_a_tensor_without_searched_channels_passes_through():
    """A mask or the model's input may be indexed any way (T5's `padding_mask[:, None, :]`): nothing is cut in it."""
    x = keras.Input((4, 6))
    h = L.Dense(5, name="hidden")(x[:, None, 0, :3])  # a new axis and a cut of the input's last axis
    model = keras.Model(x, L.Dense(2, name="head")(h))
    assert [g.key for g in figs_tf.analyze(model).groups] == ["hidden"]
    data = np.random.default_rng(0).random((2, 4, 6)).astype(np.float32)
    check_all_gates_on_is_the_supernet(model, data)
    check_random_gates_slim_exactly(model, data, seed=2)
