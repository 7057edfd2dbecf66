"""Tries every backbone class keras_hub exports at a tiny random config (built offline, no preset, no download).

For each backbone this script builds it from the tiny constructor arguments in
`TINY` below, runs it once on a random input, and then:

1. wraps it, `figs_tf.wrap(model, cost="params")` (parameters need no fixed
   sequence length, so variable-length backbones are wrapped as built);
2. checks `figs_tf.count(model, "params") == model.count_params()`;
3. with every gate on, checks that the search model computes what the backbone
   computes (`search(x, training=False)` against `model(x, training=False)`);
4. with random gates, checks that `figs_tf.slim(search)` computes
   `search(x, training=False)` and that its `count_params()` is the exported
   parameter count.

Each backbone ends in one outcome:

- `searched`: all checks pass and at least one channel group is searched (the
  row says how many groups and channels, and summarises
  `figs_tf.analyze(model).notes`);
- `nothing searched`: it wraps and computes the backbone, but no channel is
  searched (the notes say why);
- `refused`: `figs_tf.wrap` raised one of figs_tf's own errors
  (`UnsupportedLayerError`, `GraphError`); the row shows its first line;
- `check failed` / `error`: a check above failed, or figs_tf raised something
  else (a bug to report);
- `cannot build tiny config` / `not tried`: the backbone could not be built or
  run at a tiny config offline, or was not attempted, with the reason.

Backbones run in a worker subprocess, one after another; a backbone that hangs
past `--timeout` seconds or crashes the worker is recorded as such, and a fresh
worker goes on with the rest.

Usage:

    PYTHONPATH=. python benchmarks/keras_hub_zoo.py                 # every backbone, a text table
    PYTHONPATH=. python benchmarks/keras_hub_zoo.py --markdown      # the README's table
    PYTHONPATH=. python benchmarks/keras_hub_zoo.py --only ViTBackbone,BertBackbone --timeout 120

The module imports neither TensorFlow nor keras_hub at import time: `TINY`,
`NOT_TRIED` and `exported_backbone_names()` can be read without building
anything (tests/test_keras_hub_zoo.py does).
"""

import argparse
import importlib.util
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

# Set in the worker (`_worker`): these names are imported lazily, so that listing the table is instant.
keras = None
keras_hub = None
np = None
figs_tf = None

LENGTH = 8  # a variable sequence length is run at this many positions
VOCABULARY = 50


# --- tiny configurations ----------------------------------------------------------------------------------------

def _encoder(**extra):
    """A BERT-sized encoder: 2 layers, 2 heads, width 16, MLP 32, 50 tokens."""
    return dict(vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, **extra)


def _decoder(**extra):
    """A grouped-query decoder: 2 layers, 4 query heads over 2 key/value heads, width 16, MLP 32."""
    return dict(vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=16,
                intermediate_dim=32, **extra)


def _models():
    return keras_hub.models


def _resnet(stacks=2, image=32, block_type="basic_block", filters=(64, 8, 16, 16), **extra):
    """keras_hub requires 64 filters in the first stack; its first basic block has no projection shortcut, so
    the stem has 64 filters too."""
    return _models().ResNetBackbone(
        input_conv_filters=[64 if block_type == "basic_block" else 8], input_conv_kernel_sizes=[3], stackwise_num_filters=list(filters[:stacks]),
        stackwise_num_blocks=[1] * stacks, stackwise_num_strides=[1] + [2] * (stacks - 1), block_type=block_type,
        image_shape=(image, image, 3) if image else (None, None, 3), **extra)


def _vit(**extra):
    kwargs = dict(image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32)
    kwargs.update(extra)
    return _models().ViTBackbone(**kwargs)


def _mit(image=32):
    return _models().MiTBackbone(layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
                                 layerwise_sr_ratios=[4, 2], max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3],
                                 layerwise_strides=[4, 2], image_shape=(image, image, 3), hidden_dims=[8, 16])


def _dinov2(**extra):
    kwargs = dict(patch_size=4, num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32,
                  image_shape=(16, 16, 3), position_embedding_shape=(16, 16, 3))
    kwargs.update(extra)
    return _models().DINOV2Backbone(**kwargs)


def _hgnetv2(**extra):
    return _models().HGNetV2Backbone(
        depths=[1, 1], embedding_size=8, hidden_sizes=[16, 32], stem_channels=[3, 8, 8], hidden_act="relu",
        use_learnable_affine_block=False, stackwise_stage_filters=[[8, 8, 16, 1, 1, 3], [16, 8, 32, 1, 1, 3]],
        apply_downsample=[False, True], use_lightweight_conv_block=[False, False], **extra)


def _vit_det(image=16, patch=2, **extra):
    return _models().ViTDetBackbone(hidden_size=8, num_layers=2, intermediate_dim=16, num_heads=2,
                                    global_attention_layer_indices=[1], image_shape=(image, image, 3),
                                    patch_size=patch, num_output_channels=8, window_size=2, **extra)


def _clip_like(family):
    """CLIP and MetaCLIP 2 share their constructor: a ViT image tower and a causal text tower."""
    vision = getattr(_models(), f"{family}VisionEncoder")(patch_size=4, hidden_dim=16, num_layers=2, num_heads=2,
                                                          intermediate_dim=32, image_shape=(16, 16, 3))
    text = getattr(_models(), f"{family}TextEncoder")(VOCABULARY, 16, 16, 2, 2, 32, max_sequence_length=LENGTH)
    return getattr(_models(), f"{family}Backbone")(vision, text, projection_dim=8)  # towers unnamed, as built


def _siglip():
    m = _models()
    # the towers named, as the README says (unnamed, both towers' layers are named alike and figs_tf refuses)
    vision = m.SigLIPVisionEncoder(patch_size=4, hidden_dim=16, num_layers=2, num_heads=2, intermediate_dim=32,
                                   image_shape=(16, 16, 3), name="vision")
    text = m.SigLIPTextEncoder(VOCABULARY, 16, 16, 2, 2, 32, max_sequence_length=LENGTH, name="text")
    return m.SigLIPBackbone(vision, text)


def _blip2():
    from keras_hub.src.models.blip2.blip2_custom_opt import BLIP2CustomOPT
    from keras_hub.src.models.blip2.blip2_qformer import BLIP2QFormer
    from keras_hub.src.models.blip2.blip2_vision_encoder import BLIP2VisionEncoder
    vision = BLIP2VisionEncoder(image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16,
                                intermediate_dim=32, use_patch_bias=True, use_class_token=True, use_mha_bias=True,
                                use_mlp_bias=True, dropout_rate=0.0, layer_norm_epsilon=1e-6, initializer_range=0.02)
    qformer = BLIP2QFormer(num_query_tokens=2, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
                           vision_dim=16, cross_attention_frequency=1, dropout=0.0, layer_norm_epsilon=1e-6)
    language = BLIP2CustomOPT(vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=16,
                              intermediate_dim=32, num_query_tokens=2, dropout=0.0, max_sequence_length=16,
                              qformer_hidden_dim=8)
    return _models().BLIP2Backbone(vision, qformer, language)


def _sam():
    from keras_hub.src.models.sam.sam_mask_decoder import SAMMaskDecoder
    from keras_hub.src.models.sam.sam_prompt_encoder import SAMPromptEncoder
    image_encoder = _vit_det(image=32, patch=4)
    prompt = SAMPromptEncoder(hidden_size=8, image_embedding_size=(8, 8), input_image_size=(32, 32),
                              mask_in_channels=4)
    decoder = SAMMaskDecoder(hidden_size=8, num_layers=1, intermediate_dim=16, num_heads=2, embedding_dim=8,
                             num_multimask_outputs=3, iou_head_depth=1, iou_head_hidden_dim=8)
    return _models().SAMBackbone(image_encoder, prompt, decoder)


def _sam3():
    m, layers = _models(), keras_hub.layers  # the parts are keras_hub.layers
    image = (28, 28, 3)  # two 14-pixel patches a side
    return m.SAM3PromptableConceptBackbone(
        vision_encoder=layers.SAM3VisionEncoder(
            image_shape=image, patch_size=14, num_layers=2, hidden_dim=16, intermediate_dim=32, num_heads=2,
            fpn_hidden_dim=16, fpn_scale_factors=[4.0, 2.0, 1.0, 0.5], pretrain_image_shape=(42, 42, 3),
            window_size=2, global_attn_indexes=[1]),
        text_encoder=layers.SAM3TextEncoder(vocabulary_size=VOCABULARY, embedding_dim=16, hidden_dim=16, num_layers=1,
                                       num_heads=2, intermediate_dim=32, max_sequence_length=LENGTH),
        geometry_encoder=layers.SAM3GeometryEncoder(num_layers=1, hidden_dim=16, intermediate_dim=32, num_heads=2,
                                               roi_size=7),
        detr_encoder=layers.SAM3DetrEncoder(num_layers=1, hidden_dim=16, intermediate_dim=32, num_heads=2),
        detr_decoder=layers.SAM3DetrDecoder(image_shape=image, patch_size=14, num_layers=1, hidden_dim=16,
                                       intermediate_dim=32, num_heads=2, num_queries=4),
        mask_decoder=layers.SAM3MaskDecoder(num_upsampling_stages=3, hidden_dim=16, num_heads=2))


def _dfine():
    hgnet = _hgnetv2(image_shape=(None, None, 3), out_features=["stage1", "stage2"])
    return _models().DFineBackbone(
        backbone=hgnet, decoder_in_channels=[16, 16], encoder_hidden_dim=16, num_labels=4, num_denoising=0,
        learn_initial_query=False, num_queries=4, anchor_image_size=(32, 32), feat_strides=[4, 8],
        num_feature_levels=2, hidden_dim=16, encoder_in_channels=[16, 32], encode_proj_layers=[1],
        num_attention_heads=2, encoder_ffn_dim=32, num_encoder_layers=1, hidden_expansion=0.5, depth_multiplier=0.5,
        eval_idx=-1, num_decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, decoder_n_points=[2, 2],
        lqe_hidden_dim=8, num_lqe_layers=1, out_features=["stage1", "stage2"], image_shape=(32, 32, 3), seed=0)


def _stable_diffusion_3():
    from keras_hub.src.models.vae.vae_backbone import VAEBackbone
    m = _models()
    vae = VAEBackbone([32, 32], [1, 1], [32, 32], [1, 1], sampler_method="mode", name="vae")  # GroupNorm: 32 groups
    clip_l = m.CLIPTextEncoder(VOCABULARY, 16, 16, 2, 2, 32, "quick_gelu", -2, max_sequence_length=LENGTH,
                               name="clip_l")
    clip_g = m.CLIPTextEncoder(VOCABULARY, 16, 16, 2, 2, 32, "gelu", -2, max_sequence_length=LENGTH, name="clip_g")
    return m.StableDiffusion3Backbone(
        mmdit_patch_size=2, mmdit_hidden_dim=16, mmdit_num_layers=1, mmdit_num_heads=2, mmdit_position_size=16,
        mmdit_qk_norm=None, mmdit_dual_attention_indices=None, vae=vae, clip_l=clip_l, clip_g=clip_g,
        image_shape=(32, 32, 3))


def _text_only(name, **kwargs):
    return lambda: getattr(_models(), name)(**kwargs)


_GEMMA3N = dict(text_vocab_size=VOCABULARY, text_hidden_size=16, num_hidden_layers=1, pad_token_id=0,
                num_attention_heads=2, num_key_value_heads=1, head_dim=8, intermediate_size=[32],
                hidden_activation="gelu_approximate", layer_types=["full_attention"], sliding_window=4,
                rope_theta=10000.0, max_position_embeddings=16, vocab_size_per_layer_input=VOCABULARY,
                hidden_size_per_layer_input=2, altup_num_inputs=2, laurel_rank=1)
_LINEAR_ATTENTION = dict(layer_types=["linear_attention", "full_attention"], linear_num_key_heads=2,
                         linear_num_value_heads=2, linear_key_head_dim=4, linear_value_head_dim=4,
                         linear_conv_kernel_dim=4)
_T5GEMMA = dict(vocabulary_size=VOCABULARY, encoder_hidden_dim=16, encoder_intermediate_dim=32, encoder_num_layers=1,
                encoder_num_attention_heads=2, encoder_num_key_value_heads=1, encoder_head_dim=8,
                encoder_layer_types=["full_attention"], decoder_hidden_dim=16, decoder_intermediate_dim=32,
                decoder_num_layers=1, decoder_num_attention_heads=2, decoder_num_key_value_heads=1,
                decoder_head_dim=8, decoder_layer_types=["full_attention"])
_SMOLLM = dict(vocabulary_size=VOCABULARY, hidden_dim=16, intermediate_dim=32, num_layers=2, num_attention_heads=4,
               num_key_value_heads=2, attention_bias=False, attention_dropout=0.0,
               rope_layer_enabled_list=[True, False], layer_types=["attention", "attention"], mlp_bias=False,
               layer_norm_epsilon=1e-5, max_position_embeddings=16, rope_theta=10000.0, partial_rotary_factor=1.0)
_MOBILENET_V5 = dict(
    stackwise_block_types=[["er"], ["uir", "uir"]], stackwise_num_blocks=[1, 2], stackwise_num_filters=[[8], [16, 16]],
    stackwise_strides=[[2], [2, 1]], stackwise_act_layers=[["relu"], ["relu", "relu"]],
    stackwise_exp_ratios=[[2.0], [2.0, 2.0]], stackwise_se_ratios=[[0.0], [0.0, 0.0]],
    stackwise_dw_kernel_sizes=[[0], [3, 3]], stackwise_dw_start_kernel_sizes=[[0], [0, 0]],
    stackwise_dw_end_kernel_sizes=[[0], [0, 0]], stackwise_exp_kernel_sizes=[[3], [0, 0]],
    stackwise_pw_kernel_sizes=[[1], [0, 0]], stackwise_num_heads=[[0], [0, 0]], stackwise_key_dims=[[0], [0, 0]],
    stackwise_value_dims=[[0], [0, 0]], stackwise_kv_strides=[[0], [0, 0]], stackwise_use_cpe=[[False], [False, False]],
    stem_size=8, num_features=32, use_msfa=False, image_shape=(32, 32, 3))
_MOBILENET_V3 = dict(
    stackwise_expansion=[[16], [24]], stackwise_num_blocks=[1, 1], stackwise_num_filters=[[8], [16]],
    stackwise_kernel_size=[[3], [5]], stackwise_num_strides=[[2], [2]], stackwise_se_ratio=[[None], [0.25]],
    stackwise_activation=[["relu"], ["hard_swish"], ["hard_swish"]], stackwise_padding=[[1], [2]],
    output_num_filters=32, depthwise_filters=8, depthwise_stride=2, depthwise_residual=False, last_layer_filter=32,
    squeeze_and_excite=0.5, input_num_filters=8, image_shape=(32, 32, 3))
_EFFICIENTNET = dict(stackwise_kernel_sizes=[3, 3], stackwise_num_repeats=[1, 2], stackwise_input_filters=[8, 8],
                     stackwise_output_filters=[8, 16], stackwise_strides=[1, 2], input_shape=(32, 32, 3),
                     stackwise_width_coefficients=[1.0, 1.0], stackwise_depth_coefficients=[1.0, 1.0],
                     num_features=32, stackwise_force_input_filters=[0, 0], stackwise_nores_option=[False, False])

# One entry per backbone tried: a function building it at a tiny random config. A class tried at several
# configurations has one entry per configuration, named "<class> (<variant>)".
TINY = {
    "AlbertBackbone": _text_only("AlbertBackbone", **_encoder(embedding_dim=8, max_sequence_length=16)),
    "BASNetBackbone": lambda: _models().BASNetBackbone(
        image_encoder=_resnet(stacks=4, image=None), num_classes=1, image_shape=(32, 32, 3),
        projection_filters=64),  # its own stem feeds the ResNet stacks, which expect 64 channels
    "BLIP2Backbone": _blip2,
    "BartBackbone": _text_only("BartBackbone", **_encoder(max_sequence_length=16)),
    "BertBackbone": _text_only("BertBackbone", **_encoder(max_sequence_length=16)),
    "BloomBackbone": _text_only("BloomBackbone", **_encoder()),
    "CLIPBackbone": lambda: _clip_like("CLIP"),
    "CSPNetBackbone": _text_only(
        "CSPNetBackbone", stem_filters=8, stem_kernel_size=3, stem_strides=1, stackwise_depth=[1, 1],
        stackwise_strides=[1, 2], stackwise_num_filters=[8, 16], block_type="bottleneck_block", stage_type="csp",
        bottle_ratio=[0.5], block_ratio=[1.0], expand_ratio=[2.0], cross_linear=True, image_shape=(16, 16, 3)),
    "DFineBackbone": _dfine,
    "DINOV2Backbone": _dinov2,
    "DINOV3Backbone": _text_only("DINOV3Backbone", patch_size=4, num_layers=2, hidden_dim=16, num_heads=2,
                                 intermediate_dim=32, num_register_tokens=2, image_shape=(16, 16, 3)),
    "DebertaV3Backbone": _text_only("DebertaV3Backbone", **_encoder(max_sequence_length=16, bucket_size=4)),
    "DeepLabV3Backbone": lambda: _models().DeepLabV3Backbone(
        image_encoder=_resnet(stacks=3), spatial_pyramid_pooling_key="P4", upsampling_size=4, dilation_rates=[2, 4],
        low_level_feature_key="P2", projection_filters=8, image_shape=(32, 32, 3)),
    "DeiTBackbone": _text_only("DeiTBackbone", image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2,
                               hidden_dim=16, intermediate_dim=32),
    "DenseNetBackbone": _text_only("DenseNetBackbone", stackwise_num_repeats=[1, 1], image_shape=(16, 16, 3),
                                   growth_rate=8),
    "DepthAnythingBackbone": lambda: _models().DepthAnythingBackbone(
        image_encoder=_dinov2(num_layers=4, image_shape=(32, 32, 3), position_embedding_shape=(32, 32, 3),
                              apply_layernorm=True),
        reassemble_factors=[4, 2, 1, 0.5], neck_hidden_dims=[8, 8, 8, 8], fusion_hidden_dim=8, head_hidden_dim=8,
        head_in_index=-1, feature_keys=["stage1", "stage2", "stage3", "stage4"]),
    "DistilBertBackbone": _text_only("DistilBertBackbone", **_encoder(max_sequence_length=16)),
    "ESM2Backbone": _text_only("ESM2Backbone", **_encoder(max_sequence_length=16)),
    "ESMBackbone": _text_only("ESMBackbone", **_encoder(max_sequence_length=16, position_embedding_type="absolute")),
    "EdRecBackbone": _text_only("EdRecBackbone", vocab_size=VOCABULARY, num_layers_enc=1, num_layers_dec=1,
                                hidden_dim=16, intermediate_dim=32, num_heads=2),
    "EfficientNetBackbone (v1)": _text_only(
        "EfficientNetBackbone", **_EFFICIENTNET, stackwise_expansion_ratios=[1, 2],
        stackwise_squeeze_and_excite_ratios=[0.25, 0.25], stackwise_block_types=["v1", "v1"]),
    "EfficientNetBackbone (v2: fused, unfused)": _text_only(
        "EfficientNetBackbone", **_EFFICIENTNET, stackwise_expansion_ratios=[1, 2],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.25], stackwise_block_types=["fused", "unfused"]),
    "ElectraBackbone": _text_only("ElectraBackbone", vocab_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=16,
                                  embedding_dim=8, intermediate_dim=32, max_sequence_length=16),
    "FNetBackbone": _text_only("FNetBackbone", vocabulary_size=VOCABULARY, num_layers=2, hidden_dim=16,
                               intermediate_dim=32, max_sequence_length=16),
    "FalconBackbone": _text_only("FalconBackbone", vocabulary_size=VOCABULARY, num_layers=2, num_attention_heads=2,
                                 hidden_dim=16, intermediate_dim=32),
    "FluxBackbone": _text_only("FluxBackbone", input_channels=8, hidden_size=16, mlp_ratio=2.0, num_heads=2, depth=1,
                               depth_single_blocks=1, axes_dim=[2, 2, 4], theta=10000, use_bias=True,
                               image_shape=(8, 8), text_shape=(8, 16), image_ids_shape=(8, 3),
                               text_ids_shape=(8, 3), y_shape=(16,)),
    "GPT2Backbone": _text_only("GPT2Backbone", **_encoder(max_sequence_length=16)),
    "GPTNeoXBackbone": _text_only("GPTNeoXBackbone", **_encoder(max_sequence_length=16)),
    "Gemma3Backbone": _text_only("Gemma3Backbone", **_decoder(image_size=16, head_dim=4)),
    "Gemma3nBackbone": _text_only("Gemma3nBackbone", **_GEMMA3N),
    "Gemma4Backbone": _text_only("Gemma4Backbone", **_decoder(image_size=16, head_dim=4, sliding_window_size=4)),
    "GemmaBackbone": _text_only("GemmaBackbone", **_decoder(head_dim=4)),
    "GptOssBackbone": _text_only("GptOssBackbone", **_decoder(num_experts=2, top_k=2, sliding_window=4)),
    "HGNetV2Backbone": lambda: _hgnetv2(image_shape=(32, 32, 3)),
    "Llama3Backbone": _text_only("Llama3Backbone", **_decoder()),
    "LlamaBackbone": _text_only("LlamaBackbone", **_decoder()),
    "MetaCLIP2Backbone": lambda: _clip_like("MetaCLIP2"),
    "MiTBackbone": _mit,
    "MistralBackbone": _text_only("MistralBackbone", **_decoder(sliding_window=4)),
    "MixtralBackbone": _text_only("MixtralBackbone", **_decoder(num_experts=2, top_k=2, sliding_window=4)),
    "MobileNetBackbone": _text_only("MobileNetBackbone", **_MOBILENET_V3),
    "MobileNetV5Backbone": _text_only("MobileNetV5Backbone", **_MOBILENET_V5),
    "MoonshineBackbone": _text_only("MoonshineBackbone", vocabulary_size=VOCABULARY, filter_dim=16,
                                    encoder_num_layers=1, decoder_num_layers=1, hidden_dim=16, intermediate_dim=32,
                                    encoder_num_heads=2, decoder_num_heads=2, max_position_embeddings=64),
    "OPTBackbone": _text_only("OPTBackbone", **_encoder(max_sequence_length=16)),
    "PARSeqBackbone": lambda: _models().PARSeqBackbone(
        image_encoder=_vit(image_shape=(16, 32, 3), patch_size=(4, 8), use_class_token=False),
        vocabulary_size=VOCABULARY, max_label_length=LENGTH, decoder_hidden_dim=16, num_decoder_layers=1,
        num_decoder_heads=2, decoder_mlp_dim=32, dropout_rate=0.0, attention_dropout=0.0),
    "PaliGemmaBackbone": _text_only("PaliGemmaBackbone", **_decoder(
        image_size=16, head_dim=4, vit_patch_size=4, vit_num_heads=2, vit_hidden_dim=8, vit_num_layers=1,
        vit_intermediate_dim=16)),
    "Phi3Backbone": _text_only("Phi3Backbone", **_decoder(max_sequence_length=16, pretraining_sequence_length=16)),
    "Qwen2Backbone": _text_only("Qwen2Backbone", **_decoder()),
    "Qwen3Backbone": _text_only("Qwen3Backbone", **_decoder(head_dim=4)),
    "Qwen3MoeBackbone": _text_only("Qwen3MoeBackbone", **_decoder(head_dim=4, moe_intermediate_dim=8, num_experts=2,
                                                                  top_k=2)),
    "Qwen3_5Backbone": _text_only("Qwen3_5Backbone", **_decoder(head_dim=8, **_LINEAR_ATTENTION)),  # rotary: 2 of 8
    "Qwen3_5MoeBackbone": _text_only("Qwen3_5MoeBackbone", vocabulary_size=VOCABULARY, num_layers=2,
                                     num_query_heads=4, num_key_value_heads=2, head_dim=8, hidden_dim=16,
                                     moe_intermediate_dim=8, shared_expert_intermediate_size=8, num_experts=2,
                                     top_k=2, **_LINEAR_ATTENTION),
    "QwenBackbone": _text_only("QwenBackbone", **_decoder()),
    "QwenMoeBackbone": _text_only("QwenMoeBackbone", **_decoder(moe_intermediate_dim=8,
                                                                shared_expert_intermediate_dim=16, num_experts=2,
                                                                top_k=2)),
    "RWKV7Backbone": _text_only("RWKV7Backbone", hidden_size=16, head_size=4, num_layers=2,
                                vocabulary_size=VOCABULARY, intermediate_dim=32, gate_lora=8, mv_lora=8, aaa_lora=8,
                                decay_lora=8),
    "ResNetBackbone (v1, basic blocks)": lambda: _resnet(stacks=2, image=16),
    "ResNetBackbone (v2, bottleneck)": lambda: _resnet(stacks=2, image=16, block_type="bottleneck_block",
                                                       use_pre_activation=True),
    "RetinaNetBackbone": lambda: _models().RetinaNetBackbone(
        image_encoder=_resnet(stacks=4), min_level=3, max_level=5, use_p5=False, image_shape=(32, 32, 3)),
    "RobertaBackbone": _text_only("RobertaBackbone", **_encoder(max_sequence_length=16)),
    "RoformerV2Backbone": _text_only("RoformerV2Backbone", **_encoder(head_size=8)),
    "SAM3PromptableConceptBackbone": _sam3,
    "SAMBackbone": _sam,
    "SegFormerBackbone": lambda: _models().SegFormerBackbone(image_encoder=_mit(), projection_filters=8),
    "SigLIPBackbone": _siglip,
    "SmolLM3Backbone": _text_only("SmolLM3Backbone", **_SMOLLM),
    "SmolLMBackbone": _text_only("SmolLMBackbone", **_SMOLLM),
    "StableDiffusion3Backbone": _stable_diffusion_3,
    "SwinTransformerBackbone": _text_only("SwinTransformerBackbone", image_shape=(32, 32, 3), embed_dim=8,
                                          depths=(1, 1), num_heads=(2, 2), window_size=4, drop_path=0.0),
    "T5Backbone": _text_only("T5Backbone", **_encoder()),
    "T5Gemma2Backbone": _text_only("T5Gemma2Backbone", **_T5GEMMA),
    "T5GemmaBackbone": _text_only("T5GemmaBackbone", **_T5GEMMA),
    "VGGBackbone": _text_only("VGGBackbone", stackwise_num_repeats=[1, 1], stackwise_num_filters=[8, 16],
                              image_shape=(16, 16, 3)),
    "ViTBackbone": _vit,
    "ViTDetBackbone": _vit_det,
    "VideoPrismBackbone": _text_only("VideoPrismBackbone", num_frames=2, patch_size=4, hidden_dim=16,
                                     intermediate_dim=32, num_heads=2, num_spatial_layers=1, num_temporal_layers=1,
                                     num_auxiliary_layers=1, image_shape=(16, 16, 3)),
    "WhisperBackbone": _text_only("WhisperBackbone", **_encoder(num_mels=8, max_encoder_sequence_length=16,
                                                                max_decoder_sequence_length=16)),
    "XLMRobertaBackbone": _text_only("XLMRobertaBackbone", **_encoder(max_sequence_length=16)),
    "XLNetBackbone": _text_only("XLNetBackbone", **_encoder()),
    "XceptionBackbone": _text_only("XceptionBackbone", stackwise_conv_filters=[[8, 16], [16, 16]],
                                   stackwise_pooling=[False, True], image_shape=(32, 32, 3)),
}

# Backbones not attempted, with the reason.
NOT_TRIED = {
    "FeaturePyramidBackbone": "a base class with no architecture of its own (it adds the `pyramid_outputs` "
                              "property to `Backbone`); its subclasses (ResNet, CSPNet, HGNetV2, MiT, ...) are "
                              "tried instead",
}

# Positions used for an input dimension that is None (default LENGTH), per backbone and input name.
INPUT_LENGTHS = {
    "MoonshineBackbone": {"encoder_input_values": 2048, "encoder_padding_mask": 2048},
    "SAMBackbone": {"points": 1, "labels": 1, "boxes": 1, "masks": 0},
    "SAM3PromptableConceptBackbone": {"boxes": 1, "box_labels": 1},
}


def class_name(entry):
    """"ResNetBackbone (v2, bottleneck)" -> "ResNetBackbone"."""
    return entry.split(" ", 1)[0]


def exported_backbone_names():
    """The backbone classes `keras_hub.models` exports, read from its source without importing it (no TensorFlow).

    The same list as `[n for n in dir(keras_hub.models) if n.endswith("Backbone") and n != "Backbone"]`
    (the worker checks that they agree). None without keras_hub.
    """
    spec = importlib.util.find_spec("keras_hub")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "__init__.py")
    with open(path) as f:
        source = f.read()
    return sorted(set(re.findall(r"\bas (\w+Backbone)\b", source)))


# --- the worker: one backbone at a time ---------------------------------------------------------------------------

def _first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


def _random_inputs(model, lengths, rng):
    """A batch of 2 for each of the model's inputs: int token ids below 8, masks of ones (the second sequence
    padded at its last two positions), segment ids and labels 0/1, floats uniform in [0, 1)."""
    def one(tensor):
        name = tensor.name.split(":")[0]
        shape = [2] + [lengths.get(name, LENGTH) if d is None else d for d in tensor.shape[1:]]
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if dtype == "bool" or ("mask" in name and "int" in dtype):
            value = np.ones(shape, dtype)
            if len(shape) == 2 and shape[1] > 2:
                value[1, -2:] = 0
            return value
        if "int" in dtype:
            high = 2 if "segment" in name or "label" in name else 8
            return rng.integers(0, high, shape).astype(dtype)
        return rng.random(shape).astype(dtype)

    if isinstance(model.input, dict):
        return {name: one(tensor) for name, tensor in model.input.items()}
    if isinstance(model.input, (list, tuple)):
        return [one(tensor) for tensor in model.input]
    return one(model.input)


def _max_difference(got, want):
    """max |got - want| relative to max |want| over every output."""
    worst = 0.0
    for g, w in zip(keras.tree.flatten(got), keras.tree.flatten(want), strict=True):
        g, w = keras.ops.convert_to_numpy(g).astype("float64"), keras.ops.convert_to_numpy(w).astype("float64")
        if g.shape != w.shape:
            return float("inf")
        if w.size:
            worst = max(worst, float(np.abs(g - w).max() / max(1.0, np.abs(w).max())))
    return worst


def _summarise_notes(notes, width=70):
    """The distinct reasons of the notes (what follows "because", layer names left out), each cut at `width`."""
    reasons = []
    for note in notes:
        reason = note.split("because ", 1)[1] if "because " in note else note
        reason = re.sub(r"\[?'[^']*'\]? ?", "", reason).split(":")[0].strip(" .;")
        reason = re.sub(r"^\(([^)]*)\)", r"\1", re.sub(r" \((those of )?\)", "", reason))
        reason = reason if len(reason) <= width else reason[:width - 1] + "…"
        if reason not in reasons:
            reasons.append(reason)
    return "; ".join(reasons)


def survey_one(entry, tolerance=1e-4):
    """Builds, wraps and checks one backbone; returns a dict (outcome, detail, numbers)."""
    from figs_tf.wrapping import gates_of
    result = {"backbone": entry}
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    try:
        model = TINY[entry]()
        x = _random_inputs(model, INPUT_LENGTHS.get(class_name(entry), {}), rng)
        want = model(x, training=False)
    except Exception as error:  # pylint: disable=broad-except  # the survey records every failure
        return dict(result, outcome="cannot build tiny config", detail=_first_line(error))
    result["params"] = int(model.count_params())
    try:
        search = figs_tf.wrap(model, cost="params")
        graph = figs_tf.analyze(model)
    except (figs_tf.UnsupportedLayerError, figs_tf.GraphError) as error:
        return dict(result, outcome="refused", detail=_first_line(error))
    except Exception as error:  # pylint: disable=broad-except
        return dict(result, outcome="error", detail=f"figs_tf.wrap: {_first_line(error)}")
    groups = len(graph.groups)
    result.update(groups=groups, channels=int(sum(g.size for g in graph.groups)),
                  notes=_summarise_notes(graph.notes), num_notes=len(graph.notes))
    failures = []
    try:
        counted = figs_tf.count(model, "params")
        if counted != model.count_params():
            failures.append(f"figs_tf.count(model, \"params\") {counted} != count_params() {model.count_params()} "
                            f"(by {model.count_params() - counted})")
        gates = gates_of(search)
        if groups:
            gates.set_logits(np.full(gates.logits.shape, 30.0, "float32"))
        difference = _max_difference(search(x, training=False), want)
        result["gates_on_difference"] = difference
        if not difference <= tolerance:
            failures.append(f"all gates on: search differs from the backbone by {difference:.2g}")
        if groups:
            gates.set_logits(rng.normal(0.5, 2.0, gates.logits.shape).astype("float32"))
            network = figs_tf.exported_network(search)
            slim = figs_tf.slim(search)
            difference = _max_difference(slim(x, training=False), search(x, training=False))
            result["slim_difference"] = difference
            result["slim_params"] = int(slim.count_params())
            if not difference <= tolerance:
                failures.append(f"random gates: slim differs from search by {difference:.2g}")
            if slim.count_params() != network.cost("params"):
                failures.append(f"slim count_params() {slim.count_params()} != exported {network.cost('params')}")
    except Exception as error:  # pylint: disable=broad-except
        failures.append(_first_line(error))
    if failures:
        return dict(result, outcome="check failed", detail="; ".join(failures))
    if not groups:
        return dict(result, outcome="nothing searched", detail=result["notes"])
    return dict(result, outcome="searched", detail=result["notes"])


def _worker(entries):
    global keras, keras_hub, np, figs_tf  # pylint: disable=global-statement
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy
    import keras as keras_module
    import keras_hub as keras_hub_module
    import figs_tf as figs_tf_module
    keras, keras_hub, np, figs_tf = keras_module, keras_hub_module, numpy, figs_tf_module
    exported = sorted(n for n in dir(keras_hub.models) if n.endswith("Backbone") and n != "Backbone")
    if exported != exported_backbone_names():
        print("@@WARNING exported_backbone_names() differs from dir(keras_hub.models)", flush=True)
    out = sys.stdout
    sys.stdout = sys.stderr  # keras_hub and Keras print to stdout: keep the protocol lines alone there
    for entry in entries:
        out.write(f"@@START {entry}\n")
        out.flush()
        start = time.time()
        result = survey_one(entry)
        result["seconds"] = round(time.time() - start, 1)
        out.write("@@RESULT " + json.dumps(result) + "\n")
        out.flush()


# --- the parent: runs workers, survives hangs and crashes ---------------------------------------------------------

def _reader(stream, lines):
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_survey(entries, timeout, log=sys.stderr):
    """Runs `entries` in worker subprocesses; returns one result dict per entry (in order)."""
    results, remaining = {}, list(entries)
    while remaining:
        command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(remaining)]
        worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lines = queue.Queue()
        threading.Thread(target=_reader, args=(worker.stdout, lines), daemon=True).start()
        current, deadline = None, time.time() + timeout + 120  # the first backbone also waits for the imports
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                worker.kill()
                worker.wait()
                name = current or remaining[0]
                results[name] = {"backbone": name, "outcome": "timed out",
                                 "detail": f"no result within {timeout} s (the worker was stopped)"}
                remaining.remove(name)
                break
            if line is None:  # the worker ended
                code = worker.wait()
                if current is not None and current not in results:
                    results[current] = {"backbone": current, "outcome": "crashed",
                                        "detail": f"the worker process exited with code {code}"}
                    remaining.remove(current)
                elif current is None:
                    raise RuntimeError(f"the survey worker exited with code {code} before starting: "
                                       f"run `{' '.join(command)}` to see why")
                break
            if line.startswith("@@START "):
                current = line[len("@@START "):].strip()
                deadline = time.time() + timeout
            elif line.startswith("@@RESULT "):
                result = json.loads(line[len("@@RESULT "):])
                results[result["backbone"]] = result
                remaining.remove(result["backbone"])
                print(f"{result['backbone']}: {result['outcome']} ({result.get('seconds', '?')} s)", file=log,
                      flush=True)
            elif line.startswith("@@WARNING "):
                print(line.strip(), file=log, flush=True)
    return [results[entry] for entry in entries]


def _cell(text):
    text = re.sub(r"keras_hub\.src\.[\w.]*\.(\w+)", r"`\1`", str(text))
    text = re.sub(r"keras\.src\.[\w.]*\.(\w+)", r"`\1` (a `keras.ops` call)", text)
    text = text.split(". Either register one")[0].split(". Use a layer with")[0]
    text = text if len(text) <= 200 else text[:199] + "…"
    return text.replace("|", "\\|").replace("\n", " ")


def _searched_cell(result):
    if "groups" not in result:
        return ""
    cell = f"{result['groups']} groups, {result['channels']} channels" if result["groups"] else "0"
    return cell


def markdown_table(results):
    rows = ["| backbone | outcome | searched | why channels are kept out of search, or why nothing is |", "|---|---|---|---|"]
    for r in results:
        rows.append(f"| `{r['backbone']}` | {r['outcome']} | {_searched_cell(r)} | {_cell(r.get('detail', ''))} |")
    return "\n".join(rows)


def text_table(results):
    width = max(len(r["backbone"]) for r in results)
    return "\n".join(f"{r['backbone']:<{width}}  {r['outcome']:<24}  {_searched_cell(r):<26}  {r.get('detail', '')}"
                     for r in results)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--only", help="comma-separated backbone classes (every configuration of each)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (the README's)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per backbone (default 180)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(json.loads(args.worker))
        return 0
    exported = exported_backbone_names()
    if exported is None:
        parser.error("keras_hub is not installed (pip install keras-hub)")
    untabled = sorted(set(exported) - {class_name(e) for e in TINY} - set(NOT_TRIED))
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {class_name(e) for e in TINY} - set(NOT_TRIED)
        if unknown:
            parser.error(f"--only: no tiny configuration for {sorted(unknown)}; known: "
                         f"{', '.join(sorted({class_name(e) for e in TINY} | set(NOT_TRIED)))}")
        entries = [e for e in TINY if class_name(e) in wanted]
        skipped = [n for n in NOT_TRIED if n in wanted]
    else:
        entries, skipped = list(TINY), list(NOT_TRIED)
    start = time.time()
    results = run_survey(entries, args.timeout) if entries else []
    results += [{"backbone": n, "outcome": "not tried", "detail": NOT_TRIED[n]} for n in skipped]
    results += [{"backbone": n, "outcome": "not tried", "detail": "no tiny configuration in the survey's table"}
                for n in ([] if args.only else untabled)]
    results.sort(key=lambda r: r["backbone"].lower())
    print(markdown_table(results) if args.markdown else text_table(results))
    counts = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    print(f"\n{len(results)} rows in {time.time() - start:.0f} s: "
          + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
