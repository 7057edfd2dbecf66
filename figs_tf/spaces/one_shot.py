"""The One-Shot search space (Bender et al. 2018) as a FiGS supernet.

FiGS (Chaudhuri et al. 2020, Sec. 3.3, 4.1 and the appendix) runs on the
ImageNet instantiation of Bender et al.'s One-Shot space: 8 cells of 4 blocks,
separable convolutions, stride-2 average-pool downsampling every 2 cells with
the filter count doubling, base width F = 64. Each block applies several
operators to its input and aggregates their outputs, either by adding them
(`aggregator="add"`, the original One-Shot) or by concatenating them and
mixing with a 1x1 convolution + BN (`aggregator="concat"`, FiGS's "concat
aggregator", which lets operators take different widths and lets FiGS drop an
operator by pruning its output to zero channels, Fig. 1c).

Usage::

    import figs_tf
    from figs_tf.spaces import one_shot
    supernet = one_shot.one_shot_supernet("concat")          # ImageNet, 224x224x3
    search = figs_tf.wrap(supernet, cost="params", strength=1.2e-6)  # FiGS-One-Shot-A
    ...
    retrain = figs_tf.build_from_architecture(supernet, figs_tf.export_architecture(search))

    tiny = one_shot.one_shot_fashion_mnist()                  # 28x28x1, 10 classes
    small = one_shot.one_shot_cifar10()                       # 32x32x3, 10 classes

The model is an ordinary Keras functional model: `figs_tf.wrap` finds the
channel groups itself (no gates are built here). What FiGS can search:

* every convolution inside an operator starts a channel group (the pointwise
  half of each `SeparableConv2D`, each 1x7 / 7x1 convolution), so FiGS learns
  the width of every convolution of every operator of every block;
* concat aggregator: each operator's output convolution is its own group, so
  setting it to 0 channels removes the whole operator from the exported
  network (its inner convolution is then dead too and is dropped); the 1x1
  aggregator convolution (`..._agg_conv`) is one group per block (the block's
  output width);
* add aggregator: the `Add` ties every operator's output, the identity and the
  block's input projection into one group per block: FiGS searches the
  inner widths of the convolution pairs and one width per block, but cannot
  remove one operator alone (as the paper's Fig. 1c, top, says);
* the parameter-free operators (identity, max-pool, avg-pool) pass the block
  input's channels on: they belong to the input projection's group and are
  not removable on their own (they cost no parameters; in the concat
  aggregator their channels cost only rows of the 1x1 aggregator kernel).

Layer names (stable, used by exported architectures), for cell c, block b
(both from 0) and operator `op`:

* stem: `stem_conv1`, `stem_bn1`, `stem_relu1`, `stem_conv2`, `stem_bn2`
  (ImageNet) or `stem_conv`, `stem_bn` (small inputs);
* block input: `cell{c}_block{b}_inputs` (Concatenate, when > 1 input),
  `..._proj_relu`, `..._proj_conv`, `..._proj_bn`;
* operators: `cell{c}_block{b}_{op}_relu1|conv1|bn1|relu2|conv2|bn2` for the
  convolution pairs, `..._{op}_pool` for the pools;
* aggregation: `..._concat`, `..._agg_relu`, `..._agg_conv`, `..._agg_bn`
  (concat) or `..._add` (add);
* cell output `cell{c}_output` (Concatenate of the block outputs), downsampling
  `cell{c}_downsample` (before cell c), head `head_relu`, `head_conv`,
  `head_bn`, `head_relu2`, `head_pool`, `classifier`.

Choices where the papers leave a detail open (Bender et al.'s own code and
exact supernet configuration are not public; the FiGS paper refers to them):

* Operators (default, `OPERATORS`): Bender et al.'s menu of seven as we
  recall it from their Sec. 3 (NASNet-style; the paper text could not be
  retrieved to re-check it while writing this module, and the FiGS paper only
  says "separable convolutions"): `sep3`, `sep5`, `sep7` (a *pair* of
  separable convolutions, each as ReLU - SeparableConv2D (depth multiplier 1,
  no bias) - BN), `conv7x1`
  (ReLU - 1x7 Conv2D - BN - ReLU - 7x1 Conv2D - BN, no biases), `maxpool`
  and `avgpool` (3x3, stride 1, "same" padding, applied to the block input) and
  `identity`. All operators keep the block width W. Pass `operators=` to use a
  subset (e.g. without the costly `conv7x1`).
* Block inputs: densely connected inside a cell: block b reads the cell input
  and the outputs of blocks 0..b-1 of the same cell; they are concatenated and
  projected to the block width by ReLU - 1x1 Conv2D - BN (the "input
  projection"; block 0 projects the cell input alone). Bender et al. let each
  block choose among the two previous cells' outputs and earlier blocks; we
  use only the previous cell (its output already concatenates all its blocks)
  to keep the supernet a chain of cells.
* Cell output: the concatenation of the cell's block outputs (width B x W, no
  extra convolution), as in NASNet-style cells. The next cell's input
  projections read it.
* Downsampling: `AveragePooling2D(2, strides=2, padding="same")` on the cell
  output before cells `downsample_every`, `2 x downsample_every`, ..., and the
  block width doubles there: for the ImageNet instantiation widths
  64, 64, 128, 128, 256, 256, 512, 512 at 56, 56, 28, 28, 14, 14, 7, 7 pixels.
* Stem (ImageNet): 3x3 stride-2 Conv2D (F/2 filters) - BN - ReLU - 3x3
  stride-2 Conv2D (F filters) - BN (224 -> 56 pixels; no biases). With
  `small_input=True` (CIFAR-10, Fashion-MNIST): one 3x3 stride-1 Conv2D (F
  filters) - BN.
* Head: ReLU - 1x1 Conv2D (2 x the last block width: 1024 filters for
  ImageNet) - BN - ReLU - global average pooling - Dense(classes) with bias,
  logits (no softmax; use `from_logits=True`). FiGS Sec. 4.4 mentions "the
  final 1x1 before global pool (stride 32)" and "cell 5 (stride 16)"; the
  structure here has both (checked in the test); the 1x1's width is not
  given anywhere, 2x the last block width is our choice. No dropout, no
  auxiliary head, no path dropout (FiGS's gates replace Bender et al.'s path
  dropout).
* Concat aggregator: concatenation of all operator outputs, then ReLU - 1x1
  Conv2D (W filters, no bias) - BN (ReLU-conv-BN order as every other
  convolution here). Add aggregator: the plain sum, no extra layers.
* BatchNormalization with Keras defaults (momentum 0.99, epsilon 1e-3).

Parameter and FLOP counts of the ImageNet supernet (224x224x3, 1000 classes,
F = 64, 8 cells x 4 blocks, all seven operators), `figs_tf.count`, FLOPs in
multiply-adds per example of convolution and Dense kernels:

* concat aggregator: 92,447,944 parameters, 13,568,614,400 multiply-adds
* add aggregator:    72,920,264 parameters, 10,691,321,856 multiply-adds

Neither Bender et al. nor Chaudhuri et al. publish the parameter or FLOP
count of this supernet (only of exported sub-networks: FiGS-One-Shot-A/B/C
1.3M / 2.7M / 4.4M parameters, Table 1), so these numbers could not be
checked against published ones. Checked instead (tests/test_space_one_shot.py):
both counts equal an independent hand count from the structure above
(stem + per-block formula summed over cells and blocks + head), and the
parameter count equals `model.count_params()`; the resolutions (cell 5 at
stride 16, the final 1x1 at stride 32) match FiGS Sec. 4.4 (cell 5 counted from 1 is
`cell4_*` here). The supernet is
large because every operator is on: per block of width W roughly 6 W^2 for
the three separable pairs, 14 W^2 for the regular 1x7 + 7x1 pair, 7 W^2 for
the concat aggregator's 1x1 and (4 + b) W^2 for block b's input projection,
with W up to 512 in the last two cells (the FiGS paper also notes that the
concat aggregator adds parameters). Without `conv7x1` (separable operators
only) the supernet is much smaller; pass `operators=` for that.

Also checked (tests/test_space_one_shot.py): with every gate on, the wrapped
small supernet computes the supernet's function (both aggregators);
an exported architecture rebuilt with `figs_tf.build_from_architecture` has
`figs_tf.slim`'s parameter count; in the concat supernet, turning off the
gates of one operator's output group removes all of that operator's layers
from `figs_tf.slim(search)`; in the add supernet the operator outputs and the
input projection share one group; the Fashion-MNIST supernet trains a few
steps with a params cost on real data.
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
