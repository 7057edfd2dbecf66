"""`CostLayer`: adds λ × cost(widths) to the model's losses in training.

`figs_tf.wrap` places it on the path of the first input, fed with the
`MaskLayer`'s widths; `figs_tf.set_strength` assigns λ.
"""

import warnings

import keras
from keras import ops

from figs_tf import channel_groups
from figs_tf.cost import CostPolynomial, check_metric, check_strength, check_target


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
        self._strength_set = self._initial_strength  # λ as last assigned here, for the check below
        self._pressure_checked = False

    def cost(self, widths):
        return self.polynomial.keras(ops.cast(widths, "float32"), self._arrays)

    def call(self, inputs, training=None):
        output, widths = inputs
        if training:
            self._warn_without_pressure()
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
        self._strength_set = check_strength(value, signed=signed)
        self.strength.assign(self._strength_set)

    def _warn_without_pressure(self):
        """Warns once, when training first calls the layer (`fit`'s first step), if nothing presses on the cost.

        λ = 0 and no budget: the gates see only the task loss, and AL searches
        nothing. A `BudgetController` sets the budget in `on_train_begin`,
        before the first step.
        """
        if self._pressure_checked:
            return
        self._pressure_checked = True
        try:  # the variable when it can be read here (eagerly), else λ as assigned through set_strength
            strength = float(ops.convert_to_numpy(self.strength))
        except Exception:  # pylint: disable=broad-except  # a traced step: symbolic values
            strength = self._strength_set
        if strength == 0 and self.target is None:
            warnings.warn(
                f"figs_tf: the search model's cost has no weight: strength (λ) is 0 and there is no budget, "
                f"so this fit trains without pressure on the {self.metric} and searches nothing. Give "
                "figs_tf.wrap(model, strength=λ) (e.g. 1e-6 for params) or target=BUDGET, call "
                "figs_tf.set_strength(search, λ), or add figs_tf.BudgetController(target=BUDGET) to the "
                "callbacks.", stacklevel=2)

    def get_config(self):
        config = super().get_config()
        config.update({"metric": self.metric, "polynomial": self.polynomial.to_config(),
                       "strength": float(ops.convert_to_numpy(self.strength)), "target": self.target})
        return config


channel_groups.register_figs_layer(CostLayer, "passthrough")
