"""`figs_tf.keras_hub_backbone`: a slim decoder model back in its keras_hub family, so its CausalLM generates.

`figs_tf.slim` of a wrapped Llama, Llama 3, Mistral, Qwen3, Phi3, Gemma or Gemma3
backbone is a flat functional model
(each block's layers named `<block>.<sublayer>`). keras_hub's CausalLMs
generate through `call_with_cache`, which reads the backbone's blocks, its
embedding and final norm; this module puts the slim layers (weights shared, not
copied) back into blocks and a backbone of the family:

    slim = figs_tf.slim(search)                              # search = figs_tf.wrap(backbone traced at length T)
    lm = keras_hub.models.LlamaCausalLM(figs_tf.keras_hub_backbone(slim, backbone))
    lm.compile(sampler="greedy")
    lm.generate({"token_ids": ids, "padding_mask": mask}, stop_token_ids=None)

Each block keeps its own widths (heads, key/value heads, MLP units), which a
stock keras_hub config cannot hold (it has one `num_query_heads`,
`intermediate_dim` ... for every layer): the blocks are subclasses of the
family's own block class (`SlimLlamaTransformerDecoder`,
`SlimMistralTransformerDecoder`, `SlimQwen3TransformerDecoder`,
`SlimPhi3Decoder`, `SlimGemmaDecoderBlock`, `SlimGemma3DecoderBlock`) made from
the slim layers, and the CausalLM's one key/value cache is shaped for the
largest number of key/value heads (each attention layer reads its first heads:
`PaddedCacheAttention`). The slim model may also be that of a wrapped
CausalLM, whose residual stream was searched: the backbone's stream is then
narrower (`token_embedding.output_dim`), its RMS norms folded. The backbone's
`hidden_dim` stays the searched model's (Gemma's CausalLM scales the embedding
by √hidden_dim), its `num_query_heads` is hidden_dim // head width and its
`head_dim` the head width, which is what the CausalLMs derive the cache's head
width from (Llama and Phi3 the first, Mistral and Qwen3 the second). These
backbones are for generation and evaluation in this process; they are not
serialized (save the slim model, or its weights, instead).
`uniform_keras_hub_backbone` exports a search with one
width per kind in every block as a stock backbone of the family instead,
which saves and loads as a keras_hub preset.

This module reads keras_hub's internal module paths and the blocks' private
sublayer attributes (`_self_attention_layer`, ...).
"""

import inspect
import warnings

import keras
import numpy as np


def _layers_by_name(model):
    return {layer.name: layer for layer in model.layers}


def _sublayers(layers, block, names):
    missing = [f"{block}.{name}" for name in names if f"{block}.{name}" not in layers]
    if missing:
        raise ValueError(f"The slim model has no layers {missing[:4]}: give figs_tf.keras_hub_backbone the model "
                         "figs_tf.slim made from a wrapped backbone of the same family.")
    return {name: layers[f"{block}.{name}"] for name in names}


def _untrack(layer, attribute):
    """Drops a sublayer that a block made in its __init__ and that the slim layer replaces."""
    from figs_tf.handlers.keras_hub_decoders import untrack_sublayer  # pylint: disable=g-import-not-at-top

    old = getattr(layer, attribute, None)
    if old is not None:
        untrack_sublayer(layer, old)


def _variable_length(dense):
    """A slim EinsumDense (built for a fixed length) as one for any length, with the same weights."""
    config = dense.get_config()
    config["output_shape"] = (None,) + tuple(config["output_shape"])[1:]
    rebuilt = keras.layers.EinsumDense.from_config(config)
    rebuilt.build((None, None, dense.kernel.shape[0]))
    rebuilt.set_weights(dense.get_weights())
    return rebuilt


# {slim layer name in the block: the block's attribute}; None: the activation, read off the Activation layer
_LLAMA_PARTS = {"self_attention_layernorm": "_self_attention_layernorm", "self_attention": "_self_attention_layer",
                "self_attention_dropout": "_self_attention_dropout", "feedforward_layernorm": "_feedforward_layernorm",
                "feedforward_gate_dense": "_feedforward_gate_dense",
                "feedforward_intermediate_dense": "_feedforward_intermediate_dense",
                "feedforward_output_dense": "_feedforward_output_dense", "feedforward_activation": None}
_PHI3_PARTS = {"pre_attention_layernorm": "pre_attention_layernorm", "attention": "attention",
               "attention_dropout": "attention_dropout", "post_attention_layernorm": "post_attention_layernorm",
               "feedforward_gate_dense": "feedforward_gate_dense",
               "feedforward_intermediate_dense": "feedforward_intermediate_dense",
               "feedforward_output_dense": "feedforward_output_dense", "feedforward_dropout": "feedforward_dropout",
               "feedforward_activation": None}
_GEMMA_SUBLAYERS = ("pre_attention_norm", "attention", "pre_ffw_norm", "ffw_gating", "ffw_gating_2", "ffw_linear")


def _llama_like_blocks(original, layers, attributes, attention_name):
    """Blocks of the class of `original`'s blocks (LlamaTransformerDecoder and the blocks built like it: Mistral's,
    Qwen3's, Phi3's) holding the slim layers; `attributes`: {slim layer name: the block's attribute}."""
    from figs_tf import handlers  # pylint: disable=g-import-not-at-top

    block_class = type(original.transformer_layers[0])

    class SlimDecoder(block_class):
        """A decoder block of a Llama-like family holding a slim model's layers (its own widths)."""

        def __init__(self, parts, **kwargs):
            super().__init__(**kwargs)
            for name, attribute in attributes.items():
                if attribute is not None:
                    setattr(self, attribute, parts[name])
            self.activation = parts["feedforward_activation"].activation

        def build(self, decoder_sequence_shape):
            self.hidden_dim = decoder_sequence_shape[-1]
            self.built = True  # the slim layers are built

    SlimDecoder.__name__ = SlimDecoder.__qualname__ = f"Slim{block_class.__name__}"
    blocks = []
    for block in original.transformer_layers:
        parts = _sublayers(layers, block.name, tuple(attributes))
        attention = parts[attention_name]
        query_heads, kv_heads, head_width = handlers.handler_for(attention).heads(attention)
        # the block's settings read off its attributes (LlamaTransformerDecoder.get_config fails in keras_hub 0.32);
        # the widths are the slim layers', the head width given where the class takes one (Mistral, Qwen3)
        settings = {name: getattr(block, name) for name in inspect.signature(block_class.__init__).parameters
                    if name not in ("self", "kwargs") and hasattr(block, name)}
        settings.update(intermediate_dim=parts["feedforward_gate_dense"].units, num_query_heads=query_heads,
                        num_key_value_heads=kv_heads)
        if "head_dim" in inspect.signature(block_class.__init__).parameters:
            settings["head_dim"] = head_width
        blocks.append(SlimDecoder(parts, dtype=block.dtype_policy, name=block.name, **settings))
    return blocks, original.layer_norm.name, "decoder_padding_mask"


def _gemma_blocks(original, layers):
    from keras_hub.src.models.gemma.gemma_decoder_block import GemmaDecoderBlock  # pylint: disable=g-import-not-at-top

    return _gemma_like_blocks(original, layers, GemmaDecoderBlock, lambda block: {})


def _gemma3_blocks(original, layers):
    from keras_hub.src.models.gemma3.gemma3_decoder_block import Gemma3DecoderBlock  # pylint: disable=g-import-not-at-top

    return _gemma_like_blocks(original, layers, Gemma3DecoderBlock, lambda block: dict(
        use_query_key_norm=block.use_query_key_norm, gate_dim_reduction=block.gate_dim_reduction,
        rope_wavelength=block.rope_wavelength, rope_scaling_factor=block.rope_scaling_factor,
        use_bidirectional_attention=block.use_bidirectional_attention))


def _gemma_like_blocks(original, layers, block_class, more_settings):
    """Blocks of `block_class` (GemmaDecoderBlock, Gemma3DecoderBlock) holding the slim layers;
    `more_settings(block)`: the class's arguments beyond Gemma's."""

    class SlimGemmaDecoder(block_class):
        """A Gemma decoder block holding a slim model's layers (its own widths)."""

        def __init__(self, parts, **kwargs):
            super().__init__(**kwargs)
            for attribute, name in (("pre_attention_norm", "pre_attention_norm"), ("attention", "attention"),
                                    ("pre_ffw_norm", "pre_ffw_norm"), ("post_attention_norm", None),
                                    ("post_ffw_norm", None)):
                _untrack(self, attribute)
                if name is not None:
                    setattr(self, attribute, parts[name])
            for attribute, name in (("gating_ffw", "ffw_gating"), ("gating_ffw_2", "ffw_gating_2"),
                                    ("ffw_linear", "ffw_linear")):
                _untrack(self, attribute)
                setattr(self, attribute, _variable_length(parts[name]))
            if self.use_post_attention_norm:
                self.post_attention_norm = parts["post_attention_norm"]
            if self.use_post_ffw_norm:
                self.post_ffw_norm = parts["post_ffw_norm"]

        def build(self, input_shape):
            self.built = True  # the slim layers are built

    SlimGemmaDecoder.__name__ = f"Slim{block_class.__name__}"
    blocks = []
    for block in original.transformer_layers:
        names = _GEMMA_SUBLAYERS + (("post_attention_norm",) if block.use_post_attention_norm else ()) + (
            ("post_ffw_norm",) if block.use_post_ffw_norm else ())
        parts = _sublayers(layers, block.name, names)
        attention = parts["attention"]
        reduction = getattr(block, "gate_dim_reduction", 2)  # the MLP has intermediate_dim // reduction units
        blocks.append(SlimGemmaDecoder(
            parts, hidden_dim=layers["token_embedding"].output_dim, intermediate_dim=reduction * parts["ffw_gating"].kernel.shape[-1],
            head_dim=attention.head_dim, num_query_heads=attention.num_query_heads,
            num_key_value_heads=attention.num_key_value_heads,
            query_head_dim_normalize=block.query_head_dim_normalize, use_post_ffw_norm=block.use_post_ffw_norm,
            use_post_attention_norm=block.use_post_attention_norm, logit_soft_cap=block.logit_soft_cap,
            use_sliding_window_attention=block.use_sliding_window_attention,
            sliding_window_size=block.sliding_window_size, layer_norm_epsilon=block.layer_norm_epsilon,
            dropout=block.dropout, dtype=block.dtype_policy, name=block.name, **more_settings(block)))
    return blocks, "final_normalization", "padding_mask"


def _llama_blocks(original, layers):
    return _llama_like_blocks(original, layers, _LLAMA_PARTS, "self_attention")


def _phi3_blocks(original, layers):
    return _llama_like_blocks(original, layers, _PHI3_PARTS, "attention")


_FAMILIES = {"LlamaBackbone": _llama_blocks, "Llama3Backbone": _llama_blocks, "MistralBackbone": _llama_blocks,
             "Qwen3Backbone": _llama_blocks, "Phi3Backbone": _phi3_blocks, "GemmaBackbone": _gemma_blocks,
             "Gemma3Backbone": _gemma3_blocks}


def keras_hub_backbone(slim_model, backbone):
    """A backbone of `backbone`'s keras_hub family made of `slim_model`'s layers (weights shared).

    The family's CausalLM accepts it and generates with it (a key/value cache
    shaped by the kept heads). Each block keeps its own exported widths.

    Args:
      slim_model: `figs_tf.slim` of a search model made from `backbone` (or
        from `backbone` traced at a fixed length), or from the family's
        CausalLM on `backbone` (traced likewise: its residual stream searched).
      backbone: the keras_hub backbone that was wrapped (LlamaBackbone,
        Llama3Backbone, MistralBackbone, Qwen3Backbone, Phi3Backbone,
        GemmaBackbone or Gemma3Backbone (text)): its family, block names and
        settings.

    Returns:
      A backbone of `backbone`'s class (a subclass holding the slim layers),
      taking `{"token_ids", "padding_mask"}` of any length. Its `hidden_dim`
      is `backbone`'s (what the CausalLM reads), its stream's width
      `token_embedding.output_dim`.

    Raises:
      ValueError: a backbone family figs_tf cannot rebuild, or a slim model
        made from another model.

    Example:

    >>> lm = keras_hub.models.GemmaCausalLM(figs_tf.keras_hub_backbone(figs_tf.slim(search), backbone))
    """
    family = _FAMILIES.get(type(backbone).__name__)
    if family is None:
        raise ValueError(f"figs_tf.keras_hub_backbone rebuilds {sorted(_FAMILIES)}, not {type(backbone).__name__}. "
                         "Use the slim functional model itself (figs_tf.slim) for other families.")
    from figs_tf import handlers  # pylint: disable=g-import-not-at-top

    layers = _layers_by_name(slim_model)
    blocks, final_norm, padding_argument = family(backbone, layers)
    embedding = layers["token_embedding"]
    attention = [b._self_attention_layer if hasattr(b, "_self_attention_layer") else b.attention for b in blocks]  # pylint: disable=protected-access
    heads = [handlers.handler_for(a).heads(a) for a in attention]  # (query heads, key/value heads, head width)
    head_width = heads[0][2]
    return _slim_backbone_class(type(backbone))(
        embedding, blocks, layers[final_norm], padding_argument, hidden_dim=backbone.hidden_dim,
        num_query_heads=backbone.hidden_dim // head_width,
        num_key_value_heads=max(kv_heads for _, kv_heads, _ in heads), head_dim=head_width,
        scales_embedding=type(backbone).__name__ in ("GemmaBackbone", "Gemma3Backbone"), dtype=backbone.dtype_policy,
        name=f"{backbone.name}_slim")


def _slim_backbone_class(family_class):
    from keras_hub.src.models.backbone import Backbone  # pylint: disable=g-import-not-at-top

    class SlimBackbone(family_class):
        """A `family_class` backbone built from given layers instead of its config."""

        def __init__(self, token_embedding, transformer_layers, layer_norm, padding_argument, hidden_dim,
                     num_query_heads, num_key_value_heads, head_dim, scales_embedding, dtype=None, **kwargs):
            self.token_embedding = token_embedding
            self.transformer_layers = list(transformer_layers)
            self.layer_norm = layer_norm
            token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
            padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
            x = token_embedding(token_ids)
            if scales_embedding:  # Gemma multiplies the embedding by √hidden_dim: the searched model's
                x = x * keras.ops.cast(keras.ops.sqrt(hidden_dim), x.dtype)
            for block in self.transformer_layers:
                x = block(x, **{padding_argument: padding_mask})
            Backbone.__init__(self, inputs={"token_ids": token_ids, "padding_mask": padding_mask},
                              outputs=layer_norm(x), dtype=dtype, **kwargs)
            self.vocabulary_size = token_embedding.input_dim
            self.num_layers = len(self.transformer_layers)
            # the searched model's, not the slim stream's (token_embedding.output_dim): Gemma's CausalLM scales
            # the embedding by √hidden_dim, Llama's and Phi3's take the cache's head width as
            # hidden_dim // num_query_heads
            self.hidden_dim = hidden_dim
            self.num_query_heads = num_query_heads
            self.num_key_value_heads = num_key_value_heads  # the cache's: the most any layer keeps
            self.head_dim = head_dim
            self.text_only_model = True  # Gemma3CausalLM asks

    SlimBackbone.__name__ = f"Slim{family_class.__name__}"
    return SlimBackbone


# --- uniform widths: a stock config of the family ---

# family: (attention sublayer name, MLP producer name, config units per MLP channel, config holds the head width)
_UNIFORM_FAMILIES = {
    "LlamaBackbone": ("self_attention", "feedforward_gate_dense", 1, False),
    "Llama3Backbone": ("self_attention", "feedforward_gate_dense", 1, False),
    "MistralBackbone": ("self_attention", "feedforward_gate_dense", 1, True),
    "Qwen3Backbone": ("self_attention", "feedforward_gate_dense", 1, True),
    "Phi3Backbone": ("attention", "feedforward_gate_dense", 1, False),
    "GemmaBackbone": ("attention", "ffw_gating", 2, True),  # intermediate_dim is twice each projection's units
    "Gemma3Backbone": ("attention", "ffw_gating", 1, True),
}


def uniform_widths(search, backbone):
    """The uniform architecture of a search model of a keras_hub backbone: stock config values and channels.

    Rule: each searched width (key/value groups, query slots, MLP units) is
    the same in every block: the mean over the blocks of its exported width
    (`figs_tf.exported_network`, ⌊Σπ⌋ per group), rounded half up, at least 1;
    each block keeps that many channels of largest gate logit (the most
    probable; ties to the lower index). The residual stream, where the
    search model is a CausalLM's (one group, the same in every block), keeps
    its exported width: the config's `hidden_dim`, and `layer_norm_epsilon`
    times n/k (every RMS norm over the stream folds it; the slim norms'
    scales are folded by `figs_tf.slim`); its query slots are all kept. Llama,
    Llama 3 and Phi3 configs derive the head width from `hidden_dim //
    num_query_heads`, so for them every head and the whole stream are kept
    (only the MLP width changes), with a warning when the gates close heads or
    stream channels.

    Args:
      search: `figs_tf.wrap` of `backbone` or of the family's CausalLM on it
        (traced at a fixed length).
      backbone: the keras_hub backbone that was wrapped (the CausalLM's).

    Returns:
      (config, channels): `backbone.get_config()` with `num_key_value_heads`,
      `num_query_heads`, `intermediate_dim` (and `head_dim` where the family
      holds it; `hidden_dim` and `layer_norm_epsilon` with the stream
      searched) of the uniform architecture; {width entry name
      ("<block>.<layer>", "<block>.<attention>/kv_groups", "/query_slots",
      "token_embedding"): kept channel indices} of its searched groups.

    Raises:
      ValueError: a backbone family without a uniform export, or a search
        model whose searched groups are not the blocks' heads and MLP units.

    Example:

    >>> config, channels = figs_tf.uniform_widths(search, backbone)
    >>> config["num_key_value_heads"], config["intermediate_dim"]
    """
    from figs_tf import handlers  # pylint: disable=g-import-not-at-top
    from figs_tf import wrapping  # pylint: disable=g-import-not-at-top
    from figs_tf.handlers.per_channel import folded_epsilon  # pylint: disable=g-import-not-at-top

    family = _UNIFORM_FAMILIES.get(type(backbone).__name__)
    if family is None:
        raise ValueError(f"figs_tf's uniform export writes configs of {sorted(_UNIFORM_FAMILIES)}, not "
                         f"{type(backbone).__name__}. Use figs_tf.slim (per-layer widths) for other families.")
    attention_name, mlp_name, units_per_channel, holds_head_width = family
    graph = wrapping.channel_graph_of(search)
    gates = wrapping.gates_of(search)
    logits = np.asarray(keras.ops.convert_to_numpy(gates.logits))
    exported = gates.exported_widths()
    roles = {"kv_groups": f"{attention_name}/kv_groups", "query_slots": f"{attention_name}/query_slots",
             "mlp": mlp_name}
    blocks = [block.name for block in backbone.transformer_layers]
    group_of = {name: g for g, group in enumerate(graph.groups) for name in group.producers}
    found = {(block, role): group_of.get(f"{block}.{name}") for block in blocks for role, name in roles.items()}
    stream = group_of.get("token_embedding")  # searched when a CausalLM was wrapped
    first = backbone.transformer_layers[0]
    attention_layer = first._self_attention_layer if hasattr(first, "_self_attention_layer") else first.attention  # pylint: disable=protected-access
    query_heads, kv_heads, head_width = handlers.handler_for(attention_layer).heads(attention_layer)
    if stream is not None:  # with the stream searched, every query slot is kept (handlers.grouped_attention)
        found = {key: g for key, g in found.items() if key[1] != "query_slots"}
    missing = [f"{block}.{roles[role]}" for (block, role), g in found.items() if g is None]
    expected = {g for g in found.values() if g is not None} | {stream}
    other = [graph.groups[g].producers[0] for g in range(graph.num_groups) if g not in expected]
    if missing or other:
        raise ValueError(f"The search model's groups are not {type(backbone).__name__}'s heads and MLP units "
                         f"(missing {missing[:3]}, others {other[:3]}): give figs_tf.uniform_widths the search model "
                         "of this backbone, wrapped whole.")
    width = {"query_slots": query_heads // kv_heads}
    for role in {role for _, role in found}:
        kept = [exported[found[(block, role)]] for block in blocks]
        width[role] = max(1, int(np.floor(np.mean(kept) + 0.5)))
    if stream is not None:
        found[(None, "stream")] = stream
        width["stream"] = exported[stream]
    if not holds_head_width:
        if (width["kv_groups"], width["query_slots"]) != (kv_heads, query_heads // kv_heads) or (
                stream is not None and width["stream"] < backbone.hidden_dim):
            warnings.warn(f"{type(backbone).__name__}'s config derives the head width from hidden_dim // "
                          "num_query_heads: the uniform export keeps every head and the whole residual stream "
                          "(hidden_dim) and cuts only the MLP.", stacklevel=2)
        width["kv_groups"], width["query_slots"] = kv_heads, query_heads // kv_heads
        width["stream"] = backbone.hidden_dim
    channels = {}
    for (block, role), g in found.items():
        order = np.argsort(-logits[gates.group_slice(g)], kind="stable")
        name = "token_embedding" if role == "stream" else f"{block}.{roles[role]}"
        channels[name] = np.sort(order[:width[role]]).tolist()
    config = backbone.get_config()
    config.update(num_key_value_heads=width["kv_groups"], num_query_heads=width["kv_groups"] * width["query_slots"],
                  intermediate_dim=units_per_channel * width["mlp"])
    if stream is not None:  # every norm reads the stream: one ε·n/k (per_channel.folded_rms_settings)
        config.update(hidden_dim=width["stream"], layer_norm_epsilon=folded_epsilon(
            config["layer_norm_epsilon"], backbone.hidden_dim, width["stream"]))
    if holds_head_width:
        config["head_dim"] = head_width
    return config, channels


def uniform_keras_hub_backbone(search, backbone):
    """A stock keras_hub backbone of `backbone`'s family at the uniform architecture (`uniform_widths`).

    Made by the family's `Backbone.from_config` (one `num_query_heads`,
    `num_key_value_heads`, `intermediate_dim` for every block, the head width
    unchanged; a searched stream's `hidden_dim` and ε·n/k), with the weights of
    `figs_tf.slim` at that architecture: it computes what the search model
    computes with its gates forced to the uniform architecture's channels
    (Gemma's embedding, scaled by √hidden_dim, is folded: the table takes
    √n/√k, the final norm gives the tied logits back √k/√n). It saves and
    loads as any preset:

        stock = figs_tf.uniform_keras_hub_backbone(search, backbone)
        stock.save_to_preset("slim_preset")
        keras_hub.models.Backbone.from_preset("slim_preset")   # the same logits

    Args:
      search: `figs_tf.wrap` of `backbone`, or of the family's CausalLM on it
        (traced at a fixed length).
      backbone: the keras_hub backbone that was wrapped (LlamaBackbone,
        Llama3Backbone, MistralBackbone, Qwen3Backbone, Phi3Backbone,
        GemmaBackbone or Gemma3Backbone).

    Returns:
      A backbone of `backbone`'s class (its stock class, serializable).

    Raises:
      ValueError: see `uniform_widths`; a slim layer whose weights do not fit
        the stock backbone's.
    """
    from figs_tf import cost as cost_lib  # pylint: disable=g-import-not-at-top
    from figs_tf import export as export_lib  # pylint: disable=g-import-not-at-top
    from figs_tf.slimming import build as build_slim  # pylint: disable=g-import-not-at-top
    from figs_tf import wrapping  # pylint: disable=g-import-not-at-top

    config, channels = uniform_widths(search, backbone)
    graph = wrapping.channel_graph_of(search)
    group_of = {name: g for g, group in enumerate(graph.groups) for name in group.producers}
    kept = [None] * graph.num_groups
    for name, indices in channels.items():
        kept[group_of[name]] = np.asarray(indices, dtype=np.int64)
    widths = [len(k) for k in kept]
    network = export_lib.ExportedNetwork(graph=graph, widths=widths, kept_channels=kept,
                                         live_calls=cost_lib.live_calls(graph, widths))
    slim_model = build_slim(network, name=f"{backbone.name}_uniform")
    stock = type(backbone).from_config(config)
    _copy_slim_weights(stock, slim_model, {block.name for block in backbone.transformer_layers})
    if stock.hidden_dim < backbone.hidden_dim and type(backbone).__name__ in ("GemmaBackbone", "Gemma3Backbone"):
        _fold_embedding_scale(stock, backbone.hidden_dim)
    return stock


def _fold_embedding_scale(stock, searched_width):
    """Gemma multiplies the embedding by √hidden_dim: a stock config of the slim width k scales it by √k where the
    searched model scaled it by √n. The table takes √n/√k; the output projection, tied to it, is given back
    √k/√n by the final norm's 1 + scale."""
    table = stock.token_embedding.embeddings
    factor = np.sqrt(searched_width) / np.sqrt(stock.hidden_dim)
    table.assign(keras.ops.convert_to_numpy(table) * factor.astype("float32"))
    if stock.token_embedding.tie_weights:
        final = stock.get_layer("final_normalization").scale
        final.assign((1 + keras.ops.convert_to_numpy(final)) / factor.astype("float32") - 1)


def _copy_slim_weights(stock, slim_model, blocks):
    """Each stock weight ('<block>/<layer>/.../<name>', or '<layer>/<name>') from the slim layer '<block>.<layer>'."""
    slim_layers = _layers_by_name(slim_model)
    for variable in stock.weights:
        parts = variable.path.split("/")
        layer_name, rest = (f"{parts[0]}.{parts[1]}", parts[2:]) if parts[0] in blocks else (parts[0], parts[1:])
        layer = slim_layers.get(layer_name)
        matches = [] if layer is None else [w for w in layer.weights if w.path.split("/")[-len(rest):] == rest]
        if len(matches) != 1 or tuple(matches[0].shape) != tuple(variable.shape):
            raise ValueError(f"The stock backbone's weight {variable.path} {tuple(variable.shape)} has no single "
                             f"slim counterpart in '{layer_name}' (found {[(w.path, tuple(w.shape)) for w in matches]}).")
        variable.assign(matches[0])
