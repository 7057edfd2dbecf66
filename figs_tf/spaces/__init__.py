"""The paper's search spaces, one module each, as ordinary Keras functional models.

Each module builds (a) the supernet that `figs_tf.wrap` turns into a search
model and (b), through `figs_tf.build_from_architecture`, a fresh network with
the widths of an exported architecture for retraining from scratch.

The training binaries pick a space by name (`config.space`) and pass
`config.space_kwargs` to its builder:

    supernet = spaces.build_supernet("resnet", (224, 224, 3), 1000, depth=50)

Spaces whose layers choose among operators (FBNet, One-Shot, ResNet blocks)
also say which operators an architecture kept (`operator_choices_function`);
the search binary writes that into architecture.json, its summary and
operators.png.
"""

import inspect

from figs_tf.spaces import fbnet, one_shot, resnet, small_cnn

# name -> builder(input_shape=..., classes=..., **space_kwargs)
SPACES = {
    "small_cnn": small_cnn.small_cnn,
    "resnet": resnet.resnet,
    "fbnet": fbnet.fbnet_supernet,
    "one_shot": one_shot.one_shot_supernet,
}


# name -> operator_choices(architecture, **space_kwargs): {layer: {operator: kept}}
OPERATOR_CHOICES = {
    "resnet": resnet.operator_choices,
    "fbnet": fbnet.operator_choices,
    "one_shot": one_shot.operator_choices,
}


def operator_choices_function(space, **space_kwargs):
    """For a space whose layers choose among operators: architecture -> {layer: {operator: kept}}.

    Returns None for spaces without operators (e.g. "small_cnn"). The
    function reads an architecture dict (`figs_tf.export_architecture`, or a
    JSON read with `figs_tf.load_architecture`); `space_kwargs` are the
    builder's arguments (the config's `space_kwargs`), passed on where the
    space's `operator_choices` takes them.

    Example:

    >>> choices = operator_choices_function("fbnet", op_set="reduced")(architecture)
    >>> choices["s1b1"]
    {'k3_e6': True, 'k5_e6': False, 'skip': True}
    """
    function = OPERATOR_CHOICES.get(space)
    if function is None:
        return None
    accepted = inspect.signature(function).parameters
    kwargs = {key: value for key, value in space_kwargs.items() if key in accepted and key != "architecture"}
    return lambda architecture: function(architecture, **kwargs)


def build_supernet(space, input_shape, classes, **space_kwargs):
    """Builds the supernet of the space called `space` for images of `input_shape`."""
    if space not in SPACES:
        raise ValueError(f"Unknown search space {space!r} (config key `space`); "
                         f"choose one of {', '.join(sorted(SPACES))}.")
    builder = SPACES[space]
    accepted = inspect.signature(builder).parameters
    unknown = sorted(set(space_kwargs) - set(accepted) | {"input_shape", "classes"} & set(space_kwargs))
    if unknown:
        allowed = sorted(set(accepted) - {"input_shape", "classes", "name"})
        raise ValueError(f"config.space_kwargs has keys {unknown} that the {space!r} space does not take; "
                         f"it takes {allowed} (input_shape and classes come from the dataset).")
    return builder(input_shape=tuple(input_shape), classes=classes, **space_kwargs)
