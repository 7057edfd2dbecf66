"""The export rule's data, typed: keep-one rules and summand rules.

The channel analysis (`figs_tf.channel_groups.analyze`) ends with a list of
rules, `graph.keep_one_sets`, that `figs_tf.mask_layer.hard_widths` applies
after ⌊Σπ⌋, in this order:

- `KeepOne(groups)`: the input groups of a layer that mixes channels (conv,
  dense) outside a removable branch, or one inner set (an attention layer's
  heads). If every group would export empty, the group holding the channel
  with the largest logit keeps one channel, so no exported layer is left
  without inputs.
- `SummandRule(sum_name, keep_one, summands)`: a sum (`keras.layers.Add`,
  `x + y`) with removable inputs (figs_tf.branches). Each `Summand` is one
  removable input: it depends on the model's input iff every group of one of
  its `paths` keeps a channel; when none does, its `internal` groups are
  emptied (the branch is removed, its constant folded). `keep_one`: every
  input of the sum is removable, so one of them is kept alive.

Handlers do not make rules: the analysis derives them from what handlers say
(`LayerHandler.mixes_channels`, `inner_sets`, `sums_inputs`). The rules travel
in `figs_tf.MaskLayer`'s config as plain JSON (`to_config` / `from_config`):
a list of group ids per keep-one rule, a dict per summand rule, as saved
search models have always held them.

Example:

>>> rules = from_config([[0, 1], {"sum": "add", "keep_one": True,
...                               "summands": [{"paths": [[2]], "internal": [2]}]}])
>>> keep_one_rules(rules)
[KeepOne(groups=(0, 1))]
>>> summand_rules(rules)[0].summands[0].paths
((2,),)
"""

import dataclasses


def _ints(values):
    return tuple(int(v) for v in values)


@dataclasses.dataclass(frozen=True)
class KeepOne:
    """At least one channel of these groups survives the export (the one of largest logit)."""

    groups: tuple  # group ids

    def __post_init__(self):
        object.__setattr__(self, "groups", _ints(self.groups))

    def to_config(self):
        return list(self.groups)


@dataclasses.dataclass(frozen=True)
class Summand:
    """One removable input of a sum: alive iff every group of some path keeps a channel."""

    paths: tuple  # tuples of group ids
    internal: tuple  # groups made only inside the branch, emptied when it is removed

    def __post_init__(self):
        object.__setattr__(self, "paths", tuple(_ints(path) for path in self.paths))
        object.__setattr__(self, "internal", _ints(self.internal))

    def to_config(self):
        return {"paths": [list(path) for path in self.paths], "internal": list(self.internal)}


@dataclasses.dataclass(frozen=True)
class SummandRule:
    """The removable inputs of one sum; `keep_one`: all its inputs are removable, so one stays."""

    sum_name: str  # the sum's layer call, for messages
    keep_one: bool
    summands: tuple  # Summand, one per removable input

    def __post_init__(self):
        object.__setattr__(self, "sum_name", str(self.sum_name))
        object.__setattr__(self, "keep_one", bool(self.keep_one))
        object.__setattr__(self, "summands", tuple(
            s if isinstance(s, Summand) else Summand(paths=s["paths"], internal=s["internal"])
            for s in self.summands))

    def to_config(self):
        return {"sum": self.sum_name, "keep_one": self.keep_one,
                "summands": [summand.to_config() for summand in self.summands]}


RULE_TYPES = (KeepOne, SummandRule)


def from_config(rules):
    """Typed rules from typed ones or their JSON form (a MaskLayer config, a saved model).

    Raises:
      ValueError: an entry that is neither a rule, a list of group ids nor a summand rule's dict.
    """
    typed = []
    for rule in rules:
        if isinstance(rule, RULE_TYPES):
            typed.append(rule)
        elif isinstance(rule, dict):  # the JSON form of a SummandRule
            typed.append(SummandRule(sum_name=rule.get("sum", ""), keep_one=rule["keep_one"],
                                     summands=rule["summands"]))
        elif isinstance(rule, (list, tuple)):  # the JSON form of a KeepOne
            typed.append(KeepOne(groups=rule))
        else:
            raise ValueError(f"An export rule must be a KeepOne, a SummandRule or their JSON form (a list "
                             f"of group ids, a dict with 'keep_one' and 'summands'); got {rule!r}.")
    return typed


def to_config(rules):
    """The JSON form of typed rules (what `from_config` reads)."""
    return [rule.to_config() for rule in rules]


def keep_one_rules(rules):
    """The `KeepOne` rules, in order."""
    return [rule for rule in rules if isinstance(rule, KeepOne)]


def summand_rules(rules):
    """The `SummandRule`s, in order."""
    return [rule for rule in rules if isinstance(rule, SummandRule)]
