"""Embedding and ReversibleEmbedding: the embedding width is a channel group, like a Dense's units.

A lookup reads indices, not channels, so the input needs no mask and costs
no multiply-adds; the table's columns (and, for an untied ReversibleEmbedding,
the rows of its separate reverse projection, which has the same width) are
cut with the channels. A ReversibleEmbedding called with `reverse=True` (a
language model's output projection tied to the input embedding) reads channels
and makes tokens, unlike the forward lookup: only the forward lookup is
supported (a table shared by several forward lookups is one shared layer).
"""

import numpy as np

from figs_tf.channel_sets import Segment, groups_in
from figs_tf.handlers.base import LayerHandler, Term, UnsupportedLayerError, clone_layer, to_numpy


class EmbeddingHandler(LayerHandler):
    """keras.layers.Embedding and ReversibleEmbedding (keras's and keras_hub's)."""

    mixes_channels = True  # makes channels: an exported architecture gives it a width

    def _check(self, call):
        layer = call.layer
        if call.arguments()[1].get("reverse"):
            raise UnsupportedLayerError(
                f"'{call.name}' is called with reverse=True (the tied output projection of a language model). "
                "figs_tf supports the forward lookup only: wrap the model without the logits instead (a keras_hub "
                "CausalLM's backbone, traced at a fixed length), and generate with the family's CausalLM on "
                "figs_tf.keras_hub_backbone(figs_tf.slim(search), backbone).")
        if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
            raise UnsupportedLayerError(
                f"'{call.name}' is quantized or has LoRA weights; figs_tf searches float embeddings only. "
                "Wrap the model before quantizing it or enabling LoRA.")

    def output_sets(self, call, in_sets, groups):
        self._check(call)
        if groups_in(in_sets[0]):
            groups.fix(in_sets[0], f"'{call.name}' reads them as indices")
        width = call.layer.output_dim
        return [(Segment(groups.new_group(width, call.name), width),)]

    def output_dirty(self, call, in_dirty):
        return True  # a pruned channel's embedding is not zero

    def param_terms(self, call, in_sets, out_sets):
        tables = 1 if getattr(call.layer, "tie_weights", True) else 2
        return [Term(tables * call.layer.input_dim, (out_sets[0],))]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        kept = kept_out[0]
        weights = [to_numpy(layer.embeddings)[:, kept]]
        if not getattr(layer, "tie_weights", True):
            weights.append(to_numpy(layer.reverse_embeddings)[kept, :])
        return clone_layer(layer, output_dim=len(kept)), weights

    def output_channel_l1(self, layer):
        return np.abs(to_numpy(layer.embeddings)).sum(axis=0)
