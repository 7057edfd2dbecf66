"""Prints the gate-logit update of one SGD step, on one device and under
MirroredStrategy over two logical CPUs. The task loss is zero, so the update is
-lr · λ · ∂E[cost]/∂ν: equal numbers mean the cost loss is scaled per replica."""

import json
import sys

import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import figs_tf  # noqa: E402
from figs_tf.wrapping import gates_of  # noqa: E402


def model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="fc")(x))


def zero_task_loss(y_true, y_pred):
    return 0.0 * keras.ops.mean(y_pred)


def logit_update(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        search = figs_tf.wrap(model(), cost="params", strength=1e-3, seed=0)
        search.compile(optimizer=keras.optimizers.SGD(1.0), loss=zero_task_loss)
    gates = gates_of(search)
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 1.0, gates.logits.shape).astype(np.float32)
    gates.set_logits(logits)
    x = rng.random((8, 8, 8, 3)).astype(np.float32)
    search.fit(x, np.zeros((8, 4), np.float32), batch_size=8, epochs=1, verbose=0)
    return (keras.ops.convert_to_numpy(gates.logits) - logits).tolist()


single = logit_update(tf.distribute.OneDeviceStrategy("/cpu:0"))
mirrored = logit_update(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
json.dump({"single": single, "mirrored": mirrored}, sys.stdout)
