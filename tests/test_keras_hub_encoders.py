"""keras_hub's DeBERTaV3 and T5 text encoders (tiny random configs, built offline) wrap, export and slim exactly.

keras_hub is an optional dependency (in the `test` extra); these tests skip without it.
"""

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.channel_sets import groups_in, num_channels

from helpers import check_all_gates_on_is_the_supernet, check_fresh_build_matches_slim, check_random_gates_slim_exactly

keras_hub = pytest.importorskip("keras_hub")

pytestmark = pytest.mark.tensorflow_only  # keras_hub imports TensorFlow under every backend

LENGTH = 8


def at_fixed_length(backbone):
    """The backbone traced at LENGTH tokens (its layers and weights), so that its FLOPs are known."""
    inputs = {name: keras.Input((LENGTH,), dtype="int32", name=name) for name in backbone.input}
    return keras.models.clone_model(backbone, input_tensors=inputs, clone_function=lambda layer: layer)


def tokens(vocabulary, rng, batch=3):
    return rng.integers(0, vocabulary, (batch, LENGTH)).astype("int32")


def padding(batch=3, cut=5):
    mask = np.ones((batch, LENGTH), "int32")
    mask[1, cut:] = 0
    return mask


def check_saved_slim(slim, x, path):
    """The slim model saves and loads (its rebuilt keras_hub layers serialize) and computes the same."""
    slim.save(path)
    loaded = figs_tf.load_model(path)
    for got, want in zip(keras.tree.flatten(loaded(x, training=False)), keras.tree.flatten(slim(x, training=False)),
                         strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want))


def check_backbone(model, x, fresh_build=True):
    """The issue's acceptance: parameters counted as Keras does, every gate on computes the backbone, random gates
    slim exactly (the slim model's parameters and FLOPs are the exported ones), searched widths below full are
    really gone from the slim model's layers; with `fresh_build`, a fresh build of the exported architecture has
    the slim model's size. Returns (graph, slim, architecture)."""
    assert figs_tf.count(model, "params") == model.count_params()
    check_all_gates_on_is_the_supernet(model, x)
    _, slim, network = check_random_gates_slim_exactly(model, x)
    architecture = network.architecture()
    graph = figs_tf.analyze(model)
    full = {name: num_channels(channel_set) for name, _, channel_set in graph.width_entries() if groups_in(channel_set)}
    assert any(architecture[name] < width for name, width in full.items())
    for name, width in full.items():
        layer = slim.get_layer(name.split("/")[0])
        got = layer.num_heads if name.endswith("/heads") else layer.units
        assert got == architecture[name], name
    if fresh_build:
        check_fresh_build_matches_slim(model)
    return graph, slim, architecture


DEBERTA = dict(vocabulary_size=30, num_layers=2, num_heads=4, hidden_dim=16, intermediate_dim=24,
               max_sequence_length=LENGTH, bucket_size=4)


def test_deberta_v3_searches_heads_and_mlp_and_slims_exactly(tmp_path):
    keras.utils.set_random_seed(0)
    model = at_fixed_length(keras_hub.models.DebertaV3Backbone(**DEBERTA))
    rng = np.random.default_rng(0)
    x = {"token_ids": tokens(DEBERTA["vocabulary_size"], rng), "padding_mask": padding()}
    width, heads, mlp, relative = DEBERTA["hidden_dim"], DEBERTA["num_heads"], DEBERTA["intermediate_dim"], 2 * DEBERTA["bucket_size"]
    head = width // heads
    # by hand: Q, K, V of the tokens, Q and K of the relative embeddings, QKᵀ and AV over T×T, content-to-position
    # and position-to-content over T×2·bucket, the output projection; the MLP
    attention = (3 * LENGTH * width * heads * head + 2 * relative * width * heads * head
                 + heads * head * (2 * LENGTH * LENGTH + 2 * LENGTH * relative) + LENGTH * heads * head * width)
    assert figs_tf.count(model, "flops") == DEBERTA["num_layers"] * (attention + 2 * LENGTH * width * mlp)
    graph, slim, architecture = check_backbone(model, x)
    searched = {g.producers[0] for g in graph.groups}
    for i in range(DEBERTA["num_layers"]):
        block = f"disentangled_attention_encoder_layer_{i}"
        assert {f"{block}.self_attention_layer/heads", f"{block}.feedforward_intermediate_dense"} <= searched
        attention = slim.get_layer(f"{block}.self_attention_layer")
        assert attention.attn_head_size == head  # heads are cut whole
    assert any("residual stream" in note for note in graph.notes)
    check_saved_slim(slim, x, tmp_path / "slim.keras")


T5 = dict(vocabulary_size=30, num_layers=2, num_heads=4, hidden_dim=16, intermediate_dim=24)


def test_t5_ties_self_attention_heads_through_the_position_bias_and_slims_exactly(tmp_path):
    keras.utils.set_random_seed(0)
    model = at_fixed_length(keras_hub.models.T5Backbone(**T5))
    rng = np.random.default_rng(0)
    x = {"encoder_token_ids": tokens(T5["vocabulary_size"], rng), "encoder_padding_mask": padding(),
         "decoder_token_ids": tokens(T5["vocabulary_size"], rng), "decoder_padding_mask": padding(cut=3)}
    width, heads, mlp = T5["hidden_dim"], T5["num_heads"], T5["intermediate_dim"]
    # by hand: Q, K, V and output projections, QKᵀ and AV over T×T (no scale, no bias multiply-adds); the gated MLP
    attention = 4 * LENGTH * width * width + 2 * LENGTH * LENGTH * width
    encoder, decoder = attention + 3 * LENGTH * width * mlp, 2 * attention + 3 * LENGTH * width * mlp
    assert figs_tf.count(model, "flops") == T5["num_layers"] * (encoder + decoder)
    # (the fresh build is checked on DeBERTa only: it goes through the same handlers' slim, and T5's encoder-decoder
    # graph makes it the costliest step on this machine)
    graph, slim, architecture = check_backbone(model, x, fresh_build=False)
    searched = {producer for group in graph.groups for producer in group.producers}
    # the first layer of each stack makes the position bias, every later layer reads it: one heads group per stack
    assert {"transformer_encoder_layer_0.self_attention/heads", "transformer_decoder_layer_0.self_attention/heads",
            "transformer_decoder_layer_0.cross_attention/heads", "transformer_decoder_layer_1.cross_attention/heads",
            "transformer_encoder_layer_1.input_projector"} <= searched
    assert not any("layer_1.self_attention/heads" in name for name in searched)
    for stack in ("encoder", "decoder"):
        first = slim.get_layer(f"transformer_{stack}_layer_0.self_attention")
        later = slim.get_layer(f"transformer_{stack}_layer_1.self_attention")
        assert first.num_heads == later.num_heads == architecture[f"transformer_{stack}_layer_1.self_attention/heads"]
        assert tuple(first.relative_attention_bias.shape) == (first.relative_attention_buckets, first.num_heads)
    assert any("RMS normalization" in note for note in graph.notes)
    check_saved_slim(slim, x, tmp_path / "slim.keras")
