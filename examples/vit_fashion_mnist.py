"""Search the heads and MLP widths of a tiny keras_hub ViT on Fashion-MNIST under a FLOP budget.

    python examples/vit_fashion_mnist.py                      # 300 AL steps, target 50 % of the FLOPs
    python examples/vit_fashion_mnist.py --steps 600 --target 0.35
    python examples/vit_fashion_mnist.py --trace 10          # and how the controller moved

A keras_hub `ViTBackbone` (28×28 images, 7×7 patches, 2 blocks of 4 heads,
width 32, MLP 64) under a class-token classifier is wrapped with a FLOP cost;
`figs_tf.BudgetController` steers λ during architecture learning (AL) so that
the exported network lands near the target. Then the architecture is
exported and the model slimmed: the script prints `figs_tf.summary(search)`,
the heads and MLP hidden units each block keeps, the exported and counted costs, and the test accuracy
of the search model (inference mode) and of the slim model, which compute
the same function. Not a test: the README's worked example, runnable.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import figs_tf  # noqa: E402
from figs_tf.train import fashion_mnist  # noqa: E402


def vit_classifier(blocks, heads, width, mlp):
    """A tiny keras_hub ViT backbone and a linear classifier on its class token."""
    backbone = keras_hub.models.ViTBackbone(image_shape=(28, 28, 1), patch_size=7, num_layers=blocks,
                                            num_heads=heads, hidden_dim=width, mlp_dim=mlp)
    images = keras.Input((28, 28, 1), name="images")
    class_token = backbone(images)[:, 0, :]
    return keras.Model(images, keras.layers.Dense(10, name="classes")(class_token), name="tiny_vit")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="AL steps")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--target", type=float, default=0.5, help="FLOP budget, a fraction of the supernet's")
    parser.add_argument("--lr", type=float, default=0.02, help="Adam, cosine-decayed over the run")
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--mlp", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="runs/vit_fashion_mnist")
    parser.add_argument("--trace", type=int, default=0, help="print every N-th λ update of the controller")
    args = parser.parse_args()
    start = time.time()
    keras.utils.set_random_seed(args.seed)

    images, labels = fashion_mnist.load_fashion_mnist("train")
    test_images, test_labels = fashion_mnist.load_fashion_mnist("test")
    x = images[:args.steps * args.batch].astype("float32")[..., None] / 255.0
    y = labels[:args.steps * args.batch]
    x_test = test_images.astype("float32")[..., None] / 255.0

    model = vit_classifier(args.blocks, args.heads, args.width, args.mlp)
    search = figs_tf.wrap(model, cost="flops", seed=args.seed)
    supernet = figs_tf.supernet_cost(search, "flops")
    target = args.target * supernet
    search.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(args.lr, args.steps)),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    epochs = max(1, args.steps * args.batch // len(x))
    controller = figs_tf.BudgetController(target=target)
    search.fit(x, y, batch_size=args.batch, epochs=epochs, verbose=2,
               callbacks=[controller, figs_tf.CostCallback(args.workdir)])
    for update in controller.trace[::args.trace] if args.trace else ():
        print(f"step {update['step']:4d}: exported {update['exported']:,} multiply-adds, "
              f"reference {update['reference']:,.0f}, λ {update['strength']:.3g}")

    figs_tf.summary(search)
    network = figs_tf.exported_network(search)
    architecture = network.architecture()
    slim = figs_tf.slim(search)
    print(f"\nsupernet {supernet:,} multiply-adds per image, target {target:,.0f} ({args.target:.0%})")
    print(f"exported {network.cost('flops'):,} multiply-adds ({network.cost('flops') / supernet:.1%}; "
          f"slim model counted: {figs_tf.count(slim, 'flops'):,}), "
          f"{network.cost('params'):,} of {model.count_params():,} parameters (slim: {slim.count_params():,})")
    print("block | heads kept | MLP hidden units kept")
    for block in range(1, args.blocks + 1):
        prefix = f"vit_encoder.transformer_block_{block}"
        heads = architecture[f"{prefix}.mha/heads"]
        assert slim.get_layer(f"{prefix}.mha").num_heads == heads
        print(f"{block:5d} | {heads} of {args.heads}      | {architecture[f'{prefix}.mlp.dense_1']} of {args.mlp}")
    searched = keras.ops.convert_to_numpy(search.predict(x_test, batch_size=500, verbose=0))
    slimmed = keras.ops.convert_to_numpy(slim.predict(x_test, batch_size=500, verbose=0))
    print(f"test accuracy: search model (inference) {np.mean(searched.argmax(-1) == test_labels):.4f}, "
          f"slim model {np.mean(slimmed.argmax(-1) == test_labels):.4f}; largest logit difference "
          f"{np.abs(searched - slimmed).max():.2e}")
    print(f"wall time {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
