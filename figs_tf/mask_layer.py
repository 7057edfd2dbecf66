"""The FiGS gate: per-channel Bernoulli gates with a Logistic-Sigmoid relaxation.

`MaskLayer` holds the logits ν of every channel of every channel group in one
float32 weight (initial value 2.5, π = sigmoid(ν) ≈ 0.92; see "Gate speed"
below for how it is stored), so a training step draws one noise vector and runs one sigmoid for the whole model
instead of one per layer. Called on any tensor of the model (only to place it in
the graph), it returns

- the gate vector: in training `m̂ = sigmoid((ν + log u − log(1 − u)) / τ)`,
  u ~ Uniform(0, 1), one sample per channel per step shared across the batch
  and positions, used in forward and backward pass (no straight-through); in
  inference the hard 0/1 mask of the exported architecture (`hard_mask`), so
  that the search model computes exactly what the slimmed network computes;
  a trailing 1 serves channels that are never pruned;
- the per-group widths the cost is computed from: Σπ (expected cost, eq. 6),
  or Σm̂ in training when `sampled_widths=True` (sampled cost, eq. 5).

`figs_tf.ApplyMask` multiplies a tensor by the gates of its channels.
`figs_tf.wrap` places both; by hand it looks like this:

    gates = MaskLayer(group_sizes=[16])
    gate_vector, widths = gates(inputs)
    x = keras.layers.Conv2D(16, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = ApplyMask(list(range(16)))([x, gate_vector])   # channel c reads gate c

Gate arithmetic is float32 even under a `mixed_bfloat16` policy; the mask is
cast to the activation dtype right before the multiply.

Gate speed: the logits are ν = s·θ, with θ the trainable variable
(`logit_parameters`) and s the gate speed (a non-trainable weight, saved and
restored with the model). Any optimizer's step on θ moves ν s times as far, so
the gates can travel the distance a budget needs within the run whatever the
optimizer does to the step's size (Adam at its usual ε moves a parameter about
its learning rate per step however large the gradient). s = 1 is the paper's
parametrisation. `gate_speed="auto"` lets `figs_tf.BudgetController` choose s
at the start of AL (figs_tf/gate_speed.py); every reader sees ν (`logits`,
`set_logits`). `logit_gradient_multiplier` M multiplies the gradient reaching ν
(the forward pass is unchanged): a gate learning rate M × lr for optimizers
whose step is proportional to the gradient (SGD, the paper's Adam with ε = 1);
optimizers that normalise the step ignore it. Why short AL runs need either,
and what they change, measured: docs/budget.md ("Gate speed").
"""

import keras
import numpy as np
from keras import ops

from figs_tf import branches as branches_lib
from figs_tf import channel_groups
from figs_tf import export_rules
from figs_tf import gate_speed as gate_speed_lib

DEFAULT_TEMPERATURE = 1e-3
DEFAULT_INITIAL_LOGIT = 2.5
AUTO = "auto"  # gate_speed chosen by the budget controller at the start of AL
_UNIFORM_EPS = 1e-6  # keeps log(u) and log(1 - u) finite


def _check_positive(name, value, why):
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}. {why}")


def check_gate_speed(gate_speed):
    """"auto" or a finite float > 0; raises ValueError naming the fix otherwise."""
    if isinstance(gate_speed, str):
        if gate_speed == AUTO:
            return AUTO
    elif not isinstance(gate_speed, bool):
        try:
            value = float(gate_speed)
        except (TypeError, ValueError):
            value = None
        if value is not None and np.isfinite(value) and value > 0:
            return value
    raise ValueError(f"gate_speed must be 'auto' or a finite number > 0, got {gate_speed!r}. It multiplies how "
                     "far an optimizer step moves the gate logits (ν = gate_speed × θ): 1 is the paper's "
                     "setting; 'auto' lets figs_tf.BudgetController choose it for the planned AL run.")


def group_ids(group_sizes):
    ids = []
    for group, size in enumerate(group_sizes):
        ids.extend([group] * size)
    return ids


def expected_widths(logits, group_ids_tensor, num_groups):
    """Σπ per group: the differentiable expected width."""
    return ops.segment_sum(ops.sigmoid(logits), group_ids_tensor, num_segments=num_groups)


def scale_gradient(tensor, multiplier):
    """`tensor` in the forward pass; its gradient times `multiplier` in the backward pass.

    `tensor - stop_gradient(tensor)` is exactly 0 forward, so the value is
    bit-identical to `tensor`.
    """
    if multiplier == 1.0:
        return tensor
    return tensor + (multiplier - 1.0) * (tensor - ops.stop_gradient(tensor))


def relaxed_gates(logits, temperature, seed_generator):
    """One Logistic-Sigmoid sample per channel: sigmoid((ν + ℓ) / τ)."""
    u = keras.random.uniform(ops.shape(logits), minval=_UNIFORM_EPS, maxval=1.0 - _UNIFORM_EPS,
                             dtype="float32", seed=seed_generator)
    noise = ops.log(u) - ops.log1p(-u)
    return ops.sigmoid((logits + noise) / temperature)


def hard_widths(logits, group_sizes, keep_one_sets):
    """The exported width of every group: ⌊Σπ⌋, then the keep-one rule, then dead branches.

    `keep_one_sets` is the rule's data from the channel analysis
    (`graph.keep_one_sets`): `figs_tf.export_rules.KeepOne` and `SummandRule`s
    (their JSON form is read too).

    Keep-one: every layer that mixes channels (conv, dense) outside a
    removable branch keeps at least one input channel, so the exported
    network never has a layer without inputs; for such a layer whose input
    groups would all be empty, the group holding the input channel with the
    largest logit keeps one channel. The sets are visited in graph order, so
    the rule is deterministic.

    Dead branches (`figs_tf.branches.apply_summand_rules`): a sum whose inputs
    are all removable branches keeps one of them alive; then every branch
    left without a complete path has its inner groups emptied (the branch is
    removed and its constant folded into what survives).
    """
    num_groups = len(group_sizes)
    ids = ops.convert_to_tensor(group_ids(group_sizes), dtype="int32")
    widths = ops.floor(expected_widths(logits, ids, num_groups))
    keep_one_sets = export_rules.from_config(keep_one_sets)
    if keep_one_sets:
        group_max = ops.segment_max(logits, ids, num_segments=num_groups)
        for rule in export_rules.keep_one_rules(keep_one_sets):
            members = ops.convert_to_tensor(rule.groups, dtype="int32")
            empty = ops.cast(ops.sum(ops.take(widths, members)) == 0, "float32")
            best = ops.take(members, ops.argmax(ops.take(group_max, members)))
            widths = widths + empty * ops.one_hot(best, num_groups, dtype="float32")
        widths = branches_lib.apply_summand_rules(widths, group_max, keep_one_sets, num_groups)
    return widths


def hard_widths_numpy(logits, group_sizes, keep_one_sets):
    """NumPy twin of `hard_widths`: the same widths, as a list of ints.

    For the host: the budget controller reads the export every few steps,
    and the backend version pays TensorFlow's eager dispatch for each of its
    ops on every call (both timed in docs/budget.md). tests/test_budget.py
    checks that both give the same widths.
    """
    logits = np.asarray(logits, dtype=np.float32)
    starts = np.cumsum([0] + list(group_sizes[:-1]))
    with np.errstate(over="ignore"):  # ν < −88 overflows exp(−ν) to inf: π = 0, as the backend's sigmoid
        probabilities = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    widths = np.floor(np.add.reduceat(probabilities, starts))
    group_max = np.maximum.reduceat(logits, starts)
    keep_one_sets = export_rules.from_config(keep_one_sets)
    for rule in export_rules.keep_one_rules(keep_one_sets):
        members = np.asarray(rule.groups, dtype=np.int64)
        if widths[members].sum() == 0:
            widths[members[np.argmax(group_max[members])]] += 1
    widths = branches_lib.apply_summand_rules_numpy(widths, group_max, keep_one_sets)
    return [int(w) for w in widths]


def hard_mask(logits, group_sizes, keep_one_sets):
    """0/1 per channel: group g keeps its `hard_widths[g]` channels of largest ν.

    Ties keep the lower channel index (top_k is stable), so the choice is
    deterministic. This one function decides the inference mask, the exported
    architecture, the exported cost and the slimmed model.
    """
    widths = hard_widths(logits, group_sizes, keep_one_sets)
    pieces = []
    offset = 0
    for group, size in enumerate(group_sizes):
        group_logits = logits[offset:offset + size]
        order = ops.top_k(group_logits, k=size, sorted=True)[1]
        rank = ops.argsort(order)  # order is a permutation: argsort inverts it
        pieces.append(ops.cast(rank < ops.cast(widths[group], "int32"), "float32"))
        offset += size
    if not pieces:
        return ops.zeros((0,), dtype="float32")
    return ops.concatenate(pieces, axis=0)


@keras.saving.register_keras_serializable(package="figs_tf")
class MaskLayer(keras.layers.Layer):
    """Gates for every channel group of a model, in one `logits` weight.

    Args:
      group_sizes: channels per group; the logits are their concatenation.
      temperature: τ of the Logistic-Sigmoid relaxation (> 0; paper: 1e-3).
      initial_logit: initial ν of every channel (paper: 2.5).
      keep_one_sets: the export rule's data from the channel analysis:
        `figs_tf.export_rules.KeepOne` and `SummandRule`s, or their JSON form
        (see `hard_widths`).
      sampled_widths: return Σm̂ instead of Σπ in training (sampled cost, eq. 5).
      group_keys: names of the groups (their first producer layer), used to
        match a saved search model with its channel analysis.
      exclude: layer names kept out of search when the model was wrapped.
      seed: seed of the gate noise (None: Keras's global seed state).
      logit_gradient_multiplier: M > 0, multiplies the logits' gradient in
        training (module docstring; paper: 1).
      gate_speed: s, with ν = s·θ and θ the trainable variable: a float > 0
        (1: the paper), or "auto": 1 until `figs_tf.BudgetController` chooses
        it at the start of AL from the planned steps and the optimizer.

    Attributes:
      logits: ν of every channel, a float32 tensor (read-only: `set_logits`).
      logit_parameters: θ, the trainable variable.
      gate_speed: s now, a float (`set_gate_speed`).

    Raises:
      ValueError: a non-positive temperature, multiplier or group size, or a
        gate_speed that is neither "auto" nor a number > 0.

    Example:

    >>> gates = MaskLayer(group_sizes=[4, 3], gate_speed=8.0)
    >>> gates.set_logits(np.linspace(-1, 1, 7))
    >>> gates.logits          # ν = 8 × θ
    """

    def __init__(self, group_sizes, temperature=DEFAULT_TEMPERATURE,
                 initial_logit=DEFAULT_INITIAL_LOGIT, keep_one_sets=(),
                 sampled_widths=False, group_keys=None, exclude=(), seed=None,
                 logit_gradient_multiplier=1.0, gate_speed=AUTO, **kwargs):
        kwargs.setdefault("dtype", "float32")  # gate math stays float32 under mixed precision
        super().__init__(**kwargs)
        _check_positive("temperature", temperature, "The Logistic-Sigmoid relaxation divides by it "
                        f"(the paper uses τ = {DEFAULT_TEMPERATURE}).")
        _check_positive("logit_gradient_multiplier", logit_gradient_multiplier,
                        "1 is the paper's setting; larger moves the gates faster.")
        self.logit_gradient_multiplier = float(logit_gradient_multiplier)
        self.gate_speed_setting = check_gate_speed(gate_speed)
        self.group_sizes = [int(s) for s in group_sizes]
        if any(s <= 0 for s in self.group_sizes):
            raise ValueError(f"group_sizes must be positive, got {self.group_sizes}")
        self.temperature = float(temperature)
        self.initial_logit = float(initial_logit)
        self.keep_one_sets = tuple(export_rules.from_config(keep_one_sets))
        self.sampled_widths = bool(sampled_widths)
        self.group_keys = list(group_keys) if group_keys is not None else None
        self.exclude = list(exclude)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.num_channels = sum(self.group_sizes)
        self._group_ids = group_ids(self.group_sizes)
        speed = 1.0 if self.gate_speed_setting == AUTO else self.gate_speed_setting
        # θ first, s second: a store saved before the gate speed existed holds only ν (load_own_variables)
        self.logit_parameters = self.add_weight(
            name="logit_parameters", shape=(self.num_channels,),
            initializer=keras.initializers.Constant(float(np.float32(self.initial_logit) / np.float32(speed))),
            dtype="float32", trainable=True)
        self.speed = self.add_weight(name="gate_speed", shape=(), dtype="float32", trainable=False,
                                     initializer=keras.initializers.Constant(speed))

    @property
    def logits(self):
        """ν = s·θ of every channel, a float32 tensor."""
        return (ops.convert_to_tensor(self.speed, dtype="float32")
                * ops.convert_to_tensor(self.logit_parameters, dtype="float32"))

    def set_logits(self, values):
        """Sets ν (θ = ν / s): exact when s is a power of two, as "auto" always chooses."""
        values = np.asarray(values if isinstance(values, (np.ndarray, list, tuple)) else ops.convert_to_numpy(values),
                            dtype=np.float32)
        if values.shape != (self.num_channels,):
            raise ValueError(f"set_logits needs {self.num_channels} logits (one per channel), got shape "
                             f"{values.shape}.")
        self.logit_parameters.assign(values / np.float32(self.gate_speed))

    @property
    def gate_speed(self):
        """s now (ν = s·θ), as a float."""
        return float(ops.convert_to_numpy(self.speed))

    @property
    def automatic_gate_speed(self):
        """True when the budget controller chooses s (`gate_speed="auto"`)."""
        return self.gate_speed_setting == AUTO

    def set_gate_speed(self, value, optimizer=None):
        """Sets s and rescales θ so that ν does not move (exactly, for powers of two).

        Args:
          value: the new s, a finite number > 0.
          optimizer: the optimizer that trains θ (None: none yet). Its state
            that holds θ's scale follows: the EMA copy of θ is rescaled with
            θ, and moments of the gradient by the power of s they hold
            (figs_tf.gate_speed.rescale_optimizer_state), so that the logits
            move at the new speed from the next step and an EMA written back
            at the end of `fit` is at the new scale. `figs_tf.set_gate_speed`
            passes the search model's optimizer.
        """
        value = check_gate_speed(value)
        if value == AUTO:
            raise ValueError("set_gate_speed needs a number > 0; 'auto' is a setting of the layer, "
                             "resolved by figs_tf.BudgetController.")
        old = self.gate_speed
        logits = np.asarray(ops.convert_to_numpy(self.logits), dtype=np.float32)
        self.speed.assign(np.float32(value))
        self.logit_parameters.assign(logits / np.float32(value))
        gate_speed_lib.rescale_optimizer_state(optimizer, self.logit_parameters, float(np.float32(value)) / old)

    def load_own_variables(self, store):
        if len(store.keys()) == 1:  # saved before the gate speed existed: the store holds ν
            self.set_logits(np.asarray(store["0"]))
            return
        super().load_own_variables(store)

    def call(self, anchor, training=None):
        del anchor  # only places the layer in the functional graph
        logits = self.logits
        ids = ops.convert_to_tensor(self._group_ids, dtype="int32")
        num_groups = len(self.group_sizes)
        if training:
            logits = scale_gradient(logits, self.logit_gradient_multiplier)
            gates = relaxed_gates(logits, self.temperature, self.seed_generator)
            if self.sampled_widths:
                widths = ops.segment_sum(gates, ids, num_segments=num_groups)
            else:
                widths = expected_widths(logits, ids, num_groups)
        else:
            gates = hard_mask(logits, self.group_sizes, self.keep_one_sets)
            widths = expected_widths(logits, ids, num_groups)
        gate_vector = ops.concatenate([gates, ops.ones((1,), dtype="float32")], axis=0)
        return gate_vector, widths

    def compute_output_spec(self, anchor, training=None):
        return (keras.KerasTensor((self.num_channels + 1,), dtype="float32"),
                keras.KerasTensor((len(self.group_sizes),), dtype="float32"))

    def probabilities(self):
        """π = sigmoid(ν) of every channel, as a NumPy array."""
        return ops.convert_to_numpy(ops.sigmoid(ops.convert_to_tensor(self.logits)))

    def exported_mask(self):
        """The hard 0/1 mask of the exported architecture, as a NumPy array."""
        logits = ops.convert_to_tensor(self.logits, dtype="float32")
        return ops.convert_to_numpy(hard_mask(logits, self.group_sizes, self.keep_one_sets))

    def exported_widths(self):
        logits = ops.convert_to_tensor(self.logits, dtype="float32")
        widths = hard_widths(logits, self.group_sizes, self.keep_one_sets)
        return [int(w) for w in ops.convert_to_numpy(widths)]

    def group_slice(self, group):
        start = sum(self.group_sizes[:group])
        return slice(start, start + self.group_sizes[group])

    def get_config(self):
        config = super().get_config()
        config.update({
            "group_sizes": self.group_sizes,
            "temperature": self.temperature,
            "initial_logit": self.initial_logit,
            "keep_one_sets": export_rules.to_config(self.keep_one_sets),
            "sampled_widths": self.sampled_widths,
            "group_keys": self.group_keys,
            "exclude": self.exclude,
            "seed": self.seed,
            "logit_gradient_multiplier": self.logit_gradient_multiplier,
            "gate_speed": self.gate_speed_setting,
        })
        return config


channel_groups.register_figs_layer(MaskLayer, "source")
