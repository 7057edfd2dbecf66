"""The same seed, data order and settings give the same exported architecture."""

import keras
import numpy as np
import pytest

import figs_tf
from figs_tf.train import fashion_mnist

from helpers import run_search


@pytest.mark.tensorflow_only
def test_same_seed_same_architecture_and_logits():
    try:
        fashion_mnist.load_fashion_mnist("train")
    except RuntimeError as error:
        pytest.skip(f"Fashion-MNIST is not available here: {error}")
    runs = []
    for _ in range(2):
        search, _ = run_search(strength=2e-5, epochs=2, train_examples=1024, widths=(8, 16, 16),
                               learning_rate=0.05, seed=7)
        runs.append((figs_tf.export_architecture(search),
                     keras.ops.convert_to_numpy(figs_tf.gates_of(search).logits)))
        keras.backend.clear_session()
    (arch_a, logits_a), (arch_b, logits_b) = runs
    assert arch_a == arch_b
    np.testing.assert_array_equal(logits_a, logits_b)
    # and the run did search: some logits moved away from the initial 2.5
    assert np.abs(logits_a - 2.5).max() > 0.1
