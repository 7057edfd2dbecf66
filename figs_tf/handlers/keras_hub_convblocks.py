"""keras_hub's convolutional blocks (EfficientNet v2, MobileNet v3) as functional equivalents of their sublayers.

EfficientNetBackbone's `FusedMBConvBlock`, `MBConvBlock` and `CBABlock`, and
MobileNetBackbone's `DepthwiseConvBlock`, `InvertedResidualBlock`,
`ConvBnActBlock` and `SqueezeAndExcite2D` are layers holding ordinary Keras
layers. Each handler's `body` calls the block's own sublayers (weights shared)
in the order its `call` does, so that the analysis inlines them
(figs_tf/keras_graph.py): the convolutions' filters, the expanded widths and
the squeeze-excite widths are searched exactly as in keras.applications'
EfficientNetV2 and MobileNetV3, residual adds tie their channels, and `slim`
rebuilds each block as plain Keras layers.

What `call` computes outside sublayers is rebuilt from layers and ops the
analysis knows: EfficientNet's squeeze-excite (GlobalAveragePooling2D, Reshape,
multiply, created inside `call` with the same names), the residual adds, and
MobileNet's `keras.ops.mean` over the positions (a GlobalAveragePooling2D with
keepdims, which computes that same mean). An Activation that `MBConvBlock`
applies twice gets a fresh twin for its second use (an Activation holds no
weights), so that its two uses are not tied as a shared layer's are.

MobileNet writes its depthwise convolutions as `Conv2D(groups=channels)`,
which the analysis keeps out of search like any grouped convolution; in the
equivalents such a convolution runs through `GroupedDepthwise`, which the
analysis reads as the depthwise convolution it is (its channels pass through,
as DepthwiseConv2D's do) and `slim` turns into a DepthwiseConv2D.

This module reads keras_hub's internal module paths (`keras_hub.src.models...`)
for the block classes, which keras_hub does not export, and their sublayer
attributes (`conv1`, `se_conv1`, `dropout_layer`, ...).
"""

import keras

from figs_tf.handlers.base import to_numpy
from figs_tf.handlers.convolution import DepthwiseConvHandler
from figs_tf.handlers.keras_hub import BlockHandler
from figs_tf.wrapper_layer import LayerHolder


def _convolution_attribute(name):
    return property(lambda self: getattr(self.wrapped_layer, name), doc=f"The convolution's `{name}`.")


@keras.saving.register_keras_serializable(package="figs_tf")
class GroupedDepthwise(LayerHolder):
    """Calls a Conv2D whose groups each read one input channel (`wrapped_layer`): a depthwise convolution.

    Exists inside the equivalents of keras_hub's MobileNet blocks (and the
    search models built from them); holds the convolution (weights shared)
    and shows the attributes DepthwiseConv2D's handler reads. Unlike a
    `WrapperLayer`, the analysis reads its calls as its own.

    Example:

        conv = keras.layers.Conv2D(8, 3, groups=8, use_bias=False)   # on 8 channels
        y = GroupedDepthwise(conv)(x)                                # computes conv(x)
    """

    # what DepthwiseConv2D's handler reads, the convolution's own
    kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias, kernel, bias = (
        _convolution_attribute(name) for name in ("kernel_size", "strides", "padding", "data_format", "dilation_rate",
                                                  "activation", "use_bias", "kernel", "bias"))

    def __init__(self, layer, **kwargs):
        kwargs.setdefault("name", layer.name)
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)

    def call(self, inputs):
        return self.wrapped_layer(inputs)

    def compute_output_shape(self, input_shape):
        return self.wrapped_layer.compute_output_shape(input_shape)

    @property
    def depth_multiplier(self):
        return self.wrapped_layer.filters // self.wrapped_layer.groups


def is_depthwise(convolution):
    """True for a built grouped Conv2D whose groups each read one channel (groups == input channels)."""
    return (type(convolution) is keras.layers.Conv2D and convolution.groups > 1
            and convolution.built and convolution.kernel.shape[-2] == 1)


def as_depthwise(convolution):
    """The layer to call for `convolution` in an equivalent: a GroupedDepthwise where it is depthwise."""
    return GroupedDepthwise(convolution) if is_depthwise(convolution) else convolution


class GroupedDepthwiseHandler(DepthwiseConvHandler):
    """GroupedDepthwise: channels, cost and dead-branch rules of a depthwise convolution; slims to one."""

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        convolution = layer.wrapped_layer
        kernel = to_numpy(convolution.kernel)  # (..., 1, channels * multiplier), group c's outputs together
        kernel = kernel.reshape(kernel.shape[:-2] + (-1, layer.depth_multiplier))[..., kept_in[0], :]
        weights = [kernel]
        if convolution.use_bias:
            weights.append(to_numpy(convolution.bias)[kept_out[0]])
        config = convolution.get_config()
        for name in ("initializer", "regularizer", "constraint"):
            config[f"depthwise_{name}"] = config.pop(f"kernel_{name}")
        del config["filters"], config["groups"]
        config.update(depth_multiplier=layer.depth_multiplier, name=layer.name)
        return keras.layers.DepthwiseConv2D.from_config(config), weights


def _twin(layer):
    """A fresh layer like `layer` (one without weights), for a block that applies `layer` a second time: its two
    uses then are not tied as a shared layer's."""
    return type(layer).from_config({**layer.get_config(), "name": f"{layer.name}_second_use"})


def _residual(block, x, inputs, name):
    """EfficientNet's residual: the block's dropout (one draw per example: stochastic depth) and an Add."""
    if block.dropout:
        x = block.dropout_layer(x)
    return keras.layers.Add(name=name)([x, inputs])


def _efficientnet_squeeze_excite(block, x):
    """EfficientNet v2's squeeze-excite, made inside `call`: mean per channel, reduce and expand, multiply."""
    se = keras.layers.GlobalAveragePooling2D(name=block.name + "se_squeeze", data_format=block.data_format)(x)
    se = keras.layers.Reshape((1, 1, block.filters), name=block.name + "se_reshape")(se)
    se = block.se_conv2(block.se_conv1(se))
    return keras.layers.Multiply(name=block.name + "se_excite")([x, se])


def _has_residual(block):
    return block.strides == 1 and block.input_filters == block.output_filters and not block.nores


class FusedMBConvBlockHandler(BlockHandler):
    """EfficientNet v2's FusedMBConvBlock: k×k expansion conv, squeeze-excite, 1×1 projection, residual."""

    def body(self, layer, args, kwargs):
        inputs = args[0]
        x = layer.act(layer.bn1(layer.conv1(layer.conv1_pad(inputs))))
        if 0 < layer.se_ratio <= 1:
            x = _efficientnet_squeeze_excite(layer, x)
        x = layer.bn2(layer.output_conv(layer.output_conv_pad(x)))
        if layer.expand_ratio == 1 and layer.projection_activation:
            x = layer.projection_act(x)
        return _residual(layer, x, inputs, layer.name + "add") if _has_residual(layer) else x


class MBConvBlockHandler(BlockHandler):
    """EfficientNet v2's MBConvBlock: 1×1 expansion, depthwise conv, squeeze-excite, projection, residual."""

    def body(self, layer, args, kwargs):
        inputs = x = args[0]
        second_act = layer.act
        if layer.expand_ratio != 1:
            x = layer.act(layer.bn1(layer.conv1(inputs)))
            second_act = _twin(layer.act)
        x = second_act(layer.bn2(layer.depthwise(x)))
        if 0 < layer.se_ratio <= 1:
            x = _efficientnet_squeeze_excite(layer, x)
        x = layer.bn3(layer.output_conv(layer.output_conv_pad(x)))
        return _residual(layer, x, inputs, layer.name + "add") if _has_residual(layer) else x


class CBABlockHandler(BlockHandler):
    """EfficientNet's CBABlock ("cba" stacks): conv, BatchNorm, activation, residual."""

    def body(self, layer, args, kwargs):
        inputs = args[0]
        x = layer.act(layer.bn1(layer.conv1(layer.conv1_pad(inputs))))
        return _residual(layer, x, inputs, layer.name + "add") if _has_residual(layer) else x


class SqueezeAndExcite2DHandler(BlockHandler):
    """MobileNet's SqueezeAndExcite2D: x * gate(expand(act(reduce(mean of x over the positions))))."""

    def body(self, layer, args, kwargs):
        inputs = args[0]
        data_format = "channels_last" if tuple(layer.spatial_dims) == (1, 2) else "channels_first"
        se = keras.layers.GlobalAveragePooling2D(data_format=data_format, keepdims=True,
                                                 name=f"{layer.name}_mean")(inputs)  # the block's ops.mean
        se = layer.conv_expand(layer.activation1(layer.conv_reduce(se)))
        return inputs * layer.gate(se)


class DepthwiseConvBlockHandler(BlockHandler):
    """MobileNet's DepthwiseConvBlock: padded depthwise conv, BatchNorm, ReLU, squeeze-excite, 1×1 conv,
    BatchNorm, residual."""

    def body(self, layer, args, kwargs):
        inputs = args[0]
        x = as_depthwise(layer.conv1)(layer.pad(inputs))
        x = layer.activation1(layer.batch_normalization1(x))
        if layer.squeeze_excite_ratio:
            x = layer.se_layer(x)
        x = layer.batch_normalization2(layer.conv2(x))
        return x + inputs if layer.residual else x


class InvertedResidualBlockHandler(BlockHandler):
    """MobileNet's InvertedResidualBlock: 1×1 expansion, padded depthwise conv, squeeze-excite, 1×1 projection,
    residual."""

    def body(self, layer, args, kwargs):
        inputs = args[0]
        x = layer.activation1(layer.batch_normalization1(layer.conv1(inputs)))
        x = as_depthwise(layer.conv2)(layer.pad(x))
        x = layer.activation2(layer.batch_normalization2(x))
        if layer.squeeze_excite:
            x = layer.squeeze_excite(x)
        x = layer.batch_normalization3(layer.conv3(x))
        return inputs + x if layer.stride == 1 and layer.infilters == layer.filters else x


class ConvBnActBlockHandler(BlockHandler):
    """MobileNet's ConvBnActBlock: 1×1 conv, BatchNorm, activation."""

    def body(self, layer, args, kwargs):
        return layer.activation_layer(layer.batch_normalization(layer.conv(args[0])))


def keras_hub_convblock_handlers():
    """{keras_hub convolutional block class: handler} (imports keras_hub), and GroupedDepthwise's."""
    from keras_hub.src.models.efficientnet import cba, fusedmbconv, mbconv  # pylint: disable=g-import-not-at-top
    from keras_hub.src.models.mobilenet import mobilenet_backbone  # pylint: disable=g-import-not-at-top

    return {
        fusedmbconv.FusedMBConvBlock: FusedMBConvBlockHandler(),
        mbconv.MBConvBlock: MBConvBlockHandler(),
        cba.CBABlock: CBABlockHandler(),
        mobilenet_backbone.SqueezeAndExcite2D: SqueezeAndExcite2DHandler(),
        mobilenet_backbone.DepthwiseConvBlock: DepthwiseConvBlockHandler(),
        mobilenet_backbone.InvertedResidualBlock: InvertedResidualBlockHandler(),
        mobilenet_backbone.ConvBnActBlock: ConvBnActBlockHandler(),
        GroupedDepthwise: GroupedDepthwiseHandler(),
    }
