"""A short AL run on real Fashion-MNIST: λ shrinks the network, λ = 0 does not."""

import csv
import json
import os

import keras
import pytest

import figs_tf
from figs_tf.train import fashion_mnist

from figs_tf.wrapping import gates_of

from helpers import run_search, small_cnn

SMALL = (16, 32, 64)  # a quarter of the default supernet: the test stays fast on 2 cores


def _real_data_or_skip():
    try:
        fashion_mnist.load_fashion_mnist("test")
    except RuntimeError as error:
        pytest.skip(f"Fashion-MNIST is not available here: {error}")


@pytest.mark.tensorflow_only
def test_large_strength_shrinks_the_exported_cost_and_callback_reports_it(tmp_path):
    _real_data_or_skip()
    csv_path = os.path.join(tmp_path, "history.csv")
    search, callback = run_search(
        workdir=str(tmp_path), strength=5e-5, epochs=4, train_examples=4096, learning_rate=0.02,
        widths=SMALL, verbose=0,
        callbacks=[keras.callbacks.CSVLogger(csv_path)])
    supernet = figs_tf.supernet_cost(search, "params")
    exported = [row["figs_exported_params"] for row in callback.history]
    # shrinks epoch after epoch (allowing one small rebound) and ends well below the supernet
    rebounds = sum(b > a for a, b in zip(exported, exported[1:]))
    assert rebounds <= 1, exported
    assert exported[-1] < 0.5 * supernet, (exported, supernet)
    # the numbers reach Keras's loggers, the JSON and the plot are written
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert [int(float(r["figs_exported_params"])) for r in rows] == exported
    assert float(rows[-1]["figs_width/conv2"]) == figs_tf.export_architecture(search)["conv2"]
    with open(os.path.join(tmp_path, "architecture.json")) as f:
        document = json.load(f)
    assert document["widths"] == figs_tf.export_architecture(search)
    assert document["metadata"]["exported_cost"]["params"] == exported[-1]
    with open(os.path.join(tmp_path, "widths.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.tensorflow_only
def test_zero_strength_prunes_nothing_beyond_the_starting_point():
    """With λ = 0 only the task loss moves the gates: no channel is lost.

    The paper's export rule ⌊Σπ⌋ at the paper's initial logit 2.5 (π ≈ 0.924)
    already exports ⌊0.924·n⌋ channels before any training; with λ = 0 the
    exported architecture must stay there or grow, never shrink.
    """
    _real_data_or_skip()
    initial = figs_tf.export_architecture(figs_tf.wrap(small_cnn(SMALL, batchnorm_momentum=0.9)))
    search, callback = run_search(strength=0.0, epochs=2, train_examples=4096, widths=SMALL)
    final = figs_tf.export_architecture(search)
    assert all(final[name] >= initial[name] for name in initial), (initial, final)
    logits = keras.ops.convert_to_numpy(gates_of(search).logits)
    assert logits.mean() >= 2.5 - 1e-3  # no drift towards pruning
