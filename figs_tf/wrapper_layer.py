"""`WrapperLayer`: a layer of the search model that stands for one call of a layer of the user's model.

`figs_tf.wrap` rebuilds the user's graph with the user's own layers, so that
the search model trains them. Two kinds of calls need a stand-in:

- a layer inside an expanded block (a keras_hub Transformer block is analysed
  through a functional equivalent of its sublayers): blocks repeat their
  sublayers' names, and a Keras model needs unique names, so the call goes
  through a `ScopedLayer` named `<block>.<sublayer>`;
- a layer with channel groups inside it (attention heads): its handler's
  gated layer (`LayerHandler.gated_layer`) computes it with the gates applied;
- a recurrent layer whose units are searched (`GatedRecurrence`): the gates
  act inside the recurrence.

Both hold the user's layer (`wrapped_layer`, weights shared) and serialize it
with themselves; the channel analysis of a loaded search model reads their
calls as calls of `wrapped_layer` (figs_tf.channel_groups).
"""

import keras
from keras import ops


def take_gates(gate_vector, indices):
    """gate_vector[indices] (a list of ints): a slice when they are contiguous (a tensor that is one
    whole group in order, attention heads, RNN units), else a gather."""
    first = indices[0] if indices else 0
    if list(indices) == list(range(first, first + len(indices))):
        return gate_vector[first:first + len(indices)]
    return ops.take(gate_vector, ops.convert_to_tensor(indices, dtype="int32"))


class LayerHolder(keras.layers.Layer):
    """A layer that holds one layer of the user's model (`wrapped_layer`, weights shared) and serializes it
    with itself.

    Args:
      layer: the user's layer (shared, not copied).
      **kwargs: Layer arguments.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.wrapped_layer = layer

    def get_config(self):
        config = super().get_config()
        config["layer"] = keras.saving.serialize_keras_object(self.wrapped_layer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"))
        return cls(layer, **config)


class WrapperLayer(LayerHolder):
    """Base of the stand-ins: holds `wrapped_layer`; the positional tensors at `gate_positions` are gate vectors.

    The channel analysis reads a call of a WrapperLayer as one of its `wrapped_layer`.

    Args:
      layer: the user's layer (shared, not copied).
      **kwargs: Layer arguments (`name`: the name the call has in the analysis).
    """

    gate_positions = ()


@keras.saving.register_keras_serializable(package="figs_tf")
class ScopedLayer(WrapperLayer):
    """Calls the wrapped layer under another name (`<block>.<sublayer>`).

    Example:

        dense = block.sublayer                        # named "dense" in every block
        y = figs_tf.wrapper_layer.ScopedLayer(dense, name="block_3.dense")(x)
    """

    def call(self, *args, **kwargs):
        return self.wrapped_layer(*args, **kwargs)
