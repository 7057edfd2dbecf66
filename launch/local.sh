#!/usr/bin/env bash
# Runs a FiGS search and then the retraining of its exported architecture on
# this machine (CPU, or whatever TensorFlow finds), in one workdir.
#
#   launch/local.sh                                   # embedded default config -> runs/default
#   launch/local.sh --config experiments/fashion_mnist.py:one_shot
#   launch/local.sh --workdir /tmp/fm --config.strength=5e-6 --config.search.epochs=2
#   launch/local.sh --processes 2 --workdir /tmp/fm2  # 2 cooperating processes (JAX backend)
#   launch/local.sh --dry-run ...                     # print the commands, run nothing
#
# Rerunning the same command resumes an interrupted phase from its checkpoint;
# a finished phase (summary.json present) only prints its summary. WORKSPACE.md
# describes what lands in the workdir.
#
# --processes N runs each phase as N processes that train one model together,
# exactly as a multi-host job runs (launch/gpu.sh, launch/tpu_vm.sh): on the
# JAX backend (KERAS_BACKEND=jax unless set), process 0 coordinating on a free
# 127.0.0.1 port, each process reading its own share of every batch, process 0
# writing the workdir. Process 0 prints to the terminal, the others' lines are
# prefixed with [process I]. If one process fails or is killed, the others are
# stopped (SIGTERM, then SIGKILL after STOP_GRACE seconds) and the script exits
# with its status; the same command then resumes from the last checkpoint.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/local.sh [options] [--config.KEY=VALUE ...] [-- extra flags]

Runs `python -m figs_tf.train.search` then `python -m figs_tf.train.retrain` with the same
--config and --workdir. Everything it does not recognise is passed to both
binaries (config overrides such as --config.search.epochs=1, absl flags).

Options:
  --config PATH[:VARIANT]  ml_collections config (default: the embedded
                           figs_tf/train/default_config.py). Env: CONFIG.
  --workdir DIR            local path or gs:// (default: runs/<name>, relative
                           to the current directory). Env: WORKDIR.
  --name NAME              run name for the default workdir (default: from the
                           config, e.g. fashion_mnist_one_shot; "default").
  --only search|retrain    run one phase only.
  --processes N            run each phase as N cooperating processes on this
                           machine (JAX backend, coordinator on a free
                           127.0.0.1 port; default 1). Env: PROCESSES.
  --dry-run                print what would run and stop.
  -h, --help               this message.

Environment: PYTHON (default python3), KERAS_BACKEND (jax with --processes > 1),
STOP_GRACE (seconds the other processes get to stop after one failed; 10).
Installs nothing, except `pip install -e <repo>` (`-e <repo>[jax]` with
--processes > 1) when figs_tf or one of its dependencies (JAX with --processes
> 1) cannot be imported (it says so first). Each phase prints the exact
commands it starts, KERAS_BACKEND=jax included: they run as printed.
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT=local.sh
# shellcheck source=launch/common.sh
. "$REPO/launch/common.sh"
PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-}
WORKDIR=${WORKDIR:-}
NAME=${NAME:-}
PROCESSES=${PROCESSES:-1}
STOP_GRACE=${STOP_GRACE:-10}
ONLY=""
DRY_RUN=0
EXTRA=()

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --config) need_value "$1" $#; CONFIG=$2; shift ;;
    --config=*) CONFIG=${1#*=} ;;
    --workdir) need_value "$1" $#; WORKDIR=$2; shift ;;
    --workdir=*) WORKDIR=${1#*=} ;;
    --name) need_value "$1" $#; NAME=$2; shift ;;
    --name=*) NAME=${1#*=} ;;
    --only) need_value "$1" $#; ONLY=$2; shift ;;
    --only=*) ONLY=${1#*=} ;;
    --processes) need_value "$1" $#; PROCESSES=$2; shift ;;
    --processes=*) PROCESSES=${1#*=} ;;
    --) shift; EXTRA+=("$@"); break ;;
    *) EXTRA+=("$1") ;;
  esac
  shift
done

phases_for "$ONLY"
case "$PROCESSES" in
  ''|*[!0-9]*|0) die "--processes takes a positive number, not '$PROCESSES'" ;;
esac
INSTALL_TARGET=$REPO
ENV_PREFIX=()  # what the printed commands set in front (the processes inherit it from this script)
if [ "$PROCESSES" -gt 1 ]; then
  export KERAS_BACKEND=${KERAS_BACKEND:-jax}
  if [ "$KERAS_BACKEND" != jax ]; then
    die "--processes $PROCESSES needs KERAS_BACKEND=jax (several processes train on the JAX backend; the" \
        "TensorFlow backend refuses MultiWorkerMirroredStrategy), not '$KERAS_BACKEND'"
  fi
  REQUIRED_MODULES+=" jax"
  INSTALL_TARGET="${REPO}[jax]"  # setup.py's jax extra
  ENV_PREFIX=("KERAS_BACKEND=$KERAS_BACKEND")
fi
NAME=${NAME:-$(default_run_name "$CONFIG")}
WORKDIR=${WORKDIR:-runs/$NAME}
require_python
check_config_file "$CONFIG" "$DRY_RUN"
binary_args "$CONFIG" "$WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"}
missing=$(missing_python_modules)
data_warning=$(manual_dataset_warning 1 "$CONFIG" "${ARGS[@]}")

echo "== FiGS local run"
echo "   config:  ${CONFIG:-embedded default (figs_tf/train/default_config.py)}"
echo "   workdir: $WORKDIR"
echo "   python:  $(command -v "$PYTHON")"
if [ "$PROCESSES" -gt 1 ]; then
  echo "   processes: $PROCESSES on this machine, KERAS_BACKEND=$KERAS_BACKEND, coordinator on a free 127.0.0.1 port"
fi
if [ -n "$data_warning" ]; then echo "   warning: $data_warning"; fi
for phase in "${PHASES[@]}"; do
  case "$WORKDIR" in
    *://*) ;;  # not looked into: the binaries say whether they resume
    *)
      if [ -f "$WORKDIR/$phase/summary.json" ]; then
        echo "   $phase: already finished in $WORKDIR/$phase (it will only print its summary)"
      elif compgen -G "$WORKDIR/$phase/checkpoint/step_*.weights.h5" >/dev/null; then
        echo "   $phase: will resume from $WORKDIR/$phase/checkpoint"
      fi ;;
  esac
done

free_port() {  # a TCP port on 127.0.0.1 that nothing listens on now
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
process_args() {  # process_args PORT I -> the flags that make this process I of PROCESSES
  if [ "$PROCESSES" -gt 1 ]; then
    printf '%s\n' "--coordinator_address=127.0.0.1:$1" "--num_processes=$PROCESSES" "--process_id=$2"
  fi
}
show_phase() {  # show_phase PHASE PORT: the command of every process, as it runs
  local i
  for ((i = 0; i < PROCESSES; i++)); do
    mapfile -t extra < <(process_args "$2" "$i")
    show ${ENV_PREFIX[@]+"${ENV_PREFIX[@]}"} "$PYTHON" -m "$(phase_module "$1")" "${ARGS[@]}" \
      ${extra[@]+"${extra[@]}"}
  done
}

echo
echo "The commands:"
if [ -n "$missing" ]; then
  echo "# not importable here (missing: $missing): installing the repository first"
  show "$PYTHON" -m pip install -e "$INSTALL_TARGET"
fi
PORT=""
if [ "$PROCESSES" -gt 1 ]; then
  PORT=$(free_port)
  echo "# each phase: these $PROCESSES processes at once, each in its own shell (a free port is chosen again"
  echo "#   when the phase starts, and the phase prints its commands then)"
fi
for phase in "${PHASES[@]}"; do
  show_phase "$phase" "$PORT"
done

if [ "$DRY_RUN" = 1 ]; then
  echo
  echo "(--dry-run: nothing was run)"
  exit 0
fi

if [ -n "$missing" ]; then
  echo
  echo "== pip install -e $INSTALL_TARGET"
  "$PYTHON" -m pip install -e "$INSTALL_TARGET"
fi

PIDS=()
stop_processes() {  # SIGTERM to the processes still running, SIGKILL after STOP_GRACE seconds
  local pid waited=0
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
  while [ "$waited" -lt "$STOP_GRACE" ]; do
    local alive=0
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do if kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
    if [ "$alive" = 0 ]; then return; fi
    sleep 1
    waited=$((waited + 1))
  done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap 'stop_processes; exit 130' INT TERM

run_phase() {  # run_phase PHASE: one process, or PROCESSES of them; returns the first failure's status
  local phase=$1 module i pid status
  module=$(phase_module "$phase")
  if [ "$PROCESSES" = 1 ]; then
    "$PYTHON" -m "$module" "${ARGS[@]}"
    return
  fi
  local port
  port=$(free_port)
  show_phase "$phase" "$port"
  PIDS=()
  for ((i = 0; i < PROCESSES; i++)); do
    mapfile -t extra < <(process_args "$port" "$i")
    if [ "$i" = 0 ]; then
      "$PYTHON" -m "$module" "${ARGS[@]}" "${extra[@]}" &
    else
      "$PYTHON" -m "$module" "${ARGS[@]}" "${extra[@]}" > >(sed -u "s/^/[process $i] /") 2>&1 &
    fi
    PIDS+=("$!")
  done
  echo "   processes: ${PIDS[*]} (coordinator 127.0.0.1:$port)"
  # Poll rather than `wait -n PID...` (bash 5.1+): the first process to end decides.
  local running=("${PIDS[@]}")
  while [ ${#running[@]} -gt 0 ]; do
    local still=()
    for pid in "${running[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then still+=("$pid"); continue; fi
      status=0
      wait "$pid" || status=$?
      if [ "$status" != 0 ]; then
        echo "local.sh: a $phase process (pid $pid) exited with status $status; stopping the others. Rerun" \
             "the same command to resume from the last checkpoint." >&2
        stop_processes
        return "$status"
      fi
    done
    running=(${still[@]+"${still[@]}"})
    if [ ${#running[@]} -gt 0 ]; then sleep 1; fi
  done
  PIDS=()
}

for phase in "${PHASES[@]}"; do
  echo
  echo "== $(phase_module "$phase") ($(date '+%F %T'))"
  status=0
  run_phase "$phase" || status=$?
  if [ "$status" != 0 ]; then exit "$status"; fi
done
echo
echo "== done ($(date '+%F %T')). Results in $WORKDIR; TensorBoard: tensorboard --logdir $(quote "$WORKDIR")"
