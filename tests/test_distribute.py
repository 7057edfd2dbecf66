"""The cost loss under tf.distribute: scaled per replica, not counted twice."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.tensorflow_only
def test_cost_gradient_is_the_same_on_one_device_and_two_replicas():
    # Logical devices must be configured before TensorFlow starts: a fresh process.
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, os.path.join(HERE, "scripts", "cost_gradient_under_mirrored.py")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    updates = json.loads(result.stdout.strip().splitlines()[-1])
    single, mirrored = np.array(updates["single"]), np.array(updates["mirrored"])
    assert np.all(single < 0)  # the cost pushes every logit down
    np.testing.assert_allclose(mirrored, single, rtol=1e-4)
