"""Runs figs_tf.train.search with a budget under MirroredStrategy on two logical CPUs and on the
default strategy, with tfds mock data; prints the gate speed each run logged, as JSON.

The budget controller chooses the gate speed at the start of AL and assigns it (and the rescaled
logits) from the host: on every replica under MirroredStrategy, and to the same value as on one
device (the choice depends on the config only)."""

import csv
import json
import os
import sys

import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import tensorflow_datasets as tfds  # noqa: E402

from figs_tf.train import default_config, search, strategies  # noqa: E402


def run(strategy, workdir):
    config = default_config.get_config()
    config.strategy = strategy
    config.space_kwargs.widths = (8, 16, 16)
    config.train_examples, config.eval_examples, config.eval_batch_size = 512, 128, 64
    config.search.update(dict(epochs=1, batch_size=64, recalibrated_eval=False, steps_per_checkpoint=4))
    config.target = 4_000.0
    config.progress = "none"
    replicas = strategies.make_strategy(config.strategy).num_replicas_in_sync
    with tfds.testing.mock_data(num_examples=512):
        found = search.run(config, workdir)
    with open(os.path.join(workdir, "search", "history.csv")) as f:
        speeds = [float(row["figs_gate_speed"]) for row in csv.DictReader(f)]
    return {"replicas": replicas, "speeds": speeds, "steps": found["steps"], "exported": found["exported"]}


def main(workdir):
    result = {"mirrored": run("gpus", os.path.join(workdir, "mirrored")),
              "single": run("auto", os.path.join(workdir, "single"))}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
