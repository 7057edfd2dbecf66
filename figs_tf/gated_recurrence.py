"""`GatedRecurrence`: an RNN layer of the user's model run with its units' gates inside the recurrence.

A unit of an LSTM, GRU or SimpleRNN is read by every other unit through the
recurrent kernel, at every step. Gating only the layer's output would leave a
pruned unit's state (non-zero through its bias) feeding the others, so the
search model would compute something the slimmed layer, whose unit is gone,
does not. `figs_tf.wrap` therefore runs such a layer through this wrapper:
each step's new states (LSTM: h and c; GRU, SimpleRNN: h) and output are
multiplied by the units' gates before the next step reads them. With the hard
inference mask a pruned unit's state is exactly 0 at every step, and the other
units compute exactly what they compute in the slimmed layer; in training the
relaxed gate scales the unit's state. The wrapped layer's own cell and weights
are used (shared, not copied), so training the search model trains the user's
layer.

    gated = GatedRecurrence(lstm, gate_indices=list(range(16)))
    y = gated(x, gate_vector)             # what lstm(x) returns, units gated
"""

import keras
from keras import ops

from figs_tf.wrapper_layer import WrapperLayer, take_gates


class _GatedCell(keras.layers.Layer):
    """One step of a user cell, then its states and output times the units' gates.

    The gates arrive appended to each step's input (the last `units` features),
    so that the step needs nothing but its arguments.
    """

    def __init__(self, cell, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell
        self.state_size = cell.state_size
        self.output_size = cell.output_size

    def build(self, input_shape):
        self.built = True  # the user's cell is built already

    def get_initial_state(self, batch_size=None):
        return self.cell.get_initial_state(batch_size=batch_size)

    def call(self, inputs, states, training=False):
        units = self.output_size
        x, gates = inputs[..., :-units], inputs[..., -units:]
        output, new_states = self.cell(x, states, training=training)
        new_states = keras.tree.flatten(new_states)
        return output * gates, [state * gates for state in new_states]


@keras.saving.register_keras_serializable(package="figs_tf")
class GatedRecurrence(WrapperLayer):
    """Runs `layer` (LSTM, GRU, SimpleRNN, or Bidirectional over one) with unit c gated by `gate_vector[gate_indices[c]]`.

    Called on `(sequences, gate_vector)`, with the wrapped layer's `mask` and
    `training`; returns what the wrapped layer returns. A Bidirectional
    layer's two directions read the same gates (unit c of both is kept or
    pruned together). Stateful layers and calls with `initial_state` are not
    wrapped (figs_tf keeps their units out of search).

    Args:
      layer: the user's recurrent layer (shared, not copied).
      gate_indices: for each unit, its index into the gate vector.
    """

    gate_positions = (1,)  # called on (sequences, gate_vector): the sequences stay first for Keras's masks

    def __init__(self, layer, gate_indices, **kwargs):
        super().__init__(layer, **kwargs)
        self.gate_indices = [int(i) for i in gate_indices]
        directions = [layer.forward_layer, layer.backward_layer] if self._bidirectional else [layer]
        self._loops = [keras.layers.RNN(_GatedCell(d.cell), return_sequences=d.return_sequences,
                                        return_state=d.return_state, go_backwards=d.go_backwards, unroll=d.unroll,
                                        zero_output_for_mask=d.zero_output_for_mask, name=f"gated_{d.name}")
                       for d in directions]
        self.supports_masking = True

    @property
    def _bidirectional(self):
        return isinstance(self.wrapped_layer, keras.layers.Bidirectional)

    def build(self, sequences_shape, gate_vector_shape=None):
        if not self.wrapped_layer.built:
            self.wrapped_layer.build(sequences_shape)
        self.built = True

    def call(self, sequences, gate_vector, training=None, mask=None):
        gates = take_gates(gate_vector, self.gate_indices)
        gates = ops.cast(gates, sequences.dtype)
        # (batch, time, units): the gates appended to every step's input.
        gated_input = ops.concatenate([sequences, ops.zeros_like(sequences[..., :1]) + gates], axis=-1)
        results = [self._run(loop, sequences, gated_input, mask, training) for loop in self._loops]
        if not self._bidirectional:
            return results[0]
        return self._merge(results)

    def _run(self, loop, sequences, gated_input, mask, training):
        cell = loop.cell.cell
        # As keras.layers.RNN does for its own cell: draw the dropout masks once per call,
        # outside the loop, and forget them after.
        prepared = training and (getattr(cell, "dropout", 0) or getattr(cell, "recurrent_dropout", 0))
        if prepared:
            cell.get_dropout_mask(sequences[:, 0, :])
            cell.get_recurrent_dropout_mask(ops.zeros_like(gated_input[:, 0, -len(self.gate_indices):]))
        result = loop(gated_input, mask=mask, training=training)
        if prepared:
            cell.reset_dropout_mask()
            cell.reset_recurrent_dropout_mask()
        return result

    def _merge(self, results):
        """Bidirectional's merge of the two directions (keras.layers.Bidirectional.call)."""
        forward, backward = results
        states = ()
        if self.wrapped_layer.return_state:
            states = tuple(forward[1:]) + tuple(backward[1:])
            forward, backward = forward[0], backward[0]
        if self.wrapped_layer.return_sequences:
            backward = ops.flip(backward, axis=1)
        mode = self.wrapped_layer.merge_mode
        if mode == "concat":
            output = ops.concatenate([forward, backward], axis=-1)
        elif mode == "sum":
            output = forward + backward
        elif mode == "ave":
            output = (forward + backward) / 2
        elif mode == "mul":
            output = forward * backward
        else:
            output = (forward, backward)
        if not states:
            return output
        return (output if isinstance(output, tuple) else (output,)) + states

    def compute_output_spec(self, sequences, gate_vector, training=None, mask=None):
        return self.wrapped_layer.compute_output_spec(sequences)

    def compute_mask(self, sequences, mask=None):
        return self.wrapped_layer.compute_mask(sequences, mask)

    def get_config(self):
        config = super().get_config()  # the wrapped layer (WrapperLayer)
        config["gate_indices"] = self.gate_indices
        return config
