"""The One-Shot search space (Bender et al. 2018) as a FiGS supernet, with FiGS's concat aggregator.

8 cells of 4 blocks (ImageNet), separable-convolution operators, stride-2
average-pool downsampling every 2 cells with the width doubling, base width
F = 64. Each block applies every operator to its input and aggregates them by
concatenation + 1x1 conv + BN (`aggregator="concat"`, FiGS) or by a sum
(`aggregator="add"`, the original). Structure, layer names, every choice the
papers leave open and the checked counts: docs/spaces.md.

Example:

    supernet = one_shot.one_shot_supernet("concat")                    # ImageNet, 224x224x3
    search = figs_tf.wrap(supernet, cost="params", strength=1.2e-6)    # FiGS-One-Shot-A
    retrain = figs_tf.build_from_architecture(supernet, figs_tf.export_architecture(search))
    tiny = one_shot.one_shot_fashion_mnist()                            # 28x28x1, 10 classes
"""

import keras

OPERATORS = ("sep3", "sep5", "sep7", "conv7x1", "maxpool", "avgpool", "identity")
AGGREGATORS = ("concat", "add")
_SEPARABLE = {"sep3": 3, "sep5": 5, "sep7": 7}
_POOLS = {"maxpool": keras.layers.MaxPooling2D, "avgpool": keras.layers.AveragePooling2D}


def one_shot_supernet(aggregator="concat", input_shape=(224, 224, 3), classes=1000, base_width=64,
                      cells=8, blocks_per_cell=4, downsample_every=2, small_input=False,
                      operators=OPERATORS, name=None):
    """The One-Shot supernet: a stem, `cells` cells of `blocks_per_cell` blocks, a classifier.

    Args:
      aggregator: "concat" (FiGS: operator outputs concatenated, then ReLU -
        1x1 conv - BN to the block width) or "add" (Bender et al.: summed).
      input_shape: (height, width, channels), channels last.
      classes: outputs of the Dense classifier (logits).
      base_width: F, the block width of the first cells; doubles at every
        downsampling.
      cells: number of cells.
      blocks_per_cell: blocks per cell (densely connected inside the cell).
      downsample_every: a stride-2 average pool (and width doubling) before
        every `downsample_every`-th cell; 0 never downsamples.
      small_input: a single 3x3 stride-1 stem convolution (CIFAR, MNIST-size
        inputs) instead of the two stride-2 ones (ImageNet).
      operators: a tuple of names from `OPERATORS`, in the order they are
        concatenated.
      name: model name (default "one_shot_<aggregator>").

    Example::

        supernet = one_shot_supernet("concat")                   # the paper's space
        tiny = one_shot_supernet("add", (28, 28, 1), 10, base_width=8, cells=2,
                                 blocks_per_cell=2, downsample_every=1, small_input=True)
    """
    if aggregator not in AGGREGATORS:
        raise ValueError(f"Unknown aggregator {aggregator!r}; use 'concat' (FiGS) or 'add' (One-Shot).")
    operators = tuple(operators)
    unknown = [op for op in operators if op not in OPERATORS]
    if unknown or not operators or len(set(operators)) != len(operators):
        raise ValueError(f"operators must be distinct names from {OPERATORS}, got {operators}.")
    for label, value in (("base_width", base_width), ("cells", cells), ("blocks_per_cell", blocks_per_cell),
                         ("classes", classes)):
        if int(value) != value or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}.")
    if int(downsample_every) != downsample_every or downsample_every < 0:
        raise ValueError(f"downsample_every must be an integer >= 0, got {downsample_every!r}.")
    if not small_input and base_width < 2:
        raise ValueError("The ImageNet stem has base_width // 2 filters: base_width must be >= 2.")

    inputs = keras.Input(tuple(input_shape), name="image")
    x = _stem(inputs, base_width, small_input)
    width = base_width
    for cell in range(cells):
        if cell > 0 and downsample_every and cell % downsample_every == 0:
            x = keras.layers.AveragePooling2D(2, strides=2, padding="same", name=f"cell{cell}_downsample")(x)
            width *= 2
        x = _cell(x, cell, width, blocks_per_cell, operators, aggregator)
    x = _relu_conv_bn(x, "head", 2 * width, 1)
    x = keras.layers.ReLU(name="head_relu2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = keras.layers.Dense(classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name or f"one_shot_{aggregator}")


def one_shot_cifar10(aggregator="concat", base_width=16, cells=4, blocks_per_cell=4, downsample_every=2,
                     operators=OPERATORS, name=None):
    """A small One-Shot supernet for CIFAR-10 (32x32x3, 10 classes, stride-1 stem).

    Defaults: 4 cells of 4 blocks, F = 16, one downsampling (32 -> 16 pixels)
    before cell 2.

    Example::

        search = figs_tf.wrap(one_shot_cifar10(), cost="params", strength=1e-5)
    """
    return one_shot_supernet(aggregator, (32, 32, 3), 10, base_width, cells, blocks_per_cell,
                             downsample_every, small_input=True, operators=operators,
                             name=name or f"one_shot_cifar10_{aggregator}")


def one_shot_fashion_mnist(aggregator="concat", base_width=16, cells=2, blocks_per_cell=3,
                           downsample_every=1, operators=OPERATORS, name=None):
    """A small One-Shot supernet for Fashion-MNIST (28x28x1, 10 classes, stride-1 stem).

    Defaults: 2 cells of 3 blocks, F = 16, cell 1 at 14x14 pixels and width 32.

    Example::

        search = figs_tf.wrap(one_shot_fashion_mnist(), cost="params", strength=1e-5)
    """
    return one_shot_supernet(aggregator, (28, 28, 1), 10, base_width, cells, blocks_per_cell,
                             downsample_every, small_input=True, operators=operators,
                             name=name or f"one_shot_fashion_mnist_{aggregator}")


def operator_layer_names(cell, block, operator):
    """Names of the layers of one operator of one block (empty for `identity`).

    Example::

        operator_layer_names(0, 1, "sep5")
        # ['cell0_block1_sep5_relu1', 'cell0_block1_sep5_conv1', ..., 'cell0_block1_sep5_bn2']
    """
    prefix = f"cell{cell}_block{block}_{operator}"
    if operator in _POOLS:
        return [f"{prefix}_pool"]
    if operator == "identity":
        return []
    if operator in _SEPARABLE or operator == "conv7x1":
        return [f"{prefix}_{kind}{i}" for i in (1, 2) for kind in ("relu", "conv", "bn")]
    raise ValueError(f"Unknown operator {operator!r}; one of {OPERATORS}.")


def _stem(inputs, width, small_input):
    if small_input:
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
        return keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Conv2D(width // 2, 3, strides=2, padding="same", use_bias=False, name="stem_conv1")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn1")(x)
    x = keras.layers.ReLU(name="stem_relu1")(x)
    x = keras.layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="stem_conv2")(x)
    return keras.layers.BatchNormalization(name="stem_bn2")(x)


def _relu_conv_bn(x, prefix, width, kernel_size):
    x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
    x = keras.layers.Conv2D(width, kernel_size, padding="same", use_bias=False, name=f"{prefix}_conv")(x)
    return keras.layers.BatchNormalization(name=f"{prefix}_bn")(x)


def _operator(x, prefix, operator, width):
    if operator == "identity":
        return x
    if operator in _POOLS:
        return _POOLS[operator](3, strides=1, padding="same", name=f"{prefix}_pool")(x)
    if operator in _SEPARABLE:
        k = _SEPARABLE[operator]
        return _pair(x, prefix, width, (k, k), (k, k), separable=True)
    return _pair(x, prefix, width, (1, 7), (7, 1), separable=False)  # conv7x1


def _pair(x, prefix, width, kernel1, kernel2, separable):
    for i, kernel in ((1, kernel1), (2, kernel2)):
        x = keras.layers.ReLU(name=f"{prefix}_relu{i}")(x)
        conv = keras.layers.SeparableConv2D if separable else keras.layers.Conv2D
        x = conv(width, kernel, padding="same", use_bias=False, name=f"{prefix}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{prefix}_bn{i}")(x)
    return x


def _block(sources, prefix, width, operators, aggregator):
    x = sources[0] if len(sources) == 1 else keras.layers.Concatenate(name=f"{prefix}_inputs")(sources)
    x = _relu_conv_bn(x, f"{prefix}_proj", width, 1)
    outputs = [_operator(x, f"{prefix}_{op}", op, width) for op in operators]
    if aggregator == "add":
        return outputs[0] if len(outputs) == 1 else keras.layers.Add(name=f"{prefix}_add")(outputs)
    merged = outputs[0] if len(outputs) == 1 else keras.layers.Concatenate(name=f"{prefix}_concat")(outputs)
    return _relu_conv_bn(merged, f"{prefix}_agg", width, 1)


def _cell(cell_input, cell, width, blocks, operators, aggregator):
    block_outputs = []
    for block in range(blocks):
        block_outputs.append(_block([cell_input] + block_outputs, f"cell{cell}_block{block}", width,
                                    operators, aggregator))
    if len(block_outputs) == 1:
        return block_outputs[0]
    return keras.layers.Concatenate(name=f"cell{cell}_output")(block_outputs)


def operator_choices(architecture, cells=8, blocks_per_cell=4, operators=OPERATORS):
    """Which operators each block of an exported architecture kept.

    A convolution pair is kept iff its second convolution keeps channels (a
    dead pair is removed whole, under either aggregator: both name their
    layers alike). The parameter-free operators pass the block's input
    projection on and are kept with it.

    Args:
      architecture: {layer: width} (`figs_tf.export_architecture`, or an
        architecture JSON read with `figs_tf.load_architecture`).
      cells, blocks_per_cell, operators: as given to
        `one_shot_supernet` (the training config's `space_kwargs`).

    Returns:
      {block ("cell0_block1", ...): {operator: kept}} in network order.

    Example::

        operator_choices(figs_tf.export_architecture(search), cells=2, blocks_per_cell=2)
    """
    choices = {}
    for cell in range(cells):
        for block in range(blocks_per_cell):
            prefix = f"cell{cell}_block{block}"
            projection = architecture[f"{prefix}_proj_conv"] > 0
            choices[prefix] = {op: architecture[f"{prefix}_{op}_conv2"] > 0 if op in _SEPARABLE or op == "conv7x1"
                               else projection for op in operators}
    return choices
