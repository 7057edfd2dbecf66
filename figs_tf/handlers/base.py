"""What every layer handler is: the `LayerHandler` interface, cost `Term`s and shared helpers.

Conventions, used by every handler:
- channels are the last axis, unless the layer's `data_format` (or `axis`)
  says otherwise: `channel_axes` tells the analysis which axis each input is
  read on and where each output's channels are; a handler that does not
  override it reads and makes channels on the last axis. A tensor read on
  another axis than its channels' has its channels kept out of search;
- parameters are what `count_params` counts, non-trainable statistics included;
- FLOPs are multiply-adds per example of convolution and dense kernels only
  (BatchNorm, biases, activations and pooling are not multiply-adds), the
  convention of the MobileNet, FBNet and FiGS papers.
"""

import dataclasses
import math

import keras

from figs_tf.channel_sets import num_channels
from figs_tf.wrapper_layer import ScopedLayer


@dataclasses.dataclass(frozen=True)
class Term:
    """`coefficient * Π count(channel_set)` over `channel_sets` (0, 1 or 2 sets)."""

    coefficient: int
    channel_sets: tuple


class UnsupportedLayerError(ValueError):
    """A layer figs_tf has no channel rule for, or uses in a way its rule does not cover."""


class LayerHandler:
    """How channels flow through one kind of layer, what it costs and how it is slimmed.

    Subclasses override what differs from the defaults: a layer that keeps no
    state per channel and reads its inputs without mixing channels needs only
    `output_sets`. These members are the whole interface: the rest of figs_tf
    reads nothing else of a handler (tests/test_wrap.py registers a handler
    written against them alone).

    - the channel analysis (`figs_tf.channel_groups.analyze`): `channel_axes`,
      `output_sets`, `inner_sets`, `functional_equivalent`, `mixes_channels`,
      `inputs_to_clean` (by default from `requires_clean_inputs`) and
      `output_dirty`;
    - the cost (`figs_tf.cost`): `param_terms` and `flop_terms`;
    - the search model (`figs_tf.wrap`): `search_call` (and through it
      `gated_layer` for a layer with inner sets);
    - the export and slimming (`figs_tf.export`, `figs_tf.slim`,
      `figs_tf.build_from_architecture`): `slim`, `drops_empty_inputs`,
      `output_channel_l1` and `inner_channel_l1` (which channels an
      architecture without kept channels keeps), and for dead branches
      (figs_tf.branches) `sums_inputs`, `uniform_output`,
      `can_absorb_output_shift` and `absorb_output_shift`.

    Example:

    >>> class Doubler(keras.layers.Layer):          # x * 2 per channel
    ...     def call(self, x): return 2 * x
    >>> figs_tf.register_handler(Doubler, figs_tf.handlers.PerChannel(zero_preserving=True))
    """

    # Reads all input channels to make new ones (conv, dense): such a layer needs
    # pruned input channels to read as zero, and keeps at least one input channel.
    mixes_channels = False

    # Slimming leaves out an input with no channel left (Concatenate) instead of
    # requiring every input to be kept.
    drops_empty_inputs = False

    def channel_axes(self, call, in_axes):
        """(the axis each input's channels are read on, each output's channel axis), non-negative.

        Args:
          call: the `keras_graph.LayerCall`.
          in_axes: the channel axis of each input tensor, where its producer put it
            (None for channels that are never pruned and have no axis yet: a model
            input, and what layers that keep their input's axis make of it).

        The analysis stores both on the call (`call.read_axes`, `call.output_axes`)
        before `output_sets`. An input read on another axis than its own channel
        axis has its channels kept out of search (a layer that reads the positions
        of a channels_first tensor as channels mixes them), and `in_sets` then
        holds fixed channels of the read axis. The default is the last axis
        everywhere, the convention of layers without a data format.
        """
        return last_axes(call.input_tensors), last_axes(call.output_tensors)

    def output_sets(self, call, in_sets, groups):
        """Channel sets of the call's outputs, given those of its inputs.

        Args:
          call: the `keras_graph.LayerCall` (layer, node, symbolic tensors).
          in_sets: the channel set of each input (tuples of `Segment`).
          groups: the analysis' group builder: `new_group(size, producer)`,
            `tie(set_a, set_b, where)`, `fix(channel_set, reason)`,
            `fix_if_searched(trigger_set, channel_set, reason)`,
            `note_if_fixed(channel_set, note)` (both decided when the analysis ends).

        Returns:
          A list with the channel set of each output.
        """
        raise NotImplementedError

    def later_use_ties(self, call, first_call):
        """How a later use of a shared layer shares channels with its first use.

        None (the default): every use is called alike (the same options) and
        each input and output lives or dies with the same one of the first use;
        the search model applies the first use's stand-in again. Otherwise a use
        of its own kind (a tied embedding's `reverse=True` call, reading what
        the lookup made): [(("in" or "out", index in this call), ("in" or
        "out", index in the first call))], the sets to tie; the search model
        and the slim model run it as its own call of the one (slim) layer.
        """
        return None

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
        """The layer's parameter count as a list of `Term`s."""
        return []

    def flop_terms(self, call, in_sets, out_sets):
        """The layer's multiply-adds per example as a list of `Term`s."""
        return []

    def search_call(self, call, args, kwargs, gating):
        """Calls the layer inside the search model (`figs_tf.wrap`); returns its outputs.

        `gating` is None when no channel of the call is searched, else
        (gate_vector, [the gate index of each channel of each output, then of
        each inner set (`inner_sets`)]). The default calls the layer as it is
        (a sublayer of an expanded block through a `ScopedLayer` named
        `<block>.<sublayer>`): wrap gates its outputs after it where a reader
        needs that. A layer with inner sets runs as its `gated_layer`; a layer
        whose outputs feed back into it (an RNN's units) overrides this to
        apply the gates inside.
        """
        outputs = len(call.output_keys)
        if gating is not None and len(gating[1]) > outputs:  # channel groups inside the layer (heads)
            gate_vector, indices = gating
            return self.gated_layer(call, indices[outputs:])(gate_vector, *args, **kwargs)
        if call.name != call.layer.name:
            return ScopedLayer(call.layer, name=call.name)(*args, **kwargs)
        return call.layer(*args, **kwargs)

    def slim(self, call, kept_in, kept_out):
        """(new layer, its weights) keeping channel positions kept_in / kept_out.

        `kept_in[i]` and `kept_out[j]` are index arrays along the last axis of
        input i and output j; after the outputs, `kept_out` holds the kept
        channels of each inner set (`inner_sets`). The default fits layers
        whose weights and config do not depend on the channel count.
        """
        return clone_layer(call.layer), call.layer.get_weights()

    def output_channel_l1(self, layer):
        """L1 norm of the weights that make each output channel, a NumPy vector (channel choice without gates).

        `figs_tf.build_from_architecture` asks it of every layer that mixes
        channels when an architecture gives widths but not which channels to
        keep: the channels of largest norm are kept (summed over tied layers).
        A handler with `mixes_channels = True` overrides it.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot rank the output channels of layer "
                                  f"'{getattr(layer, 'name', layer)}': give the architecture its kept channels "
                                  "(figs_tf.save_architecture(..., channels=...)) or override output_channel_l1.")

    # Dead branches (figs_tf.branches): a summand whose inner channels all close
    # is removed and the constant it added is folded into what survives. The
    # defaults below are the safe answers: a layer type that does not override
    # them is never a sum, keeps a constant's position-dependence unknown (so a
    # branch through it keeps one channel instead), and absorbs no shift.

    def sums_inputs(self, call):
        """True if the output is the plain elementwise sum of the call's inputs (Add)."""
        return False

    def uniform_output(self, call, in_uniform, in_zero):
        """True if the output is the same at every position whenever the inputs are.

        Asked about layers of a dead branch, whose inputs no longer depend on
        the model's inputs: `in_uniform[i]` says input i has the same value at
        every position (every axis but batch and channels), `in_zero[i]` that
        it has no channel left at all (the readers see zeros). A layer on a
        zero input gives its bias everywhere; a 'same'-padded 3x3 convolution
        on a non-zero constant does not (the borders read the padding).
        """
        return False

    def can_absorb_output_shift(self, call):
        """True if adding a per-channel constant to the output can be folded into the weights."""
        return False

    def absorb_output_shift(self, call, weights, shift):
        """`weights` (as returned by `slim`) changed so that the layer's output grows by `shift`.

        `shift` has one value per kept output channel. Only called when
        `can_absorb_output_shift(call)` is True.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot absorb a shift of its output.")

    # --- Channel groups inside a layer (attention heads); most layers have none. ---

    def inner_sets(self, call, in_sets, groups):
        """[(label, channel set)] of channel groups that live inside the layer.

        Attention heads are one: no tensor of the graph has a heads axis, yet a
        head can be gated and cut. The analysis passes these sets after the
        outputs' (`out_sets`, `kept_out`), exports their widths as
        `"<layer>/<label>"` and keeps at least one channel of each.
        """
        return []

    def gated_layer(self, call, inner_gate_indices):
        """A layer computing the call with its inner channels gated, for the search model.

        Called as `layer(gate_vector, *args, **kwargs)` with the call's own
        arguments; `inner_gate_indices[i][c]` is the index in `gate_vector` of
        channel c of inner set i. Only layers with `inner_sets` need it.
        """
        raise NotImplementedError(f"{type(self).__name__} has inner channel sets but no gated layer.")

    def inner_channel_l1(self, layer, label):
        """L1 norm of each channel of inner set `label` (channel choice without gates)."""
        raise NotImplementedError(f"{type(self).__name__} cannot rank the channels of inner set '{label}'.")

    def functional_equivalent(self, call):
        """None, or a functional model computing the call from the layer's own sublayers.

        A layer that holds other layers (a keras_hub Transformer block) is
        analysed, wrapped and slimmed through its equivalent, inlined in its
        place: its inputs are one `keras.Input` per distinct tensor of the
        call, in order of first use (`equivalent_model` builds them), and its
        outputs those of the call.
        """
        return None


def equivalent_model(call, body):
    """A functional model computing `body(args, kwargs)` on the call's arguments.

    `args` and `kwargs` are the call's own, with one `keras.Input` per distinct
    tensor in place of the tensors (see `LayerHandler.functional_equivalent`).
    """
    inputs = {}
    for key, tensor in zip(call.input_keys, call.input_tensors):
        if key not in inputs:
            inputs[key] = keras.Input(shape=tensor.shape[1:], batch_size=tensor.shape[0], dtype=tensor.dtype)
    args, kwargs = call.call_arguments(inputs)
    return keras.Model(list(inputs.values()), body(args, kwargs), name=f"{call.layer.name}_equivalent")


def last_axes(tensors):
    return [max(len(t.shape) - 1, 0) for t in tensors]


def data_format_axis(layer, rank):
    """The channel axis of a rank-`rank` tensor in the layer's data format (none: channels_last)."""
    return 1 if getattr(layer, "data_format", None) == "channels_first" else rank - 1


def following_axes(call, in_axes):
    """channel_axes of a layer that keeps its input's channels where they are (no data format of its own).

    Every input is read on the first input's axis that is known; an output of
    another rank (a reduction) keeps the channel axis counted from the end if it
    was last, else from the front. Inputs without an axis (a model input's
    channels) are read on the last axis, and the outputs have none either.
    """
    known = [a for a in in_axes if a is not None]
    if not known:
        return last_axes(call.input_tensors), [None] * len(call.output_tensors)
    axis = known[0]
    rank = len(call.input_tensors[in_axes.index(axis)].shape)
    outputs = [axis if len(t.shape) == rank or axis < rank - 1 else len(t.shape) - 1 for t in call.output_tensors]
    return [axis] * len(call.input_tensors), outputs


def clone_layer(layer, **config_changes):
    """A fresh layer of the same type and name, with some config entries changed."""
    config = layer.get_config()
    config.update(config_changes)
    return type(layer).from_config(config)


def to_numpy(variable):
    return keras.ops.convert_to_numpy(variable)


def spatial_positions(shape, layer_name, axis=-1):
    """The number of positions (product of the axes other than batch and channels) of a static shape."""
    axis = axis % len(shape)
    dims = [d for i, d in enumerate(shape) if i not in (0, axis)]
    if any(d is None for d in dims):
        raise UnsupportedLayerError(
            f"Layer '{layer_name}' has an unknown spatial size {tuple(shape)}: "
            "multiply-adds need a static input size. Build the model with a fixed "
            "input shape (e.g. keras.Input((224, 224, 3))).")
    return math.prod(dims)


def weight_channel_dim(weight_shape, tensor_shape, axis, channels):
    """The dimension of a per-channel weight that runs along the tensor's channel axis, or None.

    A weight shaped like the tensor without its batch axis (PReLU's alpha) has it
    where the tensor does; a vector (BatchNorm's gamma) has it as its only axis;
    otherwise a weight indexes channels by its last dimension when channels are
    the tensor's last axis.
    """
    rank = len(tensor_shape)
    if len(weight_shape) == rank - 1 and rank > 2:
        return axis - 1 if weight_shape[axis - 1] == channels else None
    if len(weight_shape) == 1:
        return 0 if weight_shape[0] == channels else None
    if len(weight_shape) and axis == rank - 1 and weight_shape[-1] == channels:
        return len(weight_shape) - 1
    return None


def per_channel_weight_terms(layer, channel_set, channel_dim):
    """Parameter terms of a layer whose weights run along the channel axis or are constant.

    `channel_dim(weight)`: the dimension of the weight that indexes the
    channels, or None (a weight that does not scale with them).
    """
    channels = num_channels(channel_set)
    per_channel, constant = 0, 0
    for weight in layer.weights:
        size = math.prod(weight.shape)
        if channel_dim(weight) is not None:
            per_channel += size // channels
        else:
            constant += size
    terms = []
    if per_channel:
        terms.append(Term(per_channel, (channel_set,)))
    if constant:
        terms.append(Term(constant, ()))
    return terms


ZERO_PRESERVING_ACTIVATIONS = {
    "linear", "relu", "relu6", "elu", "selu", "celu", "tanh", "swish", "silu",
    "gelu", "hard_swish", "hard_silu", "leaky_relu", "softsign", "mish",
    "hard_tanh", "tanh_shrink", "soft_shrink", "hard_shrink", "sparse_sigmoid",
}
CHANNEL_MIXING_ACTIVATIONS = {"softmax", "log_softmax", "sparsemax", "glu"}


def activation_name(activation):
    """The registered name of a Keras activation (a function, a name or None)."""
    if activation is None:
        return "linear"
    try:
        name = keras.activations.serialize(activation)
    except (ValueError, TypeError):
        name = getattr(activation, "__name__", repr(activation))
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name", repr(name)))
    return str(name)
