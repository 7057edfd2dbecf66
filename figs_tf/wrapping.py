"""`figs_tf.wrap`: a search model with gates on every channel group and λ·E[cost].

    search = figs_tf.wrap(model, cost="flops", strength=2e-9)
    search.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    search.fit(train_ds, epochs=40, callbacks=[figs_tf.CostCallback(workdir)])

The returned model calls the original layers (weights are shared, not copied:
training the search model trains `model`'s layers), plus

- one `MaskLayer` ("figs_gates") holding every gate logit, called on the first
  input;
- `ApplyMask` layers where a pruned channel could otherwise be read as
  non-zero (after a conv's BatchNorm, before merges and kernels);
- stand-ins (figs_tf.wrapper_layer) for the sublayers of expanded blocks and
  for layers gated inside (attention heads);
- one `CostLayer` ("figs_cost") on the first input's path that adds
  `strength × cost` as a loss in training (outputs keep their names, so
  per-output losses and metrics compile as before).
"""

from keras import ops
import keras

from figs_tf import channel_groups
from figs_tf import cost as cost_lib
from figs_tf import keras_graph
from figs_tf import runs_here
from figs_tf.channel_sets import gate_indices, groups_in
from figs_tf.apply_mask import ApplyMask
from figs_tf.cost_layer import CostLayer
from figs_tf.mask_layer import AUTO, DEFAULT_INITIAL_LOGIT, DEFAULT_TEMPERATURE, MaskLayer

GATES_NAME = "figs_gates"
COST_NAME = "figs_cost"
ESTIMATORS = ("expected", "sampled")


def wrap(model, cost="params", strength=0.0, exclude=(), estimator="expected",
         temperature=DEFAULT_TEMPERATURE, initial_logit=DEFAULT_INITIAL_LOGIT, seed=None, target=None,
         logit_gradient_multiplier=1.0, gate_speed=AUTO):
    """Returns a search model: `model` with FiGS gates and a cost loss.

    Args:
      model: a functional or Sequential Keras model (nested models allowed).
      cost: "params" or "flops" (multiply-adds per example).
      strength: λ >= 0, the weight of the cost in the loss. Change it during
        training with `figs_tf.set_strength(search, value)`.
      exclude: names of layers whose output channels are not searched.
      estimator: "expected" (eq. 6, Σπ per group; the paper's choice) or
        "sampled" (eq. 5, the sampled gates' sum).
      temperature: τ of the relaxation (> 0).
      initial_logit: initial gate logit ν (π = sigmoid(ν)).
      seed: seed of the gate noise.
      target: optional budget in the metric of `cost` (parameters, or
        multiply-adds per example): a `figs_tf.BudgetController` in `fit` then
        steers λ during AL so that the exported network lands within ±2 % of it
        (docs/budget.md). Stored with the model: `figs_tf.get_target(search)`.
        `strength` is then only λ's starting value (0: estimated).
      logit_gradient_multiplier: M > 0 multiplies the gradient reaching the
        gate logits (paper: 1). With Adam at ε = 1 that is a gate learning
        rate M times the weights': for AL runs far shorter than the paper's,
        where the task loss otherwise has too few steps to move the gates
        (figs_tf.mask_layer).
      gate_speed: s > 0, the gate logits are ν = s·θ with θ the trainable
        variable, so an optimizer step moves them s times as far; 1 is the
        paper. "auto" (default): a `figs_tf.BudgetController` in `fit` chooses
        s at the start of AL so that, with the compiled optimizer and the
        planned steps, the logits can travel as far as the target needs
        (docs/budget.md, "Gate speed"); without a controller (a fixed λ) s
        stays 1. Change it by hand with `figs_tf.set_gate_speed`.

    Raises:
      ValueError: bad arguments, a model without prunable channels, or
        channels_first convolutions the backend cannot run on this machine
        (TensorFlow on a CPU without oneDNN): the message names the layers and
        what to do (figs_tf.runs_here).

    Example:

        search = figs_tf.wrap(model, cost="params", target=2_000_000)
        search.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        search.fit(data, epochs=40, callbacks=[figs_tf.BudgetController(), figs_tf.CostCallback(workdir)])
    """
    metric = cost_lib.check_metric(cost)
    strength = cost_lib.check_strength(strength)
    if estimator not in ESTIMATORS:
        raise ValueError(f"Unknown estimator '{estimator}'. Use 'expected' (eq. 6) or 'sampled' (eq. 5).")
    if isinstance(exclude, str):
        exclude = [exclude]
    graph = channel_groups.analyze(model, exclude=exclude)
    if graph.num_groups == 0:
        raise ValueError(f"Model '{model.name}' has no prunable channels: every channel "
                         f"is a model input or output, or kept out of search. Notes: {graph.notes}")
    polynomial = cost_lib.CostPolynomial(graph, metric)  # also checks FLOPs can be counted
    runs_here.check_runs_here(graph, f"'{model.name}'")  # channels_first on TensorFlow's CPU needs oneDNN
    target = cost_lib.check_target(target, metric, graph, model_name=f"'{model.name}'")
    gates = MaskLayer(
        group_sizes=graph.group_sizes, temperature=temperature, initial_logit=initial_logit,
        keep_one_sets=graph.keep_one_sets, sampled_widths=(estimator == "sampled"),
        group_keys=[g.key for g in graph.groups], exclude=list(exclude), seed=seed,
        logit_gradient_multiplier=logit_gradient_multiplier, gate_speed=gate_speed, name=GATES_NAME)
    cost_layer = CostLayer(metric, polynomial, strength=strength, target=target, name=COST_NAME)

    inputs = keras_graph.fresh_inputs(graph.input_tensors)
    gate_vector, widths = gates(inputs[0])
    values = dict(zip(graph.input_keys, inputs))
    values[graph.input_keys[0]] = cost_layer([inputs[0], widths])

    offsets = _offsets(graph.group_sizes)
    always_on = sum(graph.group_sizes)
    masked = set(graph.masked_keys)
    first_uses = {}  # id(layer) -> (its search-model inputs, outputs, call) at a shared layer's first application
    for call in graph.calls:
        if call.application and graph.handler(call).later_use_ties(call, first_uses[id(call.layer)][2]) is None:
            outputs = _apply_shared_again(call, first_uses[id(call.layer)], values, gate_vector)
        else:
            args, kwargs = call.call_arguments(values)
            out_sets = graph.out_sets(call)  # the outputs', then any inner sets' (attention heads)
            gating = None
            if any(groups_in(s) for s in out_sets):
                gating = (gate_vector, [gate_indices(s, offsets, always_on) for s in out_sets])
            outputs = keras.tree.flatten(graph.handler(call).search_call(call, args, kwargs, gating))
            if call.shared and not call.application:
                first_uses[id(call.layer)] = ([values[k] for k in call.input_keys], outputs, call)
        for index, (key, tensor) in enumerate(zip(call.output_keys, outputs)):
            if key in masked:
                suffix = ("" if len(outputs) == 1 else f"_{index}") + (f"_use{call.application}" if call.application
                                                                       else "")
                indices = gate_indices(graph.tensor_sets[key], offsets, always_on)
                axis = graph.tensor_axes[key]
                axis = -1 if axis == len(tensor.shape) - 1 else axis
                tensor = ApplyMask(indices, axis=axis, name=f"{call.name}{suffix}_figs_mask")([tensor, gate_vector])
            values[key] = tensor
    outputs = keras.tree.pack_sequence_as(graph.output_structure, [values[k] for k in graph.output_keys])
    search = keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=f"{model.name}_figs")
    search._figs_graph = graph  # pylint: disable=protected-access  # a cache; re-derived after loading
    return search




def _apply_shared_again(call, first_use, values, gate_vector):
    """A later application of a shared layer: what ran at its first application (the layer, or its gated
    stand-in) runs again on this application's inputs, so every use holds one layer and one set of gates."""
    first_inputs, first_outputs, _ = first_use
    replacements = {id(gate_vector): gate_vector}
    for first, key in zip(first_inputs, call.input_keys):
        if replacements.setdefault(id(first), values[key]) is not values[key]:
            raise keras_graph.GraphError(f"Shared layer '{call.name}' reads one tensor twice at its first use and "
                                         "two different ones later: figs_tf cannot apply it again.")
    outputs = keras_graph.apply_again(first_outputs[0], replacements)
    if len(outputs) != len(first_outputs):
        raise keras_graph.GraphError(f"Shared layer '{call.name}' is run by more than one layer in the search "
                                     "model; figs_tf cannot apply it again.")
    return outputs


def _offsets(group_sizes):
    offsets, total = [], 0
    for size in group_sizes:
        offsets.append(total)
        total += size
    return offsets


def gates_of(search):
    """The `MaskLayer` of a search model.

    Raises:
      ValueError: the model has no figs_tf gates (it was not made by figs_tf.wrap).
    """
    for layer in search.layers:
        if isinstance(layer, MaskLayer):
            return layer
    raise ValueError(f"Model '{search.name}' has no figs_tf gates: make it with figs_tf.wrap(model).")


def cost_layer_of(search):
    """The `CostLayer` of a search model (its metric, λ and target).

    Raises:
      ValueError: the model has no figs_tf cost (it was not made by figs_tf.wrap).
    """
    for layer in search.layers:
        if isinstance(layer, CostLayer):
            return layer
    raise ValueError(f"Model '{search.name}' has no figs_tf cost: make it with figs_tf.wrap(model).")


def channel_graph_of(search):
    """The `ChannelGraph` of a search model's underlying network (cached on the model).

    Raises:
      ValueError: the model changed after figs_tf.wrap, so its gates no longer
        match its channel groups.
    """
    graph = getattr(search, "_figs_graph", None)
    if graph is None:
        gates = gates_of(search)
        graph = channel_groups.analyze(search, exclude=gates.exclude)
        if gates.group_keys is not None and [g.key for g in graph.groups] != gates.group_keys:
            raise ValueError(
                f"The gates of '{search.name}' were made for channel groups "
                f"{gates.group_keys[:5]}..., but its graph now has {[g.key for g in graph.groups][:5]}...: "
                "the model was changed after figs_tf.wrap. Wrap the changed model again.")
        search._figs_graph = graph  # pylint: disable=protected-access
    return graph


def set_strength(search, value):
    """Sets λ of a search model; takes effect at the next training step.

    Args:
      search: a search model (figs_tf.wrap).
      value: λ >= 0; under a budget (the model has a target) λ is the budget
        controller's Lagrange multiplier and may be negative, so that
        `set_strength(search, get_strength(search))` always works.

    Raises:
      ValueError: a negative λ without a budget, or a value that is not a finite number.
    """
    layer = cost_layer_of(search)
    layer.set_strength(value, signed=layer.target is not None)


def get_strength(search):
    """λ of a search model now, as a float (negative under a budget when the cost term pulls gates up).

    Example:

    >>> figs_tf.get_strength(figs_tf.wrap(model, strength=2e-9))
    2e-09
    """
    return float(ops.convert_to_numpy(cost_layer_of(search).strength))


def get_gate_speed(search):
    """The gate speed s of a search model now (its logits are ν = s·θ), as a float."""
    return gates_of(search).gate_speed


def set_gate_speed(search, value):
    """Sets the gate speed s; θ is rescaled so the logits ν do not move.

    Exact for powers of two (the automatic choice is one). Takes effect at the
    next training step. The compiled optimizer's state follows (the EMA copy
    of θ, and gradient moments of the optimizers that
    `figs_tf.gate_speed.STATE_SCALINGS` covers; another optimizer's state is
    left with a warning), so the logits move at the new speed from the next
    step: s times as fast as at s = 1 under an optimizer that normalises its
    steps, s² under SGD (docs/budget.md, "Gate speed"). With `gate_speed="auto"` a BudgetController chooses s
    again at the start of a fresh AL run (optimizer step 0).

    Raises:
      ValueError: a value that is not a finite number > 0.

    Example:

    >>> figs_tf.set_gate_speed(search, 16.0)   # Adam at 1e-3: gates move up to 0.016 per step
    """
    gates_of(search).set_gate_speed(value, optimizer=getattr(search, "optimizer", None))


def get_target(search):
    """The budget the search model is trained to, or None.

    Set by `figs_tf.wrap(..., target=...)` or by `figs_tf.BudgetController(target=...)`,
    in the metric of the model's cost (`cost_layer_of(search).metric`).
    """
    return cost_layer_of(search).target


def set_target(search, value):
    """Sets (or clears, with None) the budget stored on the search model.

    Raises:
      ValueError: a target that is not a positive number, or that the model
        cannot export (below its smallest network or above the supernet).
    """
    layer = cost_layer_of(search)
    layer.target = cost_lib.check_target(value, layer.metric, channel_graph_of(search),
                                           model_name=f"'{search.name}'")
