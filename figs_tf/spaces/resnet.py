"""ResNet-{50, 101, 152} supernets (He et al. 2016, v1 bottleneck) for FiGS width search.

The layer names and weight shapes are `keras.applications`'s. FiGS searches
each bottleneck's two inner widths and one residual-stream width per stage
(tied by the `Add`s). Structure, counts checked against Keras and He et al.,
and the v1 / v1.5 difference in multiply-adds: docs/spaces.md.

Example:

    supernet = resnet.resnet(50)                                       # ImageNet ResNet-50
    search = figs_tf.wrap(supernet, cost="flops", strength=1e-9)
    retrain = figs_tf.build_from_architecture(supernet, figs_tf.export_architecture(search))
    tiny = resnet.fashion_mnist_resnet()                               # 28x28x1, 10 classes
"""

import keras

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BASE_WIDTHS = (64, 128, 256, 512)  # bottleneck (inner) widths of conv2..conv5
STEM_WIDTH = 64
EXPANSION = 4
BN_EPSILON = 1.001e-5


def scaled(width, width_multiplier):
    """`width` times the multiplier, rounded, at least 1.

    >>> scaled(64, 0.25)
    16
    """
    return max(1, int(round(width * width_multiplier)))


def bottleneck(x, filters, stride, projection, name):
    """One ResNet v1 bottleneck block; returns its output tensor.

    1x1 (inner, stride `stride`) -> BN -> ReLU -> 3x3 (inner) -> BN -> ReLU
    -> 1x1 (stream) -> BN, added to the shortcut (a strided 1x1 projection to
    the stream width + BN if `projection`, else the input itself), then ReLU.

    Args:
      x: input tensor (channels last).
      filters: (inner width, stream width).
      stride: stride of the first 1x1 convolution and of the projection.
      projection: whether the shortcut is a 1x1 projection.
      name: block prefix, e.g. "conv2_block1".

    Example::

        y = bottleneck(x, (64, 256), stride=1, projection=True, name="conv2_block1")
    """
    inner, stream = filters
    if projection:
        shortcut = keras.layers.Conv2D(stream, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_0_bn")(shortcut)
    else:
        if stride != 1:
            raise ValueError(f"Block '{name}': an identity shortcut cannot have stride {stride}.")
        shortcut = x
    y = keras.layers.Conv2D(inner, 1, strides=stride, name=f"{name}_1_conv")(x)
    y = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_1_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = keras.layers.Conv2D(inner, 3, padding="same", name=f"{name}_2_conv")(y)
    y = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_2_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = keras.layers.Conv2D(stream, 1, name=f"{name}_3_conv")(y)
    y = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_3_bn")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def _check_blocks(depth, blocks_per_stage):
    if blocks_per_stage is None:
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(STAGE_BLOCKS)}, got {depth!r}.")
        return STAGE_BLOCKS[depth]
    blocks = tuple(blocks_per_stage)
    if len(blocks) != len(BASE_WIDTHS) or not all(isinstance(b, int) and b >= 1 for b in blocks):
        raise ValueError(f"blocks_per_stage must be {len(BASE_WIDTHS)} positive ints (one per stage "
                         f"conv2..conv5), got {blocks_per_stage!r}.")
    return blocks


def resnet(depth=50, input_shape=(224, 224, 3), classes=1000, width_multiplier=1.0, small_input=False,
           name=None, blocks_per_stage=None, classifier_activation=None):
    """A ResNet v1 supernet (bottleneck blocks) as a functional keras.Model.

    Args:
      depth: 50, 101 or 152 (blocks per stage [3,4,6,3], [3,4,23,3], [3,8,36,3]).
      input_shape: (height, width, channels), channels last.
      classes: outputs of the Dense classifier.
      width_multiplier: scales every width of the supernet (1.0: the paper's).
      small_input: 3x3 stride-1 stem and no max-pool, for 28x28 / 32x32 inputs.
      name: model name (default "resnet50", "resnet50_small", ...).
      blocks_per_stage: four ints overriding the depth's blocks per stage
        (tiny test models); `depth` is then only used in the default name.
      classifier_activation: activation of the classifier (None: logits).

    Returns:
      keras.Model from an image batch to (batch, classes).

    Example::

        model = resnet(50)                                 # 25,636,712 params
        cifar = resnet(50, input_shape=(32, 32, 3), classes=10, small_input=True)
        tiny = resnet(input_shape=(28, 28, 1), classes=10, small_input=True,
                      width_multiplier=0.25, blocks_per_stage=(1, 1, 1, 1))
    """
    blocks = _check_blocks(depth, blocks_per_stage)
    if not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}.")
    if name is None:
        name = f"resnet{depth}" if blocks_per_stage is None else "resnet_" + "_".join(map(str, blocks))
        if small_input:
            name += "_small"
    inputs = keras.Input(tuple(input_shape), name="image")
    stem = scaled(STEM_WIDTH, width_multiplier)
    if small_input:
        x = keras.layers.Conv2D(stem, 3, padding="same", name="conv1_conv")(inputs)
    else:
        x = keras.layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(inputs)
        x = keras.layers.Conv2D(stem, 7, strides=2, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    if not small_input:
        x = keras.layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (num_blocks, base) in enumerate(zip(blocks, BASE_WIDTHS)):
        inner = scaled(base, width_multiplier)
        stream = scaled(EXPANSION * base, width_multiplier)
        for block in range(num_blocks):
            stride = 2 if (block == 0 and stage > 0) else 1
            x = bottleneck(x, (inner, stream), stride=stride, projection=(block == 0),
                           name=f"conv{stage + 2}_block{block + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def fashion_mnist_resnet(width_multiplier=0.25, blocks_per_stage=(1, 1, 1, 1), classes=10, name=None):
    """A tiny ResNet for Fashion-MNIST (28x28x1): small-input stem, one block a stage.

    With the defaults: stem 16, bottlenecks 16/32/64/128, streams
    64/128/256/512, resolutions 28, 14, 7, 4.

    Example::

        search = figs_tf.wrap(fashion_mnist_resnet(), cost="params", strength=1e-5)
    """
    return resnet(input_shape=(28, 28, 1), classes=classes, width_multiplier=width_multiplier,
                  small_input=True, blocks_per_stage=blocks_per_stage, name=name)


def operator_choices(architecture):
    """Which bottleneck blocks an exported architecture kept ({block: {"bottleneck": kept, "shortcut": True}}).

    A bottleneck one of whose inner convolutions kept no channel is a
    constant: it is removed and the block is its shortcut (figs_tf.branches),
    so FiGS searches depth too.

    Example::

        operator_choices(figs_tf.export_architecture(search))["conv2_block2"]   # {'bottleneck': False, ...}
    """
    blocks = sorted((name[:-len("_3_conv")] for name in architecture if name.endswith("_3_conv")),
                    key=lambda n: tuple(int(part) for part in n[len("conv"):].split("_block")))
    return {block: {"bottleneck": architecture[f"{block}_3_conv"] > 0, "shortcut": True} for block in blocks}
