"""keras_hub's vision Transformers (tiny random configs, built offline): DeiT, DINOv2 and SigLIP's vision encoder
wrap, export and slim exactly, their attention heads and MLP widths searched and cut.

keras_hub is an optional dependency (in the `test` extra); these tests skip without it.
"""

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.channel_sets import groups_in, num_channels

from helpers import (check_all_gates_on_is_the_supernet, check_fresh_build_matches_slim,
                     check_random_gates_slim_exactly, to_numpy)

keras_hub = pytest.importorskip("keras_hub")

pytestmark = pytest.mark.tensorflow_only  # keras_hub imports TensorFlow under every backend

HIDDEN, HEADS, MLP = 8, 2, 12


def images(seed=0):
    return np.random.default_rng(seed).random((2, 16, 16, 3)).astype(np.float32)


def randomize(model, seed=0):
    """Random values for every float weight (tokens, layer scales and position embeddings start at zero or one)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "float" in str(weight.dtype):
            weight.assign(rng.normal(0.0, 0.5, weight.shape).astype(weight.dtype))
    return model


def check_backbone(model, x, blocks, fresh_build=True):
    """The issue's acceptance: parameters counted as Keras does; every gate on, the search model computes the
    backbone; random gates slim exactly with the exported parameters and FLOPs; each block's attention heads and
    MLP width are searched and the slim model's layers have the exported widths, some below their full width.
    `blocks` maps each searched entry (`<layer>/heads` or an MLP Dense) to its full width. `fresh_build`: also
    check that `build_from_architecture` builds the slim model's size (about 5 s). Returns (graph, slim)."""
    assert figs_tf.count(model, "params") == model.count_params()
    check_all_gates_on_is_the_supernet(model, x)
    _, slim, network = check_random_gates_slim_exactly(model, x)
    architecture = network.architecture()
    graph = figs_tf.analyze(model)
    searched = {name: num_channels(channel_set) for name, _, channel_set in graph.width_entries()
                if groups_in(channel_set)}
    assert searched == blocks
    assert any(architecture[name] < width for name, width in blocks.items())
    for name in blocks:
        if name.endswith("/heads"):
            layer = slim.get_layer(name[:-len("/heads")])
            assert layer.num_heads == architecture[name], name
        elif architecture[name]:
            assert slim.get_layer(name).units == architecture[name], name
    assert slim.count_params() < model.count_params()
    assert any("LayerNormalization" in note for note in graph.notes)  # the residual stream, kept out
    if fresh_build:
        check_fresh_build_matches_slim(model)
    return graph, slim


def test_deit_wraps_and_slims_exactly():
    model = randomize(keras_hub.models.DeiTBackbone(image_shape=(16, 16, 3), patch_size=4, num_layers=2,
                                                    num_heads=HEADS, hidden_dim=HIDDEN, intermediate_dim=MLP))
    blocks = {}
    for i in (1, 2):
        block = f"deit_encoder.transformer_block_{i}"
        blocks[f"{block}.mha/heads"] = HEADS
        blocks[f"{block}.mlp.dense"] = MLP
    check_backbone(model, images(), blocks)


@pytest.mark.parametrize("swiglu", [False, True], ids=["mlp", "swiglu"])
def test_dinov2_wraps_and_slims_exactly(swiglu):
    """Register tokens, a mask token and position embeddings interpolated from 24x24 to the 16x16 image. A SwiGLU
    MLP splits one Dense's channels in two halves multiplied together: its width is kept out, with the reason."""
    model = randomize(keras_hub.models.DINOV2Backbone(
        patch_size=4, num_layers=2, hidden_dim=HIDDEN, num_heads=HEADS, intermediate_dim=MLP,
        image_shape=(16, 16, 3), position_embedding_shape=(24, 24, 3), num_register_tokens=2,
        use_swiglu_ffn=swiglu))
    blocks = {}
    for i in (0, 1):
        block = f"encoder.layers_{i}"
        blocks[f"{block}.attention.attention/heads"] = HEADS
        if not swiglu:
            blocks[f"{block}.mlp.fc1"] = MLP
    graph, _ = check_backbone(model, {"images": images()}, blocks)
    if swiglu:
        assert any("splits their channels" in note and "encoder.layers_0.mlp.weights_in" in note
                   for note in graph.notes)


def test_dinov3_wraps_and_slims_exactly():
    """DINOv3's gated MLP is searched (gate and up projections one group); its rotary attention is a leaf whose
    heads are kept, with a note; its multiply-adds are counted by hand."""
    model = randomize(keras_hub.models.DINOV3Backbone(
        patch_size=4, num_layers=1, hidden_dim=HIDDEN, num_heads=HEADS, intermediate_dim=MLP,
        image_shape=(16, 16, 3), num_register_tokens=2, use_gated_mlp=True))
    tokens = 1 + 2 + 16  # class, registers, 4x4 patches
    attention = 4 * tokens * HIDDEN * HIDDEN + 2 * tokens * tokens * HIDDEN  # projections, QKᵀ and AV
    assert figs_tf.count(model, "flops") == 16 * 4 * 4 * 3 * HIDDEN + attention + 3 * tokens * HIDDEN * MLP
    blocks = {f"encoder.layers_0.mlp.{dense}": MLP for dense in ("gate_proj", "up_proj")}
    graph, _ = check_backbone(model, {"pixel_values": images()}, blocks)
    assert any("DINOV3Attention" in note and "heads are not searched" in note for note in graph.notes)


def test_siglip_vision_encoder_wraps_and_slims_exactly():
    """The attention-pooling head ("MAP") included: its heads and MLP are searched like the blocks'."""
    from keras_hub.src.models.siglip.siglip_vision_encoder import SigLIPVisionEncoder  # pylint: disable=g-import-not-at-top
    model = randomize(SigLIPVisionEncoder(patch_size=4, hidden_dim=HIDDEN, num_layers=2, num_heads=HEADS,
                                          intermediate_dim=MLP, image_shape=(16, 16, 3)))
    blocks = {}
    for block in ("encoder_block_0", "encoder_block_1"):
        blocks[f"{block}.self_attn/heads"] = HEADS
        blocks[f"{block}.mlp.fc1"] = MLP
    blocks["head.attention/heads"] = HEADS
    blocks["head.mlp.fc1"] = MLP
    check_backbone(model, images(), blocks)


LENGTH = 6


def test_siglip_backbone_both_towers_wrap_and_slim_exactly():
    """Image and text towers (one block each; named, so that their layers' names differ) and the contrastive
    head, whose L2 norms keep the text projection out of search. The text tower is traced at LENGTH tokens.
    (A fresh build is checked on the vision encoder alone, to keep this test short.)"""
    from keras_hub.src.models.siglip.siglip_text_encoder import SigLIPTextEncoder  # pylint: disable=g-import-not-at-top
    from keras_hub.src.models.siglip.siglip_vision_encoder import SigLIPVisionEncoder  # pylint: disable=g-import-not-at-top

    def traced(model, inputs):
        return keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer)

    vision = SigLIPVisionEncoder(patch_size=4, hidden_dim=HIDDEN, num_layers=1, num_heads=HEADS,
                                 intermediate_dim=MLP, image_shape=(16, 16, 3), name="vision")
    text = SigLIPTextEncoder(vocabulary_size=20, embedding_dim=HIDDEN, hidden_dim=HIDDEN, num_layers=1,
                             num_heads=HEADS, intermediate_dim=MLP, max_sequence_length=LENGTH, name="text")
    text = traced(text, {"token_ids": keras.Input((LENGTH,), dtype="int32", name="token_ids")})
    backbone = keras_hub.models.SigLIPBackbone(vision, text)
    model = randomize(traced(backbone, {"images": keras.Input((16, 16, 3), name="images"),
                                        "token_ids": keras.Input((LENGTH,), dtype="int32", name="token_ids")}))
    rng = np.random.default_rng(0)
    x = {"images": images(), "token_ids": rng.integers(0, 20, (3, LENGTH)).astype("int32")}
    blocks = {}
    for block in ("vision_encoder_block_0", "text_encoder_block_0", "vision_head"):
        blocks[f"{block}.{'attention' if block.endswith('head') else 'self_attn'}/heads"] = HEADS
        blocks[f"{block}.mlp.fc1"] = MLP
    graph, _ = check_backbone(model, x, blocks, fresh_build=False)
    assert any("text_head" in note and "SigLIPHead" in note for note in graph.notes)
