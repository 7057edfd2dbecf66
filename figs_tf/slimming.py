"""figs_tf.slimming, `figs_tf.slim`: the exported network as a plain Keras model, channels physically gone.

    slim = figs_tf.slim(search)                # from a search model's gates
    slim(x) == search(x, training=False)       # to float32 tolerance
    slim.count_params() == figs_tf.exported_network(search).cost("params")

Every layer is rebuilt with its exported width and the surviving slices of its
weights (kernels, biases, BatchNorm parameters and statistics, depthwise and
separable kernels, per-channel scales, the Dense rows read after a Flatten).
Removed layers are left out: a concatenation input with no channel left is
dropped from the concat, and a concat left with one input is that input.

A plain model (the supernet with trained weights, no gates) can be slimmed to a
saved architecture too:

    slim = figs_tf.slim(supernet, architecture="runs/a/architecture.json")

The channels each layer keeps come from the architecture file when it lists
them (files written by CostCallback do); otherwise the channels whose kernels
have the largest L1 norm are kept.
"""

import numpy as np

import keras

from figs_tf import branches as branches_lib
from figs_tf import channel_groups
from figs_tf import cost as cost_lib
from figs_tf import export as export_lib
from figs_tf import keras_graph
from figs_tf.channel_bias import ChannelBias
from figs_tf.channel_sets import alive_positions, count as channels_alive, groups_in, num_channels


def slim(model, architecture=None, channels=None, name=None, exclude=()):
    """A plain Keras model with exactly the exported widths and inherited weights.

    `slim(search)(x)` equals `search(x, training=False)` to float tolerance, its
    `count_params()` equals the exported parameter count and `figs_tf.count(slim,
    "flops")` the exported FLOPs.

    Args:
      model: a search model from figs_tf.wrap (its gates decide), or a plain
        model together with `architecture`.
      architecture: {layer name: width}, or the path of an architecture JSON.
      channels: {layer name: kept output channel indices}; read from the JSON
        when `architecture` is a path that has them; otherwise the channels whose
        kernels have the largest L1 norm are kept.
      name: name of the new model (default: "<model>_slim").
      exclude: with `architecture`: the layers that `figs_tf.wrap(...,
        exclude=...)` kept out of search when the architecture was found
        (which channels are searched decides which widths it may give).

    Returns:
      A functional `keras.Model` without gates.

    Raises:
      ValueError: an architecture that does not fit the model (unknown layers,
        missing widths, widths out of range, tied layers with different widths),
        naming the layer.

    Example:

    >>> slim = figs_tf.slim(search)
    >>> slim = figs_tf.slim(supernet, architecture="runs/a/search/architecture.json")
    """
    if architecture is None:
        network = export_lib.exported_network(model)
    else:
        if isinstance(architecture, str):
            path = architecture
            architecture = export_lib.load_architecture(path)
            if channels is None:
                channels = export_lib.load_channels(path)
        network = network_from_architecture(model, architecture, channels, exclude=exclude)
    return build(network, name=name or f"{model.name}_slim")


def build_from_architecture(supernet, architecture, name=None):
    """A freshly initialised network with the architecture's widths, for retraining.

    `supernet` supplies only the structure; weights come from each layer's own
    initializers. Its parameter count equals that of `figs_tf.slim` to the same
    architecture.

    Args:
      supernet: the plain supernet the architecture was exported from.
      architecture: {layer name: width}, or the path of an architecture JSON.
      name: name of the new model (default: "<supernet>_arch").

    Returns:
      A functional `keras.Model`.

    Raises:
      ValueError: an architecture that does not fit the supernet, naming the layer.

    Example:

    >>> network = figs_tf.build_from_architecture(supernet, figs_tf.export_architecture(search))
    """
    if isinstance(architecture, str):
        architecture = export_lib.load_architecture(architecture)
    network = network_from_architecture(supernet, architecture, channels=None, choose_channels=False)
    return build(network, name=name or f"{supernet.name}_arch", fresh_weights=True)


def build(network, name, fresh_weights=False):
    """Builds the Keras model of an ExportedNetwork (inherited or fresh weights)."""
    graph = network.graph
    inputs = keras_graph.fresh_inputs(graph.input_tensors)
    values = dict(zip(graph.input_keys, inputs))
    positions = {}

    def kept(key):
        if key not in positions:
            positions[key] = alive_positions(graph.tensor_sets[key], network.kept_channels)
        return positions[key]

    shifts, biases, removed = _folds(network, fresh_weights)
    slimmed = {}  # id(layer) -> the slim layer of a shared layer (every use keeps the same channels)
    for call in network.live_calls:
        handler = graph.handler(call)
        kept_in = [alive_positions(s, network.kept_channels) for s in graph.in_sets(call)]
        kept_out = [kept(k) for k in graph.out_keys(call)]
        if handler.drops_empty_inputs or any((id(call), i) in removed for i in range(len(call.input_keys))):
            present = [values[k] for i, (k, positions_in) in enumerate(zip(call.input_keys, kept_in))
                       if len(positions_in) and (id(call), i) not in removed]
            if len(present) == 1:
                outputs = present
            else:
                layer, _ = handler.slim(call, kept_in, kept_out)
                outputs = [_named_as_call(layer, call)(present)]
        elif id(call.layer) in slimmed:  # a shared layer's later use: its one slim layer again
            args, kwargs = call.call_arguments(values)
            outputs = keras.tree.flatten(slimmed[id(call.layer)](*args, **kwargs))
        else:
            layer, weights = handler.slim(call, kept_in, kept_out)
            if id(call) in shifts:
                weights = handler.absorb_output_shift(call, weights, shifts[id(call)])
            layer = _named_as_call(layer, call)
            if call.shared:
                slimmed[id(call.layer)] = layer
            args, kwargs = call.call_arguments(values)
            outputs = keras.tree.flatten(layer(*args, **kwargs))
            if weights and not fresh_weights:
                layer.set_weights(weights)
                if hasattr(layer, "finalize_state"):
                    # Normalization reads tensors derived from its weights; Keras refreshes them on loading too.
                    layer.finalize_state()
        if id(call) in biases:
            first = call.output_axes[0] == 1 and len(call.output_tensors[0].shape) > 2  # the sum's channel axis
            bias = ChannelBias(name=f"{call.name}{f'_use{call.application}' if call.application else ''}_folded_bias",
                               data_format="channels_first" if first else "channels_last")
            outputs = [bias(outputs[0])]
            if not fresh_weights:
                bias.set_weights([biases[id(call)]])
        for key, tensor in zip(call.output_keys, outputs):
            values[key] = tensor
    outputs = keras.tree.pack_sequence_as(graph.output_structure, [values[k] for k in graph.output_keys])
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=name)


def _folds(network, fresh_weights):
    """Where the constants of removed summands go (figs_tf.branches).

    Returns ({id(call): shift added to its output}, {id(sum call): bias after
    it}, {(id(sum call), input index) of removed summands}); no values with
    fresh weights.
    """
    shifts, biases, removed = {}, {}, set()
    for fold in branches_lib.fold_plan(network.graph, network.widths, network.live_calls):
        removed.update((id(fold.sum_call), b.input_index) for b in fold.branches)
        constant = None if fresh_weights else branches_lib.fold_constant(network.graph, fold,
                                                                           network.kept_channels)
        if fold.target is None:
            biases[id(fold.sum_call)] = constant
        elif constant is not None:
            shifts[id(fold.target)] = shifts.get(id(fold.target), 0.0) + constant
    return shifts, biases, removed


def _named_as_call(layer, call):
    """A rebuilt sublayer of an expanded block takes the call's name (`<block>.<sublayer>`, unique)."""
    if layer is not call.layer and layer.name != call.name:
        layer.name = call.name
    return layer


def network_from_architecture(model, architecture, channels=None, choose_channels=True, exclude=()):
    """The ExportedNetwork a {layer name: width} architecture selects in a plain model.

    `choose_channels=False` keeps the first channels of each group (the weights
    will be replaced anyway) instead of ranking them by kernel norm. `exclude`:
    the layers kept out of search when the architecture was found (`figs_tf.wrap`).
    """
    graph = channel_groups.analyze(model, exclude=exclude)
    producers = {name: (call, channel_set) for name, call, channel_set in graph.width_entries()}
    unknown = sorted(set(architecture) - set(producers))
    if unknown:
        raise ValueError(f"The architecture names layers that {model.name!r} does not have or that "
                         f"do not make channels: {unknown[:10]}. Layers that make channels: "
                         f"{sorted(producers)[:10]}...")
    missing = sorted(set(producers) - set(architecture))
    if missing:
        raise ValueError(f"The architecture gives no width for {missing[:10]} of {model.name!r}: "
                         "it was exported from a different model.")
    widths = [None] * graph.num_groups
    removed = {}  # producers given width 0: removed layers, checked once the kept layers are known
    for name, (call, out_set) in producers.items():
        width = architecture[name]
        full = num_channels(out_set)
        groups = groups_in(out_set)
        if not groups:
            if width == 0:
                removed[name] = (f"The architecture gives '{name}' width 0, but its {full} channels are never "
                                 "pruned (model output or kept out of search) and the layer is still used.")
            elif width != full:
                raise ValueError(f"The architecture gives '{name}' width {width}, but its {full} "
                                 "channels are never pruned (model output or kept out of search).")
            continue
        group = groups[0]
        if not 0 <= width <= full:
            raise ValueError(f"The architecture gives '{name}' width {width}; it has {full} channels "
                             f"(widths must be in 0..{full}).")
        tied = graph.groups[group].producers
        if width == 0:
            # a layer of a removed branch may share its group with kept layers (its sum ties them)
            removed[name] = (f"The architecture gives different widths to layers whose channels are tied by a "
                             f"merge: {tied} must share one width (got 0 for '{name}', which is still used).")
            continue
        if widths[group] is not None and widths[group] != width:
            raise ValueError(f"The architecture gives different widths to layers whose channels are "
                             f"tied by a merge: {tied} must share one width (got {width} for '{name}').")
        widths[group] = width
    widths = [0 if w is None else w for w in widths]
    if choose_channels:
        kept = [_kept_channels(graph, g, widths[g], channels, producers) for g in range(graph.num_groups)]
    else:
        kept = [np.arange(widths[g]) for g in range(graph.num_groups)]
    live = cost_lib.live_calls(graph, widths)
    for call in live:
        if call.name in removed:
            raise ValueError(removed[call.name])
        if graph.handler(call).mixes_channels and channels_alive(graph.in_sets(call)[0], widths) == 0:
            raise ValueError(f"The architecture leaves layer '{call.name}' without input channels "
                             "while its output is used; give its input layers at least one channel.")
    return export_lib.ExportedNetwork(graph=graph, widths=widths, kept_channels=kept, live_calls=live)


def _kept_channels(graph, group, width, channels, producers):
    names = graph.groups[group].producers
    listed = [n for n in names if channels and n in channels]
    if listed:
        chosen = np.sort(np.asarray(channels[listed[0]], dtype=np.int64))
        for name in listed[1:]:
            if not np.array_equal(np.sort(np.asarray(channels[name])), chosen):
                raise ValueError(f"The architecture keeps different channels of tied layers {names}.")
        if len(chosen) != width or len(set(chosen.tolist())) != width or (
                width and not 0 <= chosen.min() <= chosen.max() < graph.groups[group].size):
            raise ValueError(f"The channels listed for '{listed[0]}' ({chosen.tolist()[:8]}...) do not "
                             f"match its width {width} and size {graph.groups[group].size}.")
        return chosen
    score = sum(_channel_l1(graph, name, producers[name][0]) for name in names)
    return np.sort(np.argsort(-score, kind="stable")[:width])


def _channel_l1(graph, name, call):
    """The L1 norm of each channel of the width entry `name` (a layer's output, or `<layer>/<label>` inside it)."""
    handler = graph.handler(call)
    if name == call.name:
        return handler.output_channel_l1(call.layer)
    return handler.inner_channel_l1(call.layer, name[len(call.name) + 1:])
