"""Checks a training config before any work starts: keys, types and ranges.

ml_collections already rejects an unknown `--config.key=value` override of a
locked config; this module also catches what a config *file* can get wrong
(a misspelt key, a string where a number belongs, a negative λ) and names the
key and the fix.

    config_checks.check(config)   # raises ValueError listing every problem
"""

import numbers

from figs_tf import cost as cost_lib
from figs_tf.train.strategies import STRATEGIES

DATASETS = ("fashion_mnist", "cifar10", "imagenet2012")
PRECISIONS = (None, "float32", "mixed_bfloat16", "mixed_float16")
PROGRESS = ("bar", "epoch", "none")


class _Rule:
    def __init__(self, kinds, check=None, hint=""):
        self.kinds, self.check, self.hint = kinds, check, hint


def _number(low=None, high=None, low_open=False, high_open=False):
    def check(value):
        if low is not None and (value < low or (low_open and value == low)):
            return False
        if high is not None and (value > high or (high_open and value == high)):
            return False
        return True
    return check


def _one_of(choices):
    return lambda value: value in choices


_REAL = (numbers.Real,)
_INT = (numbers.Integral,)
_PHASE = {
    "epochs": _Rule(_REAL, _number(0, low_open=True), "a positive number of passes over the data"),
    "batch_size": _Rule(_INT, _number(1), "the global batch, a positive int"),
    "learning_rate": _Rule(_REAL, _number(0, low_open=True), "a positive float"),
    "decay_epochs": _Rule(_REAL, _number(0, low_open=True), "epochs per ×decay_factor, positive"),
    "decay_factor": _Rule(_REAL, _number(0, 1, low_open=True), "in (0, 1]"),
    "steps_per_checkpoint": _Rule(_INT + (type(None),), lambda v: v is None or v >= 1,
                                  "None (one pass over the data) or a positive int"),
}
SCHEMA = {
    "seed": _Rule(_INT),
    "dataset": _Rule((str,), _one_of(DATASETS), f"one of {DATASETS}"),
    "data_dir": _Rule((str, type(None)), hint="a tfds data_dir (local or gs://) or None"),
    "image_size": _Rule(_INT + (type(None),), lambda v: v is None or v >= 8, "None or a size ≥ 8"),
    "augment": _Rule((bool,)),
    "train_examples": _Rule(_INT + (type(None),), lambda v: v is None or v >= 1, "None (all) or a positive int"),
    "eval_examples": _Rule(_INT + (type(None),), lambda v: v is None or v >= 1, "None (all) or a positive int"),
    "eval_batch_size": _Rule(_INT, _number(1)),
    "space": _Rule((str,)),
    "space_kwargs": _Rule((dict,)),
    "bn_momentum": _Rule(_REAL, _number(0, 1, high_open=True), "in [0, 1)"),
    "cost": _Rule((str,), _one_of(cost_lib.METRICS), f"one of {cost_lib.METRICS}"),
    "strength": _Rule(_REAL, _number(0), "λ ≥ 0"),
    "target": _Rule(_REAL + (type(None),), lambda v: v is None or v > 0,
                    "None (fixed λ) or a positive budget in the cost's unit"),
    "pareto_budgets": _Rule((tuple, list), lambda v: all(isinstance(b, numbers.Real) and not isinstance(b, bool)
                                                         and b > 0 for b in v),
                            "a tuple of positive budgets in the cost's unit, e.g. (60000, 40000), or ()"),
    "temperature": _Rule(_REAL, _number(0, low_open=True), "τ of the gates' relaxation, > 0 (paper: 1e-3)"),
    "initial_logit": _Rule(_REAL, hint="the gates' initial logit ν (paper: 2.5)"),
    "logit_gradient_multiplier": _Rule(_REAL, _number(0, low_open=True),
                                       "multiplies the gate logits' gradient, > 0 (paper: 1)"),
    "gate_speed": _Rule(_REAL + (type(None),), lambda v: v is None or 0 < v < float("inf"),
                        "None (chosen by the budget controller) or a gate speed > 0 (paper: 1)"),
    "strategy": _Rule((str,), _one_of(STRATEGIES), f"one of {STRATEGIES}"),
    "tpu": _Rule((str, type(None)), hint="'local' on a TPU VM, or a TPU name"),
    "mixed_precision": _Rule((str, type(None)), _one_of(PRECISIONS), f"one of {PRECISIONS}"),
    "jit_compile": _Rule((bool,)),
    "steps_per_execution": _Rule(_INT, _number(1)),
    "progress": _Rule((str,), _one_of(PROGRESS), f"one of {PROGRESS}"),
    "optimizer": {
        "beta_1": _Rule(_REAL, _number(0, 1, high_open=True)),
        "beta_2": _Rule(_REAL, _number(0, 1, high_open=True)),
        "epsilon": _Rule(_REAL, _number(0, low_open=True)),
        "weight_decay": _Rule(_REAL, _number(0), "≥ 0"),
        "ema_momentum": _Rule(_REAL + (type(None),), lambda v: v is None or 0 < v < 1, "None (off) or in (0, 1)"),
    },
    "search": dict(_PHASE, recalibrated_eval=_Rule(
        (bool,), hint="also evaluate the slimmed network with inherited weights (small configs)")),
    "retrain": dict(_PHASE, architecture=_Rule((str, type(None)),
                                               hint="None (the search run's export) or an architecture JSON")),
}


def check(config):
    """Raises ValueError listing every missing, unknown, mistyped or out-of-range key."""
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    problems = list(_problems(values, SCHEMA, ""))
    if not problems and values["target"] is not None and values["pareto_budgets"]:
        problems.append("config.target and config.pareto_budgets are both set: one AL run either lands on "
                        "one target or steps through several budgets; set the other to None / ()")
    if problems:
        raise ValueError("Bad config:\n  " + "\n  ".join(problems))


def _problems(values, schema, prefix):
    for key in sorted(set(values) - set(schema)):
        yield (f"config.{prefix}{key}: unknown key; the known keys here are {sorted(schema)} "
               f"(a misspelling?)")
    for key, rule in schema.items():
        name = f"config.{prefix}{key}"
        if key not in values:
            yield f"{name}: missing; start from figs_tf/train/default_config.py, which sets every key"
            continue
        value = values[key]
        if isinstance(rule, dict):
            if not isinstance(value, dict):
                yield f"{name}: must be a ConfigDict of {sorted(rule)}, got {type(value).__name__}"
            else:
                yield from _problems(value, rule, f"{prefix}{key}.")
            continue
        # bool is an int in Python; a flag like `epochs=True` is a mistake.
        wrong_type = not isinstance(value, rule.kinds) or (isinstance(value, bool) and bool not in rule.kinds)
        if wrong_type:
            expected = " or ".join(k.__name__ if k is not type(None) else "None" for k in rule.kinds)
            yield (f"{name}: must be {expected.replace('Integral', 'int').replace('Real', 'float')}, "
                   f"got {value!r} ({type(value).__name__}){'; ' + rule.hint if rule.hint else ''}")
        elif rule.check is not None and not rule.check(value):
            yield f"{name}: {value!r} is out of range; expected {rule.hint or 'a valid value'}"
