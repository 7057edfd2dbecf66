"""Dead branches: a summand whose channels all close leaves the network, its constant folded.

A *branch* is everything that feeds one input of a sum (`keras.layers.Add`,
`x + y`) and nothing else: that input's exclusive cone. FBNet's operators,
One-Shot's convolution pairs under the add aggregator and a ResNet bottleneck
are branches. When the channel groups inside a branch close, the branch stops
depending on the model's input: whatever it adds is a constant. The export then

- removes every layer of the branch (width 0 in the architecture; gone from
  `figs_tf.slim`, `figs_tf.build_from_architecture` and the exported cost) and
  empties its inner groups, so that the search model's inference mask
  computes what the slimmed network computes;
- folds the constant into what survives: the BatchNorm shift or the bias of
  another summand of the sum (looking through earlier sums that only this sum
  reads), or else one `figs_tf.ChannelBias` after the sum, whose parameters
  the exported cost counts;
- keeps one channel only where removal would cut the network in two: a sum
  all of whose inputs are such branches keeps one of them alive (the one
  whose missing groups have the largest logits), and every channel-mixing
  layer outside a removable branch keeps one input channel, as before.

Which groups a branch depends on (`Branch.paths`): a layer that mixes
channels passes the dependence on the model's input on iff its input depends
on it through a kept channel and its output keeps a channel; any other layer
depends on its inputs. Over the branch's inner groups (groups made only inside
it) that is an OR of ANDs: the branch depends on the input iff every group of
some path keeps a channel. A ResNet bottleneck has one path {conv1, conv2}: if
either closes, the block is a constant and becomes its shortcut, so depth is
searchable. Channel-mixing layers whose emptiness alone makes the branch
constant (FBNet's projection, the bottleneck's conv2 and conv3) lose their
keep-one rule; others inside a branch keep it (a squeeze-excite expansion: a
constant times a live tensor is no sum).

"The constant" is the branch's value when every inner group is empty. It is
computed exactly by running the branch's own layers on zeros in inference mode,
with the gates' masks (`branch_constant`): the layers that read nothing give
their bias, and what follows (BatchNorm, a ReLU, a sigmoid: any function of a
constant) turns it into the constant that reaches the sum, per channel. It is
only folded when it is the same at every position, which the handlers decide
before any value is known (`LayerHandler.uniform_output`: a convolution on
zeros gives its bias everywhere; a 'same'-padded 3x3 convolution or padding
applied to a non-zero constant does not). A branch whose constant could vary
over positions is not removed: it keeps one channel, and `graph.notes` says so.

The widths rule (`apply_summand_rules`, NumPy twin `apply_summand_rules_numpy`)
is a step of `figs_tf.mask_layer.hard_widths`; its data, one
`figs_tf.export_rules.SummandRule` per sum with removable inputs, travels in
`keep_one_sets` next to the `KeepOne` rules.
"""

import collections
import dataclasses
import heapq
import os

import keras
import numpy as np
from keras import ops

from figs_tf import export_rules
from figs_tf.channel_sets import alive_positions, count as channels_alive, groups_in, has_fixed_channels

_TRUE = frozenset([frozenset()])  # depends on the input whatever the widths
_MAX_TERMS = 64  # larger dependence formulas are treated as "always depends" (not removable)
_NO_SCORE = 1e30  # score of a group that needs no revival


@dataclasses.dataclass
class Branch:
    """The exclusive cone of one input of a sum, removable when its inner groups close."""

    sum_call: object  # the LayerCall of the sum
    input_index: int  # which input of the sum the branch feeds
    calls: list  # its LayerCalls in graph order
    internal_groups: list  # groups whose producers are all in the branch
    paths: list  # sorted group-id lists: depends on the input iff every group of some path is non-empty
    name: str  # the common prefix of its layer names (or its last layer's name)

    @property
    def key(self):
        """The summand tensor (the branch's output, read by the sum alone)."""
        return self.sum_call.input_keys[self.input_index]

    def is_dead(self, widths):
        return not any(all(widths[g] > 0 for g in path) for path in self.paths)


@dataclasses.dataclass
class Fold:
    """Where the constant of a sum's dead inputs goes."""

    sum_call: object
    branches: list  # the sum's dead Branches
    target: object  # LayerCall whose weights absorb the constant; None: a ChannelBias after the sum


# ---------------------------------------------------------------- analysis

def _absorb(terms):
    """Drops terms that contain another term (a OR (a AND b) == a)."""
    if len(terms) > _MAX_TERMS:
        return _TRUE
    return frozenset(t for t in terms if not any(other < t for other in terms))


def _or(formulas):
    return _absorb(frozenset().union(*formulas)) if formulas else frozenset()


def _and(a, b):
    return _absorb(frozenset(x | y for x in a for y in b))


def _keeps_a_channel(channel_set, internal):
    """Formula for "the tensor keeps a channel" over the branch's inner groups."""
    groups = groups_in(channel_set)
    if has_fixed_channels(channel_set) or not groups or any(g not in internal for g in groups):
        return _TRUE
    return frozenset(frozenset([g]) for g in groups)


def _exclusive_cone(start, calls, producer, consumers, outputs):
    """Indices of the calls whose outputs are read only inside the cone ending at `start`."""
    cone = {start}
    pending = [-producer[k] for k in calls[start].input_keys if k in producer]
    heapq.heapify(pending)
    seen = set()
    while pending:
        index = -heapq.heappop(pending)
        if index in seen:
            continue
        seen.add(index)
        # every reader has a larger index, so is decided already (max-heap order)
        readers = [c for key in calls[index].output_keys for c, _ in consumers[key]]
        if (readers and all(r in cone for r in readers)
                and not any(k in outputs for k in calls[index].output_keys)):
            cone.add(index)
            for key in calls[index].input_keys:
                if key in producer:
                    heapq.heappush(pending, -producer[key])
    return cone


def _branch_name(calls):
    prefix = os.path.commonprefix([c.name for c in calls]).rstrip("_")
    return prefix or calls[-1].name


def _analyse(graph, sum_call, index, cone_calls, group_producers):
    """A Branch, or (None, why not) when the summand is not removable."""
    names = {c.name for c in cone_calls}
    seen_groups = {g for c in cone_calls for k in c.output_keys for g in groups_in(graph.tensor_sets[k])}
    internal = {g for g in seen_groups if group_producers[g] <= names}
    if not internal:
        return None, None
    formula, uniform, zero = {}, {}, {}
    for call in cone_calls:
        handler = graph.handler(call)
        inputs = [formula.get(k, _TRUE) for k in call.input_keys]  # from outside: depends on the input
        depends = _or(inputs)
        in_zero = [zero.get(k, False) for k in call.input_keys]
        # uniform along the axis the layer reads as channels (a layer reading another axis sees positions there)
        in_uniform = [uniform.get(k, False) and graph.tensor_axes.get(k) in (None, axis)
                      for k, axis in zip(call.input_keys, call.read_axes)]
        for key, tensor in zip(call.output_keys, call.output_tensors):
            channel_set = graph.tensor_sets[key]
            formula[key] = _and(depends, _keeps_a_channel(channel_set, internal)) if handler.mixes_channels \
                else depends
            # its value once every inner group is empty (the branch dead)
            zero[key] = not has_fixed_channels(channel_set) and all(g in internal for g in groups_in(channel_set))
            uniform[key] = (zero[key] or len(tensor.shape) <= 2
                            or bool(handler.uniform_output(call, in_uniform, in_zero)))
    key = sum_call.input_keys[index]
    paths = formula[key]
    if paths == _TRUE or not paths:
        return None, None  # always depends on the input (or never did): nothing to remove
    name = _branch_name(cone_calls)
    if not uniform[key]:
        return None, (f"summand '{name}' of '{sum_call.name}' keeps one channel when its inner channels close: "
                      "the constant it would leave may differ between positions (a layer after its last "
                      "channel-mixing layer pads or spreads it)")
    return Branch(sum_call=sum_call, input_index=index, calls=cone_calls, internal_groups=sorted(internal),
                  paths=sorted(sorted(p) for p in paths), name=name), None


def find_branches(graph):
    """(removable Branches in graph order, notes on summands that are not removable)."""
    calls = graph.calls
    producer, consumers = {}, collections.defaultdict(list)
    for i, call in enumerate(calls):
        for key in call.output_keys:
            producer[key] = i
        for j, key in enumerate(call.input_keys):
            consumers[key].append((i, j))
    outputs = set(graph.output_keys)
    group_producers = [set(g.producers) for g in graph.groups]
    branches, notes = [], []
    for m, call in enumerate(calls):
        if not graph.handler(call).sums_inputs(call):
            continue
        if call.output_axes[0] is None:
            continue  # a sum of model inputs' channels, which no layer makes: nothing in it can close
        channels = call.output_tensors[0].shape[call.output_axes[0]]
        if any(t.shape[axis] != channels for t, axis in zip(call.input_tensors, call.read_axes)):
            continue  # a broadcast input: not a sum of equal summands
        for i, key in enumerate(call.input_keys):
            if consumers[key] != [(m, i)] or key in outputs or key not in producer:
                continue
            start = producer[key]
            if any(k != key and (consumers[k] or k in outputs) for k in calls[start].output_keys):
                continue
            cone = _exclusive_cone(start, calls, producer, consumers, outputs)
            branch, note = _analyse(graph, call, i, [calls[j] for j in sorted(cone)], group_producers)
            if branch is not None:
                branches.append(branch)
            if note is not None:
                notes.append(note)
    return branches, notes


def cut_calls(graph, branches):
    """ids of the channel-mixing calls whose empty input alone makes their branch constant.

    They need no keep-one rule: when their input closes, the branch goes.
    """
    cut = set()
    for branch in branches:
        internal = set(branch.internal_groups)
        for call in branch.calls:
            if not graph.handler(call).mixes_channels:
                continue
            in_set = graph.in_sets(call)[0]
            groups = set(groups_in(in_set))
            if groups and not has_fixed_channels(in_set) and groups <= internal and all(
                    groups & set(path) for path in branch.paths):
                cut.add(id(call))
    return cut


def summand_rules(branches):
    """The widths rule's data: one `figs_tf.export_rules.SummandRule` per sum with removable inputs, in graph order."""
    by_sum = {}
    for branch in branches:
        by_sum.setdefault(id(branch.sum_call), []).append(branch)
    rules = []
    for members in by_sum.values():
        sum_call = members[0].sum_call
        rules.append(export_rules.SummandRule(
            sum_name=sum_call.name, keep_one=len(members) == len(sum_call.input_keys),
            summands=tuple(export_rules.Summand(paths=b.paths, internal=b.internal_groups) for b in members)))
    return rules


# ---------------------------------------------------------------- the widths rule

def apply_summand_rules_numpy(widths, group_max, rules):
    """NumPy twin of `apply_summand_rules` (widths: float array, changed and returned)."""
    rules = export_rules.summand_rules(rules)
    for rule in rules:
        if not rule.keep_one:
            continue
        paths = [list(path) for summand in rule.summands for path in summand.paths]
        empty = widths == 0
        if any(not empty[path].any() for path in paths):
            continue
        scores = np.array([np.min(np.where(empty[path], group_max[path], np.float32(_NO_SCORE)))
                           for path in paths], dtype=np.float32)
        best = paths[int(np.argmax(scores))]
        widths[best] += empty[best]
    empty = widths == 0
    for rule in rules:
        for summand in rule.summands:
            if not any(not empty[list(path)].any() for path in summand.paths):
                widths[list(summand.internal)] = 0
    return widths


def _membership(lists, num_groups):
    matrix = np.zeros((len(lists), num_groups), np.float32)
    for row, groups in enumerate(lists):
        matrix[row, list(groups)] = 1.0
    return matrix


def apply_summand_rules(widths, group_max, rules, num_groups):
    """The dead-branch steps of the export rule, on backend tensors.

    1. A sum all of whose inputs are removable branches keeps one alive: if no
       path of any of them has all its groups non-empty, the path whose
       weakest empty group has the largest logit gets one channel in each of
       its empty groups.
    2. Every branch none of whose paths is complete is dead: its inner groups
       are emptied.

    Args:
      widths: float32 widths per group (after ⌊Σπ⌋ and the keep-one sets).
      group_max: float32 largest logit per group.
      rules: the export rules (`figs_tf.export_rules`); only the `SummandRule`s are read.
      num_groups: number of groups.

    Returns:
      The widths after both steps.
    """
    rules = export_rules.summand_rules(rules)
    if not rules:
        return widths
    for rule in rules:
        if not rule.keep_one:
            continue
        paths = _membership([p for s in rule.summands for p in s.paths], num_groups)
        empty = ops.cast(widths == 0, "float32")
        missing = ops.reshape(ops.matmul(paths, ops.reshape(empty, (-1, 1))), (-1,))
        none_alive = ops.cast(ops.min(missing) > 0, "float32")
        needed = ops.logical_and(paths > 0, ops.reshape(empty, (1, -1)) > 0)
        scores = ops.min(ops.where(needed, ops.reshape(group_max, (1, -1)), _NO_SCORE), axis=1)
        best = ops.take(paths, ops.argmax(scores), axis=0)
        widths = widths + none_alive * best * empty
    summands = [s for rule in rules for s in rule.summands]
    all_paths = [p for s in summands for p in s.paths]
    owner = [i for i, s in enumerate(summands) for _ in s.paths]
    empty = ops.cast(widths == 0, "float32")
    complete = ops.cast(ops.reshape(ops.matmul(_membership(all_paths, num_groups), ops.reshape(empty, (-1, 1))),
                                    (-1,)) == 0, "float32")
    alive = ops.segment_max(complete, ops.convert_to_tensor(owner, dtype="int32"), num_segments=len(summands))
    dead = ops.reshape(1.0 - alive, (1, -1))
    killed = ops.reshape(ops.matmul(dead, _membership([s.internal for s in summands], num_groups)), (-1,))
    return widths * (1.0 - ops.cast(killed > 0, "float32"))


# ---------------------------------------------------------------- the exported network

def dead_inputs(graph, widths):
    """{(id(sum call), input index)} of the summands removed at these widths."""
    return {(id(b.sum_call), b.input_index) for b in graph.branches if b.is_dead(widths)}


def fold_plan(graph, widths, live_calls):
    """One Fold per kept sum with removed inputs, in graph order."""
    live = {id(c) for c in live_calls}
    dead = {}
    for branch in graph.branches:
        if id(branch.sum_call) in live and branch.is_dead(widths):
            dead.setdefault(id(branch.sum_call), []).append(branch)
    if not dead:
        return []
    producer = {key: call for call in live_calls for key in call.output_keys}
    removed = {(id(b.sum_call), b.input_index) for members in dead.values() for b in members}
    readers = collections.Counter(key for call in live_calls for i, key in enumerate(call.input_keys)
                                  if (id(call), i) not in removed)
    outputs = set(graph.output_keys)

    def absorber(sum_call):
        for i, key in enumerate(sum_call.input_keys):
            call = producer.get(key)
            if (id(sum_call), i) in removed or call is None or key in outputs or readers[key] != 1 \
                    or len(call.output_keys) != 1 or call.shared:  # a shared layer's weights serve every use
                continue
            handler = graph.handler(call)
            if handler.can_absorb_output_shift(call):
                return call
            if handler.sums_inputs(call):  # (a + b) + k == (a + k) + b: look into the sum feeding this one
                found = absorber(call)
                if found is not None:
                    return found
        return None

    return [Fold(sum_call=call, branches=dead[id(call)], target=absorber(call))
            for call in live_calls if id(call) in dead]


def fold_cost(graph, metric, widths, live_calls):
    """Parameters the folds add: one bias per kept channel of a sum no summand could absorb into."""
    if metric != "params":
        return 0
    return sum(int(channels_alive(graph.out_sets(f.sum_call)[0], widths))
               for f in fold_plan(graph, widths, live_calls) if f.target is None)


def _zeros_like(tensor):
    shape = [1 if tensor.shape[0] is None else tensor.shape[0]] + [8 if d is None else d for d in tensor.shape[1:]]
    return np.zeros(shape, dtype=np.float32)


def branch_constant(graph, branch, kept_channels):
    """What a dead branch adds to its sum: one value per kept channel of the summand.

    Runs the branch's own layers in inference mode on zeros, applying the
    gates' masks where the search model applies them (`graph.masked_keys`),
    so it is the value the search model computes.

    Raises:
      RuntimeError: the value differs between positions (the handlers said it
        would not; a handler's `uniform_output` is wrong).
    """
    masked = set(graph.masked_keys)
    values = {}
    for call in branch.calls:
        for key, tensor in zip(call.input_keys, call.input_tensors):
            if key not in values:  # read from outside the branch: a dead branch ignores it
                values[key] = _zeros_like(tensor)
        args, kwargs = call.call_arguments(values)
        if isinstance(call.layer, keras.layers.Layer):  # Keras drops it for a call() without `training`
            kwargs = dict(kwargs, training=False)
        outputs = keras.tree.flatten(call.layer(*args, **kwargs))
        for key, output in zip(call.output_keys, outputs):
            value = np.asarray(ops.convert_to_numpy(output), dtype=np.float32)
            if key in masked:  # along the tensor's channel axis (channels_first: 1)
                axis = graph.tensor_axes[key]
                mask = np.zeros(value.shape[axis], np.float32)
                mask[alive_positions(graph.tensor_sets[key], kept_channels)] = 1.0
                value = value * mask.reshape([-1 if d == axis else 1 for d in range(value.ndim)])
            values[key] = value
    positions = alive_positions(graph.tensor_sets[branch.key], kept_channels)
    channels_last = np.moveaxis(values[branch.key], graph.tensor_axes[branch.key], -1)
    value = channels_last[..., positions].reshape(-1, len(positions))
    scale = max(1.0, float(np.abs(value).max())) if value.size else 1.0
    if not np.allclose(value, value[:1], rtol=0, atol=1e-5 * scale):
        raise RuntimeError(f"The constant left by the removed branch '{branch.name}' differs between positions; "
                           "a layer handler's uniform_output() claims otherwise. Please report this model.")
    return value[0]


def fold_constant(graph, fold, kept_channels):
    """The sum of the constants of a fold's dead branches (per kept channel of the sum)."""
    return sum(branch_constant(graph, b, kept_channels) for b in fold.branches)

