r"""ResNet-50 / ResNet-152 under a FLOPs budget (paper Fig. 3: FiGS vs width multiplier, MorphNet).

    figs-search  --config=experiments/resnet_imagenet.py:50 --workdir=gs://BUCKET/resnet50_half \
        --config.data_dir=gs://BUCKET/tensorflow_datasets
    figs-retrain --config=experiments/resnet_imagenet.py:50 --workdir=gs://BUCKET/resnet50_half \
        --config.data_dir=gs://BUCKET/tensorflow_datasets

Variants "50" and "152"; "50:0.3" sets the budget to 30 % of the supernet's
multiply-adds (default 50 %; `config.target_fraction`, turned into multiply-adds
once the supernet is built). The paper plots a curve and gives no λ for these
runs, so the config names a budget and λ is adjusted during AL.
The ResNet recipe: learning rate 0.64 decayed ×0.2 every 30 epochs.
"""

from figs_tf.train import default_config

DEPTHS = ("50", "152")
USAGE = "use 50 or 152, optionally with a budget fraction, e.g. --config=experiments/resnet_imagenet.py:152:0.4"


def get_config(variant="50"):
    depth, _, fraction = variant.partition(":")
    if depth not in DEPTHS:
        raise ValueError(f"Unknown ResNet variant {variant!r}; {USAGE}.")
    try:
        fraction = float(fraction or 0.5)
    except ValueError:
        raise ValueError(f"ResNet variant {variant!r}: the budget fraction must be a number; {USAGE}.") from None
    config = default_config.paper_imagenet(default_config.get_config())
    config.space = "resnet"
    config.space_kwargs = dict(depth=int(depth))
    config.cost = "flops"
    config.strength = 1e-9  # starting λ; the budget controller takes over
    config.target_fraction = fraction  # of the supernet's multiply-adds; config_checks checks (0, 1]
    for phase in (config.search, config.retrain):
        phase.decay_epochs, phase.decay_factor = 30.0, 0.2
    config.search.learning_rate, config.retrain.learning_rate = 0.64, 1.28
    return config
