"""The registry: one handler per layer class, looked up by exact class."""

from figs_tf.handlers.base import LayerHandler, UnsupportedLayerError

_REGISTRY = {}


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


def handler_for(layer):
    """The handler of `layer`'s exact class.

    Raises:
      UnsupportedLayerError: no handler is registered, naming the layer and how to register one.
    """
    handler = _REGISTRY.get(type(layer))
    if handler is None:
        raise UnsupportedLayerError(
            f"figs_tf has no channel rule for layer '{getattr(layer, 'name', layer)}' "
            f"of type {type(layer).__module__}.{type(layer).__name__}. Either register "
            "one (figs_tf.register_handler(LayerType, figs_tf.handlers.PerChannel("
            "zero_preserving=...)) for a per-channel layer, or a LayerHandler "
            "subclass), or keep it out of search by wrapping a model that ends "
            "before it.")
    return handler
