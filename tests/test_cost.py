"""Tests for figs_tf's cost accounting (parameters, multiply-adds, expected and
exported cost, the cost loss) against independent truth.

Every expected number here comes from outside figs_tf: Keras's own
`count_params`, TensorFlow's graph profiler, or a formula written out in the
test from the layer's hyperparameters. FLOPs convention (figs_tf.handlers):
multiply-adds per example of conv and dense kernels only (no bias, BN,
activation or pooling).
"""

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.wrapping import channel_graph_of, gates_of

L = keras.layers


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _conv_out(size, kernel, stride, padding, dilation=1):
    """Output length of one spatial axis of a convolution (hand formula)."""
    effective = (kernel - 1) * dilation + 1
    if padding == "same":
        return -(-size // stride)
    return (size - effective) // stride + 1


# ---------------------------------------------------------------------------
# 1. Parameters of real architectures == Keras's count_params
# ---------------------------------------------------------------------------

_APPLICATIONS = {
    "ResNet50": lambda: keras.applications.ResNet50(weights=None, classes=10, input_shape=(32, 32, 3)),
    "MobileNetV2": lambda: keras.applications.MobileNetV2(weights=None, classes=10, alpha=0.35,
                                                          input_shape=(32, 32, 3)),
    "MobileNetV3Small": lambda: keras.applications.MobileNetV3Small(weights=None, classes=10,
                                                                    input_shape=(32, 32, 3)),
    "DenseNet121": lambda: keras.applications.DenseNet121(weights=None, classes=10, input_shape=(32, 32, 3)),
    "EfficientNetB0": lambda: keras.applications.EfficientNetB0(weights=None, classes=10,
                                                                input_shape=(32, 32, 3)),
    "Xception": lambda: keras.applications.Xception(weights=None, classes=10, input_shape=(71, 71, 3)),
    "NASNetMobile": lambda: keras.applications.NASNetMobile(weights=None, classes=10, input_shape=(32, 32, 3)),
    "ConvNeXtTiny": lambda: keras.applications.ConvNeXtTiny(weights=None, classes=10, input_shape=(32, 32, 3)),
}


_PROFILED_APPLICATIONS = ("MobileNetV2", "MobileNetV3Small")
# How many tests use each application; it is built once and dropped after its
# last use (holding every model alive slows the garbage collection that
# conftest's clear_session runs after each test).
_USES = {name: 1 for name in _APPLICATIONS}
_USES.update(MobileNetV2=2, MobileNetV3Small=3)
_built = {}


def _application(name):
    if name not in _built:
        _built[name] = [_APPLICATIONS[name](), _USES[name]]
    entry = _built[name]
    entry[1] -= 1
    if entry[1] <= 0:
        del _built[name]
    return entry[0]


def _nested_model():
    """Outer functional model holding a nested functional model and a nested Sequential."""
    inner_in = keras.Input((10, 10, 3), name="inner_in")
    y = L.Conv2D(6, 3, padding="same", name="inner_conv")(inner_in)
    y = L.BatchNormalization(name="inner_bn")(y)
    y = L.ReLU(name="inner_relu")(y)
    inner = keras.Model(inner_in, y, name="inner_functional")

    seq = keras.Sequential([
        keras.Input((10, 10, 6)),
        L.Conv2D(5, 3, strides=2, padding="valid", name="seq_conv"),
        L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="seq_dw"),
        L.GlobalAveragePooling2D(name="seq_gap"),
    ], name="inner_sequential")

    outer_in = keras.Input((10, 10, 3), name="outer_in")
    x = L.Conv2D(3, 1, name="outer_stem")(outer_in)
    x = inner(x)
    x = seq(x)
    outputs = L.Dense(7, name="outer_fc")(x)
    return keras.Model(outer_in, outputs, name="outer")


@pytest.mark.heavy
@pytest.mark.parametrize("name", list(_APPLICATIONS))
def test_params_equal_keras_count_params_applications(name):
    model = _application(name)
    assert figs_tf.count(model, "params") == model.count_params()


def test_params_and_flops_of_nested_models():
    model = _nested_model()
    assert figs_tf.count(model, "params") == model.count_params()
    # Hand count of the multiply-adds through the inlined submodels.
    stem = 10 * 10 * (1 * 3 * 3)                  # 1x1 conv, 3 -> 3
    inner_conv = 10 * 10 * (9 * 3 * 6)            # 3x3 same, 3 -> 6
    s = _conv_out(10, 3, 2, "valid")              # 4
    seq_conv = s * s * (9 * 6 * 5)                # 3x3 stride 2 valid, 6 -> 5
    seq_dw = s * s * (9 * 5 * 2)                  # depthwise, multiplier 2
    fc = 10 * 7                                   # GAP gives 10 channels
    assert figs_tf.count(model, "flops") == stem + inner_conv + seq_conv + seq_dw + fc


# ---------------------------------------------------------------------------
# 2. One layer type at a time: FLOPs by formula, params == count_params
# ---------------------------------------------------------------------------

def _single(input_shape, layer):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


def _case_conv2d_stride2_same():
    h = _conv_out(9, 3, 2, "same")
    return (9, 9, 3), L.Conv2D(5, 3, strides=2, padding="same"), h * h * 9 * 3 * 5


def _case_conv2d_stride2_valid():
    h = _conv_out(9, 3, 2, "valid")
    return (9, 9, 3), L.Conv2D(5, 3, strides=2, padding="valid"), h * h * 9 * 3 * 5


def _case_conv2d_rect_dilated():
    h, w = _conv_out(12, 3, 1, "valid", 2), _conv_out(10, 2, 1, "valid", 2)
    return (12, 10, 2), L.Conv2D(4, (3, 2), dilation_rate=2, use_bias=False), h * w * 6 * 2 * 4


def _case_conv1d():
    t = _conv_out(20, 5, 1, "valid")
    return (20, 4), L.Conv1D(6, 5), t * 5 * 4 * 6


def _case_conv3d():
    d = _conv_out(6, 3, 1, "valid")
    return (6, 6, 6, 2), L.Conv3D(3, 3), d ** 3 * 27 * 2 * 3


def _case_dense_flat():
    return (7,), L.Dense(5), 7 * 5


def _case_dense_rank3():
    return (4, 7), L.Dense(5), 4 * 7 * 5


def _case_dense_rank4_no_bias():
    return (3, 4, 7), L.Dense(5, use_bias=False), 3 * 4 * 7 * 5


def _case_depthwise2d_multiplier2():
    h = _conv_out(8, 3, 1, "valid")
    return (8, 8, 3), L.DepthwiseConv2D(3, depth_multiplier=2), h * h * 9 * 3 * 2


def _case_depthwise1d_multiplier3():
    t = _conv_out(11, 3, 2, "same")
    return (11, 4), L.DepthwiseConv1D(3, strides=2, padding="same", depth_multiplier=3), t * 3 * 4 * 3


def _case_separable2d():
    h = _conv_out(8, 3, 1, "valid")
    depthwise = h * h * 9 * 3 * 2        # 3 channels, multiplier 2
    pointwise = h * h * (3 * 2) * 5      # 6 -> 5
    return (8, 8, 3), L.SeparableConv2D(5, 3, depth_multiplier=2), depthwise + pointwise


def _case_separable1d():
    t = _conv_out(16, 5, 1, "same")
    return (16, 4), L.SeparableConv1D(3, 5, padding="same"), t * 5 * 4 + t * 4 * 3


def _case_conv2d_transpose():
    # Each of the 5x5 input positions is scattered through the whole 3x3 kernel.
    return (5, 5, 3), L.Conv2DTranspose(4, 3, strides=2), 5 * 5 * 9 * 3 * 4


def _case_conv1d_transpose_same():
    return (6, 2), L.Conv1DTranspose(3, 4, strides=2, padding="same"), 6 * 4 * 2 * 3


def _case_conv3d_transpose():
    return (3, 3, 3, 2), L.Conv3DTranspose(2, 2, strides=2), 27 * 8 * 2 * 2


def _case_grouped_conv2d():
    h = _conv_out(8, 3, 1, "valid")
    return (8, 8, 4), L.Conv2D(6, 3, groups=2), h * h * 9 * (4 // 2) * 6


_SINGLE_LAYER_CASES = {
    name[len("_case_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("_case_")
}


@pytest.mark.parametrize("case", list(_SINGLE_LAYER_CASES))
def test_single_layer_flops_and_params(case):
    input_shape, layer, expected_flops = _SINGLE_LAYER_CASES[case]()
    model = _single(input_shape, layer)
    assert figs_tf.count(model, "flops") == expected_flops
    assert figs_tf.count(model, "params") == model.count_params()


def test_single_layer_param_formulas():
    """count_params itself, checked against the textbook formula for a few layers."""
    cases = [
        ((8, 8, 3), L.SeparableConv2D(5, 3, depth_multiplier=2), 9 * 3 * 2 + 3 * 2 * 5 + 5),
        ((8, 8, 4), L.Conv2D(6, 3, groups=2), 9 * 2 * 6 + 6),
        ((8, 8, 3), L.DepthwiseConv2D(3, depth_multiplier=2), 9 * 3 * 2 + 6),
        ((5, 5, 3), L.Conv2DTranspose(4, 3, strides=2), 9 * 3 * 4 + 4),
        ((4, 7), L.Dense(5), 7 * 5 + 5),
    ]
    for input_shape, layer, expected in cases:
        model = _single(input_shape, layer)
        assert figs_tf.count(model, "params") == expected, layer.name


# ---------------------------------------------------------------------------
# 3. FLOPs == TensorFlow's profiler (2 flops per multiply-add)
# ---------------------------------------------------------------------------

_KERNEL_OPS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput",
               "MatMul", "BatchMatMulV2", "BatchMatMulV3")


def _profiler_kernel_flops(model, op_types):
    """{op name: (op type, float ops)} from tf.profiler on the frozen batch-1 graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec((1,) + tuple(model.input_shape[1:]), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph, options=options)
    op_type = {op.name: op.type for op in graph.get_operations()}
    found, stack = {}, list(profile.children)
    while stack:  # the scope view nests ops under their name scopes
        node = stack.pop()
        stack.extend(node.children)
        if node.float_ops and op_type.get(node.name) in op_types:
            found[node.name] = (op_type[node.name], int(node.float_ops))
    return found


def _breakdown(found):
    return "\n".join(f"  {name} [{kind}]: {flops}" for name, (kind, flops) in sorted(found.items()))


@pytest.mark.tensorflow_only
def test_flops_match_tensorflow_profiler_plain_conv_net():
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(6, 3, padding="same")(inputs)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 3, strides=2)(x)
    x = L.Flatten()(x)
    outputs = L.Dense(10)(x)
    model = keras.Model(inputs, outputs)

    found = _profiler_kernel_flops(model, ("Conv2D", "MatMul"))
    kinds = sorted(kind for kind, _ in found.values())
    assert kinds == ["Conv2D", "Conv2D", "MatMul"], _breakdown(found)
    profiler_flops = sum(flops for _, flops in found.values())
    figs = figs_tf.count(model, "flops")
    assert figs * 2 == profiler_flops, (
        f"figs_tf: {figs} multiply-adds; profiler: {profiler_flops} flops / 2 = "
        f"{profiler_flops / 2}. Per op:\n{_breakdown(found)}")


@pytest.mark.tensorflow_only
def test_flops_match_tensorflow_profiler_mixed_layers():
    """Depthwise, separable, transposed conv and a Dense on positions."""
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same")(inputs)
    x = L.Conv2D(8, 3)(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same")(x)
    x = L.SeparableConv2D(6, 3)(x)
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    x = L.Reshape((-1, 4))(x)
    x = L.Dense(5)(x)
    x = L.Flatten()(x)
    outputs = L.Dense(10)(x)
    model = keras.Model(inputs, outputs)

    found = _profiler_kernel_flops(model, _KERNEL_OPS)
    assert len(found) == 8, _breakdown(found)  # 3 conv, 2 depthwise, 1 transpose, 2 matmul
    profiler_flops = sum(flops for _, flops in found.values())
    figs = figs_tf.count(model, "flops")
    assert figs * 2 == profiler_flops, (
        f"figs_tf: {figs}; profiler/2: {profiler_flops / 2}. Per op:\n{_breakdown(found)}")


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("name", _PROFILED_APPLICATIONS)
def test_flops_match_tensorflow_profiler_applications(name):
    model = _application(name)
    found = _profiler_kernel_flops(model, _KERNEL_OPS)
    profiler_flops = sum(flops for _, flops in found.values())
    figs = figs_tf.count(model, "flops")
    assert figs * 2 == profiler_flops, f"figs_tf: {figs}; profiler/2: {profiler_flops / 2}"


# ---------------------------------------------------------------------------
# 4. Expected and exported cost on a hand-analysable graph
# ---------------------------------------------------------------------------

H = W = 8
POS = H * W


def _small_graph(res=8, c3=4):
    """input 8x8x3 -> c1 -> bn1 -> relu -> c2 -> bn2 -> add(relu) -> [dw | c3] -> concat -> gap -> fc.

    `res` and `c3` set the widths (c3=0 builds the graph without the c3 branch),
    so the narrow networks an export describes can be built and counted by Keras.
    """
    inputs = keras.Input((H, W, 3), name="image")
    x = L.Conv2D(res, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    r = L.ReLU(name="relu1")(x)
    y = L.Conv2D(res, 3, padding="same", name="c2")(r)
    y = L.BatchNormalization(name="bn2")(y)
    a = L.Add(name="add")([y, r])
    dw = L.DepthwiseConv2D(3, padding="same", name="dw")(a)
    if c3:
        b = L.Conv2D(c3, 1, name="c3")(a)
        x = L.Concatenate(name="cat")([dw, b])
    else:
        x = dw
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(10, name="fc")(x)
    return keras.Model(inputs, outputs, name="small_graph")


def _hand_params(w, v):
    """Parameters with w residual channels and v c3 channels (eq. 6 when w, v are Σπ)."""
    c1 = 9 * 3 * w + w
    bn1 = 4 * w
    c2 = 9 * w * w + w
    bn2 = 4 * w
    dw = 9 * w + w
    c3 = 1 * w * v + v
    fc = 10 * (w + v) + 10
    return c1 + bn1 + c2 + bn2 + dw + c3 + fc


def _hand_flops(w, v):
    return POS * (9 * 3 * w + 9 * w * w + 9 * w + w * v) + 10 * (w + v)


def _groups(search):
    """(residual group id, c3 group id), found by producer name."""
    graph = channel_graph_of(search)
    ids = {}
    for g, group in enumerate(graph.groups):
        ids[tuple(sorted(group.producers))] = g
    assert set(ids) == {("c1", "c2"), ("c3",)}, ids
    return ids[("c1", "c2")], ids[("c3",)]


def _set_logits(search, per_group):
    """per_group: {group id: array of that group's logits}."""
    gates = gates_of(search)
    logits = _np(gates.logits).astype(np.float32).copy()
    for g, values in per_group.items():
        logits[gates.group_slice(g)] = values
    gates.set_logits(logits)
    return logits


def test_small_graph_hand_formulas_match_keras():
    """The hand formulas used below are themselves right (Keras counts the same)."""
    for w, v in [(8, 4), (5, 4), (1, 4), (8, 0), (5, 0), (1, 0)]:
        model = _small_graph(w, v)
        assert model.count_params() == _hand_params(w, v), (w, v)
        assert figs_tf.count(model, "params") == _hand_params(w, v), (w, v)
        assert figs_tf.count(model, "flops") == _hand_flops(w, v), (w, v)


@pytest.mark.parametrize(
    "res_off, c3_off, w, v",
    [
        ([], [], 8, 4),                       # everything on: the original network
        ([], [0, 1, 2, 3], 8, 0),             # c3 branch removed
        ([1, 4, 6], [], 5, 4),                # 3 of the 8 residual channels removed
        ([1, 4, 6], [0, 1, 2, 3], 5, 0),
        ([2], [1, 3], 7, 2),
        (list(range(8)), [], 1, 4),           # c2/c3 keep one input channel
        (list(range(8)), [0, 1, 2, 3], 1, 0),
    ],
    ids=["all_on", "c3_off", "res3_off", "res3_c3_off", "res1_c3half", "res_all_off", "all_off"])
def test_exported_cost_hand_formula(res_off, c3_off, w, v):
    model = _small_graph()
    search = figs_tf.wrap(model, cost="params")
    res_g, c3_g = _groups(search)
    res_logits = np.full(8, 30.0, np.float32)
    res_logits[res_off] = -30.0
    c3_logits = np.full(4, 30.0, np.float32)
    c3_logits[c3_off] = -30.0
    _set_logits(search, {res_g: res_logits, c3_g: c3_logits})

    exported = figs_tf.exported_network(search)
    assert exported.widths[res_g] == w and exported.widths[c3_g] == v
    assert exported.cost("params") == _hand_params(w, v)
    assert exported.cost("flops") == _hand_flops(w, v)
    # The narrow network, built for real, has exactly that many parameters.
    assert exported.cost("params") == _small_graph(w, v).count_params()
    if not res_off and not c3_off:
        assert exported.cost("params") == model.count_params()
    if len(res_off) < 8:  # the kept residual channels are those left switched on
        assert list(exported.kept_channels[res_g]) == sorted(set(range(8)) - set(res_off))

    architecture = figs_tf.export_architecture(search)
    assert architecture == {"c1": w, "c2": w, "c3": v, "fc": 10}


def test_exported_cost_drop_when_c3_gate_off():
    model = _small_graph()
    search = figs_tf.wrap(model, cost="params")
    res_g, c3_g = _groups(search)
    _set_logits(search, {res_g: np.full(8, 30.0), c3_g: np.full(4, 30.0)})
    full_params = figs_tf.exported_network(search).cost("params")
    full_flops = figs_tf.exported_network(search).cost("flops")
    assert full_params == model.count_params() == 1118

    _set_logits(search, {c3_g: np.full(4, -30.0)})
    exported = figs_tf.exported_network(search)
    c3_share = 8 * 4 + 4                  # c3's 1x1 kernel and bias
    fc_rows = 4 * 10                      # Dense rows reading the 4 c3 channels
    assert full_params - exported.cost("params") == c3_share + fc_rows
    assert full_flops - exported.cost("flops") == POS * 8 * 4 + 4 * 10
    assert figs_tf.export_architecture(search)["c3"] == 0


def _dead_end_graph(with_branch=True):
    """stem -> [stem | p -> bn_p -> relu -> q] -> concat -> gap -> fc."""
    inputs = keras.Input((H, W, 3))
    s = L.Conv2D(4, 3, padding="same", name="stem")(inputs)
    x = s
    if with_branch:
        p = L.Conv2D(4, 3, padding="same", name="p")(s)
        p = L.BatchNormalization(name="bn_p")(p)
        p = L.ReLU(name="relu_p")(p)
        q = L.Conv2D(4, 3, padding="same", name="q")(p)
        x = L.Concatenate(name="cat")([s, q])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(10, name="fc")(x)
    return keras.Model(inputs, outputs)


def test_exported_cost_removes_layers_that_only_feed_removed_layers():
    """q's gates off: p keeps its channels but only fed q, so p and bn_p go too."""
    model = _dead_end_graph()
    stem, p, bn_p, q = 9 * 3 * 4 + 4, 9 * 4 * 4 + 4, 4 * 4, 9 * 4 * 4 + 4
    assert model.count_params() == stem + p + bn_p + q + (8 * 10 + 10)
    search = figs_tf.wrap(model, cost="params")
    graph = channel_graph_of(search)
    group_of = {g.producers[0]: i for i, g in enumerate(graph.groups)}
    assert sorted(group_of) == ["p", "q", "stem"]
    _set_logits(search, {group_of["stem"]: np.full(4, 30.0), group_of["p"]: np.full(4, 30.0),
                         group_of["q"]: np.full(4, -30.0)})
    exported = figs_tf.exported_network(search)
    assert exported.widths[group_of["p"]] == 4  # alive, but useless
    assert exported.cost("params") == stem + (4 * 10 + 10) == _dead_end_graph(False).count_params()
    assert exported.cost("flops") == POS * 9 * 3 * 4 + 4 * 10
    assert figs_tf.export_architecture(search) == {"stem": 4, "p": 0, "q": 0, "fc": 10}


def test_expected_cost_matches_eq6_by_hand():
    model = _small_graph()
    search = figs_tf.wrap(model, cost="params")
    res_g, c3_g = _groups(search)
    rng = np.random.default_rng(0)
    logits = _set_logits(search, {res_g: rng.uniform(-3, 3, 8), c3_g: rng.uniform(-3, 3, 4)})
    gates = gates_of(search)
    pi = _sigmoid(logits)
    p_res, p_c3 = pi[gates.group_slice(res_g)].sum(), pi[gates.group_slice(c3_g)].sum()
    # eq. 6: every factor "channels alive" becomes Σπ of its group.
    np.testing.assert_allclose(figs_tf.expected_cost(search, "params"), _hand_params(p_res, p_c3), rtol=1e-6)
    np.testing.assert_allclose(figs_tf.expected_cost(search, "flops"), _hand_flops(p_res, p_c3), rtol=1e-6)


def _zoo(a=6, b=5, c=4):
    """Depthwise (multiplier 2), separable (multiplier 2), transposed conv and
    Flatten -> Dense, all inside the searched part of the network."""
    inputs = keras.Input((H, W, 3))
    x = L.Conv2D(a, 3, padding="same", name="z_c1")(inputs)
    x = L.BatchNormalization(name="z_bn1")(x)
    x = L.ReLU()(x)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="z_dw")(x)
    x = L.SeparableConv2D(b, 3, padding="same", depth_multiplier=2, name="z_sep")(x)
    x = L.ReLU()(x)
    x = L.Conv2DTranspose(c, 3, strides=2, padding="same", name="z_t")(x)   # 16x16
    x = L.MaxPooling2D(4)(x)                                                  # 4x4
    x = L.Flatten()(x)
    outputs = L.Dense(10, name="z_fc")(x)
    return keras.Model(inputs, outputs)


def _zoo_params(a, b, c):
    return ((27 * a + a) + 4 * a + (9 * 2 * a + 2 * a)
            + (9 * 2 * (2 * a) + 2 * (2 * a) * b + b)
            + (9 * b * c + c) + (16 * c * 10 + 10))


def _zoo_flops(a, b, c):
    return (POS * 27 * a + POS * 9 * 2 * a
            + POS * 9 * 2 * (2 * a) + POS * 2 * (2 * a) * b
            + POS * 9 * b * c        # transposed: the 8x8 input positions
            + 16 * c * 10)


def test_expected_and_exported_cost_zoo():
    model = _zoo()
    assert model.count_params() == _zoo_params(6, 5, 4)
    assert figs_tf.count(model, "flops") == _zoo_flops(6, 5, 4)
    search = figs_tf.wrap(model, cost="flops")
    graph = channel_graph_of(search)
    group_of = {g.producers[0]: i for i, g in enumerate(graph.groups)}
    assert sorted(group_of) == ["z_c1", "z_sep", "z_t"]
    gates = gates_of(search)

    rng = np.random.default_rng(4)
    logits = _set_logits(search, {group_of[k]: rng.uniform(-3, 3, n)
                                  for k, n in (("z_c1", 6), ("z_sep", 5), ("z_t", 4))})
    pi = _sigmoid(logits)
    a, b, c = (pi[gates.group_slice(group_of[k])].sum() for k in ("z_c1", "z_sep", "z_t"))
    np.testing.assert_allclose(figs_tf.expected_cost(search, "params"), _zoo_params(a, b, c), rtol=1e-6)
    np.testing.assert_allclose(figs_tf.expected_cost(search, "flops"), _zoo_flops(a, b, c), rtol=1e-6)

    keep = {"z_c1": 3, "z_sep": 2, "z_t": 1}
    on_off = {}
    for k, n in (("z_c1", 6), ("z_sep", 5), ("z_t", 4)):
        values = np.full(n, -30.0)
        values[rng.permutation(n)[:keep[k]]] = 30.0
        on_off[group_of[k]] = values
    _set_logits(search, on_off)
    exported = figs_tf.exported_network(search)
    assert exported.cost("params") == _zoo_params(3, 2, 1) == _zoo(3, 2, 1).count_params()
    assert exported.cost("flops") == _zoo_flops(3, 2, 1)
    assert figs_tf.export_architecture(search) == {"z_c1": 3, "z_sep": 2, "z_t": 1, "z_fc": 10}


def _squeeze_excite(a=6, s=3, c=4):
    """x = relu(bn(c1)); x * sigmoid(ex(relu(sq(gap(x))))) -> c2 -> gap -> fc: ex is tied to c1."""
    inputs = keras.Input((H, W, 3))
    x = L.Conv2D(a, 3, padding="same", name="se_c1")(inputs)
    x = L.BatchNormalization(name="se_bn")(x)
    x = L.ReLU()(x)
    e = L.GlobalAveragePooling2D(keepdims=True)(x)
    e = L.Conv2D(s, 1, name="se_sq")(e)
    e = L.ReLU()(e)
    e = L.Conv2D(a, 1, name="se_ex")(e)
    e = L.Activation("sigmoid")(e)
    x = L.Multiply()([x, e])
    x = L.Conv2D(c, 1, name="se_c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(10, name="se_fc")(x)
    return keras.Model(inputs, outputs)


def _se_params(a, s, c):
    return (27 * a + a) + 4 * a + (a * s + s) + (s * a + a) + (a * c + c) + (10 * c + 10)


def _se_flops(a, s, c):
    return POS * 27 * a + a * s + s * a + POS * a * c + 10 * c


def test_expected_and_exported_cost_squeeze_excite():
    model = _squeeze_excite()
    assert model.count_params() == _se_params(6, 3, 4)
    search = figs_tf.wrap(model, cost="params")
    graph = channel_graph_of(search)
    group_of = {tuple(g.producers): i for i, g in enumerate(graph.groups)}
    assert sorted(group_of) == [("se_c1", "se_ex"), ("se_c2",), ("se_sq",)]
    ga, gs, gc = group_of[("se_c1", "se_ex")], group_of[("se_sq",)], group_of[("se_c2",)]
    gates = gates_of(search)

    rng = np.random.default_rng(5)
    logits = _set_logits(search, {ga: rng.uniform(-3, 3, 6), gs: rng.uniform(-3, 3, 3),
                                  gc: rng.uniform(-3, 3, 4)})
    pi = _sigmoid(logits)
    a, s_, c = (pi[gates.group_slice(g)].sum() for g in (ga, gs, gc))
    np.testing.assert_allclose(figs_tf.expected_cost(search, "params"), _se_params(a, s_, c), rtol=1e-6)
    np.testing.assert_allclose(figs_tf.expected_cost(search, "flops"), _se_flops(a, s_, c), rtol=1e-6)

    _set_logits(search, {ga: np.array([30, -30, 30, 30, -30, 30.0]), gs: np.full(3, -30.0),
                         gc: np.array([-30, 30, -30, 30.0])})
    exported = figs_tf.exported_network(search)
    # sq's gates are all off, but se_ex must keep one input channel: sq keeps 1.
    assert exported.cost("params") == _se_params(4, 1, 2) == _squeeze_excite(4, 1, 2).count_params()
    assert exported.cost("flops") == _se_flops(4, 1, 2)


def test_exported_cost_all_gates_on_equals_keras_count():
    model = _application("MobileNetV3Small")
    search = figs_tf.wrap(model, cost="flops")
    gates = gates_of(search)
    gates.set_logits(np.full(gates.logits.shape, 30.0, np.float32))
    exported = figs_tf.exported_network(search)
    assert exported.cost("params") == model.count_params()
    np.testing.assert_allclose(figs_tf.expected_cost(search, "params"), model.count_params(), rtol=1e-6)


def test_gate_layers_are_not_counted():
    model = _small_graph()
    search = figs_tf.wrap(model, cost="flops")
    assert figs_tf.count(search, "params") == model.count_params()
    assert figs_tf.count(search, "flops") == _hand_flops(8, 4)
    assert figs_tf.supernet_cost(search, "params") == model.count_params()


def _one_channel_group_model():
    inputs = keras.Input((4, 4, 3))
    a = L.Conv2D(1, 1, name="one_a")(inputs)
    a = L.BatchNormalization(name="one_bn_a")(a)
    b = L.Conv2D(3, 1, name="one_b")(inputs)
    b = L.BatchNormalization(name="one_bn_b")(b)
    x = L.Concatenate()([a, b])
    x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(2, name="one_fc")(x)
    return keras.Model(inputs, outputs)


def _one_channel_params(pa, pb):
    return (3 * pa + pa) + 4 * pa + (3 * pb + pb) + 4 * pb + 2 * (pa + pb) + 2


def test_one_channel_group_counts():
    """Plain and exported counts are right for a one-channel group."""
    model = _one_channel_group_model()
    assert model.count_params() == _one_channel_params(1, 3) == figs_tf.count(model, "params")
    search = figs_tf.wrap(model, cost="params")
    group_of = {g.producers[0]: i for i, g in enumerate(channel_graph_of(search).groups)}
    _set_logits(search, {group_of["one_a"]: np.full(1, -30.0), group_of["one_b"]: np.full(3, 30.0)})
    assert figs_tf.exported_network(search).cost("params") == _one_channel_params(0, 3)


def test_expected_cost_of_batchnorm_on_one_channel_group():
    search = figs_tf.wrap(_one_channel_group_model(), cost="params")
    group_of = {g.producers[0]: i for i, g in enumerate(channel_graph_of(search).groups)}
    # pi_a = sigmoid(0) = 0.5; group b fully on (3 channels).
    _set_logits(search, {group_of["one_a"]: np.zeros(1), group_of["one_b"]: np.full(3, 30.0)})
    np.testing.assert_allclose(figs_tf.expected_cost(search, "params"), _one_channel_params(0.5, 3.0),
                               rtol=1e-6)


# ---------------------------------------------------------------------------
# 5. The cost loss: λ·E[cost], and its gradient reaches every gate logit
# ---------------------------------------------------------------------------

def _batch():
    return np.random.default_rng(1).normal(size=(4, H, W, 3)).astype(np.float32)


@pytest.mark.tensorflow_only
def test_cost_gradient_reaches_every_gate_logit():
    import tensorflow as tf

    strength = 1e-3
    search = figs_tf.wrap(_small_graph(), cost="flops", strength=strength)
    res_g, c3_g = _groups(search)
    rng = np.random.default_rng(2)
    logits = _set_logits(search, {res_g: rng.uniform(-2, 2, 8), c3_g: rng.uniform(-2, 2, 4)})
    gates = gates_of(search)

    with tf.GradientTape() as tape:
        search(_batch(), training=True)
        loss = tf.add_n(search.losses)
    grad = _np(tape.gradient(loss, gates.logit_parameters.value)) / gates.gate_speed  # ∂/∂ν = ∂/∂θ / s
    assert grad.shape == logits.shape
    assert np.all(np.isfinite(grad)) and np.all(grad != 0), grad

    # Analytic gradient of λ·C(Σπ_res, Σπ_c3): ∂C/∂w · π(1 − π).
    pi = _sigmoid(logits)
    w, v = pi[gates.group_slice(res_g)].sum(), pi[gates.group_slice(c3_g)].sum()
    d_w = POS * (9 * 3 + 18 * w + 9 + v) + 10
    d_v = POS * w + 10
    expected = np.empty_like(pi)
    expected[gates.group_slice(res_g)] = strength * d_w * pi[gates.group_slice(res_g)] * (1 - pi[gates.group_slice(res_g)])
    expected[gates.group_slice(c3_g)] = strength * d_v * pi[gates.group_slice(c3_g)] * (1 - pi[gates.group_slice(c3_g)])
    np.testing.assert_allclose(grad, expected, rtol=1e-4)


@pytest.mark.tensorflow_only
def test_cost_loss_is_strength_times_expected_cost():
    strength = 1e-3
    search = figs_tf.wrap(_small_graph(), cost="flops", strength=strength)
    res_g, c3_g = _groups(search)
    rng = np.random.default_rng(3)
    logits = _set_logits(search, {res_g: rng.uniform(-3, 3, 8), c3_g: rng.uniform(-3, 3, 4)})
    gates = gates_of(search)

    search(_batch(), training=True)
    losses = [float(_np(l)) for l in search.losses]
    assert len(losses) == 1, losses
    np.testing.assert_allclose(losses[0], strength * figs_tf.expected_cost(search, "flops"), rtol=1e-5)
    pi = _sigmoid(logits)
    hand = _hand_flops(pi[gates.group_slice(res_g)].sum(), pi[gates.group_slice(c3_g)].sum())
    np.testing.assert_allclose(losses[0], strength * hand, rtol=1e-5)

    search(_batch(), training=False)
    assert not any(float(_np(l)) for l in search.losses), "no cost loss in inference"

    figs_tf.set_strength(search, 0.0)
    assert figs_tf.get_strength(search) == 0.0
    search(_batch(), training=True)
    assert sum(float(_np(l)) for l in search.losses) == 0.0


@pytest.mark.tensorflow_only
def test_sampled_cost_loss_with_saturated_gates():
    """eq. 5 with gates that are surely 0 or 1: the loss is λ·cost at those widths."""
    strength = 1e-2
    search = figs_tf.wrap(_small_graph(), cost="params", strength=strength, estimator="sampled", seed=0)
    res_g, c3_g = _groups(search)
    res_logits = np.full(8, 30.0, np.float32)
    res_logits[[0, 5, 7]] = -30.0
    c3_logits = np.array([30.0, -30.0, -30.0, -30.0], np.float32)
    _set_logits(search, {res_g: res_logits, c3_g: c3_logits})
    search(_batch(), training=True)
    (loss,) = [float(_np(l)) for l in search.losses]
    np.testing.assert_allclose(loss, strength * _hand_params(5, 1), rtol=1e-5)


# ---------------------------------------------------------------------------
# 6. Errors with clear messages
# ---------------------------------------------------------------------------

def test_unknown_cost_names():
    model = _small_graph()
    with pytest.raises(ValueError, match=r"Unknown cost 'latency'.*'params'.*'flops'"):
        figs_tf.wrap(model, cost="latency")
    with pytest.raises(ValueError, match=r"Unknown cost 'bytes'.*'params'.*'flops'"):
        figs_tf.count(model, "bytes")
    search = figs_tf.wrap(model, cost="params")
    with pytest.raises(ValueError, match=r"Unknown cost 'latency'"):
        figs_tf.exported_network(search).cost("latency")


@pytest.mark.parametrize("strength", [-1.0, -1e-9, float("nan"), float("inf")])
def test_invalid_strength(strength):
    model = _small_graph()
    with pytest.raises(ValueError, match=r"strength \(λ\) must be a finite number >= 0"):
        figs_tf.wrap(model, cost="params", strength=strength)
    search = figs_tf.wrap(model, cost="params", strength=1e-3)
    with pytest.raises(ValueError, match=r"strength \(λ\) must be a finite number >= 0"):
        figs_tf.set_strength(search, strength)
    assert figs_tf.get_strength(search) == pytest.approx(1e-3)


def test_non_numeric_strength():
    with pytest.raises(ValueError, match=r"strength \(λ\) must be a number >= 0, got 'big'"):
        figs_tf.wrap(_small_graph(), cost="params", strength="big")


def test_flops_need_static_spatial_size():
    inputs = keras.Input((None, None, 3))
    x = L.Conv2D(8, 3, name="conv_dynamic")(inputs)
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match=r"'conv_dynamic'.*unknown spatial size.*need a static input size"):
        figs_tf.count(model, "flops")
    with pytest.raises(ValueError, match=r"need a static input size"):
        figs_tf.wrap(model, cost="flops")
    # Parameters do not depend on the spatial size.
    assert figs_tf.count(model, "params") == model.count_params() == 9 * 3 * 8 + 8 + 8 * 10 + 10
    search = figs_tf.wrap(model, cost="params")
    assert figs_tf.expected_cost(search, "params") > 0
