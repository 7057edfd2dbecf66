#!/usr/bin/env bash
# FiGS search then retraining on a GPU machine (one or more GPUs), in one workdir.
#
#   launch/gpu.sh --config experiments/cifar10.py:resnet
#   launch/gpu.sh --config experiments/cifar10.py:one_shot --mixed-precision --background
#   launch/gpu.sh --gpus 0,1 --workdir gs://BUCKET/c10_resnet --config experiments/cifar10.py:resnet
#   launch/gpu.sh --dry-run ...
#
# One machine: --config.strategy=gpus, i.e. tf.distribute.MirroredStrategy over
# every visible GPU (CUDA_VISIBLE_DEVICES, or --gpus, picks them); with
# --backend jax, keras.distribution.DataParallel over them. The batch sizes in
# the config are global batches and must divide by the number of GPUs.
#
# Several machines: one process per machine, each over its local GPUs, on the
# JAX backend (Keras 3's fit under TensorFlow's MultiWorkerMirroredStrategy is
# broken upstream: keras-team/keras#20585). Run this script on every machine
# with the same arguments plus the machine's index, e.g. on the first of two
#   launch/gpu.sh --coordinator host1:12345 --num-processes 2 --process-id 0 \
#       --workdir gs://BUCKET/run --config experiments/cifar10.py:resnet
# and --process-id 1 on the second. Process 0 listens on the coordinator port
# (open it between the machines). The model is replicated on every GPU of every
# machine, each machine reads its own share of the data and of every batch. The
# workdir must be shared (gs:// or a common file system): process 0 writes the
# summaries, exports, TensorBoard logs and checkpoints, every process reads
# the checkpoints when resuming. A process that dies stops the job (the others
# fail at the next step); rerun the same command on every machine to resume.
# WORKSPACE.md lists what each host needs.
#
# Mixed precision (--mixed-precision) is recorded in the workdir's config.json
# like every other key: a resumed run must be given the same setting.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/gpu.sh [options] [--config.KEY=VALUE ...] [-- extra flags]

Runs `python -m figs_tf.train.search` then `python -m figs_tf.train.retrain` on this
machine's GPUs with the same --config and --workdir. Everything it does not
recognise is passed to both binaries.

Options:
  --config PATH[:VARIANT]   ml_collections config (default: the embedded
                            figs_tf/train/default_config.py). Env: CONFIG.
  --workdir DIR             local path or gs:// (default: runs/<name>).
                            Env: WORKDIR.
  --name NAME               run name for the default workdir and the log.
  --gpus LIST               set CUDA_VISIBLE_DEVICES=LIST (e.g. 0,1).
  --strategy NAME           gpus (default: all visible GPUs) or one_device.
                            Env: STRATEGY.
  --backend tensorflow|jax  the Keras backend (default tensorflow, or jax with
                            --num-processes > 1). Env: KERAS_BACKEND.
  --coordinator HOST:PORT   several machines: process 0's address (the same on
                            every machine). Env: COORDINATOR.
  --num-processes N         several machines: how many (one process each).
                            Env: NUM_PROCESSES.
  --process-id I            several machines: this machine's index, 0..N-1
                            (0 writes the workdir). Env: PROCESS_ID.
  --mixed-precision[=POLICY]  --config.mixed_precision=POLICY; POLICY defaults
                            to mixed_float16 (mixed_bfloat16 on A100/H100 also
                            works). Env: MIXED_PRECISION.
  --background              run under nohup, output appended to a log file
                            (<workdir>/launch.log, or runs/<name>.launch.log for
                            gs:// workdirs); the shell can then be closed.
  --only search|retrain     run one phase only.
  --skip-gpu-check          do not refuse to start when the backend (TensorFlow
                            or JAX) sees no GPU or cannot be imported.
  --dry-run                 print what would run and stop.
  -h, --help                this message.

Environment: PYTHON (default python3).
Installs nothing, except `pip install -e <repo>` (`-e <repo>[jax]` on the JAX
backend) when figs_tf or one of its dependencies (JAX on the JAX backend)
cannot be imported (it says so first). TensorFlow needs the CUDA
libraries to see GPUs: `pip install 'tensorflow[and-cuda]'` provides them.
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO/launch/gpu.sh"
SCRIPT=gpu.sh
# shellcheck source=launch/common.sh
. "$REPO/launch/common.sh"
PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-}
WORKDIR=${WORKDIR:-}
NAME=${NAME:-}
STRATEGY=${STRATEGY:-gpus}
BACKEND=${KERAS_BACKEND:-}
COORDINATOR=${COORDINATOR:-}
NUM_PROCESSES=${NUM_PROCESSES:-1}
PROCESS_ID=${PROCESS_ID:-0}
MIXED_PRECISION=${MIXED_PRECISION:-}
ONLY=""
DRY_RUN=0
BACKGROUND=0
IN_BACKGROUND=0
GPU_CHECK=1
EXTRA=()
FORWARD=()  # the arguments again, for the nohup'ed copy of this script

while [ $# -gt 0 ]; do
  case "$1" in
    --background) BACKGROUND=1; shift; continue ;;
    --in-background) IN_BACKGROUND=1; shift; continue ;;  # internal: the nohup'ed copy
  esac
  FORWARD+=("$1")
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --config) need_value "$1" $#; CONFIG=$2; FORWARD+=("$2"); shift ;;
    --config=*) CONFIG=${1#*=} ;;
    --workdir) need_value "$1" $#; WORKDIR=$2; FORWARD+=("$2"); shift ;;
    --workdir=*) WORKDIR=${1#*=} ;;
    --name) need_value "$1" $#; NAME=$2; FORWARD+=("$2"); shift ;;
    --name=*) NAME=${1#*=} ;;
    --gpus) need_value "$1" $#; export CUDA_VISIBLE_DEVICES=$2; FORWARD+=("$2"); shift ;;
    --gpus=*) export CUDA_VISIBLE_DEVICES=${1#*=} ;;
    --strategy) need_value "$1" $#; STRATEGY=$2; FORWARD+=("$2"); shift ;;
    --strategy=*) STRATEGY=${1#*=} ;;
    --backend) need_value "$1" $#; BACKEND=$2; FORWARD+=("$2"); shift ;;
    --backend=*) BACKEND=${1#*=} ;;
    --coordinator) need_value "$1" $#; COORDINATOR=$2; FORWARD+=("$2"); shift ;;
    --coordinator=*) COORDINATOR=${1#*=} ;;
    --num-processes) need_value "$1" $#; NUM_PROCESSES=$2; FORWARD+=("$2"); shift ;;
    --num-processes=*) NUM_PROCESSES=${1#*=} ;;
    --process-id) need_value "$1" $#; PROCESS_ID=$2; FORWARD+=("$2"); shift ;;
    --process-id=*) PROCESS_ID=${1#*=} ;;
    --mixed-precision) MIXED_PRECISION=mixed_float16 ;;
    --mixed-precision=*) MIXED_PRECISION=${1#*=} ;;
    --only) need_value "$1" $#; ONLY=$2; FORWARD+=("$2"); shift ;;
    --only=*) ONLY=${1#*=} ;;
    --skip-gpu-check) GPU_CHECK=0 ;;
    --) shift; EXTRA+=("$@"); FORWARD+=("$@"); break ;;
    *) EXTRA+=("$1") ;;
  esac
  shift
done

phases_for "$ONLY"
case "$STRATEGY" in
  gpus|one_device) ;;
  multi_worker) die "--strategy multi_worker (TensorFlow's MultiWorkerMirroredStrategy) is refused: Keras 3's fit" \
                    "is broken under it upstream (keras-team/keras#20585). Several machines run on the JAX backend:" \
                    "--coordinator HOST:PORT --num-processes N --process-id I on every machine (see -h)" ;;
  *) die "--strategy takes gpus or one_device, not '$STRATEGY'" ;;
esac
case "$NUM_PROCESSES" in ''|*[!0-9]*|0) die "--num-processes takes a positive number, not '$NUM_PROCESSES'" ;; esac
case "$PROCESS_ID" in ''|*[!0-9]*) die "--process-id takes a number, not '$PROCESS_ID'" ;; esac
PROCESS_ARGS=()
if [ "$NUM_PROCESSES" -gt 1 ]; then
  BACKEND=${BACKEND:-jax}
  [ "$BACKEND" = jax ] || die "--num-processes $NUM_PROCESSES needs --backend jax (several processes train on the JAX" \
                             "backend), not '$BACKEND'"
  [ -n "$COORDINATOR" ] || die "--num-processes $NUM_PROCESSES needs --coordinator HOST:PORT (process 0's address)"
  [ "$PROCESS_ID" -lt "$NUM_PROCESSES" ] || die "--process-id $PROCESS_ID is not one of 0..$((NUM_PROCESSES - 1))"
  PROCESS_ARGS=("--coordinator_address=$COORDINATOR" "--num_processes=$NUM_PROCESSES" "--process_id=$PROCESS_ID")
fi
BACKEND=${BACKEND:-tensorflow}
case "$BACKEND" in tensorflow|jax) export KERAS_BACKEND=$BACKEND ;; *) die "--backend takes tensorflow or jax, not '$BACKEND'" ;; esac
INSTALL_TARGET=$REPO
if [ "$BACKEND" = jax ]; then
  REQUIRED_MODULES+=" jax"
  INSTALL_TARGET="${REPO}[jax]"  # setup.py's jax extra
fi

NAME=${NAME:-$(default_run_name "$CONFIG")}
WORKDIR=${WORKDIR:-runs/$NAME}
case "$WORKDIR" in
  *://*) LOG="runs/$NAME.launch.log" ;;
  *) LOG="$WORKDIR/launch.log" ;;
esac

require_python
check_config_file "$CONFIG" "$DRY_RUN"
OPTIONS=("--config.strategy=$STRATEGY")
if [ -n "$MIXED_PRECISION" ]; then OPTIONS+=("--config.mixed_precision=$MIXED_PRECISION"); fi
binary_args "$CONFIG" "$WORKDIR" "${OPTIONS[@]}" ${EXTRA[@]+"${EXTRA[@]}"} ${PROCESS_ARGS[@]+"${PROCESS_ARGS[@]}"}

if [ "$IN_BACKGROUND" = 0 ]; then
  echo "== FiGS on GPUs"
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "   nvidia-smi (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-<all>}):"
    nvidia-smi --query-gpu=index,name,memory.total,utilization.gpu,driver_version --format=csv,noheader \
      | sed 's/^/     /' || echo "     (nvidia-smi failed)"
  else
    echo "   nvidia-smi: not found (no NVIDIA driver on this machine?)"
  fi
  echo "   config:   ${CONFIG:-embedded default (figs_tf/train/default_config.py)}"
  echo "   workdir:  $WORKDIR"
  echo "   strategy: $STRATEGY${MIXED_PRECISION:+, mixed precision $MIXED_PRECISION}, KERAS_BACKEND=$KERAS_BACKEND"
  if [ "$NUM_PROCESSES" -gt 1 ]; then
    echo "   processes: this is $PROCESS_ID of $NUM_PROCESSES, coordinator $COORDINATOR"
  fi
  if [ "$BACKGROUND" = 1 ]; then echo "   log:      $LOG (nohup)"; fi
  data_warning=$(manual_dataset_warning 1 "$CONFIG" "${ARGS[@]}")
  if [ -n "$data_warning" ]; then echo "   warning:  $data_warning"; fi
fi

missing=$(missing_python_modules)

if [ "$IN_BACKGROUND" = 0 ]; then
  echo
  echo "The commands:"
  if [ -n "$missing" ]; then
    echo "# not importable here (missing: $missing): installing the repository first"
    show "$PYTHON" -m pip install -e "$INSTALL_TARGET"
  fi
  if [ "$BACKGROUND" = 1 ]; then
    echo "# under nohup, output appended to $LOG:"
  fi
  for phase in "${PHASES[@]}"; do
    show "$PYTHON" -m "$(phase_module "$phase")" "${ARGS[@]}"
  done
fi

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

if [ "$GPU_CHECK" = 1 ] && [ "$IN_BACKGROUND" = 0 ]; then
  if [ "$KERAS_BACKEND" = jax ]; then
    engine=JAX
    probe='import jax; print(len([d for d in jax.local_devices() if d.platform == "gpu"]))'
    install="pip install 'jax[cuda12]'"
  else
    engine=TensorFlow
    probe='import tensorflow as tf; print(len(tf.config.list_physical_devices("GPU")))'
    install="pip install 'tensorflow[and-cuda]'"
  fi
  probe_errors=$(mktemp "${TMPDIR:-/tmp}/figs_gpu_check.XXXXXX")
  status=0
  gpus=$("$PYTHON" -c "$probe" 2>"$probe_errors" | tail -n 1) || status=$?
  error=$(grep -E '^[A-Za-z_.]*(Error|Exception)' "$probe_errors" | tail -n 1 || true)
  rm -f "$probe_errors"
  if [ "$status" != 0 ] || ! [[ "$gpus" =~ ^[0-9]+$ ]]; then
    die "$engine cannot be imported by $PYTHON${error:+ ($error)}, so it cannot use the GPUs." \
        "Install it ($install), or pass --skip-gpu-check."
  fi
  echo
  echo "   $engine sees $gpus GPU(s)"
  if [ "$gpus" = 0 ]; then
    die "$engine sees no GPU, so this would train on the CPU. Install the CUDA libraries ($install)," \
        "check CUDA_VISIBLE_DEVICES, or pass --skip-gpu-check."
  fi
fi

if [ "$BACKGROUND" = 1 ]; then
  mkdir -p "$(dirname "$LOG")"
  echo "=== $(date '+%F %T') launch/gpu.sh $(for a in ${FORWARD[@]+"${FORWARD[@]}"}; do printf '%s ' "$(quote "$a")"; done)" >>"$LOG"
  # setsid (when there is one) gives the job its own process group, so that
  # one kill stops the script and the Python process it is running.
  if command -v setsid >/dev/null 2>&1; then
    setsid nohup bash "$SELF" --in-background ${FORWARD[@]+"${FORWARD[@]}"} >>"$LOG" 2>&1 </dev/null &
    stop="kill -- -$!"
  else
    nohup bash "$SELF" --in-background ${FORWARD[@]+"${FORWARD[@]}"} >>"$LOG" 2>&1 </dev/null &
    stop="kill $! and then its python child"
  fi
  echo
  echo "Started in the background: pid $!, log $LOG"
  echo "  follow it:  tail -f $(quote "$LOG")"
  echo "  stop it:    $stop   (rerun the same command later to resume)"
  exit 0
fi

for phase in "${PHASES[@]}"; do
  echo
  echo "== $(phase_module "$phase") ($(date '+%F %T'))"
  show "$PYTHON" -m "$(phase_module "$phase")" "${ARGS[@]}"
  "$PYTHON" -m "$(phase_module "$phase")" "${ARGS[@]}"
done
echo
echo "== done ($(date '+%F %T')). Results in $WORKDIR; TensorBoard: tensorboard --logdir $(quote "$WORKDIR")"
