r"""FiGS-One-Shot-A/B/C (paper Table 1): the One-Shot space with the concat aggregator, params cost.

    figs-search  --config=experiments/one_shot_imagenet.py:A --workdir=gs://BUCKET/one_shot_a \
        --config.data_dir=gs://BUCKET/tensorflow_datasets
    figs-retrain --config=experiments/one_shot_imagenet.py:A --workdir=gs://BUCKET/one_shot_a \
        --config.data_dir=gs://BUCKET/tensorflow_datasets

(or `bash launch/tpu_vm.sh experiments/one_shot_imagenet.py:A gs://BUCKET/one_shot_a`).
Paper: A λ = 1.2e-6 -> 69.9 % / 1.3 M params, B 5e-7 -> 75.0 % / 2.7 M,
C 3e-7 -> 77.1 % / 4.4 M, on a 32-core TPU (AL 8 h, retraining 36 h).
"""

from figs_tf.train import default_config

STRENGTHS = {"A": 1.2e-6, "B": 5e-7, "C": 3e-7}


def get_config(variant="B"):
    if variant not in STRENGTHS:
        raise ValueError(f"Unknown One-Shot variant {variant!r}; use one of {sorted(STRENGTHS)} "
                         f"(e.g. --config=experiments/one_shot_imagenet.py:A).")
    config = default_config.paper_imagenet(default_config.get_config())
    config.space = "one_shot"
    config.space_kwargs = dict(aggregator="concat", base_width=64, cells=8, blocks_per_cell=4,
                               downsample_every=2)
    config.cost = "params"
    config.strength = STRENGTHS[variant]
    return config
