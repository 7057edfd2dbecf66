"""How hard the task loss and the cost pull on the gate logits, per layer.

    python benchmarks/gate_gradients.py                    # τ = 1e-3 (paper), ~3 min on 2 cores
    python benchmarks/gate_gradients.py --temperature 0.1

Trains the README's search space (small CNN, flatten head) for one epoch on
real Fashion-MNIST with λ = 0 (the default config's Adam, ε = 1, lr 1.0), then
averages the task loss's gradient with respect to every gate logit over
`--batches` training-mode steps (fresh gate noise each), and prints per layer:
the mean |E[∂L_task/∂ν]|, how many (channel, step) pairs got a non-zero
gradient at all, and the cost's gradient λ·∂E[params]/∂ν at the default
config's λ. With Adam at ε = 1 a logit moves about lr × gradient per step, so
the two columns say which of the two moves the gates in a short AL run.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import figs_tf  # noqa: E402
from figs_tf.train import fashion_mnist  # noqa: E402
from figs_tf.train import default_config  # noqa: E402
from figs_tf.train import loop  # noqa: E402
from figs_tf.mask_layer import expected_widths, group_ids  # noqa: E402
from figs_tf.wrapping import cost_layer_of  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperature", type=float, default=1e-3)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--strength", type=float, default=3e-5, help="λ for the cost column")
    args = parser.parse_args()

    config = default_config.get_config()
    keras.utils.set_random_seed(0)
    images, labels = fashion_mnist.load_fashion_mnist("train")
    images = images.reshape(-1, 28, 28, 1).astype("float32") / 255.0
    search = figs_tf.wrap(loop.build_supernet(config), cost="params", strength=0.0,
                          temperature=args.temperature, seed=0)
    search.compile(optimizer=keras.optimizers.Adam(config.search.learning_rate, epsilon=1.0),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    search.fit(images, labels, batch_size=128, epochs=1, verbose=0)

    import tensorflow as tf  # pylint: disable=g-import-not-at-top  # GradientTape: TF backend
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    gates = figs_tf.gates_of(search)
    rng = np.random.default_rng(0)
    gradients = []
    for _ in range(args.batches):
        batch = rng.integers(0, len(images), 128)
        with tf.GradientTape() as tape:
            task = loss(labels[batch], search(images[batch], training=True))
        # ∂L/∂ν = ∂L/∂θ / s: the trained variable is θ, the logits are ν = s·θ
        gradients.append(tape.gradient(task, gates.logit_parameters.value).numpy() / gates.gate_speed)
    gradients = np.array(gradients)

    # the cost's gradient: d(λ · E[params])/dν, through the gates' and the CostLayer's own functions
    logits = tf.Variable(gates.logits.numpy())
    with tf.GradientTape() as tape:
        widths = expected_widths(logits, tf.constant(group_ids(gates.group_sizes)), len(gates.group_sizes))
        expected = cost_layer_of(search).cost(widths)
    cost_gradient = args.strength * tape.gradient(expected, logits).numpy()

    print(f"τ = {args.temperature:g}, {args.batches} steps after one epoch at λ = 0; "
          f"cost column at λ = {args.strength:g}")
    print("| layer | channels | mean ν | mean abs E[∂L_task/∂ν] | (channel, step) pairs with a task gradient | "
          "λ ∂E[params]/∂ν (mean) | ratio cost/task |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    values = logits.numpy()
    for group, name in enumerate(gates.group_keys):
        part = gates.group_slice(group)
        task = np.abs(gradients[:, part].mean(axis=0)).mean()
        nonzero = np.mean(np.abs(gradients[:, part]) > 1e-12)
        cost = cost_gradient[part].mean()
        print(f"| {name} | {gates.group_sizes[group]} | {values[part].mean():.2f} | {task:.2e} | {nonzero:.2%} | "
              f"{cost:.2e} | {cost / task:.1f} |")

if __name__ == "__main__":
    main()
