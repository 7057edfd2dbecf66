"""One handler per layer kind: how channels flow through a layer, what it costs, how it is slimmed.

The channel-group analysis, the cost (parameters and multiply-adds), wrapping,
export and slimming all read this registry and nothing else, so supporting a
new layer type is one `register_handler` call (MorphNet's op handlers are the
model):

    class MyGate(keras.layers.Layer): ...            # per-channel, f(0) == 0
    figs_tf.register_handler(MyGate, figs_tf.handlers.PerChannel(zero_preserving=True))

Modules: `base` (the `LayerHandler` interface, `Term`, conventions),
`registry`, `convolution` (conv, dense, separable, transposed, depthwise),
`per_channel` (BatchNorm, activations, pooling, channel-mixing layers),
`merge` (Add and friends, Concatenate, `keras.ops` arithmetic), `channel_ops`
(`keras.ops.split` and `keras.ops.pad`), `reshape`,
`preprocessing` (image preprocessing and augmentation layers), `recurrent`
(LSTM, GRU, SimpleRNN, Bidirectional), `embedding`, `attention`
(MultiHeadAttention, one gate per head), `grouped_attention` (grouped-query
attention: key/value groups and query slots), `indexing` (`x[:, 0, :]`),
`keras_hub` (registered when a model holds a keras_hub layer).
`DEFAULT_HANDLERS` below is the table of Keras layer types figs_tf knows.
"""

import importlib
import keras

from figs_tf.handlers.attention import HeadGatedAttention, MultiHeadAttentionHandler
from figs_tf.handlers.channel_ops import PadHandler, SplitHandler
from figs_tf.handlers.base import (LayerHandler, Term, UnsupportedLayerError, activation_name, clone_layer,
                                   equivalent_model)
from figs_tf.handlers.convolution import (ChannelProducer, ConvHandler, ConvTransposeHandler, DenseHandler,
                                          DepthwiseConvHandler, EinsumDenseHandler, SeparableConvHandler)
from figs_tf.handlers.embedding import EmbeddingHandler
from figs_tf.handlers.grouped_attention import (GroupedAttentionHandler, GroupGatedAttention,
                                                KerasGroupedQueryAttentionHandler)
from figs_tf.handlers.indexing import GetItemHandler
from figs_tf.handlers.merge import ConcatenateHandler, ElementwiseOpHandler, MergeHandler
from figs_tf.handlers.keras_hub_decoders import DecoderMask, DecoderMaskHandler
from figs_tf.handlers.per_channel import (ActivationHandler, BatchNormalizationHandler, ChannelMixing,
                                          LayerNormalizationHandler, OperationHandler, PerChannel,
                                          RMSNormalizationHandler, SoftmaxHandler, prelu_keeps_uniform)
from figs_tf.handlers.preprocessing import (ColorJitterHandler, NormalizationHandler, RandomErasingHandler,
                                            RescalingHandler, preprocessing_handlers)
from figs_tf.handlers.recurrent import (AnyHandler, BidirectionalHandler, MaskingHandler, NotEqualHandler,
                                        RecurrentHandler)
from figs_tf.handlers.registry import (find_handler, find_handler_of_class, handler_for, register_handler,
                                       register_lazily)
from figs_tf.handlers.reshape import PermuteHandler, ReshapeHandler


def _default_handlers():
    """{Keras layer or op class: handler} for every type figs_tf supports out of the box."""
    L = keras.layers  # pylint: disable=invalid-name
    table = {}
    for cls in (L.Conv1D, L.Conv2D, L.Conv3D):
        table[cls] = ConvHandler()
    table[L.Dense] = DenseHandler()
    table[L.EinsumDense] = EinsumDenseHandler()
    for cls in (L.SeparableConv1D, L.SeparableConv2D):
        table[cls] = SeparableConvHandler()
    for cls in (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
        table[cls] = ConvTransposeHandler()
    for cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
        table[cls] = DepthwiseConvHandler()
    table[L.BatchNormalization] = BatchNormalizationHandler()
    table[L.LayerNormalization] = LayerNormalizationHandler()
    table[L.GroupNormalization] = ChannelMixing()
    table[L.Softmax] = SoftmaxHandler()
    table[L.Activation] = ActivationHandler()
    zero_preserving = PerChannel(zero_preserving=True)
    for cls in (L.ReLU, L.LeakyReLU, L.ELU, L.Identity,
                L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.AlphaDropout,
                L.GaussianDropout,
                L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
                L.AveragePooling3D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
                L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
                L.Cropping1D, L.Cropping2D, L.Cropping3D,
                L.UpSampling1D, L.UpSampling2D, L.UpSampling3D):
        table[cls] = zero_preserving
    # zero-preserving, but a constant input does not stay the same at every position
    for cls in (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D):
        table[cls] = PerChannel(zero_preserving=True, keeps_uniform=False)
    table[L.PReLU] = PerChannel(zero_preserving=True, keeps_uniform=prelu_keeps_uniform)  # alpha per position?
    # f(0) != 0 per channel: a pruned channel must be masked again after these.
    table[L.GaussianNoise] = PerChannel(zero_preserving=False)
    # Image preprocessing and augmentation (Rescaling, Normalization, Resizing, RandomFlip, ...).
    table.update(preprocessing_handlers(L))
    for cls in (L.LSTM, L.GRU, L.SimpleRNN):
        table[cls] = RecurrentHandler()
    table[L.Bidirectional] = BidirectionalHandler()
    table[L.Masking] = MaskingHandler()
    table[L.Add] = MergeHandler(sums=True)
    for cls in (L.Subtract, L.Average, L.Maximum, L.Minimum):
        table[cls] = MergeHandler()
    table[L.Multiply] = MergeHandler(product=True)
    table[L.Concatenate] = ConcatenateHandler()
    from keras.src.ops import numpy as keras_numpy_ops  # pylint: disable=g-import-not-at-top  # no public name
    for cls, operation in ((keras_numpy_ops.Add, "add"), (keras_numpy_ops.Subtract, "subtract"),
                           (keras_numpy_ops.Multiply, "multiply"), (keras_numpy_ops.TrueDivide, "divide")):
        table[cls] = ElementwiseOpHandler(operation)
    table[keras_numpy_ops.NotEqual] = NotEqualHandler()  # masks of Masking and Embedding(mask_zero=True)
    table[keras_numpy_ops.Any] = AnyHandler()
    table[L.Flatten] = ReshapeHandler()
    for cls in (L.Embedding, L.ReversibleEmbedding):
        table[cls] = EmbeddingHandler()
    table[L.MultiHeadAttention] = MultiHeadAttentionHandler()
    table[L.GroupQueryAttention] = KerasGroupedQueryAttentionHandler()
    if hasattr(L, "RMSNormalization"):  # Keras >= 3.9
        table[L.RMSNormalization] = RMSNormalizationHandler()
    table[keras_numpy_ops.GetItem] = GetItemHandler()
    table[keras_numpy_ops.Split] = SplitHandler()  # CSPNet's cross-stage split
    table[keras_numpy_ops.Pad] = PadHandler()  # ResNetV2's -inf padding before max-pooling
    from keras.src.ops import nn as keras_nn_ops  # pylint: disable=g-import-not-at-top  # no public name
    for cls in (keras_nn_ops.Gelu, keras_nn_ops.Silu, keras_nn_ops.Relu):  # f(0) == 0, elementwise
        table[cls] = OperationHandler(zero_preserving=True)
    table[DecoderMask] = DecoderMaskHandler()  # keras_hub decoder blocks' attention mask (figs_tf's own layer)
    table[L.Reshape] = ReshapeHandler()
    table[L.Permute] = PermuteHandler()
    try:  # ConvNeXt's per-channel scale (not a public Keras layer).
        from keras.src.applications.convnext import LayerScale  # pylint: disable=g-import-not-at-top
        table[LayerScale] = zero_preserving
    except ImportError:
        pass
    return table


DEFAULT_HANDLERS = _default_handlers()
for _layer_class, _handler in DEFAULT_HANDLERS.items():
    register_handler(_layer_class, _handler)


# One module per group of keras_hub families; each has a function returning {keras_hub layer class: handler}.
_KERAS_HUB_TABLES = (("keras_hub", "keras_hub_handlers"), ("keras_hub_decoders", "keras_hub_decoder_handlers"),
                     ("keras_hub_swin", "keras_hub_swin_handlers"),
                     ("keras_hub_convblocks", "keras_hub_convblock_handlers"),
                     ("keras_hub_vision", "keras_hub_vision_handlers"),
                     ("keras_hub_encoders", "keras_hub_encoder_handlers"))


def _register_keras_hub_handlers():
    """Registers the tables of figs_tf.handlers.keras_hub and its keras_hub_* siblings, keeping handlers the user
    registered."""
    table = {}
    for module_name, table_function in _KERAS_HUB_TABLES:
        module = importlib.import_module(f"figs_tf.handlers.{module_name}")
        table.update(getattr(module, table_function)())
    for layer_class, handler in table.items():
        if find_handler_of_class(layer_class) is None:
            register_handler(layer_class, handler)


register_lazily("keras_hub.", _register_keras_hub_handlers)
# figs_tf's own layers in these modules (a slim decoder's attention, GroupedDepthwise, a slim SigLIP's AttentionProbe,
# ...) may be met before any keras_hub layer
for _module_name, _ in _KERAS_HUB_TABLES[1:]:
    register_lazily(f"figs_tf.handlers.{_module_name}", _register_keras_hub_handlers)

__all__ = [
    "ActivationHandler", "AnyHandler", "BatchNormalizationHandler", "BidirectionalHandler", "ChannelMixing",
    "ChannelProducer", "ColorJitterHandler", "ConcatenateHandler", "ConvHandler", "ConvTransposeHandler", "DecoderMask", "OperationHandler",
    "DEFAULT_HANDLERS", "DenseHandler", "DepthwiseConvHandler", "EinsumDenseHandler", "ElementwiseOpHandler", "EmbeddingHandler",
    "GetItemHandler", "GroupGatedAttention", "GroupedAttentionHandler", "HeadGatedAttention",
    "KerasGroupedQueryAttentionHandler", "LayerHandler", "LayerNormalizationHandler", "MaskingHandler",
    "MergeHandler", "MultiHeadAttentionHandler", "NormalizationHandler", "NotEqualHandler", "PadHandler", "PerChannel",
    "PermuteHandler", "RMSNormalizationHandler", "RandomErasingHandler", "RecurrentHandler", "RescalingHandler", "ReshapeHandler",
    "SeparableConvHandler", "SoftmaxHandler", "SplitHandler", "Term", "UnsupportedLayerError", "activation_name", "clone_layer",
    "equivalent_model", "find_handler", "handler_for", "register_handler", "register_lazily",
]
