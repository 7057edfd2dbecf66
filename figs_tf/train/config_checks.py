"""Checks a training config before any work starts: keys, types, ranges and choices.

ml_collections already rejects an unknown `--config.key=value` override of a
locked config; this module also catches what a config *file* can get wrong
(a misspelt key, a string where a number belongs, a negative λ) and names the
key and the fix.

The key set and the type of every key are read from the embedded default
(`figs_tf/train/default_config.py`) itself: every key of its `get_config()`
and the type of its default (a placeholder carries its type and also allows
None). A new key is therefore written once, in the default config. This
module adds only what a default cannot say: ranges and choices (`RULES`),
with the choices taken from the registries they name (datasets from
`input_pipeline.KNOWN_DATASETS`, spaces from `figs_tf.spaces.SPACES`, costs
from `figs_tf.cost.METRICS`, strategies from `strategies.STRATEGIES`).

    print(config_checks.describe(config))   # figs-search --print_config
    config_checks.check(config)   # raises errors.UserError (a ValueError) listing every problem
"""

import dataclasses
import numbers
from typing import Callable, Optional

import ml_collections

from figs_tf import cost as cost_lib
from figs_tf import spaces
from figs_tf.train import default_config
from figs_tf.train import errors
from figs_tf.train import input_pipeline
from figs_tf.train.strategies import STRATEGIES

PRECISIONS = (None, "float32", "mixed_bfloat16", "mixed_float16")
RETRAIN_INITS = ("scratch", "inherited")  # fresh weights (the paper), or the search's
RETRAIN_TEACHERS = ("", "search")  # no distillation, or from the search model's exported network
PROGRESS = ("auto", "bar", "epoch", "none")
# Keys whose contents the default cannot describe: the search space's builder
# arguments differ per space (figs_tf.spaces.build_supernet checks them).
FREE_FORM = ("space_kwargs",)


@dataclasses.dataclass(frozen=True)
class Rule:
    """A range or choice for one key: `check(value)` is True for a good value (None is
    accepted wherever the default is a placeholder); `hint` says what is expected."""
    check: Callable
    hint: str


def _number(low=None, high=None, low_open=False, high_open=False):
    def check(value):
        if low is not None and (value < low or (low_open and value == low)):
            return False
        if high is not None and (value > high or (high_open and value == high)):
            return False
        return True
    return check


def _one_of(choices):
    return Rule(lambda value: value in choices, f"one of {tuple(choices)}")


def _positive_budgets(budgets):
    return all(isinstance(b, numbers.Real) and not isinstance(b, bool) and b > 0 for b in budgets)


_PHASE_RULES = {
    "epochs": Rule(_number(0, low_open=True), "a positive number of passes over the data"),
    "batch_size": Rule(_number(1), "the global batch, a positive int"),
    "learning_rate": Rule(_number(0, low_open=True), "a positive float"),
    "decay_epochs": Rule(_number(0, low_open=True), "epochs per ×decay_factor, positive"),
    "decay_factor": Rule(_number(0, 1, low_open=True), "in (0, 1]"),
    "steps_per_checkpoint": Rule(_number(1), "None (one pass over the data) or a positive int"),
}
# Ranges and choices, by dotted key. Types and the key set come from the default config.
RULES = {
    "dataset": _one_of(input_pipeline.KNOWN_DATASETS),
    "image_size": Rule(_number(8), "None or a size ≥ 8"),
    "train_examples": Rule(_number(1), "None (all) or a positive int"),
    "eval_examples": Rule(_number(1), "None (all) or a positive int"),
    "eval_batch_size": Rule(_number(1), "a positive int"),
    "space": _one_of(tuple(spaces.SPACES)),
    "bn_momentum": Rule(_number(0, 1, high_open=True), "in [0, 1)"),
    "cost": _one_of(cost_lib.METRICS),
    "strength": Rule(_number(0), "λ ≥ 0"),
    "target": Rule(_number(0, low_open=True), "None (fixed λ) or a positive budget in the cost's unit"),
    "target_fraction": Rule(_number(0, 1, low_open=True),
                            "None or a fraction in (0, 1] of the supernet's cost in config.cost"),
    "pareto_budgets": Rule(_positive_budgets,
                           "a tuple of positive budgets in the cost's unit, e.g. (60000, 40000), or ()"),
    "temperature": Rule(_number(0, low_open=True), "τ of the gates' relaxation, > 0 (paper: 1e-3)"),
    "logit_gradient_multiplier": Rule(_number(0, low_open=True),
                                      "multiplies the gate logits' gradient, > 0 (paper: 1)"),
    "gate_speed": Rule(_number(0, float("inf"), low_open=True, high_open=True),
                       "None (chosen by the budget controller) or a gate speed > 0 (paper: 1)"),
    "strategy": _one_of(STRATEGIES),
    "mixed_precision": _one_of(PRECISIONS),
    "steps_per_execution": Rule(_number(1), "a positive int"),
    "progress": _one_of(PROGRESS),
    "optimizer.beta_1": Rule(_number(0, 1, high_open=True), "in [0, 1)"),
    "optimizer.beta_2": Rule(_number(0, 1, high_open=True), "in [0, 1)"),
    "optimizer.epsilon": Rule(_number(0, low_open=True), "> 0 (paper: 1.0)"),
    "optimizer.weight_decay": Rule(_number(0), "≥ 0"),
    "optimizer.ema_momentum": Rule(_number(0, 1, low_open=True, high_open=True), "None (off) or in (0, 1)"),
    **{f"{phase}.{key}": rule for phase in ("search", "retrain") for key, rule in _PHASE_RULES.items()},
    "retrain.init": _one_of(RETRAIN_INITS),
    "retrain.teacher": _one_of(RETRAIN_TEACHERS),
    "retrain.distill_temperature": Rule(_number(0, low_open=True),
                                        "> 0, softens the teacher's and the student's softmax (typical: 2 to 5)"),
    "retrain.distill_label_weight": Rule(_number(0, 1), "in [0, 1]: the labels' share of the loss, the "
                                                         "teacher's the rest"),
}
# What a key is for, where its type alone does not say (added to a type error).
HINTS = {
    "seed": "seeds the weights, the gates' noise and the data order",
    "augment": "ResNet augmentation (random crop and flip) of the training images",
    "jit_compile": "XLA on the TensorFlow backend (the JAX backend always compiles)",
    "data_dir": "a tfds data_dir (local or gs://) or None",
    "tpu": "'local' on a TPU VM, or a TPU name",
    "initial_logit": "the gates' initial logit ν (paper: 2.5)",
    "search.recalibrated_eval": "also evaluate the slimmed network with inherited weights (small configs)",
    "retrain.architecture": "None (the search run's export) or an architecture JSON",
}
# Budget keys of which at most one may be set, and how to unset each.
EXCLUSIVE = {"target": "None", "target_fraction": "None", "pareto_budgets": "()"}


@dataclasses.dataclass(frozen=True)
class KeyType:
    """The type of one key, read from the default config."""
    kinds: tuple
    optional: bool  # the default is a placeholder: None is allowed

    def accepts(self, value):
        if value is None:
            return self.optional
        if isinstance(value, bool):  # bool is an int in Python; `epochs=True` is a mistake
            return bool in self.kinds
        return isinstance(value, self.kinds)

    def describe(self):
        names = {bool: "bool", numbers.Integral: "int", numbers.Real: "float", str: "str", tuple: "tuple"}
        text = " or ".join(dict.fromkeys(names.get(kind, kind.__name__) for kind in self.kinds if kind is not list))
        return text + (" or None" if self.optional else "")


def _key_type(python_type, optional):
    if python_type is bool:
        return KeyType((bool,), optional)
    if python_type is int:
        return KeyType((numbers.Integral,), optional)
    if python_type is float:  # an int where a float belongs is fine: epochs=2
        return KeyType((numbers.Real,), optional)
    if python_type in (tuple, list):
        return KeyType((tuple, list), optional)
    return KeyType((python_type,), optional)


def schema(config=None):
    """{key: KeyType or nested schema} of `config` (default: the embedded default config).

    Every key and the type of its default; a placeholder (e.g.
    `placeholder(float)`) gives its type and allows None; a ConfigDict gives a
    nested schema, except the free-form `FREE_FORM` keys (any dict).
    """
    config = default_config.get_config() if config is None else config
    types = {}
    for key, value in config.items(preserve_field_references=True):
        if isinstance(value, ml_collections.ConfigDict) and key not in FREE_FORM:
            types[key] = schema(value)
            continue
        optional = isinstance(value, ml_collections.FieldReference) and value.get() is None
        python_type = config.get_type(key)
        if issubclass(python_type, ml_collections.ConfigDict):
            python_type = dict
        types[key] = _key_type(python_type, optional)
    return types


def check(config):
    """Raises a UserError (a ValueError) listing every missing, unknown, mistyped or out-of-range key."""
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    problems = list(_problems(values, schema(), ""))
    if not problems:
        problems.extend(_exclusive_budgets(values))
        problems.extend(_distillation(values["retrain"]))
    if problems:
        raise errors.UserError("Bad config: " + problems[0] if len(problems) == 1
                               else "Bad config:\n  " + "\n  ".join(problems))


def _exclusive_budgets(values):
    """At most one of target, target_fraction and pareto_budgets."""
    chosen = [key for key in EXCLUSIVE if values[key] not in (None, (), [])]
    if len(chosen) > 1:
        unset = " or ".join(f"--config.{key}={EXCLUSIVE[key]}" for key in chosen)
        both = "both" if len(chosen) == 2 else "all"
        yield (f"{' and '.join(f'config.{key}' for key in chosen)} are {both} set: one AL run either lands on one "
               f"target (an absolute budget, or a fraction of the supernet's cost) or steps through several "
               f"Pareto budgets; keep one and unset the others ({unset})")


def _distillation(retrain):
    """A teacher needs some of the loss: with the labels' weight 1 it would be run and ignored."""
    if retrain["teacher"] and retrain["distill_label_weight"] == 1:
        yield (f"config.retrain.teacher={retrain['teacher']!r} with config.retrain.distill_label_weight=1 gives "
               "the teacher no share of the loss; lower the weight (e.g. 0.5) or set --config.retrain.teacher=''")


def _problems(values, types, prefix):
    for key in sorted(set(values) - set(types)):
        yield (f"config.{prefix}{key}: unknown key; the known keys here are {sorted(types)} "
               f"(a misspelling?)")
    for key, key_type in types.items():
        name, dotted = f"config.{prefix}{key}", f"{prefix}{key}"
        if key not in values:
            yield f"{name}: missing; start from figs_tf/train/default_config.py, which sets every key"
            continue
        value = values[key]
        if isinstance(key_type, dict):
            if not isinstance(value, dict):
                yield f"{name}: must be a ConfigDict of {sorted(key_type)}, got {type(value).__name__}"
            else:
                yield from _problems(value, key_type, f"{dotted}.")
            continue
        rule: Optional[Rule] = RULES.get(dotted)
        if not key_type.accepts(value):
            hint = HINTS.get(dotted) or (rule.hint if rule else "")
            yield (f"{name}: must be {key_type.describe()}, got {value!r} ({type(value).__name__})"
                   f"{'; ' + hint if hint else ''}")
        elif value is not None and rule is not None and not rule.check(value):
            yield f"{name}: {value!r} is out of range; expected {rule.hint}"


def describe(config):
    """The config as text, one key a line: dotted key, value, type, allowed values (`--print_config`).

    Keys, types and ranges come from the tables above (`schema`, `RULES`,
    `HINTS`), so what is printed is what `check` enforces. The free-form
    `space_kwargs` are listed with their values' types.
    """
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    rows = list(_describe_rows(values, schema(), ""))
    key_width = max(len(key) for key, *_ in rows)
    value_width = min(28, max(len(value) for _, value, *_ in rows))
    type_width = max(len(kind) for _, _, kind, _ in rows)
    lines = [f"{'key':{key_width}}  {'value':{value_width}}  {'type':{type_width}}  allowed / meaning"]
    lines += [f"{key:{key_width}}  {value:{value_width}}  {kind:{type_width}}  {allowed}".rstrip()
              for key, value, kind, allowed in rows]
    lines.append("Override a key with --config.KEY=VALUE; each key is explained in figs_tf/train/default_config.py.")
    return "\n".join(lines)


def _describe_rows(values, types, prefix):
    for key in sorted(set(values) | set(types)):
        dotted, value = f"{prefix}{key}", values.get(key)
        key_type = types.get(key)
        if isinstance(key_type, dict) and isinstance(value, dict):
            yield from _describe_rows(value, key_type, f"{dotted}.")
        elif key in FREE_FORM and isinstance(value, dict):
            for name in sorted(value):
                yield (f"{dotted}.{name}", repr(value[name]), type(value[name]).__name__,
                       f"an argument of config.space's builder (figs_tf.spaces; the space checks it)")
        elif key_type is None:
            yield dotted, repr(value), type(value).__name__, "unknown key: not read by the binaries"
        else:
            rule = RULES.get(dotted)
            yield dotted, repr(value), key_type.describe(), (rule.hint if rule else HINTS.get(dotted, ""))
