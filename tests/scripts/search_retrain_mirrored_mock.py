"""Runs figs_tf.train.search then figs_tf.train.retrain under MirroredStrategy on two logical
CPUs with tfds mock data; prints both summaries and the replica count as JSON."""

import json
import sys

import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import tensorflow_datasets as tfds  # noqa: E402

from figs_tf.train import default_config, retrain, search, strategies  # noqa: E402


def main(workdir):
    config = default_config.get_config()
    config.strategy = "gpus"  # MirroredStrategy over the logical CPUs when there is no GPU
    config.space_kwargs.widths = (8, 16, 16)
    config.train_examples, config.eval_examples, config.eval_batch_size = 256, 128, 64
    config.search.update(dict(epochs=1, batch_size=64, recalibrated_eval=False))
    config.retrain.update(dict(epochs=1, batch_size=64))
    config.progress = "none"
    replicas = strategies.make_strategy(config.strategy).num_replicas_in_sync
    with tfds.testing.mock_data(num_examples=256):
        found = search.run(config, workdir)
        retrained = retrain.run(config, workdir)
    print("RESULT " + json.dumps({"replicas": replicas, "search": found, "retrain": retrained}))


if __name__ == "__main__":
    main(sys.argv[1])
