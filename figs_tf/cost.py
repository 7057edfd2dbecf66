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

import keras
from keras import ops

from figs_tf import channel_groups
from figs_tf.channel_sets import count as channels_alive
from figs_tf.channel_sets import membership

METRICS = ("params", "flops")


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


def check_target(target, metric):
    """A budget is None or a finite number > 0; returns it as a float.

    figs_tf.budget.check_target also checks that the model can reach it.
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


def layer_costs(graph, metric, widths, calls=None):
    """{layer name: cost} for `calls` (default: every call) at the given widths."""
    check_metric(metric)
    calls = graph.calls if calls is None else calls
    return {call.name: evaluate_terms(graph.terms(call, metric), widths) for call in calls}


def full_widths(graph):
    return [group.size for group in graph.groups]


def count(model, metric="params", exclude=()):
    """Exact parameters or multiply-adds per example of a plain Keras model.

    Gate layers of a wrapped model are not counted (they are not part of the
    network being searched).
    """
    check_metric(metric)
    graph = channel_groups.analyze(model, exclude=exclude)
    return int(sum(layer_costs(graph, metric, full_widths(graph)).values()))


class CostPolynomial:
    """cost(w) = Σ_t c_t (a_t·w + a0_t)(b_t·w + b0_t) + Σ_u d_u (e_u·w + e0_u) + const.

    The whole model's cost as one quadratic form in the group widths w, so the
    loss is a handful of matrix products per step however many layers there are.
    """

    def __init__(self, graph, metric):
        num_groups = graph.num_groups
        pairs, singles, constant = [], [], 0
        for call in graph.calls:
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


@keras.saving.register_keras_serializable(package="figs_tf")
class CostLayer(keras.layers.Layer):
    """Adds `strength × cost(widths)` to the model's losses in training.

    Called on `[output, widths]` (widths: MaskLayer's second output) it returns
    `output` unchanged, so it sits on the path to the model's first output and
    `fit` sees the loss. The loss goes through `Layer.add_loss`, which Keras
    scales per replica under tf.distribute. `strength` is a non-trainable
    variable: assign to it (e.g. from a callback) to change λ during training.
    `target` (optional) is the budget the exported cost should reach, in the
    same metric; it only travels with the layer's config (figs_tf.budget's
    controller in CostCallback reads it and steers `strength`, which may then
    go below 0 when the exported cost is under the budget).
    """

    def __init__(self, metric, polynomial, strength=0.0, target=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.metric = check_metric(metric)
        if not isinstance(polynomial, CostPolynomial):
            polynomial = CostPolynomial.from_config(polynomial)
        self.polynomial = polynomial
        self.target = check_target(target, metric)
        # a model saved mid-run by the budget controller may carry a negative λ
        self._initial_strength = check_strength(strength, signed=self.target is not None)
        self.strength = self.add_weight(
            name="strength", shape=(), dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(self._initial_strength))
        self._arrays = polynomial.float32_arrays()

    def cost(self, widths):
        return self.polynomial.keras(ops.cast(widths, "float32"), self._arrays)

    def call(self, inputs, training=None):
        output, widths = inputs
        if training:
            self.add_loss(ops.convert_to_tensor(self.strength, dtype="float32") * self.cost(widths))
        return output

    def compute_output_spec(self, inputs, training=None):
        output = inputs[0]
        return keras.KerasTensor(output.shape, dtype=output.dtype)

    @property
    def initial_strength(self):
        """λ this layer was built with (the `strength` given to wrap, or saved in its config)."""
        return self._initial_strength

    def set_strength(self, value, signed=False):
        """Assigns λ; `signed=True` (the budget controller's) lets it go below 0."""
        self.strength.assign(check_strength(value, signed=signed))

    def get_config(self):
        config = super().get_config()
        config.update({"metric": self.metric, "polynomial": self.polynomial.to_config(),
                       "strength": float(ops.convert_to_numpy(self.strength)), "target": self.target})
        return config


channel_groups.register_figs_layer(CostLayer, "passthrough")
