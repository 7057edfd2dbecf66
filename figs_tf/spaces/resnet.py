"""ResNet-{50, 101, 152} supernets (He et al. 2016) for FiGS width search.

The paper (Sec. 4.3, Fig. 3) runs FiGS on ResNet-50 and ResNet-152 on ImageNet
and compares with width multiplier and MorphNet. This module builds those
networks as ordinary Keras functional models; `figs_tf.wrap` finds the channel
groups itself:

* each bottleneck's two inner convolutions (`convS_blockB_1_conv`, 1x1, and
  `convS_blockB_2_conv`, 3x3) are a group each: FiGS searches their widths
  independently;
* the residual stream of each stage (the projection shortcut
  `convS_block1_0_conv` and every `convS_blockB_3_conv` of the stage) is one
  group, tied by the `Add`s: FiGS searches one width per stage for it;
* the stem convolution `conv1_conv` is a group of its own;
* the classifier's outputs are never pruned.

Usage::

    from figs_tf.spaces import resnet
    supernet = resnet.resnet(50)                          # ImageNet ResNet-50
    search = figs_tf.wrap(supernet, cost="flops", strength=1e-9)
    ...
    retrain = figs_tf.build_from_architecture(supernet, figs_tf.export_architecture(search))

    tiny = resnet.fashion_mnist_resnet()                  # 28x28x1, 10 classes

Structure (checked against `keras.applications`: same layer names with the
same weight shapes and parameter counts equal to the parameter, 25,636,712
(ResNet-50) and 60,419,944 (ResNet-152) in tests/test_space_resnet.py, and
44,707,176 (ResNet-101) once by hand, all at 224x224x3 with 1000 classes):

* stem: `ZeroPadding2D(3)` + 7x7/2 convolution with bias (64 filters) + BN +
  ReLU, then `ZeroPadding2D(1)` + 3x3/2 max-pool;
* stages conv2..conv5 with bottleneck widths 64, 128, 256, 512 and expansion
  4 (stream widths 256, 512, 1024, 2048); blocks per stage [3, 4, 6, 3]
  (ResNet-50), [3, 4, 23, 3] (ResNet-101), [3, 8, 36, 3] (ResNet-152);
* bottleneck v1 as in Keras (and the original Caffe ResNet): the stride-2
  downsampling of stages 3-5 is on the *first 1x1* convolution and on the
  projection shortcut, not on the 3x3 convolution ("ResNet v1.5");
* every convolution has a bias (Keras's `use_bias=True` for v1 ResNets even
  though a BN follows; it costs one parameter per output channel and keeps the
  count equal to Keras's); BatchNormalization epsilon 1.001e-5, Keras's
  default momentum;
* projection shortcut (1x1 conv + BN) on the first block of every stage only
  (He et al.'s option B); identity shortcuts elsewhere; ReLU after the `Add`;
* global average pooling (`avg_pool`) and a Dense classifier (`predictions`).

FLOPs (multiply-adds per 224x224 example of convolution and Dense kernels,
`figs_tf.count(model, "flops")`; the test checks them against an independent
hand count, sum over convolutions of k*k*Cin*Cout*Hout*Wout plus the Dense):

* ResNet-50:   3,857,973,248 (3.86 G; He et al. 2016, Table 1: 3.8 x 10^9)
* ResNet-101:  7,570,194,432 (7.57 G; He et al.: 7.6 x 10^9)
* ResNet-152: 11,282,415,616 (11.28 G; He et al.: 11.3 x 10^9)

The often quoted ~4.1 G (ResNet-50) and ~11.5 G (ResNet-152) multiply-adds
are for "ResNet v1.5" (torchvision, TF official models), which moves the
stride of stages 3-5 from the first 1x1 convolution to the 3x3 one: the first
block's 1x1 then runs at the stage's input resolution and its 3x3 stays at the
output resolution, so 4x more work in that 1x1. The same hand count with the
stride on the 3x3 gives 4,089,184,256 and 11,513,626,624 (the test checks
both). Parameters are the same for v1 and v1.5. Biases, BatchNorm, pooling
and activations are not counted as multiply-adds.

Choices where the paper leaves details open:

* ResNet v1 exactly as `keras.applications` (not v1.5, not pre-activation v2),
  so users can compare widths, names and counts with Keras's own models; the
  FiGS paper only says "commonly used ResNet models".
* `width_multiplier` scales every width (stem, bottlenecks, streams) as
  `max(1, round(width * multiplier))`, no rounding to multiples of 8 (FiGS
  itself picks the widths; the multiplier only sizes the supernet). Keep it
  1.0 to reproduce the paper's supernets.
* `small_input=True` (CIFAR-10 32x32, Fashion-MNIST 28x28): the stem is a 3x3
  stride-1 "same" convolution (with bias, as the 7x7 one) + BN + ReLU and
  there is no max-pool, so stage 2 runs at the input resolution and stages
  3-5 downsample by 2 each (28 -> 28, 14, 7, 4). Layer names stay `conv1_*`.
* `blocks_per_stage` overrides the depth's block counts (four positive ints),
  for tiny test models; the model name then says so.
* `classifier_activation` defaults to None (logits, for a
  `from_logits=True` loss) where Keras defaults to softmax; it has no weights.
* No input preprocessing layer: feed inputs scaled as you like (Keras's
  `preprocess_input` is separate from its model too).

Also checked in tests/test_space_resnet.py: the channel groups `figs_tf.wrap`
finds are exactly those listed above; with every gate on (logits +30) the
search model's output equals the supernet's; `figs_tf.build_from_architecture`
of an exported architecture has the parameter count of `figs_tf.slim`; the
Fashion-MNIST instantiation (`fashion_mnist_resnet`, 516,554 parameters,
18,992,384 multiply-adds) trains as a search model with a parameter cost for
an epoch on 512 real images with a finite loss, and the cost moves the gates.

The module uses `keras.layers` only and imports without TensorFlow (building
on Keras-on-JAX works, but on CPU takes ~15 s even for the tiny model: JAX
sets up each variable separately).
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
