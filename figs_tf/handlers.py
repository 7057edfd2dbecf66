"""One handler per layer type: how channels flow through it and what it costs.

Supporting a new layer type is one `register_handler` call: the channel-group
analysis, the cost (parameters and multiply-adds), wrapping and export all read
this registry and nothing else. Lookup is by exact class, so a subclass of a
known layer that changes its behaviour is never silently treated as its parent.

    class MyGate(keras.layers.Layer): ...            # per-channel, f(0) == 0
    figs_tf.register_handler(MyGate, figs_tf.handlers.PerChannel(zero_preserving=True))

Conventions (documented once, used everywhere):
- channels are the last axis (channels_last); other data formats are refused;
- parameters are what `count_params` counts, non-trainable statistics included;
- FLOPs are multiply-adds per example of convolution and dense kernels only
  (BatchNorm, biases, activations and pooling are not multiply-adds), the
  convention of the MobileNet, FBNet and FiGS papers.
"""

import dataclasses
import math

import keras
import numpy as np

from figs_tf.channel_sets import Segment, num_channels


@dataclasses.dataclass(frozen=True)
class Term:
    """`coefficient * Π count(channel_set)` over `channel_sets` (0, 1 or 2 sets)."""

    coefficient: int
    channel_sets: tuple


class UnsupportedLayerError(ValueError):
    """A layer figs_tf has no channel rule for."""


class LayerHandler:
    """Base class. Subclasses describe one family of layer types."""

    # Reads all input channels to make new ones (conv, dense): such a layer needs
    # pruned input channels to read as zero, and keeps at least one input channel.
    mixes_channels = False

    def output_sets(self, call, in_sets, groups):
        """Channel sets of the call's outputs, given those of its inputs."""
        raise NotImplementedError

    # Slimming leaves out an input with no channel left (Concatenate) instead of
    # requiring every input to be kept.
    drops_empty_inputs = False

    def requires_clean_inputs(self, call):
        """True if pruned channels must read as exactly zero at this layer's input."""
        return False

    def inputs_to_clean(self, call, in_dirty, in_has_pruned):
        """Indices of inputs to mask so that this layer reads pruned channels as zero."""
        if not self.requires_clean_inputs(call):
            return []
        return [i for i, dirty in enumerate(in_dirty) if dirty and in_has_pruned[i]]

    def output_dirty(self, call, in_dirty):
        """True if pruned channels of the output may be non-zero."""
        return any(in_dirty)

    def param_terms(self, call, in_sets, out_sets):
        return []

    def flop_terms(self, call, in_sets, out_sets):
        return []

    def slim(self, call, kept_in, kept_out):
        """(new layer, its weights) keeping channel positions kept_in / kept_out.

        `kept_in[i]` and `kept_out[j]` are index arrays along the last axis of
        input i and output j. The default fits layers whose weights and config
        do not depend on the channel count.
        """
        return clone_layer(call.layer), call.layer.get_weights()


def clone_layer(layer, **config_changes):
    """A fresh layer of the same type and name, with some config entries changed."""
    config = layer.get_config()
    config.update(config_changes)
    return type(layer).from_config(config)


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable)


def _check_channels_last(layer):
    data_format = getattr(layer, "data_format", "channels_last")
    if data_format not in (None, "channels_last"):
        raise UnsupportedLayerError(
            f"Layer '{layer.name}' ({type(layer).__name__}) uses "
            f"data_format='{data_format}'; figs_tf prunes the last axis and needs "
            "channels_last. Build the model with data_format='channels_last'.")


def _spatial_positions(shape, layer_name):
    dims = shape[1:-1]
    if any(d is None for d in dims):
        raise UnsupportedLayerError(
            f"Layer '{layer_name}' has an unknown spatial size {tuple(shape)}: "
            "multiply-adds need a static input size. Build the model with a fixed "
            "input shape (e.g. keras.Input((224, 224, 3))).")
    return math.prod(dims)


def _per_channel_weight_terms(layer, channel_set):
    """Weights with the channel count as last dim scale with the alive channels."""
    channels = num_channels(channel_set)
    per_channel, constant = 0, 0
    for weight in layer.weights:
        size = math.prod(weight.shape)
        if len(weight.shape) and weight.shape[-1] == channels:
            per_channel += size // channels
        else:
            constant += size
    terms = []
    if per_channel:
        terms.append(Term(per_channel, (channel_set,)))
    if constant:
        terms.append(Term(constant, ()))
    return terms


_ZERO_PRESERVING_ACTIVATIONS = {
    "linear", "relu", "relu6", "elu", "selu", "celu", "tanh", "swish", "silu",
    "gelu", "hard_swish", "hard_silu", "leaky_relu", "softsign", "mish",
    "hard_tanh", "tanh_shrink", "soft_shrink", "hard_shrink", "sparse_sigmoid",
}
_CHANNEL_MIXING_ACTIVATIONS = {"softmax", "log_softmax", "sparsemax", "glu"}


def activation_name(activation):
    if activation is None:
        return "linear"
    try:
        name = keras.activations.serialize(activation)
    except (ValueError, TypeError):
        name = getattr(activation, "__name__", repr(activation))
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name", repr(name)))
    return str(name)


class Producer(LayerHandler):
    """Conv1D/2D/3D, Dense, SeparableConv, ConvTranspose: output starts a new group."""

    mixes_channels = True

    def __init__(self, kind):
        self.kind = kind  # "conv", "dense", "separable", "transpose"

    def requires_clean_inputs(self, call):
        return True

    def output_dirty(self, call, in_dirty):
        return True

    def _out_channels(self, layer):
        return layer.units if self.kind == "dense" else layer.filters

    def output_sets(self, call, in_sets, groups):
        layer = call.layer
        _check_channels_last(layer)
        out_channels = self._out_channels(layer)
        conv_groups = getattr(layer, "groups", 1) or 1
        if conv_groups > 1:
            groups.fix(in_sets[0], f"'{layer.name}' is a grouped convolution "
                       f"(groups={conv_groups}); its channels are kept out of search")
            return [(Segment(None, out_channels),)]
        out = (Segment(groups.new_group(out_channels, layer.name), out_channels),)
        if activation_name(getattr(layer, "activation", None)) in _CHANNEL_MIXING_ACTIVATIONS:
            groups.fix(out, f"'{layer.name}' ends in a channel-mixing activation")
        return [out]

    def _kernel_volume(self, layer):
        if self.kind == "dense":
            return 1
        return math.prod(layer.kernel_size)

    def param_terms(self, call, in_sets, out_sets):
        layer = call.layer
        in_set, out_set = in_sets[0], out_sets[0]
        k = self._kernel_volume(layer)
        conv_groups = getattr(layer, "groups", 1) or 1
        terms = []
        if self.kind == "separable":
            terms.append(Term(k * layer.depth_multiplier, (in_set,)))
            terms.append(Term(layer.depth_multiplier, (in_set, out_set)))
        elif conv_groups > 1:
            in_channels = num_channels(in_set)
            terms.append(Term(k * (in_channels // conv_groups), (out_set,)))
        else:
            terms.append(Term(k, (in_set, out_set)))
        if layer.use_bias:
            terms.append(Term(1, (out_set,)))
        return terms

    def flop_terms(self, call, in_sets, out_sets):
        layer = call.layer
        in_set, out_set = in_sets[0], out_sets[0]
        k = self._kernel_volume(layer)
        if self.kind == "transpose":
            # Each input position is scattered through the whole kernel.
            positions = _spatial_positions(call.input_tensors[0].shape, layer.name)
        else:
            positions = _spatial_positions(call.output_tensors[0].shape, layer.name)
        conv_groups = getattr(layer, "groups", 1) or 1
        if self.kind == "separable":
            return [Term(k * layer.depth_multiplier * positions, (in_set,)),
                    Term(layer.depth_multiplier * positions, (in_set, out_set))]
        if conv_groups > 1:
            in_channels = num_channels(in_set)
            return [Term(k * (in_channels // conv_groups) * positions, (out_set,))]
        return [Term(k * positions, (in_set, out_set))]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        kept_in, kept_out = kept_in[0], kept_out[0]
        width = len(kept_out)
        changes = {"units": width} if self.kind == "dense" else {"filters": width}
        new_layer = clone_layer(layer, **changes)
        if self.kind == "separable":
            multiplier = layer.depth_multiplier
            depthwise = _numpy(layer.depthwise_kernel)[..., kept_in, :]
            rows = (kept_in[:, None] * multiplier + np.arange(multiplier)[None, :]).reshape(-1)
            pointwise = _numpy(layer.pointwise_kernel)[..., rows, :][..., kept_out]
            weights = [depthwise, pointwise]
        elif self.kind == "transpose":  # kernel (..., out, in)
            weights = [_numpy(layer.kernel)[..., kept_out, :][..., kept_in]]
        elif (getattr(layer, "groups", 1) or 1) > 1:
            weights = [_numpy(layer.kernel)[..., kept_out]]  # channels kept out of search
        else:  # kernel (..., in, out)
            weights = [_numpy(layer.kernel)[..., kept_in, :][..., kept_out]]
        if layer.use_bias:
            weights.append(_numpy(layer.bias)[kept_out])
        return new_layer, weights

    def output_channel_l1(self, layer):
        """L1 norm of each output channel's kernel slice (channel selection without gates)."""
        if self.kind == "separable":
            kernel = np.abs(_numpy(layer.pointwise_kernel))
        else:
            kernel = np.abs(_numpy(layer.kernel))
        if self.kind == "transpose":
            kernel = np.moveaxis(kernel, -2, -1)
        return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)


class Depthwise(LayerHandler):
    """DepthwiseConv1D/2D: each input channel owns `depth_multiplier` outputs."""

    def output_sets(self, call, in_sets, groups):
        layer = call.layer
        _check_channels_last(layer)
        multiplier = layer.depth_multiplier
        out = tuple(Segment(s.group, s.size, s.repeat * multiplier) for s in in_sets[0])
        if activation_name(layer.activation) in _CHANNEL_MIXING_ACTIVATIONS:
            groups.fix(out, f"'{layer.name}' ends in a channel-mixing activation")
        return [out]

    def output_dirty(self, call, in_dirty):
        layer = call.layer
        zero_act = activation_name(layer.activation) in _ZERO_PRESERVING_ACTIVATIONS
        return in_dirty[0] or layer.use_bias or not zero_act

    def param_terms(self, call, in_sets, out_sets):
        layer = call.layer
        terms = [Term(math.prod(layer.kernel_size) * layer.depth_multiplier, (in_sets[0],))]
        if layer.use_bias:
            terms.append(Term(1, (out_sets[0],)))
        return terms

    def flop_terms(self, call, in_sets, out_sets):
        layer = call.layer
        positions = _spatial_positions(call.output_tensors[0].shape, layer.name)
        k = math.prod(layer.kernel_size) * layer.depth_multiplier
        return [Term(k * positions, (in_sets[0],))]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        weights = [_numpy(layer.kernel)[..., kept_in[0], :]]
        if layer.use_bias:
            weights.append(_numpy(layer.bias)[kept_out[0]])
        return clone_layer(layer), weights


class PerChannel(LayerHandler):
    """A layer that acts on each channel separately and keeps the last axis.

    `zero_preserving`: f(0) == 0 channel-wise (ReLU, pooling, padding, dropout),
    so a pruned channel stays zero through it. Either a bool or a function of
    the layer (e.g. Activation depends on its function).
    """

    def __init__(self, zero_preserving):
        self.zero_preserving = zero_preserving

    def _preserves_zero(self, layer):
        if callable(self.zero_preserving):
            return self.zero_preserving(layer)
        return self.zero_preserving

    def output_sets(self, call, in_sets, groups):
        layer = call.layer
        _check_channels_last(layer)
        in_shape = call.input_tensors[0].shape
        for out in call.output_tensors:
            if out.shape[-1] != in_shape[-1]:
                raise UnsupportedLayerError(
                    f"Layer '{layer.name}' ({type(layer).__name__}) changes the last "
                    f"axis from {in_shape[-1]} to {out.shape[-1]}; figs_tf expected "
                    "it to keep channels. Register a handler for this use, or "
                    "exclude the layer.")
        return [in_sets[0] for _ in call.output_tensors]

    def output_dirty(self, call, in_dirty):
        return in_dirty[0] or not self._preserves_zero(call.layer)

    def param_terms(self, call, in_sets, out_sets):
        return _per_channel_weight_terms(call.layer, in_sets[0])

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        channels = call.input_tensors[0].shape[-1]
        weights = []
        for weight in layer.get_weights():
            if weight.ndim and weight.shape[-1] == channels:
                weight = weight[..., kept_in[0]]
            weights.append(weight)
        return clone_layer(layer), weights


class ChannelMixing(PerChannel):
    """Keeps the last axis but mixes channels (LayerNorm over channels, softmax).

    Removing a channel would change every other channel's value, so these
    channels are kept out of search (their groups are fixed).
    """

    def __init__(self):
        super().__init__(zero_preserving=False)

    def output_sets(self, call, in_sets, groups):
        out_sets = super().output_sets(call, in_sets, groups)
        groups.fix(in_sets[0], f"'{call.layer.name}' ({type(call.layer).__name__}) "
                   "mixes channels")
        return out_sets


class LayerNormalization(ChannelMixing):
    """LayerNormalization over the channel axis: statistics mix channels."""


def _batch_norm_axis_ok(call):
    axis = call.layer.axis
    rank = len(call.input_tensors[0].shape)
    return axis in (-1, rank - 1)


class BatchNormalization(PerChannel):
    def __init__(self):
        super().__init__(zero_preserving=False)

    def output_sets(self, call, in_sets, groups):
        if not _batch_norm_axis_ok(call):
            raise UnsupportedLayerError(
                f"BatchNormalization '{call.layer.name}' normalises axis "
                f"{call.layer.axis}, not the channel (last) axis.")
        return super().output_sets(call, in_sets, groups)


class Merge(LayerHandler):
    """Add, Subtract, Average, Maximum, Minimum, Multiply: inputs share channels."""

    def __init__(self, product=False):
        self.product = product  # Multiply: one clean factor makes the output clean

    def _full_inputs(self, call):
        channels = call.output_tensors[0].shape[-1]
        return [i for i, t in enumerate(call.input_tensors) if t.shape[-1] == channels]

    def output_sets(self, call, in_sets, groups):
        full = self._full_inputs(call)
        broadcast = [i for i in range(len(in_sets)) if i not in full]
        for i in broadcast:
            if call.input_tensors[i].shape[-1] != 1:
                raise UnsupportedLayerError(
                    f"Layer '{call.layer.name}' merges tensors with "
                    f"{[t.shape[-1] for t in call.input_tensors]} channels.")
            # A one-channel factor broadcast over all channels: not a channel group
            # that can be pruned channel by channel.
            groups.fix(in_sets[i], f"'{call.layer.name}' broadcasts a one-channel input")
        first = in_sets[full[0]]
        for i in full[1:]:
            groups.tie(first, in_sets[i], call.layer.name)
        return [first]

    def requires_clean_inputs(self, call):
        return not self.product

    def output_dirty(self, call, in_dirty):
        full = self._full_inputs(call)
        if self.product:
            return all(in_dirty[i] for i in full)
        return any(in_dirty)

    def inputs_to_clean(self, call, in_dirty, in_has_pruned):
        """Indices of inputs to mask so that pruned channels read as zero after."""
        full = self._full_inputs(call)
        if self.product:
            if any(not in_dirty[i] for i in full):
                return []
            return [i for i in full if in_has_pruned[i]][:1]
        return [i for i in full if in_dirty[i] and in_has_pruned[i]]


class Concatenate(LayerHandler):
    drops_empty_inputs = True

    def output_sets(self, call, in_sets, groups):
        rank = len(call.output_tensors[0].shape)
        axis = call.layer.axis
        if axis in (-1, rank - 1):
            joined = ()
            for channel_set in in_sets:
                joined = joined + tuple(channel_set)
            return [joined]
        for other in in_sets[1:]:
            groups.tie(in_sets[0], other, call.layer.name)
        return [in_sets[0]]

    def requires_clean_inputs(self, call):
        return True


class Reshape(LayerHandler):
    """Flatten and Reshape: keep the last axis, or fold positions into features."""

    def output_sets(self, call, in_sets, groups):
        in_shape = tuple(call.input_tensors[0].shape)
        out_shape = tuple(call.output_tensors[0].shape)
        if out_shape[-1] == in_shape[-1] and math.prod(in_shape[1:-1] or (1,)) == math.prod(out_shape[1:-1] or (1,)):
            return [in_sets[0]]
        if len(out_shape) == 2 and None not in in_shape[1:] and out_shape[-1] == math.prod(in_shape[1:]):
            positions = math.prod(in_shape[1:-1])
            return [tuple(in_sets[0]) * positions]
        groups.fix(in_sets[0], f"'{call.layer.name}' reshapes {in_shape} to {out_shape}, "
                   "which mixes the channel axis with others")
        return [(Segment(None, out_shape[-1]),)]

    def requires_clean_inputs(self, call):
        return True

    def output_dirty(self, call, in_dirty):
        return False

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        if isinstance(layer, keras.layers.Reshape):
            # The last target dim is the channel count (kept axis) or the flattened
            # feature count; either way it is the number of output positions kept.
            target = list(layer.target_shape)
            target[-1] = len(kept_out[0])
            return clone_layer(layer, target_shape=tuple(target)), []
        return clone_layer(layer), []


def _activation_zero_preserving(layer):
    return activation_name(layer.activation) in _ZERO_PRESERVING_ACTIVATIONS


def _rescaling_zero_preserving(layer):
    offset = layer.offset
    try:
        return float(offset) == 0.0
    except TypeError:
        return False


class ActivationHandler(PerChannel):
    def __init__(self):
        super().__init__(zero_preserving=_activation_zero_preserving)

    def output_sets(self, call, in_sets, groups):
        out_sets = super().output_sets(call, in_sets, groups)
        if activation_name(call.layer.activation) in _CHANNEL_MIXING_ACTIVATIONS:
            groups.fix(in_sets[0], f"'{call.layer.name}' is a channel-mixing activation")
        return out_sets


class Softmax(ChannelMixing):
    def output_sets(self, call, in_sets, groups):
        axis = call.layer.axis
        rank = len(call.input_tensors[0].shape)
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if all(a not in (-1, rank - 1) for a in axes):
            return PerChannel.output_sets(self, call, in_sets, groups)
        return super().output_sets(call, in_sets, groups)


class ElementwiseOp(Merge):
    """keras.ops arithmetic recorded in a functional graph (`x + y`, `x * 0.5`).

    With two tensors it is a merge. With one tensor and a scalar it acts on each
    channel alike; it keeps zeros when the scalar cannot move them
    (x * c, x / c, x + 0). Per-channel constant arrays are refused: slimming
    would have to slice them.
    """

    def __init__(self, operation):
        super().__init__(product=operation in ("multiply", "divide"))
        self.operation = operation

    def _scalars(self, call):
        flat = keras.tree.flatten((call.node.arguments.args, call.node.arguments.kwargs))
        return [a for a in flat if not isinstance(a, keras.KerasTensor)]

    def _is_unary(self, call):
        return len(call.input_tensors) == 1

    def output_sets(self, call, in_sets, groups):
        if not self._is_unary(call):
            return super().output_sets(call, in_sets, groups)
        for scalar in self._scalars(call):
            shape = tuple(getattr(scalar, "shape", ()))
            if shape not in ((), (1,)):
                raise UnsupportedLayerError(
                    f"'{call.name}' ({self.operation}) combines a tensor with a constant "
                    f"of shape {shape}; figs_tf supports scalar constants only. "
                    "Use a layer with a registered handler instead.")
        return [in_sets[0]]

    def requires_clean_inputs(self, call):
        return False if self._is_unary(call) else super().requires_clean_inputs(call)

    def output_dirty(self, call, in_dirty):
        if not self._is_unary(call):
            return super().output_dirty(call, in_dirty)
        if self.operation in ("multiply", "divide"):
            return in_dirty[0]
        scalars = self._scalars(call)
        return in_dirty[0] or any(float(v) != 0.0 for v in scalars)

    def inputs_to_clean(self, call, in_dirty, in_has_pruned):
        if self._is_unary(call):
            return []
        return super().inputs_to_clean(call, in_dirty, in_has_pruned)

    def slim(self, call, kept_in, kept_out):
        return call.layer, []  # a keras.ops operation holds no state


_REGISTRY = {}


def register_handler(layer_class, handler):
    """Teaches figs_tf a layer type. Replaces any handler the type had."""
    if not isinstance(handler, LayerHandler):
        raise TypeError(f"handler must be a figs_tf LayerHandler, got {type(handler).__name__}")
    _REGISTRY[layer_class] = handler


def handler_for(layer):
    handler = _REGISTRY.get(type(layer))
    if handler is None:
        raise UnsupportedLayerError(
            f"figs_tf has no channel rule for layer '{getattr(layer, 'name', layer)}' "
            f"of type {type(layer).__module__}.{type(layer).__name__}. Either register "
            "one (figs_tf.register_handler(LayerType, figs_tf.handlers.PerChannel("
            "zero_preserving=...)) for a per-channel layer, or a LayerHandler "
            "subclass), or keep it out of search by wrapping a model that ends "
            "before it.")
    return handler


def _register_defaults():
    L = keras.layers
    for cls in (L.Conv1D, L.Conv2D, L.Conv3D):
        register_handler(cls, Producer("conv"))
    register_handler(L.Dense, Producer("dense"))
    for cls in (L.SeparableConv1D, L.SeparableConv2D):
        register_handler(cls, Producer("separable"))
    for cls in (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
        register_handler(cls, Producer("transpose"))
    for cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
        register_handler(cls, Depthwise())
    register_handler(L.BatchNormalization, BatchNormalization())
    register_handler(L.LayerNormalization, LayerNormalization())
    register_handler(L.GroupNormalization, ChannelMixing())
    register_handler(L.Softmax, Softmax())
    register_handler(L.Activation, ActivationHandler())
    zero_preserving = [
        L.ReLU, L.LeakyReLU, L.ELU, L.Dropout, L.SpatialDropout1D,
        L.SpatialDropout2D, L.SpatialDropout3D, L.AlphaDropout, L.Identity,
        L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D,
        L.AveragePooling2D, L.AveragePooling3D, L.GlobalAveragePooling1D,
        L.GlobalAveragePooling2D, L.GlobalAveragePooling3D, L.GlobalMaxPooling1D,
        L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, L.ZeroPadding1D,
        L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D,
        L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D, L.Resizing,
        L.GaussianDropout, L.PReLU,
    ]
    for cls in zero_preserving:
        register_handler(cls, PerChannel(zero_preserving=True))
    # f(0) != 0 per channel: a pruned channel must be masked again after these.
    for cls in (L.Normalization, L.GaussianNoise):
        register_handler(cls, PerChannel(zero_preserving=False))
    register_handler(L.Rescaling, PerChannel(zero_preserving=_rescaling_zero_preserving))
    for cls in (L.Add, L.Subtract, L.Average, L.Maximum, L.Minimum):
        register_handler(cls, Merge())
    register_handler(L.Multiply, Merge(product=True))
    register_handler(L.Concatenate, Concatenate())
    from keras.src.ops import numpy as keras_numpy_ops  # pylint: disable=g-import-not-at-top
    for cls, operation in ((keras_numpy_ops.Add, "add"), (keras_numpy_ops.Subtract, "subtract"),
                           (keras_numpy_ops.Multiply, "multiply"), (keras_numpy_ops.TrueDivide, "divide")):
        register_handler(cls, ElementwiseOp(operation))
    register_handler(L.Flatten, Reshape())
    register_handler(L.Reshape, Reshape())
    try:  # ConvNeXt's per-channel scale (not a public Keras layer).
        from keras.src.applications.convnext import LayerScale  # pylint: disable=g-import-not-at-top
        register_handler(LayerScale, PerChannel(zero_preserving=True))
    except ImportError:
        pass


_register_defaults()
