"""Whether the backend can run a model's channels_first layers on this machine.

TensorFlow's CPU kernels for Conv1D/Conv2D and the transposed convolutions
support only the NHWC layout ("The Conv2D op currently only supports the NHWC
tensor format on the CPU") unless oneDNN is on, which TensorFlow does by
default only on CPUs with AVX-512-class features (on others: set
TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported). Depthwise, separable
and 3-D convolutions and the pooling layers run either way. Rather than guess
from the CPU or the environment, `check_runs_here` tries each channels_first
layer type and configuration the model uses once, on a tiny input, and caches
the answer.

    >>> from figs_tf import runs_here
    >>> layer = keras.layers.Conv2D(4, 3, data_format="channels_first")
    >>> runs_here.layer_type_runs_here(layer, channels=3)  # None: it runs; else the backend's error
    >>> runs_here.check_runs_here(figs_tf.analyze(model), "'model'")  # what figs_tf.wrap does
"""

import re

import keras
import numpy as np

_ANSWERS = {}  # (layer class, its config without the name) -> None or the error that one call raised


def _windowed(layer):
    """True for the layer kinds whose layout decides which kernel runs: convolutions and pooling."""
    return getattr(layer, "data_format", None) == "channels_first" and (
        hasattr(layer, "kernel_size") or hasattr(layer, "pool_size"))


def _tiny_input(layer, channels):
    """Zeros of shape (1, channels, *the smallest window the layer reads)."""
    window = tuple(getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None))
    dilation = tuple(getattr(layer, "dilation_rate", None) or (1,) * len(window))
    return np.zeros((1, channels) + tuple((k - 1) * d + 1 for k, d in zip(window, dilation)), np.float32)


def layer_type_runs_here(layer, channels):
    """None if a fresh copy of `layer` runs on a tiny channels_first input on the default device, else the error.

    Tried once per layer class and configuration (the name aside); `channels`
    is the layer's input channel count (the tiny input uses `groups` channels
    where the layer has groups, enough for any grouped convolution).
    """
    config = dict(layer.get_config())
    config.pop("name", None)
    key = (type(layer), repr(sorted(config.items())))
    if key not in _ANSWERS:
        fresh = type(layer).from_config(dict(config, name=f"{layer.name}_runs_here_probe"))
        try:
            keras.ops.convert_to_numpy(fresh(_tiny_input(layer, getattr(layer, "groups", None) or channels)))
            _ANSWERS[key] = None
        except Exception as error:  # pylint: disable=broad-except  # the backend's own "cannot run" error
            _ANSWERS[key] = error
    return _ANSWERS[key]


def advice():
    """What a user can do when channels_first convolutions cannot run on this machine."""
    ways = []
    if keras.backend.backend() == "tensorflow":
        ways.append("set TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported (TensorFlow's CPU convolutions run "
                    "channels_first only with oneDNN on, which it turns on by default only on CPUs with AVX-512)")
    if keras.backend.backend() != "jax":
        ways.append("use the JAX backend (KERAS_BACKEND=jax), which runs channels_first convolutions on a CPU")
    ways.append("build the model with data_format='channels_last'")
    return "; or ".join(ways)


def check_runs_here(graph, model_name):
    """Raises ValueError naming the model's channels_first layers the backend cannot run here, and the fixes.

    Args:
      graph: the model's `channel_groups.ChannelGraph` (every layer call, nested models inlined).
      model_name: the model's name, for the message.
    """
    failing = {}
    for call in graph.calls:
        layer = call.layer
        if isinstance(layer, keras.layers.Layer) and _windowed(layer) and call.input_tensors:
            error = layer_type_runs_here(layer, call.input_tensors[0].shape[1])
            if error is not None:
                failing[call.name] = (type(layer).__name__, error)
    if failing:
        names = ", ".join(f"'{name}' ({kind})" for name, (kind, _) in failing.items())
        lines = str(next(iter(failing.values()))[1]).strip().splitlines() or [""]
        reason = next((line for line in lines if "support" in line or "format" in line), lines[0])
        reason = re.sub(r"\x1b\[[0-9;]*m|\{\{[^}]*\}\}|\[Op:[^]]*\]", "", reason)  # colour codes, TF's op names
        raise ValueError(
            f"Model {model_name} cannot run on this machine's {keras.backend.backend()} backend: its channels_first "
            f"layers {names} fail on a tiny input here ({reason.strip()}). To search it, {advice()}.")
