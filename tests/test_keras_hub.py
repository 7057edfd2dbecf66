"""keras_hub backbones (tiny configs, built offline): ViT, BERT and GPT-2 wrap, export and slim exactly.

keras_hub is an optional dependency (in the `test` extra); these tests skip
without it.
"""

import keras
import numpy as np
import pytest

import figs_tf

from helpers import (attention_flops_by_hand, check_all_gates_on_is_the_supernet, check_fresh_build_matches_slim,
                     check_random_gates_slim_exactly, set_all_logits, set_group_logits, set_random_gates,
                     to_numpy)

keras_hub = pytest.importorskip("keras_hub")

pytestmark = pytest.mark.tensorflow_only  # keras_hub imports TensorFlow under every backend

L = keras.layers
VIT = dict(image_shape=(8, 8, 1), patch_size=4, num_layers=2, num_heads=4, hidden_dim=16, mlp_dim=24)
BERT = dict(vocabulary_size=30, num_layers=2, num_heads=4, hidden_dim=16, intermediate_dim=24, max_sequence_length=8)
LENGTH = 8


def tiny_vit():
    return keras_hub.models.ViTBackbone(**VIT)


def tiny_vit_classifier(classes=3):
    """The ViT backbone under a class-token head (as ViTImageClassifier reads it)."""
    backbone = tiny_vit()
    images = keras.Input(VIT["image_shape"], name="images")
    features = backbone(images)
    return keras.Model(images, L.Dense(classes, name="classes")(features[:, 0, :]), name="vit_classifier")


def at_fixed_length(backbone):
    """The backbone traced at LENGTH tokens (its own inputs have length None, which leaves FLOPs undefined)."""
    inputs = {name: keras.Input((LENGTH,), dtype="int32", name=name) for name in backbone.input}
    return keras.models.clone_model(backbone, input_tensors=inputs, clone_function=lambda layer: layer)


def tiny_bert():
    return at_fixed_length(keras_hub.models.BertBackbone(**BERT))


def bert_inputs(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    padding = np.ones((batch, LENGTH), "int32")
    padding[1, 5:] = 0  # a padded sequence: the attention mask must reach every block
    return {"token_ids": rng.integers(0, BERT["vocabulary_size"], (batch, LENGTH)).astype("int32"),
            "segment_ids": rng.integers(0, 2, (batch, LENGTH)).astype("int32"), "padding_mask": padding}


def transformer_flops_by_hand(tokens, width, heads, mlp):
    """One Transformer block: attention (key_dim = width // heads) and a two-layer MLP."""
    key_dim = width // heads
    attention = attention_flops_by_hand(tokens, tokens, width, width, width, heads, key_dim, key_dim, width,
                                        pairs=tokens * tokens)
    return attention + 2 * tokens * width * mlp


def test_vit_backbone_wraps_and_slims_exactly():
    model = tiny_vit()
    images = np.random.default_rng(0).random((3, 8, 8, 1)).astype(np.float32)
    assert figs_tf.count(model, "params") == model.count_params()
    tokens = 4 + 1  # four patches and the class token
    patches = 4 * 16 * 16
    assert figs_tf.count(model, "flops") == patches + 2 * transformer_flops_by_hand(tokens, 16, 4, 24)
    check_all_gates_on_is_the_supernet(model, images)
    _, slim, network = check_random_gates_slim_exactly(model, images)
    architecture = network.architecture()
    attentions = {layer.name: layer for layer in slim.layers if isinstance(layer, L.MultiHeadAttention)}
    assert sorted(attentions) == ["vit_encoder.transformer_block_1.mha", "vit_encoder.transformer_block_2.mha"]
    for name, layer in attentions.items():
        assert layer.num_heads == architecture[f"{name}/heads"]
    check_fresh_build_matches_slim(model)


def test_vit_closed_heads_and_hidden_units_are_gone():
    model = tiny_vit_classifier()
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    set_group_logits(search, "vit_encoder.transformer_block_2.mha/heads", [-30.0, 30.0, -30.0, -30.0])
    set_group_logits(search, "vit_encoder.transformer_block_1.mlp.dense_1", [30.0] * 10 + [-30.0] * 14)
    slim = figs_tf.slim(search)
    assert slim.get_layer("vit_encoder.transformer_block_2.mha").num_heads == 1
    assert slim.get_layer("vit_encoder.transformer_block_1.mha").num_heads == 4
    assert slim.get_layer("vit_encoder.transformer_block_1.mlp.dense_1").units == 10
    images = np.random.default_rng(1).random((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(slim(images)), to_numpy(search(images, training=False)), rtol=1e-5, atol=1e-6)
    tokens = 5
    full = 4 * 16 * 16 + 2 * transformer_flops_by_hand(tokens, 16, 4, 24) + 16 * 3
    assert figs_tf.count(model, "flops") == full
    # block 2 keeps one head of key_dim 4 (the key width of the four-head model) and its whole MLP
    one_head = attention_flops_by_hand(tokens, tokens, 16, 16, 16, 1, 4, 4, 16, pairs=tokens * tokens)
    kept = 4 * 16 * 16 + transformer_flops_by_hand(tokens, 16, 4, 10) + one_head + 2 * tokens * 16 * 24 + 16 * 3
    assert figs_tf.count(slim, "flops") == kept


def test_bert_backbone_wraps_and_slims_exactly():
    model = tiny_bert()
    x = bert_inputs()
    assert figs_tf.count(model, "params") == model.count_params()
    pooled = 16 * 16
    assert figs_tf.count(model, "flops") == 2 * transformer_flops_by_hand(LENGTH, 16, 4, 24) + pooled
    check_all_gates_on_is_the_supernet(model, x)
    for seed in range(2):
        _, slim, network = check_random_gates_slim_exactly(model, x, seed=seed)
    architecture = network.architecture()
    for b in range(2):
        name = f"transformer_layer_{b}.self_attention_layer"
        assert slim.get_layer(name).num_heads == architecture[f"{name}/heads"]
        intermediate = f"transformer_layer_{b}.feedforward_intermediate_dense"
        assert slim.get_layer(intermediate).units == architecture[intermediate]
    check_fresh_build_matches_slim(model)
    notes = " ".join(figs_tf.analyze(model).notes)
    assert "residual stream stays out of search" in notes and "'token_embedding'" in notes


def test_bert_at_its_own_variable_length_counts_parameters_and_explains_flops():
    backbone = keras_hub.models.BertBackbone(**BERT)
    assert figs_tf.count(backbone, "params") == backbone.count_params()
    with pytest.raises(figs_tf.UnsupportedLayerError, match="clone_model"):
        figs_tf.count(backbone, "flops")


def test_grouped_query_decoder_at_its_own_variable_length_exports_and_slims():
    """A decoder traced at no fixed length (its masks' last axis unknown) exports and slims under a parameter
    cost, and the slim model runs at any length as the search model does."""
    backbone = keras_hub.models.LlamaBackbone(vocabulary_size=50, num_layers=1, num_query_heads=4,
                                              num_key_value_heads=2, hidden_dim=16, intermediate_dim=32)
    search = figs_tf.wrap(backbone, cost="params")
    set_random_gates(search, seed=3)
    network = figs_tf.exported_network(search)
    slim = figs_tf.slim(search)
    assert slim.count_params() == network.cost("params") < backbone.count_params()
    for length in (5, 9):
        x = {"token_ids": np.arange(1, length + 1)[None], "padding_mask": np.ones((1, length), "int32")}
        want = to_numpy(search(x, training=False))
        np.testing.assert_allclose(to_numpy(slim(x)), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_pre_norm_transformer_encoder_with_token_and_position_embedding():
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    padding = keras.Input((6,), dtype="int32", name="padding_mask")
    x = keras_hub.layers.TokenAndPositionEmbedding(20, 6, 12, name="embedding")(tokens)
    x = keras_hub.layers.TransformerEncoder(20, 3, normalize_first=True, name="block_a")(x, padding_mask=padding)
    x = keras_hub.layers.TransformerEncoder(16, 2, name="block_b")(x)
    x = L.GlobalAveragePooling1D(name="pool")(x)
    model = keras.Model([tokens, padding], L.Dense(2, name="classes")(x))
    rng = np.random.default_rng(3)
    mask = np.ones((3, 6), "int32")
    mask[0, 4:] = 0
    inputs = [rng.integers(0, 20, (3, 6)).astype("int32"), mask]
    assert figs_tf.count(model, "params") == model.count_params()
    assert figs_tf.count(model, "flops") == (transformer_flops_by_hand(6, 12, 3, 20)
                                             + transformer_flops_by_hand(6, 12, 2, 16) + 12 * 2)
    check_all_gates_on_is_the_supernet(model, inputs)
    check_random_gates_slim_exactly(model, inputs, seed=2)


def test_gpt2_backbone_a_decoder_only_family_wraps_and_slims_exactly():
    """Causal self-attention with a padding mask; CachedMultiHeadAttention is rebuilt as MultiHeadAttention."""
    model = at_fixed_length(keras_hub.models.GPT2Backbone(**BERT))
    x = bert_inputs()
    del x["segment_ids"]
    assert figs_tf.count(model, "params") == model.count_params()
    assert figs_tf.count(model, "flops") == 2 * transformer_flops_by_hand(LENGTH, 16, 4, 24)
    check_all_gates_on_is_the_supernet(model, x)
    _, slim, network = check_random_gates_slim_exactly(model, x, seed=1)
    architecture = network.architecture()
    for b in range(2):
        name = f"transformer_layer_{b}.self_attention"
        assert slim.get_layer(name).num_heads == architecture[f"{name}/heads"]
    # the causal mask reaches the slimmed model: a later token does not change an earlier position's output
    changed = dict(x, token_ids=x["token_ids"].copy())
    changed["token_ids"][:, -1] = (changed["token_ids"][:, -1] + 1) % BERT["vocabulary_size"]
    np.testing.assert_allclose(to_numpy(slim(changed))[:, :-1], to_numpy(slim(x))[:, :-1], rtol=1e-5, atol=1e-6)
