"""Exact parameter and multiply-add accounting, and the FiGS cost loss.

Every layer's cost is a short list of `Term`s from its handler:
`coefficient × Π count(channel_set)`, with at most two channel sets (a kernel
reads its input channels and makes its output channels). The same terms give

- `count(model, metric)`: exact counts of a plain model (every channel alive);
- the expected cost (eq. 6): each group contributes Σπ channels;
- the sampled cost (eq. 5): each group contributes Σm̂ channels;
- the exported cost: the exported widths, over the layers the exported network
  keeps (figs_tf.export).

Units are raw counts (parameters; multiply-adds per example), so the paper's λ
values (e.g. 1.2e-6 for One-Shot A on parameters, 2e-9 for FBNet B on FLOPs)
mean the same here.

    figs_tf.count(model, "params") == model.count_params()
    figs_tf.count(model, "flops")   # multiply-adds per example
"""

import numpy as np
from keras import ops

from figs_tf import branches as branches_lib
from figs_tf import channel_groups
from figs_tf.channel_sets import count as channels_alive, has_fixed_channels
from figs_tf.channel_sets import membership
from figs_tf.mask_layer import hard_widths_numpy

METRICS = ("params", "flops")
SMALL_NEGATIVE_LOGIT = -30.0  # π ≈ 1e-13: a gate that is off


def check_metric(metric):
    if metric not in METRICS:
        raise ValueError(f"Unknown cost '{metric}'. Use 'params' (parameter count) or "
                         "'flops' (multiply-adds per example).")
    return metric


def check_strength(strength, signed=False):
    """λ as a float. A λ given by the user is >= 0; `signed=True` is for the
    budget controller, whose λ is a Lagrange multiplier and may go below 0
    (figs_tf/budget.py: the cost term then pulls the exported cost up to its
    budget)."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"strength (λ) must be a number >= 0, got {strength!r}") from None
    if signed and not np.isfinite(value):
        raise ValueError(f"the budget controller's λ must be finite, got {strength}.")
    if not signed and (not value >= 0 or not np.isfinite(value)):
        raise ValueError(f"strength (λ) must be a finite number >= 0, got {strength}. "
                         "It multiplies the expected cost in the loss; 0 turns the "
                         "cost off (e.g. the paper's One-Shot A uses 1.2e-6 on params).")
    return value


def check_target(target, metric, graph=None, model_name="the model"):
    """Validates a budget; returns it as a float (None passes through).

    Args:
      target: None or a cost in the metric's raw unit (parameters, or
        multiply-adds per example).
      metric: "params" or "flops".
      graph: optional ChannelGraph; the target must then lie between the
        smallest network the export rule can produce and the supernet.
      model_name: how error messages name the model.

    Returns:
      The target as a float, or None.

    Raises:
      ValueError: the target is not a finite positive number, or (with
        `graph`) the model cannot export a network of that cost.
    """
    if target is None:
        return None
    unit = "parameters" if check_metric(metric) == "params" else "multiply-adds per example"
    try:
        value = float(target)
    except (TypeError, ValueError):
        raise ValueError(f"target must be a number of {unit}, got {target!r}.") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"target must be a positive number of {unit} (the cost the exported network "
                         f"should have, in raw counts, e.g. 2e6), got {target!r}. Give a positive budget, "
                         "or target=None to train with a fixed strength (λ) instead.")
    if graph is not None:
        smallest, supernet = cost_range(graph, metric)
        if value > supernet:
            raise ValueError(f"target {value:,.0f} {unit} is above the supernet cost of {model_name} "
                             f"({supernet:,} {unit}): every architecture figs_tf can export is smaller. "
                             f"Give a target below {supernet:,}, or wrap a larger model.")
        if value < smallest:
            raise ValueError(f"target {value:,.0f} {unit} is below the smallest network figs_tf can export "
                             f"from {model_name} ({smallest:,} {unit}: every channel group emptied, one channel "
                             "kept where a layer would otherwise lose all its inputs; the model's input and "
                             f"output channels are never pruned). Give a target of at least {smallest:,}.")
    return value


def evaluate_terms(terms, widths):
    """Σ coefficient × Π count(set, widths); exact for integer widths."""
    total = 0
    for term in terms:
        value = term.coefficient
        for channel_set in term.channel_sets:
            value = value * channels_alive(channel_set, widths)
        total = total + value
    return total


def counted_calls(calls, metric):
    """The calls whose `metric` is counted: every application for FLOPs; for parameters, one application of
    each layer (a layer shared across depth holds its weights once)."""
    if metric != "params":
        return list(calls)
    seen, counted = set(), []
    for call in calls:
        if id(call.layer) not in seen:
            seen.add(id(call.layer))
            counted.append(call)
    return counted


def layer_costs(graph, metric, widths, calls=None):
    """{layer name: cost} for `calls` (default: every call) at the given widths.

    A shared layer's FLOPs add up over its applications; its parameters count once.
    """
    check_metric(metric)
    costs = {}
    for call in counted_calls(graph.calls if calls is None else calls, metric):
        costs[call.name] = costs.get(call.name, 0) + evaluate_terms(graph.terms(call, metric), widths)
    return costs


def full_widths(graph):
    return [group.size for group in graph.groups]


def count(model, metric="params", exclude=()):
    """Exact parameters or multiply-adds per example of a plain Keras model.

    Gate layers of a wrapped model are not counted (they are not part of the
    network being searched).

    Args:
      model: a functional or Sequential Keras model (nested models allowed).
      metric: "params" (what `model.count_params()` counts, BatchNorm statistics
        included) or "flops" (multiply-adds per example of convolution and dense
        kernels; BatchNorm, biases, activations and pooling are not multiply-adds).
      exclude: names of layers kept out of search (does not change the count).

    Returns:
      The count, an int.

    Raises:
      ValueError: an unknown metric.
      UnsupportedLayerError: a layer without a handler, or FLOPs of a model
        whose input size is not static.

    Example:

    >>> figs_tf.count(model, "params") == model.count_params()
    True
    >>> figs_tf.count(keras.applications.ResNet50(weights=None), "flops")
    3857973248
    """
    check_metric(metric)
    graph = channel_groups.analyze(model, exclude=exclude)
    return int(sum(layer_costs(graph, metric, full_widths(graph)).values()))


def _alive(channel_set, widths):
    """Whether a tensor keeps a channel: channels never pruned always do, even where its width is not known
    statically (a mask's or a token sequence's last axis, of any length)."""
    return has_fixed_channels(channel_set) or channels_alive(channel_set, widths) > 0


def live_calls(graph, widths):
    """Calls whose output reaches a model output through alive channels.

    Args:
      graph: a ChannelGraph.
      widths: the width of every group.

    Returns:
      The LayerCalls the network at these widths keeps, in graph order: a
      layer whose output has no channel left, or only feeds removed layers,
      is gone with its branch, and so is a dead summand of a sum
      (figs_tf.branches: its constant is folded into what survives).
    """
    removed = branches_lib.dead_inputs(graph, widths)
    needed = set(graph.output_keys)
    live = []
    for call in reversed(graph.calls):
        if not any(k in needed for k in call.output_keys):
            continue
        if not any(_alive(graph.tensor_sets[k], widths) for k in call.output_keys):
            continue
        live.append(call)
        for index, key in enumerate(call.input_keys):
            if (id(call), index) not in removed and _alive(graph.tensor_sets[key], widths):
                needed.add(key)
    live.reverse()
    return live


def network_cost(graph, metric, widths, calls=None):
    """Exact cost of the network at integer `widths`, over the layers it keeps (`live_calls`).

    Includes the bias a removed summand's constant may need after its sum
    (figs_tf.branches). `calls`: the kept calls, if already known.
    """
    calls = live_calls(graph, widths) if calls is None else calls
    return int(sum(layer_costs(graph, metric, widths, calls).values())
               + branches_lib.fold_cost(graph, metric, widths, calls))


def cost_range(graph, metric):
    """(smallest exportable cost, supernet cost) of a ChannelGraph.

    The smallest is the exported network with every gate off: every group
    empty, except where the keep-one rule gives a channel back so that every
    channel-mixing layer keeps an input.
    """
    logits = np.full(sum(graph.group_sizes), SMALL_NEGATIVE_LOGIT, np.float32)
    smallest = network_cost(graph, metric, hard_widths_numpy(logits, graph.group_sizes, graph.keep_one_sets))
    return smallest, int(sum(layer_costs(graph, metric, full_widths(graph)).values()))


class CostPolynomial:
    """cost(w) = Σ_t c_t (a_t·w + a0_t)(b_t·w + b0_t) + Σ_u d_u (e_u·w + e0_u) + const.

    The whole model's cost as one quadratic form in the group widths w, so the
    loss is a handful of matrix products per step however many layers there are.
    """

    def __init__(self, graph, metric):
        num_groups = graph.num_groups
        pairs, singles, constant = [], [], 0
        for call in counted_calls(graph.calls, metric):
            for term in graph.terms(call, metric):
                factors = [membership(s, num_groups) for s in term.channel_sets]
                if len(factors) == 0:
                    constant += term.coefficient
                elif len(factors) == 1:
                    singles.append((term.coefficient, factors[0]))
                elif len(factors) == 2:
                    pairs.append((term.coefficient, factors[0], factors[1]))
                else:
                    raise ValueError(f"A cost term of '{call.name}' has {len(factors)} factors; at most 2 are supported.")
        self.num_groups = num_groups
        self.pair_coefficients = np.array([c for c, _, _ in pairs], dtype=np.float64)
        self.pair_left = np.array([f[0] for _, f, _ in pairs], dtype=np.float64).reshape(-1, num_groups)
        self.pair_left_constant = np.array([f[1] for _, f, _ in pairs], dtype=np.float64)
        self.pair_right = np.array([f[0] for _, _, f in pairs], dtype=np.float64).reshape(-1, num_groups)
        self.pair_right_constant = np.array([f[1] for _, _, f in pairs], dtype=np.float64)
        self.single_coefficients = np.array([c for c, _ in singles], dtype=np.float64)
        self.single = np.array([f[0] for _, f in singles], dtype=np.float64).reshape(-1, num_groups)
        self.single_constant = np.array([f[1] for _, f in singles], dtype=np.float64)
        self.constant = float(constant)

    def to_config(self):
        return {key: value.tolist() if isinstance(value, np.ndarray) else value
                for key, value in vars(self).items()}

    @classmethod
    def from_config(cls, config):
        self = cls.__new__(cls)
        for key, value in config.items():
            setattr(self, key, np.asarray(value, dtype=np.float64) if isinstance(value, list) else value)
        self.pair_left = self.pair_left.reshape(-1, self.num_groups)
        self.pair_right = self.pair_right.reshape(-1, self.num_groups)
        self.single = self.single.reshape(-1, self.num_groups)
        return self

    def numpy(self, widths):
        w = np.asarray(widths, dtype=np.float64)
        left = self.pair_left @ w + self.pair_left_constant
        right = self.pair_right @ w + self.pair_right_constant
        single = self.single @ w + self.single_constant
        return float(np.sum(self.pair_coefficients * left * right)
                     + np.sum(self.single_coefficients * single) + self.constant)

    def gradient(self, widths):
        """∂cost/∂w of every group at real-valued widths (NumPy, float64)."""
        w = np.asarray(widths, dtype=np.float64)
        left = self.pair_left @ w + self.pair_left_constant
        right = self.pair_right @ w + self.pair_right_constant
        return (self.pair_left.T @ (self.pair_coefficients * right)
                + self.pair_right.T @ (self.pair_coefficients * left)
                + self.single.T @ self.single_coefficients)

    def float32_arrays(self):
        return {key: value.astype(np.float32)
                for key, value in vars(self).items() if isinstance(value, np.ndarray)}

    def keras(self, widths, arrays):
        """The cost as a backend tensor; `arrays` from float32_arrays (constants)."""
        t = {key: ops.convert_to_tensor(value) for key, value in arrays.items()}
        w = ops.reshape(widths, (-1, 1))
        left = ops.reshape(ops.matmul(t["pair_left"], w), (-1,)) + t["pair_left_constant"]
        right = ops.reshape(ops.matmul(t["pair_right"], w), (-1,)) + t["pair_right_constant"]
        single = ops.reshape(ops.matmul(t["single"], w), (-1,)) + t["single_constant"]
        return (ops.sum(t["pair_coefficients"] * left * right)
                + ops.sum(t["single_coefficients"] * single) + self.constant)
