"""`ChannelBias`: adds a learned bias per channel, y = x + b.

`figs_tf.slim` puts one after a sum whose removed summands added a constant
that no surviving summand could absorb (no BatchNorm shift or bias of its own
feeds the sum; e.g. a ResNet block reduced to its identity shortcut): the
bias holds that constant, so the slimmed network stays exact. In a network
built for retraining (`figs_tf.build_from_architecture`) it starts at zero
and is trained like any bias; the exported cost counts its parameters.

    x = keras.layers.Add()([a, b])
    x = figs_tf.ChannelBias(name="add_folded_bias")(x)
"""

import keras
from keras import ops

from figs_tf import handlers


@keras.saving.register_keras_serializable(package="figs_tf")
class ChannelBias(keras.layers.Layer):
    """Adds a trainable bias, one value per channel.

    Args:
      bias_initializer: initializer of the bias (default zeros).
      data_format: "channels_last" (default: channels on the last axis) or
        "channels_first" (on axis 1), as Keras's image layers.
      **kwargs: base Layer arguments (name, dtype, ...).

    Example:

    >>> layer = ChannelBias()
    >>> layer(np.zeros((2, 4, 4, 3))).shape
    (2, 4, 4, 3)
    """

    def __init__(self, bias_initializer="zeros", data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"ChannelBias data_format must be 'channels_last' or 'channels_first', got {data_format!r}.")
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.data_format = data_format

    def build(self, input_shape):
        self.axis = 1 if self.data_format == "channels_first" else len(input_shape) - 1
        self.bias = self.add_weight(name="bias", shape=(input_shape[self.axis],), initializer=self.bias_initializer,
                                    trainable=True)

    def call(self, inputs):
        shape = [-1 if d == self.axis else 1 for d in range(len(inputs.shape))]
        return inputs + ops.reshape(ops.cast(self.bias, inputs.dtype), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["bias_initializer"] = keras.initializers.serialize(self.bias_initializer)
        config["data_format"] = self.data_format
        return config


class ChannelBiasHandler(handlers.PerChannel):
    """A per-channel shift: f(0) = b, and a further shift is a larger b."""

    def __init__(self):
        super().__init__(zero_preserving=False)

    def can_absorb_output_shift(self, call):
        return True

    def absorb_output_shift(self, call, weights, shift):
        return [weights[0] + shift]


handlers.register_handler(ChannelBias, ChannelBiasHandler())
