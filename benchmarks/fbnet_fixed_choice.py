"""A published FBNet's operator choice inside a FiGS FBNet supernet: its architecture JSON and cost.

    python benchmarks/fbnet_fixed_choice.py --out runs/fbnet_fm/fbnet_b_style.json

The Fashion-MNIST FBNet supernets of `experiments/fashion_mnist.py` have one
or two searchable layers per stage. The fixed choice is FBNet-B's operators at
the first layers of each of its seven stages (`figs_tf.spaces.fbnet.FBNET_B`;
one layer a stage: k3_e1, k3_e6, k5_e6, k5_e6, k5_e6, k5_e6, k3_e6). The
reduced set has no kK_e1 or kK_e3: they are the supernet's kK_e6 pruned to an
inner width of 1x or 3x its input (FiGS Sec. 3.3). Every other operator is removed; the shape-changing layers
keep the supernet's 1x1 skip projection (part of each stage's stream), so the
fixed choice and a FiGS search are counted in one supernet with one rule.
`fbnet.single_path_architecture` writes the widths; the multiply-adds and
parameters printed are those of the network `figs_tf.build_from_architecture`
builds from them (`figs_tf.count`), the numbers to give the search as
`--config.target` and the file to give the retraining as
`--config.retrain.architecture`.

    python benchmarks/fbnet_fixed_choice.py --madds 514059 --out runs/fbnet_fm/fbnet_b_style_20.json

scales the choice to a budget instead: every width of the single path (stem,
expansions, streams, head; not the classes) times one factor f, rounded, at
least 1, with f chosen so that the multiply-adds come closest to `--madds`
(FBNet's own way of trading cost: a width multiplier on a fixed choice).
"""

import argparse
import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import figs_tf  # noqa: E402
from figs_tf import cost as cost_lib  # noqa: E402
from figs_tf.channel_sets import groups_in  # noqa: E402
from figs_tf import spaces  # noqa: E402
from figs_tf.spaces import fbnet  # noqa: E402
from figs_tf.train import loop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def first_layers_of_each_stage(choices, layers_per_stage):
    """The operators of the first `layers_per_stage[s]` layers of every stage s of a 22-layer choice (FBNET_B)."""
    starts = [sum(fbnet.STAGE_LAYERS[:stage]) for stage in range(len(fbnet.STAGE_LAYERS))]
    return tuple(op for start, count in zip(starts, layers_per_stage) for op in choices[start:start + count])


def scaled_to(supernet, architecture, madds):
    """(factor, architecture with every width times it) whose multiply-adds come closest to `madds`."""
    graph = figs_tf.analyze(supernet)
    producers = {call.name: call for call in graph.producer_calls()}
    fixed = {name for name, call in producers.items() if not groups_in(graph.out_sets(call)[0])}

    def at(factor):
        scaled = {name: width if name in fixed or width == 0 else max(1, int(round(factor * width)))
                  for name, width in architecture.items()}
        widths = [0] * graph.num_groups
        for name, width in scaled.items():
            for group in groups_in(graph.out_sets(producers[name])[0]):
                widths[group] = max(widths[group], width)
        return scaled, cost_lib.network_cost(graph, "flops", widths)

    low, high = 0.01, 1.0
    for _ in range(40):  # multiply-adds grow with the factor (step by step, through the rounding)
        middle = (low + high) / 2
        if at(middle)[1] <= madds:
            low = middle
        else:
            high = middle
    factor = min((low, high), key=lambda f: abs(at(f)[1] - madds))
    return factor, at(factor)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(ROOT, "experiments", "fashion_mnist.py"))
    parser.add_argument("--variant", default="fbnet")
    parser.add_argument("--published", default="b", choices=sorted(fbnet.PUBLISHED))
    parser.add_argument("--out", required=True, help="architecture JSON to write")
    parser.add_argument("--madds", type=float, default=None,
                        help="scale every width by one factor to come closest to these multiply-adds")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("experiment", args.config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(args.variant)
    supernet = loop.build_supernet(config)
    layers = config.space_kwargs.get("layers_per_stage") or fbnet.STAGE_LAYERS
    choices = first_layers_of_each_stage(fbnet.PUBLISHED[args.published][0], layers)
    architecture = fbnet.single_path_architecture(supernet, choices)
    factor = 1.0
    if args.madds is not None:
        factor, architecture = scaled_to(supernet, architecture, args.madds)
    network = figs_tf.build_from_architecture(supernet, architecture)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    operators = spaces.operator_choices_function("fbnet", **config.space_kwargs.to_dict())(architecture)
    figs_tf.save_architecture(architecture, args.out, operators=operators, width_factor=factor,
                              fixed_choice=f"FBNet-{args.published.upper()}, first layers of each stage: "
                                           f"{list(choices)}")
    print(f"FBNet-{args.published.upper()}-style choice {list(choices)} in {supernet.name}, "
          f"widths x {factor:.4f}:")
    print(f"  multiply-adds {figs_tf.count(network, 'flops'):,} (supernet {figs_tf.count(supernet, 'flops'):,})")
    print(f"  parameters    {network.count_params():,} (supernet {supernet.count_params():,})")
    print(f"  written to {args.out}")


if __name__ == "__main__":
    main()
