r"""Small Fashion-MNIST searches: the embedded default and the paper's spaces shrunk to 28x28.

    figs-search  --config=experiments/fashion_mnist.py --workdir=runs/fm_cnn
    figs-retrain --config=experiments/fashion_mnist.py --workdir=runs/fm_cnn
    figs-search  --config=experiments/fashion_mnist.py:one_shot --workdir=runs/fm_one_shot

Variants: `cnn` (the default: figs_tf/train/default_config.py, what the README runs),
`cnn_flops` (the same space under a multiply-add cost), `resnet`, `fbnet`,
`one_shot` (tiny versions of the paper's spaces, minutes to tens of minutes
on a 2-core CPU). Only `cnn` was tuned (README); the other λ values are
starting points scaled to the default learning rate, or give a budget with
`--config.target=...` instead.

`fbnet_b_budget`: the `fbnet` space searched to the multiply-adds of
FBNet-B's operator choice in the same supernet (982,212:
`python benchmarks/fbnet_fixed_choice.py`, checked in
tests/test_space_fbnet.py), with the gate settings that keep this short AL
run from emptying the full-resolution stream (τ = 0.1, M = 300: docs/results.md,
"Operator selection in FBNet").
"""

from figs_tf.train import default_config

VARIANTS = {
    # variant: (space, space_kwargs, cost, λ)
    "cnn": (None, None, "params", None),
    "cnn_flops": (None, None, "flops", 3e-7),
    "resnet": ("resnet", dict(width_multiplier=0.25, small_input=True, blocks_per_stage=(1, 1, 1, 1)),
               "params", 3e-6),
    "fbnet": ("fbnet", dict(op_set="reduced", small_input=True, width_multiplier=0.25,
                            layers_per_stage=(1,) * 7), "flops", 1e-7),
    "one_shot": ("one_shot", dict(aggregator="concat", base_width=16, cells=2, blocks_per_cell=3,
                                  downsample_every=1, small_input=True), "params", 1e-5),
}
VARIANTS["fbnet_b_budget"] = VARIANTS["fbnet"]
VARIANTS["fbnet_skip"] = ("fbnet", dict(op_set="reduced", small_input=True, width_multiplier=0.25,
                                        layers_per_stage=(1, 2, 2, 2, 2, 2, 1)), "flops", 1e-7)
# other config keys a variant sets
OVERRIDES = {
    "fbnet_b_budget": dict(target=982_212.0, temperature=0.1, logit_gradient_multiplier=300.0),
    "fbnet_skip": dict(temperature=0.1, logit_gradient_multiplier=300.0),
}


def get_config(variant="cnn"):
    if variant not in VARIANTS:
        raise ValueError(f"Unknown Fashion-MNIST variant {variant!r}; use one of {sorted(VARIANTS)}.")
    space, space_kwargs, cost, strength = VARIANTS[variant]
    config = default_config.get_config()
    if space is not None:
        config.space, config.space_kwargs = space, space_kwargs
    config.cost = cost
    if strength is not None:
        config.strength = strength
    config.update(OVERRIDES.get(variant, {}))
    return config
