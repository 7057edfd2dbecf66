"""Pictures of a search: per-layer widths, and the operators each layer kept.

    figs_tf.plot_widths(search, "runs/a/widths.png")
    figs_tf.plot_operators(fbnet.operator_choices(architecture), "runs/a/operators.png")
"""

from figs_tf import export as export_lib
from figs_tf.channel_sets import num_channels


def plot_widths(search, path):
    """Bar chart of per-layer widths, supernet vs exported architecture; returns `path`.

    Args:
      search: a search model (figs_tf.wrap).
      path: a local PNG file to write.

    Example:

    >>> figs_tf.plot_widths(search, "widths.png")
    """
    import matplotlib  # pylint: disable=g-import-not-at-top  # only when a plot is asked for
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    network = export_lib.exported_network(search)
    exported = network.architecture()
    names = list(exported)
    supernet = [num_channels(channel_set) for _, _, channel_set in network.graph.width_entries()]
    figure, axis = plt.subplots(figsize=(max(6, 0.25 * len(names) + 2), 4))
    positions = range(len(names))
    axis.bar(positions, supernet, color="#d0d7e1", label="supernet")
    axis.bar(positions, [exported[n] for n in names], color="#3566a8", label="exported")
    axis.set_xticks(list(positions))
    axis.set_xticklabels(names, rotation=90, fontsize=6)
    axis.set_ylabel("output channels")
    axis.set_title(f"{search.name}: widths per layer")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_operators(choices, path, title="operators kept per layer"):
    """Grid of the operators each layer kept (the FiGS paper's figure of chosen operators); returns `path`.

    Args:
      choices: {layer: {operator: kept}} in network order, e.g. from a
        space's `operator_choices` (figs_tf.spaces.operator_choices_function).
      path: a local PNG file to write.
      title: the figure's title.

    Raises:
      ValueError: `choices` is empty.

    Example:

    >>> figs_tf.plot_operators({"s1b1": {"k3_e6": True, "k5_e6": False, "skip": True}}, "ops.png")
    """
    if not choices:
        raise ValueError("plot_operators needs at least one layer's operator choices.")
    import matplotlib  # pylint: disable=g-import-not-at-top  # only when a plot is asked for
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    layers = list(choices)
    operators = []
    for kept in choices.values():
        operators += [op for op in kept if op not in operators]
    figure, axis = plt.subplots(figsize=(max(5, 0.32 * len(layers) + 2), 0.4 * len(operators) + 1.6))
    for column, layer in enumerate(layers):
        for row, op in enumerate(operators):
            if op in choices[layer]:
                kept = choices[layer][op]
                axis.scatter(column, row, s=90, marker="s", color="#3566a8" if kept else "white",
                             edgecolors="#3566a8" if kept else "#b0b7c3")
    axis.set_xticks(range(len(layers)))
    axis.set_xticklabels(layers, rotation=90, fontsize=7)
    axis.set_yticks(range(len(operators)))
    axis.set_yticklabels(operators, fontsize=8)
    axis.set_xlim(-0.7, len(layers) - 0.3)
    axis.set_ylim(-0.7, len(operators) - 0.3)
    kept_count = sum(sum(bool(v) for v in kept.values()) for kept in choices.values())
    offered = sum(len(kept) for kept in choices.values())
    axis.set_title(f"{title}\n(filled: kept, {kept_count} of {offered})", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
