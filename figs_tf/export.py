"""The exported architecture: one rule for the mask, the widths, the cost and slimming.

Group g keeps `⌊Σπ⌋` channels, those of largest logit; a layer that mixes
channels keeps at least one input channel (figs_tf.mask_layer.hard_widths).
A layer whose output has no channel left, or whose output only feeds removed
layers, is removed with its branch (how FiGS deselects an operator); the
exported cost counts the layers that remain.

    arch = figs_tf.export_architecture(search)    # {layer name: width}
    figs_tf.save_architecture(arch, "arch.json")
    arch == figs_tf.load_architecture("arch.json")
"""

import dataclasses
import json

import numpy as np

from figs_tf import cost as cost_lib
from figs_tf import files
from figs_tf import wrapping as wrap_lib
from figs_tf.channel_groups import name_list
from figs_tf.channel_sets import alive_positions, count as channels_alive, num_channels

ARCHITECTURE_FORMAT = "figs_tf.architecture"
ARCHITECTURE_VERSION = 1


@dataclasses.dataclass
class ExportedNetwork:
    """The network the gates select, described over the supernet's graph."""

    graph: object  # channel_groups.ChannelGraph
    widths: list  # exported width per group
    kept_channels: list  # per group: sorted indices of the channels kept
    live_calls: list  # calls the exported network keeps, in graph order

    def __repr__(self):
        architecture = self.architecture()
        widths = name_list(f"{name} {architecture[name]}/{num_channels(channel_set)}"
                           for name, _, channel_set in self.graph.width_entries())
        return (f"<ExportedNetwork: {widths}; {len(self.live_calls)} of {len(self.graph.calls)} "
                "layer calls kept>")

    def alive(self, key):
        return channels_alive(self.graph.tensor_sets[key], self.widths)

    def cost(self, metric):
        cost_lib.check_metric(metric)
        return cost_lib.network_cost(self.graph, metric, self.widths, self.live_calls)

    def channels(self):
        """{name: kept channel indices} of every kept layer that makes channels (and of its heads)."""
        live = {id(c) for c in self.live_calls}
        return {name: alive_positions(channel_set, self.kept_channels).tolist()
                for name, call, channel_set in self.graph.width_entries() if id(call) in live}

    def architecture(self):
        """{name: width} of every layer that makes channels, and `"<layer>/heads"` of attention; 0 = removed."""
        live = {id(c) for c in self.live_calls}
        return {name: int(channels_alive(channel_set, self.widths)) if id(call) in live else 0
                for name, call, channel_set in self.graph.width_entries()}




def exported_network(search):
    """The network a search model's gates select now, as an `ExportedNetwork`.

    Args:
      search: a search model (figs_tf.wrap).

    Returns:
      An `ExportedNetwork`: widths and kept channels per group, the layers kept;
      `.cost(metric)`, `.architecture()`, `.channels()`.

    Example:

    >>> figs_tf.exported_network(search).cost("flops")
    """
    graph = wrap_lib.channel_graph_of(search)
    gates = wrap_lib.gates_of(search)
    mask = gates.exported_mask()
    widths = gates.exported_widths()
    kept = [np.flatnonzero(mask[gates.group_slice(g)]) for g in range(graph.num_groups)]
    return ExportedNetwork(graph=graph, widths=widths, kept_channels=kept,
                           live_calls=cost_lib.live_calls(graph, widths))


def export_architecture(search):
    """`{layer name: width}` of the architecture the search model's gates select.

    Every layer that makes channels is listed; 0 means the layer is removed.

    Example:

    >>> arch = figs_tf.export_architecture(search)
    >>> figs_tf.save_architecture(arch, "arch.json")
    """
    return exported_network(search).architecture()


def expected_cost(search, metric):
    """The λ-free expected cost (eq. 6) at the current logits, in raw counts.

    Args:
      search: a search model (figs_tf.wrap).
      metric: "params" or "flops".

    Returns:
      Σ over layers of the cost with each group's width Σπ, a float.
    """
    graph = wrap_lib.channel_graph_of(search)
    gates = wrap_lib.gates_of(search)
    probabilities = gates.probabilities().astype(np.float64)
    widths = [float(probabilities[gates.group_slice(g)].sum()) for g in range(graph.num_groups)]
    return float(sum(cost_lib.layer_costs(graph, metric, widths).values()))


def supernet_cost(search, metric):
    """Cost of the whole supernet a search model gates (every channel kept), in raw counts.

    Args:
      search: a search model (figs_tf.wrap).
      metric: "params" (equals the unwrapped model's `count_params()`) or
        "flops" (multiply-adds per example).

    Example:

    >>> figs_tf.supernet_cost(figs_tf.wrap(model), "params") == model.count_params()
    True
    """
    graph = wrap_lib.channel_graph_of(search)
    return int(sum(cost_lib.layer_costs(graph, metric, cost_lib.full_widths(graph)).values()))


def save_architecture(architecture, path, channels=None, operators=None, **metadata):
    """Writes the architecture JSON atomically (a crash never leaves half a file).

    Args:
      architecture: {layer name: width}.
      path: a local path or a gs:// URL.
      channels: optional {layer name: kept channel indices} (e.g.
        `ExportedNetwork.channels()`), so that `figs_tf.slim(plain_model, path)`
        keeps exactly the channels the gates chose.
      operators: optional {layer: {operator: kept}} (a search space's operator
        choices, e.g. `figs_tf.spaces.fbnet.operator_choices(architecture)`).
      **metadata: JSON-serialisable facts stored under "metadata" (epoch, costs, λ).

    Returns:
      `path`.

    Raises:
      ValueError: a width that is not an integer >= 0.

    Example:

    >>> figs_tf.save_architecture(figs_tf.export_architecture(search), "arch.json", epoch=40)
    """
    _check_widths_dict(architecture, path)
    document = {"format": ARCHITECTURE_FORMAT, "version": ARCHITECTURE_VERSION,
                "widths": {name: int(w) for name, w in architecture.items()}}
    if channels is not None:
        document["channels"] = {name: [int(c) for c in kept] for name, kept in channels.items()}
    if operators is not None:
        document["operators"] = {layer: {op: bool(kept) for op, kept in ops.items()}
                                 for layer, ops in operators.items()}
    if metadata:
        document["metadata"] = metadata
    files.write_atomically(str(path), json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path


def load_architecture(path):
    """Reads an architecture JSON written by `save_architecture`: `{name: width}`.

    Raises:
      ValueError: the file is not JSON, not a figs_tf architecture, of another
        version, or holds a width that is not an integer >= 0 (the message names
        the file and the problem).

    Example:

    >>> figs_tf.load_architecture("runs/demo/search/architecture.json")  # the README's run, oneDNN off
    {'conv0': 27, 'conv1': 24, 'conv2': 108, 'classifier': 10}
    """
    with files.open_file(path) as f:
        try:
            document = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}).") from None
    if not isinstance(document, dict) or document.get("format") != ARCHITECTURE_FORMAT:
        raise ValueError(f"{path} is not a figs_tf architecture (expected \"format\": "
                         f"\"{ARCHITECTURE_FORMAT}\"); write it with figs_tf.save_architecture.")
    if document.get("version") != ARCHITECTURE_VERSION:
        raise ValueError(f"{path} has architecture version {document.get('version')}; "
                         f"this figs_tf reads version {ARCHITECTURE_VERSION}.")
    widths = document.get("widths")
    _check_widths_dict(widths, path)
    return dict(widths)




def load_channels(path):
    """The kept channel indices saved with an architecture ({layer: indices}), or None if it has none."""
    load_architecture(path)  # validates the document
    with files.open_file(path) as f:
        return json.load(f).get("channels")


def _check_widths_dict(widths, where):
    if not isinstance(widths, dict):
        raise ValueError(f"Architecture {where}: widths must be a {{layer name: width}} dict.")
    for name, width in widths.items():
        if not isinstance(name, str) or isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 0:
            raise ValueError(f"Architecture {where}: width of '{name}' must be an integer >= 0, got {width!r}.")
