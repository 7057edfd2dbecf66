"""Shared test setup: quiet TensorFlow, the backend marker, small helpers."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if any(item.get_closest_marker("channels_first") for item in items):
        from helpers import CHANNELS_FIRST_SKIP_REASON, runs_channels_first_convolutions  # pylint: disable=g-import-not-at-top
        if not runs_channels_first_convolutions():
            skip_first = pytest.mark.skip(reason=CHANNELS_FIRST_SKIP_REASON)
            for item in items:
                if item.get_closest_marker("channels_first"):
                    item.add_marker(skip_first)
    if keras.backend.backend() == "tensorflow":
        return
    backend = keras.backend.backend()
    skip_tf = pytest.mark.skip(reason=f"needs the TensorFlow backend, running {backend}")
    # Counting is plain Python on the graph, identical on every backend; building
    # ImageNet-family models is what costs time under JAX on a CPU (~20 s each).
    skip_heavy = pytest.mark.skip(reason="builds large models: run on the TensorFlow backend only")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip_tf)
        elif "heavy" in item.keywords:
            item.add_marker(skip_heavy)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()

