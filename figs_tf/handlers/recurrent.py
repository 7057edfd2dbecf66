"""Recurrent layers: LSTM, GRU, SimpleRNN, and Bidirectional over one of them.

An RNN's units are a channel group, like a Dense layer's: a unit's columns are
cut from every gate block of the input kernel, the recurrent kernel and the
bias (LSTM: i, f, c, o; GRU: z, r, h, with GRU's `reset_after` input and
recurrent biases both), and its row from the recurrent kernel. The search model
runs the layer through `figs_tf.GatedRecurrence`, which gates the units' states
inside the recurrence, so a pruned unit's state is exactly zero at every step
and the search model in inference computes what the slimmed layer computes.

A Bidirectional layer's two directions share one group: unit c of the forward
and of the backward layer are kept or pruned together (their outputs are summed
or multiplied unit by unit in the other merge modes, and a Bidirectional keeps
one width in the exported architecture).

Cost, per example: parameters are what `count_params` counts; multiply-adds
are those of the input and recurrent kernels at every step of the input
sequence (masked steps included, as Keras computes them):
T × blocks × (inputs + units) × units, blocks = 4 (LSTM), 3 (GRU), 1
(SimpleRNN), times 2 for Bidirectional. Gate nonlinearities and elementwise
products are not multiply-adds of a kernel and are not counted, as for
convolutions.

Stateful layers are refused; a layer called with `initial_state` keeps its
units out of search (its state comes from elsewhere). `Masking` passes channels
through and its mask on to the RNNs.
"""

import numpy as np

import keras

from figs_tf.channel_sets import Segment
from figs_tf.gated_recurrence import GatedRecurrence
from figs_tf.handlers.base import (LayerHandler, Term, UnsupportedLayerError, clone_layer, following_axes, last_axes,
                                   to_numpy)
from figs_tf.handlers.per_channel import PerChannel


def _blocks(layer):
    """Gate blocks of a recurrent layer's kernels (LSTM 4, GRU 3, SimpleRNN 1)."""
    return layer.cell.kernel.shape[-1] // layer.cell.units


def _columns(blocks, units, kept):
    """Kernel columns of the kept units in every gate block."""
    return np.concatenate([block * units + np.asarray(kept, dtype=np.int64) for block in range(blocks)])


def _timesteps(call):
    steps = call.input_tensors[0].shape[1]
    if steps is None:
        raise UnsupportedLayerError(
            f"Layer '{call.layer.name}' reads sequences of unknown length {tuple(call.input_tensors[0].shape)}: "
            "multiply-adds need a static length. Build the model with a fixed sequence length "
            "(e.g. keras.Input((50, 16))), or count parameters only.")
    return steps


class RecurrentHandler(LayerHandler):
    """LSTM, GRU and SimpleRNN: the units are a new channel group."""

    mixes_channels = True  # every unit reads every input channel

    def directions(self, layer):
        """The recurrent layers the call runs (one; Bidirectional: two)."""
        return [layer]

    def units(self, layer):
        return layer.units

    def _check(self, call):
        layer = call.layer
        if layer.stateful:
            raise UnsupportedLayerError(
                f"Layer '{layer.name}' is stateful: its state carries over between batches in variables "
                "sized by its units. figs_tf cannot slim that state; build the model with stateful=False.")

    def output_sets(self, call, in_sets, groups):
        self._check(call)
        layer = call.layer
        units = self.units(layer)
        unit_set = (Segment(groups.new_group(units, layer.name), units),)
        mask = call.keyword_positions("mask")  # (batch, steps) booleans: no channels
        states = [i for i in range(1, len(in_sets)) if i not in mask]
        if states:
            # initial_state: the states come from other layers, unit by unit.
            groups.fix(unit_set, f"'{layer.name}' starts from an initial_state given to it")
            for i in states:
                groups.fix(in_sets[i], f"they are the initial_state of '{layer.name}'")
        return self.layer_output_sets(call, unit_set)

    def layer_output_sets(self, call, unit_set):
        """The output and every returned state hold one value per unit."""
        return [unit_set for _ in call.output_tensors]

    def unit_set(self, call, out_sets):
        """The set of one direction's units: the output's first segment (a concatenation repeats it)."""
        return out_sets[0][:1]

    def requires_clean_inputs(self, call):
        return True

    def output_dirty(self, call, in_dirty):
        return False  # GatedRecurrence gates the states, the output among them

    def param_terms(self, call, in_sets, out_sets):
        units = self.unit_set(call, out_sets)
        terms = []
        for layer in self.directions(call.layer):
            cell = layer.cell
            blocks = _blocks(layer)
            terms += [Term(blocks, (in_sets[0], units)), Term(blocks, (units, units))]
            if cell.use_bias:
                terms.append(Term(int(np.prod(cell.bias.shape)) // cell.units, (units,)))
        return terms

    def flop_terms(self, call, in_sets, out_sets):
        units = self.unit_set(call, out_sets)
        steps = _timesteps(call)
        terms = []
        for layer in self.directions(call.layer):
            blocks = _blocks(layer)
            terms += [Term(steps * blocks, (in_sets[0], units)), Term(steps * blocks, (units, units))]
        return terms

    def search_call(self, call, args, kwargs, gating):
        if gating is None:
            return call.layer(*args, **kwargs)
        gate_vector, gate_indices = gating
        units = self.units(call.layer)
        return GatedRecurrence(call.layer, gate_indices[0][:units], name=call.name)(
            args[0], gate_vector, **kwargs)

    def kept_units(self, call, kept_out):
        kept = np.asarray(kept_out[0])
        return kept[kept < self.units(call.layer)]

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        kept = self.kept_units(call, kept_out)
        return self._slim_direction(layer, kept_in[0], kept)

    @staticmethod
    def _slim_direction(layer, kept_in, kept):
        cell = layer.cell
        columns = _columns(_blocks(layer), cell.units, kept)
        weights = [to_numpy(cell.kernel)[kept_in][:, columns],
                   to_numpy(cell.recurrent_kernel)[kept][:, columns]]
        if cell.use_bias:
            weights.append(to_numpy(cell.bias)[..., columns])
        return clone_layer(layer, units=len(kept)), weights

    def output_channel_l1(self, layer):
        """L1 norm of each unit's input-kernel columns over all gate blocks (and both directions)."""
        total = 0
        for direction in self.directions(layer):
            kernel = np.abs(to_numpy(direction.cell.kernel))
            total = total + kernel.reshape(kernel.shape[0], -1, direction.cell.units).sum(axis=(0, 1))
        return total


class BidirectionalHandler(RecurrentHandler):
    """Bidirectional over an LSTM, GRU or SimpleRNN: both directions' unit c form one channel."""

    def directions(self, layer):
        return [layer.forward_layer, layer.backward_layer]

    def units(self, layer):
        return layer.forward_layer.units

    def _check(self, call):
        layer = call.layer
        for direction in self.directions(layer):
            if type(direction) not in RECURRENT_LAYERS:
                raise UnsupportedLayerError(
                    f"Bidirectional '{layer.name}' runs a {type(direction).__name__}; figs_tf handles "
                    "Bidirectional over LSTM, GRU and SimpleRNN.")
        if layer.forward_layer.units != layer.backward_layer.units:
            raise UnsupportedLayerError(
                f"Bidirectional '{layer.name}' has {layer.forward_layer.units} forward and "
                f"{layer.backward_layer.units} backward units; figs_tf prunes unit c of both directions "
                "together and needs the same number in each.")
        super()._check(call)

    def layer_output_sets(self, call, unit_set):
        mode = call.layer.merge_mode
        outputs = 2 if mode is None else 1
        merged = unit_set + unit_set if mode == "concat" else unit_set
        return [merged] * outputs + [unit_set] * (len(call.output_tensors) - outputs)

    def slim(self, call, kept_in, kept_out):
        layer = call.layer
        kept = self.kept_units(call, kept_out)
        forward, forward_weights = self._slim_direction(layer.forward_layer, kept_in[0], kept)
        backward, backward_weights = self._slim_direction(layer.backward_layer, kept_in[0], kept)
        config = layer.get_config()
        config["layer"] = keras.saving.serialize_keras_object(forward)
        config["backward_layer"] = keras.saving.serialize_keras_object(backward)
        return type(layer).from_config(config), forward_weights + backward_weights


class _MaskOpHandler(LayerHandler):
    """A `keras.ops` call that computes a boolean mask: reads clean inputs, holds no state."""

    def requires_clean_inputs(self, call):
        return True

    def output_dirty(self, call, in_dirty):
        return False

    def slim(self, call, kept_in, kept_out):
        return call.layer, []


class NotEqualHandler(_MaskOpHandler):
    """`x != c` recorded in a graph (Masking's and Embedding's masks): per channel, a boolean.

    A pruned channel reads 0 (its input is kept clean), so with c = 0 it reads
    False, as if absent; with another c the channels are kept out of search.
    """

    def channel_axes(self, call, in_axes):
        return following_axes(call, in_axes)

    def output_sets(self, call, in_sets, groups):
        scalars = [a for a in keras.tree.flatten(call.node.arguments.args) if not isinstance(a, keras.KerasTensor)]
        if len(call.input_tensors) != 1 or len(scalars) != 1 or np.ndim(scalars[0]):
            raise UnsupportedLayerError(
                f"'{call.name}' (not_equal) compares {len(call.input_tensors)} tensors; figs_tf supports "
                "comparing one tensor with a scalar (the masks of Masking and Embedding).")
        if float(scalars[0]) != 0.0:
            groups.fix(in_sets[0], f"'{call.name}' compares every channel with {scalars[0]}")
        return [in_sets[0]]


class AnyHandler(_MaskOpHandler):
    """`any(x, axis)` recorded in a graph (Masking's mask): over the channel axis it makes a step mask."""

    @staticmethod
    def _reduced(call):
        rank = len(call.input_tensors[0].shape)
        axes = call.layer.axis
        axes = range(rank) if axes is None else (axes if isinstance(axes, (list, tuple)) else [axes])
        return {a % rank for a in axes}

    def channel_axes(self, call, in_axes):
        axis, reduced = in_axes[0], self._reduced(call)
        if axis is None:  # channels never pruned (a model input's)
            return last_axes(call.input_tensors), [None]
        if axis in reduced:
            return [axis], last_axes(call.output_tensors)
        return [axis], [axis if call.layer.keepdims else axis - sum(r < axis for r in reduced)]

    def output_sets(self, call, in_sets, groups):
        if call.read_axes[0] in self._reduced(call):
            return [(Segment(None, call.output_tensors[0].shape[-1] or 0),)]
        return [in_sets[0]]


class MaskingHandler(PerChannel):
    """Masking: zeroes, and masks for the RNNs after it, the steps where every channel equals `mask_value`.

    Whether a step is masked depends on all channels. A pruned channel reads
    0 (its input is kept clean), so with mask_value 0 it never changes the
    decision; with another mask_value it would, and the channels are kept out
    of search.
    """

    def __init__(self):
        super().__init__(zero_preserving=True)

    def channel_axes(self, call, in_axes):
        return last_axes(call.input_tensors), last_axes(call.output_tensors)  # compares along the last axis

    def output_sets(self, call, in_sets, groups):
        out_sets = super().output_sets(call, in_sets, groups)
        if float(call.layer.mask_value) != 0.0:
            groups.fix(in_sets[0], f"'{call.layer.name}' compares every channel with mask_value "
                       f"{call.layer.mask_value}")
        return out_sets

    def requires_clean_inputs(self, call):
        return True


RECURRENT_LAYERS = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)

__all__ = ["AnyHandler", "BidirectionalHandler", "MaskingHandler", "NotEqualHandler", "RECURRENT_LAYERS",
           "RecurrentHandler"]
