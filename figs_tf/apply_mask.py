"""`ApplyMask`: multiplies each channel of a tensor by its gate.

`figs_tf.wrap` places one after every tensor whose pruned channels a reader
must see as zero; by hand:

    gate_vector, widths = figs_tf.MaskLayer(group_sizes=[16])(inputs)
    x = keras.layers.Conv2D(16, 3)(inputs)
    x = figs_tf.ApplyMask(list(range(16)))([x, gate_vector])   # channel c reads gate c
"""

import keras
from keras import ops

from figs_tf import channel_groups
from figs_tf.wrapper_layer import take_gates


@keras.saving.register_keras_serializable(package="figs_tf")
class ApplyMask(keras.layers.Layer):
    """Multiplies channel c of a tensor by `gate_vector[gate_indices[c]]`.

    Called on `[x, gate_vector]` where `gate_vector` is MaskLayer's first output.

    Args:
      gate_indices: for each channel, its index into the gate vector.
      axis: the channel axis (-1, or 1 for channels_first).
    """

    def __init__(self, gate_indices, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.supports_masking = True  # an RNN's step mask passes through, as through the layer it follows
        self.gate_indices = [int(i) for i in gate_indices]

    def call(self, inputs):
        x, gate_vector = inputs
        gates = take_gates(gate_vector, self.gate_indices)
        axis = self.axis % len(x.shape)
        if axis != len(x.shape) - 1:  # channels_first: broadcast over the positions after the channel axis
            gates = ops.reshape(gates, (-1,) + (1,) * (len(x.shape) - 1 - axis))
        return x * ops.cast(gates, x.dtype)

    def compute_output_spec(self, inputs):
        x = inputs[0]
        return keras.KerasTensor(x.shape, dtype=x.dtype)

    def get_config(self):
        config = super().get_config()
        config["gate_indices"] = self.gate_indices
        config["axis"] = self.axis
        return config


channel_groups.register_figs_layer(ApplyMask, "passthrough")
