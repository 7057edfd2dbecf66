"""Flattens a Keras functional model into one topologically ordered list of calls.

The library's one module that reads private Keras graph internals
(`Functional`/`Sequential` classes, `_nodes_by_depth`, `_functional`,
`_outputs_struct`, `_flatten_layers`, `Node.arguments`, a tensor's
`_keras_history`, an operation's `_inbound_nodes`); everything else sees
`LayerCall`s and `sublayers`. (The other private reads in figs_tf: the
handler table names Keras op classes that have no public name, in
figs_tf/handlers/__init__.py; the attention handler's gated layer calls
MultiHeadAttention's own mask and attention methods, figs_tf/handlers/attention.py;
the keras_hub handlers read keras_hub's block internals,
figs_tf/handlers/keras_hub.py and its keras_hub_*.py siblings, and
figs_tf/keras_hub_models.py;
the grouped-query handler reads attention layers' projection attributes,
figs_tf/handlers/grouped_attention.py.) Nested functional and Sequential models are
inlined, so a backbone inside a classifier is analysed, wrapped and slimmed
like any other part of the graph. A layer whose handler gives a functional
equivalent (a keras_hub Transformer block, built from the block's own
sublayers) is inlined the same way; its inner calls are named
`<block>.<sublayer>` so that blocks with identically named sublayers stay
apart. A layer applied several times (ALBERT's encoder block, shared across
depth) has one `LayerCall` per application, each with its `application`
index; the analysis gives all of them one set of channel groups.

Example:

    calls, inputs, outputs = flatten_model(model)
    for call in calls:
        print(call.layer.name, call.input_keys, call.output_keys)
"""

import dataclasses

import keras
from keras.src.models.functional import Functional
from keras.src.models.sequential import Sequential

TensorKey = tuple  # (scope, id(KerasTensor)): unique even inside nested models


@dataclasses.dataclass
class LayerCall:
    """One application of a layer (or Keras op) inside the flattened graph."""

    layer: object  # a keras.layers.Layer or a keras.Operation
    node: object  # the Keras Node recording the call
    input_keys: list  # keys of node.arguments.keras_tensors, in that order
    output_keys: list  # keys of node.outputs, in that order
    input_tensors: list  # the symbolic KerasTensors (shapes for cost formulas)
    output_tensors: list
    scoped_name: str = None  # `<block>.<sublayer>` inside an expanded layer; None: the layer's name
    # Positions of the node's positional tensors that are not the layer's: the gate vectors a figs_tf
    # wrapper layer (figs_tf.wrapper_layer) passes to the user layer it runs.
    gate_positions: tuple = ()
    # Set by the channel analysis (figs_tf.channel_groups): the axis each input's channels are read
    # on, and each output's channel axis (non-negative; the last axis unless a data_format says otherwise).
    read_axes: list = None
    output_axes: list = None
    # A layer applied several times in the graph (shared across depth, as in ALBERT): this call is its
    # `application`-th use (0 the first); `shared` is True for every use of such a layer.
    application: int = 0
    shared: bool = False

    def __repr__(self):
        return f"<LayerCall {self.name}: {type(self.layer).__name__}>"

    @property
    def name(self):
        return self.scoped_name or self.layer.name

    def arguments(self):
        """(args, kwargs) of the call as recorded: its symbolic tensors and its constants."""
        return self.call_arguments(dict(zip(self.input_keys, self.input_tensors)))

    def call_arguments(self, values):
        """Returns (args, kwargs) of the original call with tensors replaced.

        `values` maps TensorKey to the new tensor.
        """
        tensors = [t for i, t in enumerate(self.node.arguments.keras_tensors) if i not in self.gate_positions]
        by_id = {id(kt): values[key] for kt, key in zip(tensors, self.input_keys)}
        args, kwargs = self.node.arguments.fill_in(by_id)
        return tuple(a for i, a in enumerate(args) if i not in self.gate_positions), kwargs

    def signature(self):
        """The call's arguments with each tensor replaced by its input's position: two calls of one layer
        with equal signatures differ in their input tensors only."""
        positions = {key: f"<input {i}>" for i, key in enumerate(dict.fromkeys(self.input_keys))}
        return repr(self.call_arguments(positions))

    def keyword_positions(self, name):
        """Positions in input_keys of the tensors passed as keyword argument `name` (an RNN's `mask`)."""
        passed = self.node.arguments.kwargs.get(name)
        ids = {id(t) for t in keras.tree.flatten(passed) if isinstance(t, keras.KerasTensor)}
        return [i for i, tensor in enumerate(self.input_tensors) if id(tensor) in ids]


class GraphError(ValueError):
    """The model's graph has a shape figs_tf cannot analyse."""


def _functional_of(model):
    if isinstance(model, Sequential):
        functional = model._functional  # pylint: disable=protected-access
        if functional is None:
            raise GraphError(
                    f"Sequential model '{model.name}' has no known input shape. Build it "
                    "with an explicit keras.Input (e.g. Sequential([keras.Input((32, 32, 3)),"
                    " ...])) so that its graph exists.")
        return functional
    if isinstance(model, Functional):
        return model
    raise GraphError(
            f"Model '{model.name}' of type {type(model).__name__} is a subclassed "
            "model: figs_tf needs a graph it can read. Supported: functional models "
            "(keras.Model(inputs, outputs)) and Sequential models with a known input "
            "shape, nested in each other as deep as you like.")


def is_nested_model(layer):
    return isinstance(layer, (Functional, Sequential))


def flatten_model(model, expand=None):
    """Returns (calls, input_keys, output_keys) of `model`, nested models inlined.

    Args:
      model: a functional or Sequential model.
      expand: optional function of a `LayerCall`, returning a functional
        model equivalent to that call (inputs: one per distinct tensor of the
        call, in order of first use) to inline in its place, or None to keep
        the call as it is.
    """
    functional = _functional_of(model)
    calls = []
    input_keys = [((), id(t)) for t in functional.inputs]
    output_keys = _inline(functional, (), {}, calls, expand, "")
    number_applications(calls)
    return calls, input_keys, output_keys


def number_applications(calls):
    """Sets each call's `application` (uses of its layer before it) and `shared` (the layer is used twice or more)."""
    uses = {}
    for call in calls:
        call.application = uses.get(id(call.layer), 0)
        uses[id(call.layer)] = call.application + 1
    for call in calls:
        call.shared = uses[id(call.layer)] > 1


def _key(scope, tensor, aliases):
    key = (scope, id(tensor))
    return aliases.get(key, key)


def _inline_equivalent(equivalent, call, scope, aliases, calls, expand):
    """Inlines the functional equivalent of an expanded layer call in its place."""
    inner_scope = scope + (len(calls), call.name)
    distinct_keys = list(dict.fromkeys(call.input_keys))
    if len(equivalent.inputs) != len(distinct_keys) or len(equivalent.outputs) != len(call.output_keys):
        raise GraphError(f"The functional equivalent of '{call.name}' has {len(equivalent.inputs)} inputs and "
                         f"{len(equivalent.outputs)} outputs; the call reads {len(distinct_keys)} distinct tensors "
                         f"and makes {len(call.output_keys)}.")
    _inline_call(equivalent, distinct_keys, call.output_tensors, scope, inner_scope, aliases, calls, expand,
                 f"{call.name}.")


def _inline_call(functional, input_keys, outer_outputs, scope, inner_scope, aliases, calls, expand, prefix):
    """Inlines a call of `functional` (a nested model, an expanded layer's equivalent) in its place:
    its inputs stand for `input_keys`, the call's outputs in `scope` for its outputs."""
    inner_aliases = dict(aliases)
    for inner_input, outer_key in zip(functional.inputs, input_keys):
        inner_aliases[(inner_scope, id(inner_input))] = outer_key
    inner_outputs = _inline(functional, inner_scope, inner_aliases, calls, expand, prefix)
    for outer_output, inner_key in zip(outer_outputs, inner_outputs):
        aliases[(scope, id(outer_output))] = inner_key


def _inline(functional, scope, aliases, calls, expand, prefix):
    """Appends the calls of `functional` to `calls`; returns its output keys.

    `prefix` names the calls of an expanded layer's equivalent ("" elsewhere).
    """
    depths = sorted(functional._nodes_by_depth.keys(), reverse=True)  # pylint: disable=protected-access
    for depth in depths:
        for node in functional._nodes_by_depth[depth]:  # pylint: disable=protected-access
            if node.operation is None or node.is_input:
                continue
            input_keys = [_key(scope, t, aliases) for t in node.arguments.keras_tensors]
            op = node.operation
            if is_nested_model(op):
                inner = _functional_of(op)
                if len(inner.inputs) != len(input_keys):
                    raise GraphError(
                            f"Nested model '{op.name}' is called with {len(input_keys)} "
                            f"tensors but has {len(inner.inputs)} inputs.")
                _inline_call(inner, input_keys, node.outputs, scope, scope + (len(calls), op.name), aliases, calls,
                             expand, prefix)
                continue
            call = LayerCall(
                    layer=op,
                    node=node,
                    input_keys=input_keys,
                    output_keys=[_key(scope, t, aliases) for t in node.outputs],
                    input_tensors=list(node.arguments.keras_tensors),
                    output_tensors=list(node.outputs),
                    # ops (x + y) are named uniquely by Keras; layers of a block repeat their names
                    scoped_name=f"{prefix}{op.name}" if prefix and isinstance(op, keras.layers.Layer) else None,
            )
            equivalent = expand(call) if expand is not None else None
            if equivalent is not None:
                _inline_equivalent(equivalent, call, scope, aliases, calls, expand)
                continue
            calls.append(call)
    return [_key(scope, t, aliases) for t in functional.outputs]


def unwrap_call(call, layer, name, gate_positions):
    """The call of `layer` that a figs_tf wrapper layer's call stands for.

    The positional tensors at `gate_positions` of the wrapper's call (gate
    vectors) are not the wrapped layer's.
    """
    kept = [i for i in range(len(call.input_keys)) if i not in gate_positions]
    return dataclasses.replace(call, layer=layer, scoped_name=name if name != layer.name else None,
                               input_keys=[call.input_keys[i] for i in kept],
                               input_tensors=[call.input_tensors[i] for i in kept],
                               gate_positions=tuple(gate_positions))


def apply_again(output, replacements):
    """Calls the layer that made the symbolic tensor `output` once more, on the same arguments with
    every tensor `t` replaced by `replacements[id(t)]`; returns its outputs, flat.

    A search model applies the stand-in of a shared layer's first use again at
    each later use, so that every use runs one layer (one name, one set of weights).

    Raises:
      GraphError: the layer read a tensor that `replacements` does not cover.
    """
    operation, node_index, _ = output._keras_history  # pylint: disable=protected-access
    node = operation._inbound_nodes[node_index]  # pylint: disable=protected-access
    unknown = [t for t in node.arguments.keras_tensors if id(t) not in replacements]
    if unknown:
        raise GraphError(f"'{operation.name}' cannot be applied again: it read {unknown[0].name}, which is not one "
                         "of the call's inputs.")
    args, kwargs = node.arguments.fill_in(replacements)
    return keras.tree.flatten(operation(*args, **kwargs))


def unique_layer_names(calls):
    """Raises if two different layers in the flattened graph share a name."""
    names = {}
    for call in calls:
        other = names.setdefault(call.name, call.layer)
        if other is not call.layer:
            raise GraphError(
                    f"Two layers are both named '{call.name}' (one inside a nested model). "
                    "Exported architectures refer to layers by name: rename one of them.")


def input_tensors(model):
    """The model's symbolic inputs, flat."""
    return list(_functional_of(model).inputs)


def output_structure(model):
    """The model's outputs as the user built them (a tensor, list or dict)."""
    return _functional_of(model)._outputs_struct  # pylint: disable=protected-access


def sublayers(model):
    """Every layer inside `model`, nested models and layers inside layers included (not `model`)."""
    return list(model._flatten_layers(include_self=False, recursive=True))  # pylint: disable=protected-access


def fresh_inputs(tensors):
    """New `keras.Input`s with the shapes, dtypes and names of `tensors` (a model's inputs).

    The name is that of the tensor's `InputLayer`: the user's name (which is also
    the tensor's), or the one Keras gave an unnamed `keras.Input`
    ("input_layer_3"; the tensor itself is then called "keras_tensor_7").
    """
    return [keras.Input(shape=t.shape[1:], batch_size=t.shape[0], dtype=t.dtype, name=input_name(t, i))
            for i, t in enumerate(tensors)]


def input_name(tensor, index):
    """The name of the `InputLayer` that made a model input (the tensor's own name when none)."""
    history = getattr(tensor, "_keras_history", None)  # (operation, node index, tensor index)
    layer = history[0] if history else None
    return getattr(layer, "name", None) or getattr(tensor, "name", None) or f"input_{index}"


__all__ = ["LayerCall", "GraphError", "flatten_model", "fresh_inputs", "input_name", "input_tensors",
           "is_nested_model", "number_applications", "apply_again", "output_structure", "sublayers", "unique_layer_names", "unwrap_call"]
