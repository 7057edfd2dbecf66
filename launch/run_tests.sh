#!/usr/bin/env bash
# Installs figs_tf with its test extras into the active Python and runs the tests:
# the whole suite on the TensorFlow backend, then the backend-agnostic core
# (gate, gate speed, channel groups, cost) on JAX, the backend GPU timings are taken on.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
echo "[run_tests] installing figs_tf[test,jax] into $($PYTHON -c 'import sys; print(sys.prefix)')"
$PYTHON -m pip install -q -e ".[test,jax]"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
# Test files run in parallel (pytest-xdist), one file per worker at a time so
# that a file's tests keep their order; FIGS_TEST_WORKERS=0 runs serially.
WORKERS=${FIGS_TEST_WORKERS:-2}
PARALLEL=()
if [ "$WORKERS" != "0" ]; then PARALLEL=(-n "$WORKERS" --dist loadfile); fi
echo "[run_tests] KERAS_BACKEND=tensorflow: all tests (${WORKERS} workers)"
KERAS_BACKEND=tensorflow $PYTHON -m pytest -q "${PARALLEL[@]}" tests "$@"
echo "[run_tests] KERAS_BACKEND=jax: gate, gate-speed, channel-group, cost and channels_first tests"
KERAS_BACKEND=jax $PYTHON -m pytest -q "${PARALLEL[@]}" -m "not tensorflow_only" \
  tests/test_mask_layer.py tests/test_gate_speed.py tests/test_channel_groups.py tests/test_cost.py \
  tests/test_channels_first.py "$@"
