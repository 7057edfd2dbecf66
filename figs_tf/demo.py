"""A small FiGS search on real Fashion-MNIST, start to finish on a laptop CPU.

    python -m figs_tf.demo --workdir=/tmp/figs_demo

Builds a small CNN supernet, wraps it with a parameter cost, runs architecture
learning (AL), and prints the exported architecture next to the supernet. It
uses the library API the way a user's own script would (wrap, fit with
CostCallback, export, slim, recalibrate BatchNorm). The README's main job, with
retraining from scratch, is the training binaries `figs-search` / `figs-retrain`.
"""

import argparse
import os
import time

import keras
import numpy as np

import figs_tf
from figs_tf import datasets


def supernet(widths=(32, 64, 128), classes=10, pools=None):
    """Conv-BN-ReLU per width, max-pooling after the layers in `pools`, global pooling, a classifier.

    `pools` defaults to every layer but the last.
    """
    pools = range(len(widths) - 1) if pools is None else pools
    inputs = keras.Input((28, 28, 1), name="image")
    x = inputs
    for i, width in enumerate(widths):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        # momentum 0.9: BatchNorm statistics keep up within a few hundred steps
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i in pools:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name="fashion_supernet")


def run_search(workdir=None, strength=3e-6, epochs=4, train_examples=12000, batch_size=128,
               learning_rate=0.01, widths=(32, 64, 128), seed=0, verbose=2, callbacks=(),
               evaluate=True):
    """Runs AL; returns (search model, CostCallback, test accuracy of the slimmed model).

    The accuracy is that of the exported network with inherited weights
    (figs_tf.slim), after its BatchNorm statistics are recomputed for the
    exported channels (figs_tf.recalibrate_batchnorm); no retraining. With
    `evaluate=False` that step is skipped and the accuracy is None.
    """
    keras.utils.set_random_seed(seed)
    images, labels = datasets.load_fashion_mnist("train")
    test_images, test_labels = datasets.load_fashion_mnist("test")
    x = images[:train_examples].astype("float32") / 255.0
    y = labels[:train_examples]
    search = figs_tf.wrap(supernet(widths), cost="params", strength=strength, seed=seed)
    search.compile(optimizer=keras.optimizers.Adam(learning_rate),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
    callback = figs_tf.CostCallback(workdir)
    search.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=[callback, *callbacks],
               verbose=verbose)
    if not evaluate:
        return search, callback, None
    slim = figs_tf.slim(search)
    figs_tf.recalibrate_batchnorm(slim, x[:4096])
    logits = slim.predict(test_images.astype("float32") / 255.0, batch_size=512, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == test_labels))
    return search, callback, accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=os.path.join(os.getcwd(), "runs", "demo"))
    parser.add_argument("--strength", type=float, default=3e-6, help="λ on the parameter cost")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)
    start = time.time()
    search, callback, accuracy = run_search(args.workdir, strength=args.strength, epochs=args.epochs)
    network = figs_tf.exported_network(search)
    supernet_params = figs_tf.supernet_cost(search, "params")
    print("\nExported architecture (layer: supernet width -> exported width):")
    for call in network.graph.producer_calls():
        full = sum(s.channels for s in network.graph.out_sets(call)[0])
        print(f"  {call.name:12s} {full:5d} -> {network.architecture()[call.name]}")
    print(f"Parameters: supernet {supernet_params:,}, exported {network.cost('params'):,} "
          f"({network.cost('params') / supernet_params:.1%})")
    print(f"MAdds:      supernet {figs_tf.supernet_cost(search, 'flops'):,}, exported {network.cost('flops'):,}")
    print(f"Test accuracy of the exported network with inherited weights (BatchNorm statistics "
          f"recomputed, no retraining): {accuracy:.4f}")
    print(f"Architecture JSON: {os.path.join(args.workdir, 'architecture.json')}; "
          f"width plot: {os.path.join(args.workdir, 'widths.png')}; wall time {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
