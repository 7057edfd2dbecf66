"""A small CNN search space: conv-BN-ReLU blocks, max-pooling, a Dense classifier.

The embedded default of the training binaries (Fashion-MNIST on a laptop CPU),
and the supernet of the benchmarks and tests. Every conv width is searched.
"""

import keras


def small_cnn(widths=(32, 64, 128), input_shape=(28, 28, 1), classes=10, convs_per_block=1,
              dense_width=None, head="gap", pools=None, batchnorm_momentum=0.99, name="small_cnn"):
    """Returns the supernet: `len(widths)` blocks of `convs_per_block` 3x3 conv-BN-ReLU layers.

    Args:
      widths: output channels of the convs of each block.
      input_shape: (height, width, channels).
      classes: outputs of the classifier (logits, no softmax).
      convs_per_block: 3x3 conv-BN-ReLU layers per block.
      dense_width: a searched hidden Dense layer (with BN and ReLU) before the
        classifier, or None.
      head: "gap" (global average pooling) or "flatten" (flatten the last
        block's pooled output: the classifier sees where features are, which
        is worth a few points on Fashion-MNIST for a few more parameters).
      pools: indices of the blocks followed by 2x2 max-pooling; None: every
        block but the last with head="gap", every block with head="flatten".
      batchnorm_momentum: momentum of every BatchNormalization.
      name: the model's name.

    Returns:
      A functional `keras.Model` from images to logits. Layers are named
      `conv{block}` (`conv{block}_{i}` with several convs per block), `bn…`,
      `relu…`, `pool{block}`, then `gap` or `flatten`, `hidden…`, `classifier`.

    Raises:
      ValueError: `head` is neither "gap" nor "flatten".

    Example:

    >>> supernet = small_cnn(widths=(32, 64, 128), input_shape=(28, 28, 1), classes=10)
    >>> search = figs_tf.wrap(supernet, cost="params", strength=3e-6)
    """
    if head not in ("gap", "flatten"):
        raise ValueError(f"head must be 'gap' or 'flatten', got {head!r}.")
    if pools is None:
        pools = range(len(widths)) if head == "flatten" else range(len(widths) - 1)
    pools = set(pools)
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for block, width in enumerate(widths):
        for conv in range(convs_per_block):
            suffix = f"{block}" if convs_per_block == 1 else f"{block}_{conv}"
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{suffix}")(x)
            x = keras.layers.BatchNormalization(momentum=batchnorm_momentum, name=f"bn{suffix}")(x)
            x = keras.layers.ReLU(name=f"relu{suffix}")(x)
        if block in pools:
            x = keras.layers.MaxPooling2D(name=f"pool{block}")(x)
    if head == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if dense_width:
        x = keras.layers.Dense(dense_width, use_bias=False, name="hidden")(x)
        x = keras.layers.BatchNormalization(momentum=batchnorm_momentum, name="hidden_bn")(x)
        x = keras.layers.ReLU(name="hidden_relu")(x)
    outputs = keras.layers.Dense(classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)
