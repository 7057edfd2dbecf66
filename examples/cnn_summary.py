"""The README's CNN searched for a few hundred AL steps under a parameter budget, then `figs_tf.summary`.

    python examples/cnn_summary.py                  # 200 AL steps, budget 40,000 parameters
    python examples/cnn_summary.py --steps 400 --target 30000

The supernet is the default job's (`figs_tf.spaces.small_cnn` with the
flatten head: convs 32/64/128 on 28×28×1 Fashion-MNIST, 104,874 parameters);
`figs_tf.BudgetController` steers λ so that the exported network lands near
the target. Prints `figs_tf.summary(search)`:
per searched layer the channels kept, its parameters and share, then the
totals against the supernet and the budget. Not a test: the README's example
of the summary, runnable.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import figs_tf  # noqa: E402
from figs_tf.spaces.small_cnn import small_cnn  # noqa: E402
from figs_tf.train import fashion_mnist  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="AL steps")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--target", type=float, default=40_000, help="parameter budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    images, labels = fashion_mnist.load_fashion_mnist("train")
    x = images[:args.steps * args.batch].astype("float32")[..., None] / 255.0
    y = labels[:args.steps * args.batch]

    search = figs_tf.wrap(small_cnn(head="flatten"), cost="params", target=args.target, seed=args.seed)
    search.compile(optimizer=keras.optimizers.Adam(1e-3),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    search.fit(x, y, batch_size=args.batch, epochs=1, verbose=2, callbacks=[figs_tf.BudgetController()])
    figs_tf.summary(search)


if __name__ == "__main__":
    main()
