"""Layers that combine several tensors: elementwise merges, concatenation, `keras.ops` arithmetic."""

import keras
import numpy as np

from figs_tf.handlers.base import LayerHandler, UnsupportedLayerError, following_axes


class MergeHandler(LayerHandler):
    """Add, Subtract, Average, Maximum, Minimum, Multiply: inputs share channels (on input 0's channel axis)."""

    def __init__(self, product=False, sums=False):
        self.product = product  # Multiply: one clean factor makes the output clean
        self.sums = sums  # Add: the output is the sum of the inputs (a dead summand can be folded)

    def sums_inputs(self, call):
        return self.sums

    def uniform_output(self, call, in_uniform, in_zero):
        return all(in_uniform)

    def channel_axes(self, call, in_axes):
        return following_axes(call, in_axes)

    def _full_inputs(self, call):
        axis = call.read_axes[0]
        channels = call.output_tensors[0].shape[axis]
        return [i for i, t in enumerate(call.input_tensors) if t.shape[axis] == channels]

    def output_sets(self, call, in_sets, groups):
        full = self._full_inputs(call)
        broadcast = [i for i in range(len(in_sets)) if i not in full]
        axis = call.read_axes[0]
        for i in broadcast:
            if call.input_tensors[i].shape[axis] != 1:
                raise UnsupportedLayerError(
                    f"Layer '{call.layer.name}' merges tensors with "
                    f"{[t.shape[axis] for t in call.input_tensors]} channels.")
            # A one-channel factor broadcast over all channels: not a channel group
            # that can be pruned channel by channel.
            groups.fix(in_sets[i], f"'{call.layer.name}' broadcasts a one-channel input")
        first = in_sets[full[0]]
        for i in full[1:]:
            groups.tie(first, in_sets[i], call.name)
        return [first]

    def requires_clean_inputs(self, call):
        return not self.product

    def output_dirty(self, call, in_dirty):
        full = self._full_inputs(call)
        if self.product:
            return all(in_dirty[i] for i in full)
        return any(in_dirty)

    def inputs_to_clean(self, call, in_dirty, in_has_pruned):
        """Indices of inputs to mask so that pruned channels read as zero after."""
        full = self._full_inputs(call)
        if self.product:
            if any(not in_dirty[i] for i in full):
                return []
            return [i for i in full if in_has_pruned[i]][:1]
        return [i for i in full if in_dirty[i] and in_has_pruned[i]]


class ConcatenateHandler(LayerHandler):
    """Concatenate: on the channel axis it joins the inputs' channels; on another it ties them."""

    drops_empty_inputs = True

    def channel_axes(self, call, in_axes):
        return following_axes(call, in_axes)

    def output_sets(self, call, in_sets, groups):
        rank = len(call.output_tensors[0].shape)
        if call.layer.axis % rank == call.read_axes[0]:
            joined = ()
            for channel_set in in_sets:
                joined = joined + tuple(channel_set)
            return [joined]
        for other in in_sets[1:]:
            groups.tie(in_sets[0], other, call.name)
        return [in_sets[0]]

    def requires_clean_inputs(self, call):
        return True

    def uniform_output(self, call, in_uniform, in_zero):
        axis, rank = call.layer.axis, len(call.output_tensors[0].shape)
        return all(in_zero) or (axis in (-1, rank - 1) and all(in_uniform))


class ElementwiseOpHandler(MergeHandler):
    """keras.ops arithmetic recorded in a functional graph (`x + y`, `x * 0.5`).

    With two tensors it is a merge. With one tensor and a scalar it acts on each
    channel alike; it keeps zeros when the scalar cannot move them
    (x * c, x / c, x + 0). Per-channel constant arrays are refused: slimming
    would have to slice them.
    """

    def __init__(self, operation):
        super().__init__(product=operation in ("multiply", "divide"))
        self.operation = operation

    def _scalars(self, call):
        flat = keras.tree.flatten((call.node.arguments.args, call.node.arguments.kwargs))
        return [a for a in flat if not isinstance(a, keras.KerasTensor)]

    def _is_unary(self, call):
        return len(call.input_tensors) == 1

    def sums_inputs(self, call):
        return self.operation == "add" and not self._is_unary(call)

    def output_sets(self, call, in_sets, groups):
        if not self._is_unary(call):
            return super().output_sets(call, in_sets, groups)
        for scalar in self._scalars(call):
            shape = tuple(getattr(scalar, "shape", ()))
            if shape not in ((), (1,)):
                raise UnsupportedLayerError(
                    f"'{call.name}' ({self.operation}) combines a tensor with a constant "
                    f"of shape {shape}; figs_tf supports scalar constants only. "
                    "Use a layer with a registered handler instead.")
        return [in_sets[0]]

    def requires_clean_inputs(self, call):
        return False if self._is_unary(call) else super().requires_clean_inputs(call)

    def output_dirty(self, call, in_dirty):
        if not self._is_unary(call):
            return super().output_dirty(call, in_dirty)
        if self.operation in ("multiply", "divide"):
            return in_dirty[0]
        scalars = self._scalars(call)
        return in_dirty[0] or any(float(v) != 0.0 for v in scalars)

    def inputs_to_clean(self, call, in_dirty, in_has_pruned):
        if self._is_unary(call):
            return []
        return super().inputs_to_clean(call, in_dirty, in_has_pruned)

    def search_call(self, call, args, kwargs, gating):
        return _call_with_dense_constants(call.layer, args, kwargs)

    def slim(self, call, kept_in, kept_out):
        return _DenseConstantsCall(call.layer), []  # a keras.ops operation holds no state


class _DenseConstant(np.ndarray):
    """A constant that says it is dense: Keras' arithmetic ops take a constant without a `sparse`
    attribute for a sparse one (`getattr(x2, "sparse", True)`), and a layer traced on their sparse
    output fails (keras_hub's Gemma scales its embedding by a constant before its RMS norms)."""

    sparse = False


def _call_with_dense_constants(operation, args, kwargs):
    tensors = [a for a in keras.tree.flatten((args, kwargs)) if isinstance(a, keras.KerasTensor)]
    dtype = tensors[0].dtype if tensors else None

    def dense(value):
        if isinstance(value, keras.KerasTensor) or value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)):  # a Python scalar is weakly typed: it takes the tensor's dtype
            return np.asarray(value, dtype=dtype).view(_DenseConstant)
        return np.asarray(keras.ops.convert_to_numpy(value)).view(_DenseConstant)

    return operation(*keras.tree.map_structure(dense, args), **keras.tree.map_structure(dense, kwargs))


class _DenseConstantsCall:
    """Calls a keras.ops operation with its constants marked dense (`_DenseConstant`), in a slim model."""

    def __init__(self, operation):
        self.operation = operation
        self.name = operation.name

    def __call__(self, *args, **kwargs):
        return _call_with_dense_constants(self.operation, args, kwargs)
