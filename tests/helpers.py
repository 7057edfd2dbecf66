"""Small models and helpers shared by the tests."""

import keras
import numpy as np

from figs_tf.wrapping import gates_of, channel_graph_of


def set_all_logits(search, value):
    gates = gates_of(search)
    gates.logits.assign(np.full(gates.logits.shape, value, dtype="float32"))
    return gates


def set_group_logits(search, producer, values):
    """Sets the logits of the group that `producer` (a layer name) belongs to."""
    graph = channel_graph_of(search)
    gates = gates_of(search)
    group = next(i for i, g in enumerate(graph.groups) if producer in g.producers)
    logits = np.array(gates.logits.numpy() if hasattr(gates.logits, "numpy") else keras.ops.convert_to_numpy(gates.logits))
    logits[gates.group_slice(group)] = values
    gates.logits.assign(logits.astype("float32"))
    return group


def residual_concat_depthwise_model():
    """Input 8x8x3 -> c1 -> bn1 -> relu -> c2 -> bn2 -> add -> [dw | c3] -> concat -> gap -> fc."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    x = keras.layers.Add(name="add")([x, y])
    a = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    b = keras.layers.Conv2D(4, 1, name="c3")(x)
    x = keras.layers.Concatenate(name="cat")([a, b])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, name="fc")(x)
    return keras.Model(inputs, outputs, name="rcd")


def small_cnn(input_shape=(28, 28, 1), classes=10, widths=(16, 32, 64), name="small_cnn"):
    inputs = keras.Input(input_shape)
    x = inputs
    for i, width in enumerate(widths):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i < len(widths) - 1:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)
