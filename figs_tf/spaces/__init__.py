"""The paper's search spaces, one module each, as ordinary Keras functional models.

Each module builds (a) the supernet that `figs_tf.wrap` turns into a search
model and (b), through `figs_tf.build_from_architecture`, a fresh network with
the widths of an exported architecture for retraining from scratch.

The training binaries pick a space by name (`config.space`) and pass
`config.space_kwargs` to its builder:

    supernet = spaces.build_supernet("resnet", (224, 224, 3), 1000, depth=50)
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
