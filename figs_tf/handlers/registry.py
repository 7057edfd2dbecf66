"""The registry: one handler per layer class, looked up by exact class."""

from figs_tf.handlers.base import LayerHandler, UnsupportedLayerError

_REGISTRY = {}
_LAZY = []  # (module prefix, function registering the handlers of that library's layers)


def register_handler(layer_class, handler):
    """Teaches figs_tf a layer type; replaces any handler the type had.

    Lookup is by exact class, so a subclass of a known layer that changes its
    behaviour is never silently treated as its parent.

    Args:
      layer_class: the Keras layer (or `keras.Operation`) class.
      handler: a `figs_tf.LayerHandler` instance.

    Raises:
      TypeError: `handler` is not a LayerHandler.

    Example:

    >>> figs_tf.register_handler(MyGate, figs_tf.handlers.PerChannel(zero_preserving=True))
    """
    if not isinstance(handler, LayerHandler):
        raise TypeError(f"handler must be a figs_tf LayerHandler, got {type(handler).__name__}")
    _REGISTRY[layer_class] = handler


def register_lazily(module_prefix, register):
    """Runs `register()` the first time a layer from a module under `module_prefix` is looked up.

    For optional libraries (keras_hub): their handlers are registered only once
    a model holds one of their layers, so importing figs_tf never imports them.
    """
    _LAZY.append((module_prefix, register))


def find_handler_of_class(layer_class):
    """The handler registered for exactly `layer_class`, or None (no lazy registration)."""
    return _REGISTRY.get(layer_class)


def find_handler(layer):
    """The handler of `layer`'s exact class, or None."""
    handler = _REGISTRY.get(type(layer))
    if handler is None:
        module = type(layer).__module__
        for prefix, register in [entry for entry in _LAZY if module.startswith(entry[0])]:
            _LAZY.remove((prefix, register))
            register()
        handler = _REGISTRY.get(type(layer))
    return handler


def handler_for(layer):
    """The handler of `layer`'s exact class.

    Raises:
      UnsupportedLayerError: no handler is registered, naming the layer and how to register one.
    """
    handler = find_handler(layer)
    if handler is None:
        raise UnsupportedLayerError(
            f"figs_tf has no channel rule for layer '{getattr(layer, 'name', layer)}' "
            f"of type {type(layer).__module__}.{type(layer).__name__}. Either register "
            "one (figs_tf.register_handler(LayerType, figs_tf.handlers.PerChannel("
            "zero_preserving=...)) for a per-channel layer, or a LayerHandler "
            "subclass), or keep it out of search by wrapping a model that ends "
            "before it.")
    return handler
