r"""FiGS-FBNet-B/C (paper Table 2, left): the reduced FBNet space, FLOPs (multiply-adds) cost.

    figs-search  --config=experiments/fbnet_imagenet.py:B --workdir=gs://BUCKET/fbnet_b \
        --config.data_dir=gs://BUCKET/tensorflow_datasets
    figs-retrain --config=experiments/fbnet_imagenet.py:B --workdir=gs://BUCKET/fbnet_b \
        --config.data_dir=gs://BUCKET/tensorflow_datasets

Paper (appendix): λ = 2e-9 (B) -> 72.2 % / 295 M MAdds, 1.3e-9 (C) -> 73.5 % / 385 M.
"""

from figs_tf.train import default_config

STRENGTHS = {"B": 2e-9, "C": 1.3e-9}


def get_config(variant="B"):
    if variant not in STRENGTHS:
        raise ValueError(f"Unknown FBNet variant {variant!r}; use one of {sorted(STRENGTHS)} "
                         f"(e.g. --config=experiments/fbnet_imagenet.py:C).")
    config = default_config.paper_imagenet(default_config.get_config())
    config.space = "fbnet"
    config.space_kwargs = dict(op_set="reduced")
    config.cost = "flops"
    config.strength = STRENGTHS[variant]
    return config
