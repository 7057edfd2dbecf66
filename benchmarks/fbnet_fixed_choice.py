"""A published FBNet's operator choice inside a FiGS FBNet supernet: its architecture JSON and cost.

    python benchmarks/fbnet_fixed_choice.py --out runs/fbnet_fm/fbnet_b_style.json

The Fashion-MNIST FBNet supernet of `experiments/fashion_mnist.py:fbnet` has
one searchable layer per stage. The fixed choice is FBNet-B's operator at the
first layer of each of its seven stages (`figs_tf.spaces.fbnet.FBNET_B`):
k3_e1, k3_e6, k5_e6, k5_e6, k5_e6, k5_e6, k3_e6. The reduced set has no
k3_e1: it is the supernet's k3_e6 pruned to an inner width of 1x its input
(FiGS Sec. 3.3). Every other operator is removed; the shape-changing layers
keep the supernet's 1x1 skip projection (part of each stage's stream), so the
fixed choice and a FiGS search are counted in one supernet with one rule.
`fbnet.single_path_architecture` writes the widths; the multiply-adds and
parameters printed are those of the network `figs_tf.build_from_architecture`
builds from them (`figs_tf.count`), the numbers to give the search as
`--config.target` and the file to give the retraining as
`--config.retrain.architecture`.
"""

import argparse
import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import figs_tf  # noqa: E402
from figs_tf.spaces import fbnet  # noqa: E402
from figs_tf.train import loop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def first_layer_of_each_stage(choices, layers_per_stage=fbnet.STAGE_LAYERS):
    """The operator of the first layer of every stage of a 22-layer choice (e.g. FBNET_B)."""
    starts = [sum(layers_per_stage[:stage]) for stage in range(len(layers_per_stage))]
    return tuple(choices[start] for start in starts)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(ROOT, "experiments", "fashion_mnist.py"))
    parser.add_argument("--variant", default="fbnet")
    parser.add_argument("--published", default="b", choices=sorted(fbnet.PUBLISHED))
    parser.add_argument("--out", required=True, help="architecture JSON to write")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("experiment", args.config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(args.variant)
    supernet = loop.build_supernet(config)
    choices = first_layer_of_each_stage(fbnet.PUBLISHED[args.published][0])
    architecture = fbnet.single_path_architecture(supernet, choices)
    network = figs_tf.build_from_architecture(supernet, architecture)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    operators = fbnet.operator_choices(architecture, **{k: v for k, v in config.space_kwargs.to_dict().items()
                                                        if k in ("op_set", "layers_per_stage", "width_multiplier",
                                                                 "skip_projection")})
    figs_tf.save_architecture(architecture, args.out, operators=operators,
                              fixed_choice=f"FBNet-{args.published.upper()} first layer per stage: {list(choices)}")
    print(f"FBNet-{args.published.upper()}-style choice {list(choices)} in {supernet.name}:")
    print(f"  multiply-adds {figs_tf.count(network, 'flops'):,} (supernet {figs_tf.count(supernet, 'flops'):,})")
    print(f"  parameters    {network.count_params():,} (supernet {supernet.count_params():,})")
    print(f"  written to {args.out}")


if __name__ == "__main__":
    main()
