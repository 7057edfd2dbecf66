"""keras_hub's SwinTransformerBackbone at a tiny random config (built offline): it wraps, exports and slims exactly.

Its windowed attention (relative position bias, shifted windows) has one gate per head; the MLP widths are
searched; the residual stream and the patch merging's 4C concatenation stay out of search (LayerNorms).
keras_hub is an optional dependency (in the `test` extra); these tests skip without it.
"""

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.channel_sets import groups_in, num_channels

from helpers import check_wrap_and_slim, to_numpy

keras_hub = pytest.importorskip("keras_hub")

pytestmark = pytest.mark.tensorflow_only  # keras_hub imports TensorFlow under every backend

# 16x16 images in 2x2 patches: stage 0 at 8x8 (width 8, 2 heads), stage 1 at 4x4 (width 16, 4 heads); windows of
# 3x3 tokens, so both stages are zero-padded to whole windows (9x9 and 6x6), and the second block of stage 0 is
# shifted by one token (the shifted windows' mask).
SWIN = dict(image_shape=(16, 16, 3), embed_dim=8, depths=(2, 1), num_heads=(2, 4), window_size=3, patch_size=2,
            mlp_ratio=1.5)


def images(shape, seed=0):
    return np.random.default_rng(seed).random((2,) + shape).astype(np.float32)


def tiny_swin(**changes):
    keras.utils.set_random_seed(0)
    model = keras_hub.models.SwinTransformerBackbone(**{**SWIN, **changes})
    rng = np.random.default_rng(1)
    for layer in model._flatten_layers(include_self=False, recursive=True):  # pylint: disable=protected-access
        for weight in layer.weights:
            if weight.path.endswith("relative_position_bias_table"):  # truncated normal σ 0.02: make heads differ
                weight.assign(rng.normal(0, 1.0, weight.shape).astype("float32"))
    return model


def check_backbone(model, x):
    """The issue's acceptance, on one search model (wrapping a Swin backbone is the slow part): parameters counted
    as Keras does; `check_wrap_and_slim` (every gate on computes the backbone; random gates slim exactly, with the
    exported size and multiply-adds); a fresh build of the exported architecture has them too; the slim model's
    searched layers have the exported widths, some cut.
    Returns (graph, slim, architecture)."""
    assert figs_tf.count(model, "params") == model.count_params()
    slim, architecture = check_wrap_and_slim(model, x, seed=0)
    fresh = figs_tf.build_from_architecture(model, architecture)
    assert fresh.count_params() == slim.count_params()
    assert figs_tf.count(fresh, "flops") == figs_tf.count(slim, "flops")
    graph = figs_tf.analyze(model)
    full = {name: num_channels(channel_set) for name, _, channel_set in graph.width_entries() if groups_in(channel_set)}
    assert any(architecture[name] < width for name, width in full.items())
    for layer in slim.layers:
        width = getattr(layer, "units", getattr(layer, "num_heads", None))
        key = f"{layer.name}/heads" if hasattr(layer, "num_heads") else layer.name
        if key in full and architecture[key]:
            assert width == architecture[key], layer.name
    return graph, slim, architecture


def attention_flops(positions, tokens, width_in, heads, head_dim, width_out):
    """One windowed attention by hand: qkv, QKᵀ and AV over every window's token pairs, the projection."""
    windows = positions // tokens
    return (positions * width_in * 3 * heads * head_dim + 2 * windows * tokens * tokens * heads * head_dim
            + positions * heads * head_dim * width_out)


def swin_flops(config, heads_of, hidden_of):
    """The backbone's multiply-adds by hand (square images, windows smaller than every stage); heads_of(stage,
    block) and hidden_of(stage, block): the widths kept. The attention runs on the image zero-padded to whole
    windows."""
    side, window = config["image_shape"][0] // config["patch_size"], config["window_size"]
    width = config["embed_dim"]
    flops = side * side * config["patch_size"] ** 2 * 3 * width
    for stage, depth in enumerate(config["depths"]):
        head_dim = width // config["num_heads"][stage]
        padded = -(-side // window) * window
        for block in range(depth):
            flops += attention_flops(padded * padded, window * window, width, heads_of(stage, block), head_dim, width)
            flops += 2 * side * side * width * hidden_of(stage, block)
        if stage < len(config["depths"]) - 1:
            side //= 2
            flops += side * side * 4 * width * 2 * width
            width *= 2
    return flops


def test_swin_wraps_slims_exactly_and_cuts_heads_and_mlp_widths():
    model = tiny_swin()
    x = images(SWIN["image_shape"])
    full = swin_flops(SWIN, lambda stage, block: SWIN["num_heads"][stage],
                      lambda stage, block: int(SWIN["embed_dim"] * 2 ** stage * SWIN["mlp_ratio"]))
    assert figs_tf.count(model, "flops") == full
    graph, slim, architecture = check_backbone(model, x)
    # searched: each attention's heads and each MLP's hidden width, nothing else (the stream is under LayerNorms)
    producers = {g.producers[0] for g in graph.groups}
    blocks = [f"stage_{s}.blocks_{b}" for s, depth in enumerate(SWIN["depths"]) for b in range(depth)]
    assert producers == {f"{b}.attn/heads" for b in blocks} | {f"{b}.mlp.fc1" for b in blocks}
    # the residual stream is kept out with the reason: the LayerNorms of the patch embedding and of the blocks
    assert any("'patch_embedding.norm' (LayerNormalization)" in note for note in graph.notes)
    assert any("'stage_1.blocks_0.norm1' (LayerNormalization)" in note for note in graph.notes)
    # the slim model's multiply-adds by hand from its own layers' widths
    kept_heads = {name: architecture[f"{name}/heads"] for name in (f"{b}.attn" for b in blocks)}
    kept_hidden = {name: architecture[name] for name in (f"{b}.mlp.fc1" for b in blocks)}
    assert figs_tf.count(slim, "flops") == swin_flops(SWIN, lambda s, b: kept_heads[f"stage_{s}.blocks_{b}.attn"],
                                                      lambda s, b: kept_hidden[f"stage_{s}.blocks_{b}.mlp.fc1"])
    for name, heads in kept_heads.items():
        attention = slim.get_layer(name)
        assert attention.num_heads == heads
        assert tuple(attention.relative_position_bias_table.shape) == (25, heads)  # (2·3 − 1)² offsets per head
    assert any(heads < SWIN["num_heads"][int(name[6])] for name, heads in kept_heads.items())


def test_window_attention_outside_a_block_is_refused_and_its_stand_in_reloads_as_swin_window_attention():
    from figs_tf.handlers.keras_hub_swin import SwinWindowAttention, WindowedAttention  # pylint: disable=g-import-not-at-top
    from keras_hub.src.models.swin_transformer.swin_transformer_layers import WindowAttention  # not exported
    windows = keras.Input((4, 8))
    model = keras.Model(windows, WindowAttention(dim=8, num_heads=2, window_size=2, name="attention")(windows))
    with pytest.raises(figs_tf.UnsupportedLayerError, match="called on windows directly.*SwinTransformerBlock"):
        figs_tf.analyze(model)
    # keras_hub's WindowAttention cannot be rebuilt from its own config: a saved search model's stand-in holds it
    # as a SwinWindowAttention, with the same weights under the same names and the same outputs
    attention = model.get_layer("attention")
    sequence = np.random.default_rng(0).normal(size=(2, 16, 8)).astype(np.float32)
    geometry = dict(input_resolution=(4, 4), window_size=2, shift_size=1)
    stand_in = WindowedAttention(attention, name="attention")
    want = to_numpy(stand_in(sequence, **geometry))
    reloaded = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(stand_in))
    assert type(reloaded.wrapped_layer) is SwinWindowAttention
    reloaded(sequence, **geometry)
    reloaded.set_weights(stand_in.get_weights())
    np.testing.assert_array_equal(to_numpy(reloaded(sequence, **geometry)), want)
