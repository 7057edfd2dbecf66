"""Embedding and ReversibleEmbedding: the embedding width is a channel group, like a Dense's units.

A lookup reads indices, not channels, so the input needs no mask and costs
no multiply-adds; the table's columns (and, for an untied ReversibleEmbedding,
the rows of its separate reverse projection, which has the same width) are
cut with the channels. A ReversibleEmbedding called with `reverse=True` (a
language model's output projection tied to the input embedding: logits =
x · tableᵀ, or x · reverse table) is a later use of the same layer that reads
the embedding's channels and makes the vocabulary's scores: it ties its input
to the lookup's channels (the residual stream of a decoder), reads them clean
(a matrix product), costs positions × width × vocabulary multiply-adds and no
parameters of its own, and runs the one slim layer with `reverse=True`.
"""

import math

import numpy as np

from figs_tf.channel_sets import Segment, groups_in
from figs_tf.handlers.base import LayerHandler, Term, UnsupportedLayerError, clone_layer, to_numpy


def _reverse(call):
    return bool(call.arguments()[1].get("reverse"))


class EmbeddingHandler(LayerHandler):
    """keras.layers.Embedding and ReversibleEmbedding (keras's and keras_hub's), its reverse=True use included."""

    mixes_channels = True  # makes channels: an exported architecture gives it a width

    def _check(self, call):
        layer = call.layer
        if _reverse(call) and not call.application:
            raise UnsupportedLayerError(
                f"'{call.name}' is called with reverse=True before any lookup: figs_tf searches a tied output "
                "projection as a later use of the embedding whose channels it reads (a keras_hub CausalLM's "
                "token_embedding). Call the lookup first.")
        if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
            raise UnsupportedLayerError(
                f"'{call.name}' is quantized or has LoRA weights; figs_tf searches float embeddings only. "
                "Wrap the model before quantizing it or enabling LoRA.")

    def later_use_ties(self, call, first_call):
        if _reverse(call) and not _reverse(first_call):
            return [(("in", 0), ("out", 0))]  # reads the channels the lookup makes
        return None

    def output_sets(self, call, in_sets, groups):
        self._check(call)
        if _reverse(call):
            return [(Segment(None, call.output_tensors[0].shape[-1]),)]  # the vocabulary's scores
        if groups_in(in_sets[0]):
            groups.fix(in_sets[0], f"'{call.name}' reads them as indices")
        width = call.layer.output_dim
        return [(Segment(groups.new_group(width, call.name), width),)]

    def requires_clean_inputs(self, call):
        return _reverse(call)  # a matrix product over the channels; a lookup reads indices

    def output_dirty(self, call, in_dirty):
        return True  # a pruned channel's embedding is not zero

    def param_terms(self, call, in_sets, out_sets):
        if _reverse(call):
            return []  # its weights are the lookup's (counted with its first use)
        tables = 1 if getattr(call.layer, "tie_weights", True) else 2
        return [Term(tables * call.layer.input_dim, (out_sets[0],))]

    def flop_terms(self, call, in_sets, out_sets):
        if not _reverse(call):
            return []
        shape = call.input_tensors[0].shape
        if any(d is None for d in shape[1:]):
            raise UnsupportedLayerError(
                f"'{call.name}' (reverse=True) has inputs of unknown size {tuple(shape)}: its multiply-adds depend "
                "on the sequence length. Trace the model at a fixed length (keras.models.clone_model(model, "
                "input_tensors=..., clone_function=lambda layer: layer)).")
        return [Term(math.prod(shape[1:-1]) * call.layer.input_dim, (in_sets[0],))]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        kept = kept_out[0]
        weights = [to_numpy(layer.embeddings)[:, kept]]
        if not getattr(layer, "tie_weights", True):
            weights.append(to_numpy(layer.reverse_embeddings)[kept, :])
        return clone_layer(layer, output_dim=len(kept)), weights

    def output_channel_l1(self, layer):
        return np.abs(to_numpy(layer.embeddings)).sum(axis=0)
