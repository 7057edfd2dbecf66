r"""CIFAR-10 searches with small versions of the paper's spaces (needs tfds's cifar10 prepared).

    tfds build cifar10 --data_dir=$HOME/tensorflow_datasets     # once, with internet
    figs-search  --config=experiments/cifar10.py:one_shot --workdir=runs/c10_one_shot
    figs-retrain --config=experiments/cifar10.py:one_shot --workdir=runs/c10_one_shot

Variants: `one_shot` (4 cells of 4 blocks, F = 16, concat aggregator, params
cost), `resnet` (ResNet-50 at width 0.5 with a small-input stem, FLOPs cost),
`fbnet` (reduced FBNet at width 0.5, FLOPs cost). Standard CIFAR augmentation
(pad-4 crop, flip); 60 AL epochs, retraining 120 epochs at doubled batch and
learning rate; a GPU recommended.
"""

from figs_tf.train import default_config

VARIANTS = {
    "one_shot": ("one_shot", dict(aggregator="concat", base_width=16, cells=4, blocks_per_cell=4,
                                  downsample_every=2, small_input=True), "params", 1e-6),
    "resnet": ("resnet", dict(depth=50, width_multiplier=0.5, small_input=True), "flops", 5e-10),
    "fbnet": ("fbnet", dict(op_set="reduced", small_input=True, width_multiplier=0.5), "flops", 5e-9),
}


def get_config(variant="one_shot"):
    if variant not in VARIANTS:
        raise ValueError(f"Unknown CIFAR-10 variant {variant!r}; use one of {sorted(VARIANTS)}.")
    space, space_kwargs, cost, strength = VARIANTS[variant]
    config = default_config.get_config()
    config.dataset = "cifar10"
    config.augment = True
    config.space, config.space_kwargs, config.cost, config.strength = space, space_kwargs, cost, strength
    config.bn_momentum = 0.99
    config.progress = "epoch"
    config.search.update(dict(epochs=60, batch_size=256, learning_rate=0.4, decay_epochs=20.0,
                              decay_factor=0.5))
    config.retrain.update(dict(epochs=120, batch_size=512, learning_rate=0.8, decay_epochs=40.0,
                               decay_factor=0.5))
    return config
