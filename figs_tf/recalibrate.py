"""BatchNorm statistics for a network whose channels changed.

A search model trains with random gates, so each BatchNorm's moving statistics
average over many sampled sub-networks; the exported network sees one. Before
evaluating an exported network with inherited weights, recompute the
statistics on training data (as slimmable networks do):

    slim = figs_tf.slim(search)
    figs_tf.recalibrate_batchnorm(slim, train_images[:2048])
"""

import keras
import numpy as np

from figs_tf import keras_graph


def recalibrate_batchnorm(model, images, batch_size=512):
    """Sets every BatchNorm's moving mean/variance to their averages over `images`.

    Runs the model in training mode with momentum 0 batch by batch, then averages
    the per-batch statistics (the variance as the mean of per-batch variances,
    weighted by batch size). Weights other than the BatchNorm statistics are
    untouched.

    Args:
      model: a Keras model (nested models included).
      images: an array of inputs, e.g. 2048 training images.
      batch_size: images per forward pass.

    Returns:
      The number of BatchNorm layers updated.

    Example:

    >>> slim = figs_tf.slim(search)
    >>> figs_tf.recalibrate_batchnorm(slim, train_images[:2048])
    """
    layers = [layer for layer in keras_graph.sublayers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    sums = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)] for layer in layers]
    seen = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # moving statistics := this batch's statistics
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            model(batch, training=True)
            for layer, total in zip(layers, sums):
                total[0] += len(batch) * keras.ops.convert_to_numpy(layer.moving_mean)
                total[1] += len(batch) * keras.ops.convert_to_numpy(layer.moving_variance)
            seen += len(batch)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    for layer, (mean_sum, variance_sum) in zip(layers, sums):
        layer.moving_mean.assign(mean_sum / seen)
        layer.moving_variance.assign(variance_sum / seen)
    return len(layers)
