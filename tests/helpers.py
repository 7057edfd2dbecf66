"""Small models and helpers shared by the tests."""

import functools
import json
import os

import keras
import numpy as np

import figs_tf
from figs_tf.spaces.small_cnn import small_cnn as spaces_small_cnn
from figs_tf.train import fashion_mnist
from figs_tf.wrapping import gates_of, channel_graph_of


@functools.lru_cache(maxsize=None)
def runs_channels_first_convolutions():
    """True if this backend runs channels_first convolutions here (tried once, on tiny inputs).

    TensorFlow's CPU Conv2D and transposed convolutions support NHWC only unless
    oneDNN is on (TF_ENABLE_ONEDNN_OPTS=1; by default only on CPUs with AVX-512).
    """
    x, kernel = np.zeros((1, 2, 4, 4), np.float32), np.zeros((3, 3, 2, 2), np.float32)
    try:
        keras.ops.convert_to_numpy(keras.ops.conv(x, kernel, data_format="channels_first"))
        keras.ops.convert_to_numpy(keras.ops.conv_transpose(x, kernel, 3, data_format="channels_first"))
    except Exception:  # pylint: disable=broad-except  # the backend's "only supports NHWC" error
        return False
    return True


CHANNELS_FIRST_SKIP_REASON = (
    f"the {keras.backend.backend()} backend cannot run channels_first convolutions on this CPU (TensorFlow needs "
    "oneDNN for them: TF_ENABLE_ONEDNN_OPTS=1); test_channels_first.py reruns these tests in a TensorFlow process "
    "with oneDNN on, and launch/run_tests.sh runs them on JAX")


def set_all_logits(search, value):
    gates = gates_of(search)
    gates.set_logits(np.full(gates.logits.shape, value, dtype="float32"))
    return gates


def set_group_logits(search, producer, values):
    """Sets the logits of the group that `producer` (a layer name) belongs to."""
    graph = channel_graph_of(search)
    gates = gates_of(search)
    group = next(i for i, g in enumerate(graph.groups) if producer in g.producers)
    logits = np.array(gates.logits.numpy() if hasattr(gates.logits, "numpy") else keras.ops.convert_to_numpy(gates.logits))
    logits[gates.group_slice(group)] = values
    gates.set_logits(logits.astype("float32"))
    return group


def residual_concat_depthwise_model():
    """Input 8x8x3 -> c1 -> bn1 -> relu -> c2 -> bn2 -> add -> [dw | c3] -> concat -> gap -> fc."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    x = keras.layers.Add(name="add")([x, y])
    a = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    b = keras.layers.Conv2D(4, 1, name="c3")(x)
    x = keras.layers.Concatenate(name="cat")([a, b])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, name="fc")(x)
    return keras.Model(inputs, outputs, name="rcd")


def small_cnn(widths=(16, 32, 64), **kwargs):
    """`figs_tf.spaces.small_cnn` at the tests' size (16/32/64 unless given)."""
    return spaces_small_cnn(widths, **kwargs)


def run_search(workdir=None, strength=3e-6, epochs=4, train_examples=12000, batch_size=128,
               learning_rate=0.01, widths=(32, 64, 128), seed=0, verbose=0, callbacks=()):
    """AL on real Fashion-MNIST with the library API, as a user's own script would run it.

    Wraps `small_cnn(widths)` with a parameter cost and fits it with
    `figs_tf.CostCallback(workdir)`; returns (search model, that callback).
    """
    keras.utils.set_random_seed(seed)
    images, labels = fashion_mnist.load_fashion_mnist("train")
    x = images[:train_examples].astype("float32") / 255.0
    y = labels[:train_examples]
    search = figs_tf.wrap(small_cnn(widths, batchnorm_momentum=0.9), cost="params", strength=strength, seed=seed)
    search.compile(optimizer=keras.optimizers.Adam(learning_rate),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
    callback = figs_tf.CostCallback(workdir)
    search.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=[callback, *callbacks], verbose=verbose)
    return search, callback


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def randomize_batchnorm(model, rng):
    """Non-trivial BatchNorm statistics (nested models too), so a pruned channel's β would show."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize_batchnorm(layer, rng)
        elif isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.normal(1, 0.2, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2, variance.shape)])


def check_all_gates_on_is_the_supernet(model, x, cost="params"):
    """Wraps `model`, turns every gate fully on, and compares inference outputs."""
    search = figs_tf.wrap(model, cost=cost)
    set_all_logits(search, 30.0)
    expected = keras.tree.flatten(model(x, training=False))  # one output, or a list or dict of them
    for got, want in zip(keras.tree.flatten(search(x, training=False)), expected, strict=True):
        want = to_numpy(want)
        np.testing.assert_allclose(to_numpy(got), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    return search


def check_fresh_build_matches_slim(model, seed=1):
    """Random gates -> export; the fresh build and the slim model have one size.

    Returns (architecture, fresh model) for further checks by the caller.
    """
    search = figs_tf.wrap(model)
    gates = gates_of(search)
    gates.set_logits(np.random.default_rng(seed).normal(0.5, 2.0, gates.logits.shape).astype(np.float32))
    architecture = figs_tf.export_architecture(search)
    fresh = figs_tf.build_from_architecture(model, architecture)
    slim = figs_tf.slim(search)
    assert fresh.count_params() == slim.count_params() < model.count_params()
    assert figs_tf.count(fresh, "flops") == figs_tf.count(slim, "flops")
    return architecture, fresh


def assign_logits(search, values):
    """Sets every gate logit ν (`MaskLayer.set_logits`)."""
    gates = gates_of(search)
    gates.set_logits(np.asarray(values, dtype="float32"))
    return gates


def layer_structure(model):
    """(type, name, weight shapes) of every layer: what two builds of one architecture share."""
    return [(type(layer).__name__, layer.name, [tuple(w.shape) for w in layer.weights]) for layer in model.layers]


def check_dead_branch_is_gone(model, closed, gone, x, rtol=1e-5):
    """Every gate on except the groups of `closed` (producer names); the branch `gone` must vanish.

    Checks: no layer of `gone` in `figs_tf.slim(search)` and width 0 for its
    producers in the architecture; slim(x) == search(x, training=False);
    the slim model's multiply-adds and parameters are the exported costs;
    `build_from_architecture` builds the same layers with the same shapes.
    Returns (search, slim, fresh build).
    """
    search = figs_tf.wrap(model, cost="flops")
    set_all_logits(search, 30.0)
    for name in closed:
        set_group_logits(search, name, -30.0)
    network = figs_tf.exported_network(search)
    slim = figs_tf.slim(search)
    assert not {layer.name for layer in slim.layers} & set(gone)
    architecture = network.architecture()
    assert all(architecture[name] == 0 for name in gone if name in architecture)
    expected = to_numpy(search(x, training=False))
    np.testing.assert_allclose(to_numpy(slim(x)), expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    assert figs_tf.count(slim, "flops") == network.cost("flops")
    assert slim.count_params() == network.cost("params")
    fresh = figs_tf.build_from_architecture(model, architecture)
    assert layer_structure(fresh) == layer_structure(slim)
    return search, slim, fresh


def batchnorm_of_zero(layer, bias=None):
    """A BatchNormalization's inference output for the input `bias` (0: no bias), by hand."""
    gamma, beta, mean, variance = (to_numpy(w) for w in (layer.gamma, layer.beta, layer.moving_mean,
                                                         layer.moving_variance))
    x = 0.0 if bias is None else bias
    return gamma * (x - mean) / np.sqrt(variance + layer.epsilon) + beta


def checkpoint_steps(phase_dir):
    """The steps of the complete checkpoints in <phase dir>/checkpoint (a weights and a state file each)."""
    directory = os.path.join(phase_dir, "checkpoint")
    names = set(os.listdir(directory)) if os.path.isdir(directory) else set()
    return sorted(int(name[5:17]) for name in names
                  if name.startswith("step_") and name.endswith(".weights.h5") and f"{name[:17]}.json" in names)


def checkpoint_arrays(phase_dir, step):
    """{dataset path: array} of every array in <phase dir>/checkpoint/step_<step>.weights.h5: gate logits,
    kernels, BatchNorm statistics, optimizer slots."""
    return h5_arrays(os.path.join(phase_dir, "checkpoint", f"step_{step:012d}.weights.h5"))


def h5_arrays(path):
    """{dataset path: array} of every dataset in an HDF5 file (a Keras .weights.h5)."""
    import h5py  # pylint: disable=g-import-not-at-top  # a Keras dependency
    arrays = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset)
                      else None)
    return arrays


def differing_arrays(arrays, reference):
    """Names of the arrays that are not bit-identical to the reference's (or missing on either side)."""
    return sorted(name for name in set(arrays) | set(reference)
                  if name not in arrays or name not in reference
                  or arrays[name].dtype != reference[name].dtype or arrays[name].shape != reference[name].shape
                  or arrays[name].tobytes() != reference[name].tobytes())


def exported_architecture(workdir):
    """(widths, kept channels, steps) of a workdir's search/architecture.json."""
    with open(os.path.join(workdir, "search", "architecture.json")) as f:
        document = json.load(f)
    return document["widths"], document["channels"], document["metadata"]["steps"]


def set_random_gates(search, seed):
    """Random gate logits (normal, mean 0.5, sd 2): layers end at assorted widths, some closed."""
    gates = gates_of(search)
    gates.set_logits(np.random.default_rng(seed).normal(0.5, 2.0, gates.logits.shape).astype(np.float32))


def check_random_gates_slim_exactly(model, x, seed=0):
    """Random gates: slim(search) computes search(x, training=False) (augmentation layers told so too);
    its size and FLOPs are the exported ones. Returns (search, slim, network)."""
    search = figs_tf.wrap(model)
    set_random_gates(search, seed)
    network = figs_tf.exported_network(search)
    slim = figs_tf.slim(search)
    for got, want in zip(keras.tree.flatten(slim(x, training=False)), keras.tree.flatten(search(x, training=False)),
                         strict=True):
        want = to_numpy(want)
        np.testing.assert_allclose(to_numpy(got), want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))
    assert slim.count_params() == network.cost("params") < model.count_params()
    assert figs_tf.count(slim, "flops") == network.cost("flops")
    return search, slim, network


def attention_flops_by_hand(query_positions, key_positions, query_width, key_width, value_width, heads, key_dim,
                            value_dim, output_width, pairs, gate=False):
    """Multiply-adds of one MultiHeadAttention call, by hand: the Q, K, V projections, QKᵀ and AV over
    `pairs` attended (query, key) pairs, the output projection, and the optional gate projection."""
    flops = query_positions * query_width * heads * key_dim + key_positions * key_width * heads * key_dim
    flops += key_positions * value_width * heads * value_dim
    flops += heads * pairs * (key_dim + value_dim)
    flops += query_positions * heads * value_dim * output_width
    if gate:
        flops += query_positions * query_width * heads * value_dim
    return flops


def check_wrap_and_slim(model, x, seed):
    """One wrap: every gate on computes the model; random gates: slim(x) == search(x, training=False), the slim
    model's parameters and FLOPs the exported ones. Returns (slim, exported architecture)."""
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    want = to_numpy(model(x, training=False))
    np.testing.assert_allclose(to_numpy(search(x, training=False)), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    set_random_gates(search, seed)
    network = figs_tf.exported_network(search)
    slim = figs_tf.slim(search)
    want = to_numpy(search(x, training=False))
    np.testing.assert_allclose(to_numpy(slim(x, training=False)), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    assert slim.count_params() == network.cost("params") < model.count_params()
    assert figs_tf.count(slim, "flops") == network.cost("flops")
    return slim, network.architecture()
