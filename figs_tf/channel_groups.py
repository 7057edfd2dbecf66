"""Channel-group analysis: which channels of a Keras model live or die together.

`analyze(model)` walks the model's graph once (nested models inlined) and asks
each layer's handler (figs_tf.handlers) how channels flow through it. Channels
tied by an elementwise merge become one group; a concatenation on the channel
axis makes a composite; the model's inputs and outputs are never pruned. The
result, a `ChannelGraph`, is what wrapping, cost, export and slimming share.

    graph = analyze(keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3)))
    print(graph.num_groups, [g.size for g in graph.groups][:5])
    print(graph.notes)     # which channels were kept out of search, and why
"""

import dataclasses

from figs_tf import branches as branches_lib
from figs_tf import export_rules
from figs_tf import handlers as handlers_lib
from figs_tf import keras_graph
from figs_tf.channel_sets import Segment, groups_in, has_fixed_channels, num_channels
from figs_tf.wrapper_layer import WrapperLayer


@dataclasses.dataclass
class ChannelGroup:
    size: int
    producers: list  # names of the layers whose output channels form this group

    @property
    def key(self):
        """A name for the group that does not depend on graph traversal order."""
        return min(self.producers)


class _GroupBuilder:
    """Union-find over provisional groups, with a 'never pruned' flag."""

    def __init__(self):
        self.parent = []
        self.sizes = []
        self.fixed = []
        self.producers = []
        self.notes = []
        self.conditions = []  # (trigger set, set, reason): `fix_if_searched`, decided once the analysis ends
        self.fixed_notes = []  # (set, note): `note_if_fixed`, decided once the analysis ends

    def new_group(self, size, producer):
        self.parent.append(len(self.parent))
        self.sizes.append(size)
        self.fixed.append(False)
        self.producers.append([producer])
        return len(self.parent) - 1

    def find(self, group):
        while self.parent[group] != group:
            self.parent[group] = self.parent[self.parent[group]]
            group = self.parent[group]
        return group

    def _union(self, a, b, where):
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if self.fixed[a] != self.fixed[b]:  # e.g. a Transformer block's output joins the residual stream
            free, fixed = (a, b) if self.fixed[b] else (b, a)
            self.notes.append(f"kept out of search: channels of {sorted(self.producers[free])} because '{where}' "
                              f"adds them to channels kept out of search (those of '{min(self.producers[fixed])}')")
        if self.sizes[a] != self.sizes[b]:
            raise handlers_lib.UnsupportedLayerError(
                f"Channel groups of {self.producers[a]} ({self.sizes[a]} channels) "
                f"and {self.producers[b]} ({self.sizes[b]}) are merged elementwise "
                "but differ in size.")
        low, high = min(a, b), max(a, b)
        self.parent[high] = low
        self.fixed[low] = self.fixed[low] or self.fixed[high]
        self.producers[low] = self.producers[low] + self.producers[high]

    def fix(self, channel_set, reason):
        newly_fixed = [g for g in groups_in(channel_set) if not self.fixed[self.find(g)]]
        for group in newly_fixed:
            self.fixed[self.find(group)] = True
        if newly_fixed:
            self.notes.append(f"kept out of search: channels of "
                              f"{sorted({p for g in newly_fixed for p in self.producers[self.find(g)]})}"
                              f" because {reason}")

    def fix_if_searched(self, trigger, channel_set, reason):
        """Fixes `channel_set` at the end of the analysis if `trigger` then still has a searched group.

        For a layer whose cost would multiply three searched widths: whether its
        input stays searched is known only once every later layer has been seen
        (a residual stream is fixed by a normalization further down).
        """
        self.conditions.append((trigger, channel_set, reason))

    def note_if_fixed(self, channel_set, note):
        """Adds `note` at the end of the analysis if `channel_set`'s groups are then kept out of search.

        For a layer that would let its channels be searched but cannot keep
        them searched itself (an RMS norm over a residual stream that is also
        a model output): the note says what it offers and how to get it. Once
        per group: a later note about the same channels is dropped.
        """
        self.fixed_notes.append((channel_set, note))

    def apply_conditions(self):
        for trigger, channel_set, reason in self.conditions:
            if any(not self.fixed[self.find(g)] for g in groups_in(trigger)):
                self.fix(channel_set, reason)
        noted = set()
        for channel_set, note in self.fixed_notes:
            roots = {self.find(g) for g in groups_in(channel_set)}
            if roots and all(self.fixed[r] for r in roots) and not roots & noted:
                noted |= roots
                self.notes.append(note)

    def tie(self, set_a, set_b, where):
        """Channel i of set_a and channel i of set_b live or die together."""
        aligned = len(set_a) == len(set_b) and all(
            a.size == b.size and a.repeat == b.repeat for a, b in zip(set_a, set_b))
        if not aligned:
            if num_channels(set_a) != num_channels(set_b):
                raise handlers_lib.UnsupportedLayerError(
                    f"Layer '{where}' merges tensors with {num_channels(set_a)} and "
                    f"{num_channels(set_b)} channels.")
            reason = f"'{where}' merges tensors whose channel groups do not line up"
            self.fix(set_a, reason)
            self.fix(set_b, reason)
            return
        for a, b in zip(set_a, set_b):
            if a.group is None and b.group is None:
                continue
            if a.group is None or b.group is None:
                group = b.group if a.group is None else a.group
                self.fix((Segment(group, b.size),), f"'{where}' adds them to channels that are never pruned")
                continue
            self._union(a.group, b.group, where)


@dataclasses.dataclass
class ChannelGraph:
    """The channel structure of one model, in terms of prunable groups 0..G-1."""

    calls: list  # keras_graph.LayerCall in topological order (nested models inlined)
    input_keys: list
    input_tensors: list  # the model's symbolic inputs (shapes, dtypes, names)
    output_structure: object  # the model's outputs as built (tensor, list or dict)
    output_keys: list
    tensor_sets: dict  # TensorKey -> channel set (tuple of Segment) along the tensor's channel axis
    tensor_axes: dict  # TensorKey -> that axis (non-negative; the last unless a data_format says otherwise;
    # None: channels never pruned that no layer has given an axis yet, a model input's)
    read_sets: dict  # id(call) -> the channel set each input is read with (handlers' in_sets)
    groups: list  # ChannelGroup, the prunable ones, indexed by group id
    masked_keys: list  # tensors whose pruned channels must be zeroed right after they are made
    keep_one_sets: list  # the export rule's data: KeepOne rules, then SummandRules (figs_tf.export_rules)
    notes: list  # why some channels are kept out of search
    branches: list = dataclasses.field(default_factory=list)  # removable summands (figs_tf.branches.Branch)
    inner_keys: dict = dataclasses.field(default_factory=dict)  # call name -> [(label, key)] (handlers' inner_sets)
    _term_cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def __repr__(self):
        groups = name_list([f"{g.key} {g.size}" for g in self.groups])
        inputs = ", ".join(f"{keras_graph.input_name(t, i)} {tuple(t.shape)}" for i, t in enumerate(self.input_tensors))
        return (f"<ChannelGraph: {len(self.calls)} layer calls, inputs {inputs}; {self.num_groups} channel groups"
                f"{': ' + groups if groups else ''}; {len(self.notes)} note{'' if len(self.notes) == 1 else 's'}>")

    def __str__(self):
        """The one-line repr, then every channel group with the layers that make it, then the notes."""
        lines = [repr(self)]
        lines += [f"  group {i}: {g.size} channels of {name_list(g.producers)}" for i, g in enumerate(self.groups)]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    @property
    def num_groups(self):
        return len(self.groups)

    @property
    def group_sizes(self):
        return [g.size for g in self.groups]

    def in_sets(self, call):
        """The channel set each input of `call` is read with (its own, unless read on another axis)."""
        return self.read_sets[id(call)]

    def out_keys(self, call):
        """Keys of the call's outputs, then of its inner channel sets (attention heads)."""
        return list(call.output_keys) + [key for _, key in self.inner_keys.get(call.name, ())]

    def out_sets(self, call):
        """Channel sets of the call's outputs, then of its inner sets (`LayerHandler.inner_sets`)."""
        return [self.tensor_sets[k] for k in self.out_keys(call)]

    def handler(self, call):
        return handlers_lib.handler_for(call.layer)

    def terms(self, call, metric):
        """Cost terms of one call for metric 'params' or 'flops' (cached)."""
        cache_key = (id(call), metric)
        if cache_key not in self._term_cache:
            handler = self.handler(call)
            method = {"params": handler.param_terms, "flops": handler.flop_terms}[metric]
            self._term_cache[cache_key] = method(call, self.in_sets(call), self.out_sets(call))
        return self._term_cache[cache_key]

    def producer_calls(self):
        """Calls that make new channels (conv, dense, ...), with their output set."""
        return [c for c in self.calls if self.handler(c).mixes_channels]

    def own_set(self, call):
        """The channels a producer makes, once: its output's first segment.

        One group, or fixed channels; a Bidirectional RNN's concatenated
        directions repeat that segment, and its width is its units.
        """
        return self.out_sets(call)[0][:1]

    def width_entries(self):
        """[(name, call, channel set)]: what an exported architecture gives a width to.

        The channels every layer that makes channels makes (`own_set`, named as the
        layer), and every inner set (`"<layer>/<label>"`: an attention layer's
        heads), in graph order.
        """
        entries = []
        for call in self.calls:
            if call.application:
                continue  # a shared layer's later uses: the same widths as its first
            if self.handler(call).mixes_channels:
                entries.append((call.name, call, self.own_set(call)))
            for label, key in self.inner_keys.get(call.name, ()):
                entries.append((f"{call.name}/{label}", call, self.tensor_sets[key]))
        return entries


def name_list(names, shown=6):
    """`names` joined by commas, the first `shown` of them and "+N more"."""
    names = list(names)
    text = ", ".join(names[:shown])
    return text + (f", +{len(names) - shown} more" if len(names) > shown else "")


# Layers figs_tf inserts itself; analysis sees through them to the user's graph.
_FIGS_LAYER_TYPES = {}


def register_figs_layer(layer_class, role):
    """role: 'source' (produces gate tensors, ignored) or 'passthrough' (input 0).

    A `WrapperLayer` stands for the call of its `wrapped_layer`, named as itself.
    """
    _FIGS_LAYER_TYPES[layer_class] = role



def _see_through_figs_layers(calls, output_keys):
    aliases = {}
    kept = []
    for call in calls:
        call.input_keys = [aliases.get(k, k) for k in call.input_keys]
        role = _FIGS_LAYER_TYPES.get(type(call.layer))
        if role == "source":
            continue
        if role == "passthrough":
            aliases[call.output_keys[0]] = call.input_keys[0]
            continue
        if isinstance(call.layer, WrapperLayer):
            call = keras_graph.unwrap_call(call, call.layer.wrapped_layer, call.name, call.layer.gate_positions)
        kept.append(call)
    return kept, [aliases.get(k, k) for k in output_keys]


def analyze(model, exclude=()):
    """The channel structure of a functional or Sequential Keras model.

    Args:
      model: a functional or Sequential model (nested models are inlined).
      exclude: names of layers whose output channels are kept out of search.

    Returns:
      A `ChannelGraph`: the prunable groups (`groups`, `group_sizes`), each
      tensor's channel set, where masks go, and `notes` saying which channels are
      kept out of search and why.

    Raises:
      UnsupportedLayerError: a layer without a handler (the message says how to
        register one) or used in a way its handler does not cover.
      GraphError: a subclassed model, a shared layer whose uses are called
        differently, or duplicate layer names.
      ValueError: `exclude` names layers that are not in the model.

    Example:

    >>> graph = figs_tf.analyze(keras.applications.ResNet50(weights=None))
    >>> graph.num_groups, graph.notes
    """
    calls, input_keys, output_keys = keras_graph.flatten_model(model, expand=_functional_equivalent)
    calls, output_keys = _see_through_figs_layers(calls, output_keys)
    keras_graph.number_applications(calls)  # a search model's stand-ins count as the layers they stand for
    keras_graph.unique_layer_names(calls)
    exclude = set(exclude)
    unknown = exclude - {c.name for c in calls}
    if unknown:
        raise ValueError(f"exclude names layers that are not in the model: {sorted(unknown)}. "
                         f"Layer names look like {[c.name for c in calls[:5]]}.")

    builder = _GroupBuilder()
    sets, axes, read_sets = {}, {}, {}
    inner_keys = {}
    first_use = {}  # id(layer) -> (in sets, out sets, {label: inner set}) of a shared layer's first application
    for key, tensor in zip(input_keys, keras_graph.input_tensors(model)):
        sets[key] = (Segment(None, tensor.shape[-1] or 0),)
        axes[key] = None  # a model input's channels are never pruned: any axis may be read as its channels
    for call in calls:
        handler = handlers_lib.handler_for(call.layer)
        missing = [k for k in call.input_keys if k not in sets]
        if missing:
            raise keras_graph.GraphError(f"Layer '{call.name}' reads a tensor that is not "
                                         "computed from the model's inputs.")
        call.read_axes, call.output_axes = handler.channel_axes(call, [axes[k] for k in call.input_keys])
        in_sets = [_read_on_axis(call, i, sets[k], axes[k], builder) for i, k in enumerate(call.input_keys)]
        read_sets[id(call)] = in_sets
        out_sets = handler.output_sets(call, in_sets, builder)
        if call.name in exclude:
            for out_set in out_sets:
                builder.fix(out_set, f"'{call.name}' is excluded from search")
        for key, out_set, axis in zip(call.output_keys, out_sets, call.output_axes):
            sets[key] = tuple(out_set)
            axes[key] = axis
        inner = {}
        for label, inner_set in handler.inner_sets(call, in_sets, builder):
            key = ("figs_inner", call.name, label)  # no tensor has this axis: a key of its own
            if call.name in exclude:
                builder.fix(inner_set, f"'{call.name}' is excluded from search")
            inner[label] = tuple(inner_set)
            if call.application == 0:
                sets[key] = tuple(inner_set)
                inner_keys.setdefault(call.name, []).append((label, key))
        if call.shared:
            _share_channels(call, in_sets, out_sets, inner, first_use, builder)
    for key in output_keys:
        builder.fix(sets[key], "they are model outputs")
    builder.apply_conditions()

    canonical = _canonical_groups(builder)
    sets = {key: _canonical_set(s, builder, canonical) for key, s in sets.items()}
    read_sets = {call_id: [_canonical_set(s, builder, canonical) for s in in_sets]
                 for call_id, in_sets in read_sets.items()}
    groups = [None] * len(canonical)
    for root, group_id in canonical.items():
        groups[group_id] = ChannelGroup(size=builder.sizes[root], producers=sorted(set(builder.producers[root])))

    graph = ChannelGraph(calls=calls, input_keys=input_keys,
                         input_tensors=keras_graph.input_tensors(model),
                         output_structure=keras_graph.output_structure(model),
                         output_keys=output_keys,
                         tensor_sets=sets, tensor_axes=axes, read_sets=read_sets, groups=groups, masked_keys=[],
                         keep_one_sets=[], notes=builder.notes, inner_keys=inner_keys)
    graph.masked_keys = _place_masks(graph)
    graph.branches, branch_notes = branches_lib.find_branches(graph)
    graph.notes.extend(branch_notes)
    graph.keep_one_sets = _keep_one_sets(graph)
    return graph


def _share_channels(call, in_sets, out_sets, inner, first_use, builder):
    """Ties every application of a shared layer to its first: one set of weights keeps one set of channels.

    Each input, output and inner set (attention heads) of a later application
    lives or dies with the same one of the first application, so the search
    stays exact: the slim model keeps one slimmed layer, applied as often.
    """
    if call.application == 0:
        first_use[id(call.layer)] = (call, in_sets, out_sets, inner)
        return
    first_call, first_in, first_out, first_inner = first_use[id(call.layer)]
    if call.signature() != first_call.signature() and handlers_lib.handler_for(call.layer).later_use_ties(
            call, first_call) is None:
        raise keras_graph.GraphError(
            f"Layer '{call.name}' ({type(call.layer).__name__}) is applied {call.application + 1} times with "
            f"different arguments (first {first_call.signature()}, then {call.signature()}). figs_tf shares one set "
            "of channels among the uses of a shared layer when every use is called alike (other tensors, same "
            "options); give this use its own layer.")
    where = f"{call.name} (a layer applied {call.application + 1} times)"
    own_ties = handlers_lib.handler_for(call.layer).later_use_ties(call, first_call)
    if own_ties is not None:  # a use of its own kind (a tied embedding's reverse=True call)
        first_sets, these_sets = {"in": first_in, "out": first_out}, {"in": in_sets, "out": out_sets}
        for (kind, index), (first_kind, first_index) in own_ties:
            builder.tie(tuple(first_sets[first_kind][first_index]), tuple(these_sets[kind][index]), where)
        return
    for first, this in list(zip(first_in, in_sets)) + list(zip(first_out, out_sets)):
        builder.tie(tuple(first), tuple(this), where)
    for label, inner_set in inner.items():
        builder.tie(first_inner[label], inner_set, where)


def _read_on_axis(call, index, channel_set, axis, builder):
    """The channel set input `index` is read with: its own, or fixed channels of another axis.

    `axis` None: channels that are never pruned (a model input, and what layers
    that keep their input's axis make of it), described along the last axis.
    """
    read_axis = call.read_axes[index]
    if read_axis == (len(call.input_tensors[index].shape) - 1 if axis is None else axis):
        return channel_set
    builder.fix(channel_set, f"'{call.name}' reads axis {read_axis} of a tensor whose channels are on axis "
                f"{axis} as its channels")
    return (Segment(None, call.input_tensors[index].shape[read_axis] or 0),)


def _functional_equivalent(call):
    """The functional equivalent of a layer that holds other layers (keras_graph inlines it), or None."""
    handler = handlers_lib.find_handler(call.layer)
    return None if handler is None else handler.functional_equivalent(call)


def _canonical_groups(builder):
    """Prunable roots -> 0..G-1, ordered by group key (the least producer name).

    The order depends on names only, not on graph traversal, so a search model
    and the model it was made from number their groups alike.
    """
    roots = {builder.find(g) for g in range(len(builder.parent))}
    prunable = [r for r in roots if not builder.fixed[r]]
    prunable.sort(key=lambda r: min(builder.producers[r]))
    return {root: i for i, root in enumerate(prunable)}


def _canonical_set(channel_set, builder, canonical):
    out = []
    for segment in channel_set:
        group = None if segment.group is None else canonical.get(builder.find(segment.group))
        out.append(Segment(group, segment.size, segment.repeat))
    return tuple(out)


def _place_masks(graph):
    """Tensors after which the group mask is applied, so every reader that needs
    it sees pruned channels as exactly zero.

    Masks go where a pruned channel could be non-zero (after a conv and its
    BatchNorm, after a sigmoid, ...) and a reader mixes channels or merges
    tensors. They are never put between a conv and the BatchNorm that follows
    it: BatchNorm does not need clean inputs, so the mask lands after it.
    """
    masked = set()
    while True:
        changed = False
        dirty = {key: False for key in graph.input_keys}
        for call in graph.calls:
            handler = graph.handler(call)
            in_dirty = [dirty[k] and k not in masked for k in call.input_keys]
            has_pruned = [bool(groups_in(graph.tensor_sets[k])) for k in call.input_keys]
            for i in handler.inputs_to_clean(call, in_dirty, has_pruned):
                masked.add(call.input_keys[i])
                in_dirty[i] = False
                changed = True
            out_dirty = handler.output_dirty(call, in_dirty)
            for key in call.output_keys:
                dirty[key] = out_dirty
        if not changed:
            break
    # Keep graph order so that wrapping is deterministic.
    order = {key: i for i, key in enumerate(k for c in graph.calls for k in c.output_keys)}
    return sorted(masked, key=lambda k: order.get(k, -1))


def _keep_one_sets(graph):
    """A `KeepOne` rule for the input groups of each channel-mixing layer that
    could lose every input and for each inner set (a layer keeps at least one
    attention head), then the `SummandRule`s (figs_tf.export_rules).

    A layer whose empty input makes its branch constant needs no keep-one
    rule: the branch is removed instead (figs_tf.branches).
    """
    cut = branches_lib.cut_calls(graph, graph.branches)
    keep_one = []
    for call in graph.producer_calls():
        if id(call) in cut:
            continue
        in_set = graph.in_sets(call)[0]
        rule = export_rules.KeepOne(groups=groups_in(in_set))
        if rule.groups and not has_fixed_channels(in_set) and rule not in keep_one:
            keep_one.append(rule)
    for call in graph.calls:
        for _, key in graph.inner_keys.get(call.name, ()):
            rule = export_rules.KeepOne(groups=groups_in(graph.tensor_sets[key]))
            if rule.groups and rule not in keep_one:
                keep_one.append(rule)
    return keep_one + branches_lib.summand_rules(graph.branches)
