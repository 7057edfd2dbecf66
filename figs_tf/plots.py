"""Pictures of a search: per-layer widths of the supernet and of the exported architecture.

    figs_tf.plot_widths(search, "runs/a/widths.png")
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
