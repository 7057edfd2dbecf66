#!/usr/bin/env bash
# Cloud TPU VM lifecycle for FiGS: create a TPU VM, copy this repository onto
# it, run the search and the retraining there, read the log, delete the VM.
#
#   export TPU_NAME=figs-v4 ZONE=us-central2-b PROJECT=my-project ACCELERATOR=v4-8
#   launch/tpu_vm.sh create [--spot | --queued [--spot]]
#   launch/tpu_vm.sh copy
#   launch/tpu_vm.sh run --config experiments/one_shot_imagenet.py:A \
#       --workdir gs://BUCKET/one_shot_a --data-dir gs://BUCKET/tensorflow_datasets
#   launch/tpu_vm.sh logs --follow --workdir gs://BUCKET/one_shot_a
#   launch/tpu_vm.sh delete
#   launch/tpu_vm.sh experiments/one_shot_imagenet.py:A gs://BUCKET/one_shot_a   # = run CONFIG WORKDIR
#
# Every subcommand prints the gcloud commands before running them; --dry-run
# prints them and runs nothing (and needs no gcloud).
#
# How the training runs on the TPU VM (see `run`), by --backend:
# - tensorflow (the default on single-host slices: v2-8, v3-8, v4-8,
#   v5litepod-1..8, v5p-8, v6e-1..8): worker 0 runs `python3 -m
#   figs_tf.train.search ... --config.strategy=tpu --config.tpu=local` and then
#   figs_tf.train.retrain, under nohup + setsid, so an ssh drop does not stop it.
#   On PJRT images (VERSION ending in -pjrt) it sets
#   NEXT_PLUGGABLE_DEVICE_USE_C_API=true and
#   TF_PLUGGABLE_DEVICE_LIBRARY_PATH=/lib/libtpu.so, as Google's TF-on-TPU-VM
#   instructions do. On a multi-host slice TensorFlow would drive the pod from
#   ONE client process on worker 0 (--config.tpu=$TPU_NAME, TPU_LOAD_LIBRARY=0);
#   pass --backend tensorflow to get that.
# - jax (the default on multi-host slices: v4-16 and up, v3-32,
#   v5litepod-16, ...): every worker runs the same two commands with
#   KERAS_BACKEND=jax, one process per host, joined by JAX through the TPU
#   metadata (--num_processes=auto): the model is replicated on every TPU core,
#   each host reads its own share of the data and of every batch, worker 0
#   writes the workdir. The image is a plain TPU VM chosen from the
#   accelerator's generation (see jax_image below), `copy` installs jax[tpu]
#   and figs_tf with pip. This is Keras 3's own multi-host route, the one its
#   TPU CI runs.
# Every host reads its share of the data and the checkpoints go through GCS,
# so WORKDIR and DATA_DIR must be gs:// on multi-host slices.
# - Resuming: the binaries resume from the checkpoint in WORKDIR. After a
#   preemption (spot VMs are deleted on preemption, their disks with them)
#   do: delete, create, copy, run, with the same WORKDIR. `run` refuses to
#   start a second copy of a job that is still running on the VM.
#
# What was tested: `bash -n`, shellcheck, and every subcommand with --dry-run
# on a machine without gcloud. Nothing here has been run against a real
# Cloud TPU or gcloud; the gcloud flags follow the gcloud reference
# (compute tpus tpu-vm create/scp/ssh/describe/delete and compute tpus
# queued-resources create/describe/delete).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_vm.sh SUBCOMMAND [options] [-- extra flags for the binaries]
       launch/tpu_vm.sh CONFIG WORKDIR [options]      (same as: run CONFIG WORKDIR)

Subcommands (each prints its gcloud commands first):
  create   create the TPU VM (gcloud compute tpus tpu-vm create), or with
           --queued a queued resource (gcloud compute tpus queued-resources create)
  copy     copy this repository (tracked and untracked-not-ignored files) to
           ~/figs_tf on all workers (tpu-vm scp --recurse --worker=all), then
           pip install it there (tpu-vm ssh --worker=all): with --backend
           tensorflow keeping the TPU image's TensorFlow, with jax adding jax[tpu]
  run      start figs_tf.train.search then figs_tf.train.retrain on the VM in the
           background (nohup): on worker 0 (tensorflow) or on every worker
           (jax); safe to rerun: it resumes, and does nothing while the job
           still runs
  logs     print the end of the job's log on worker 0 (--follow to keep reading)
  status   the TPU's state and health (and the queued resource's, with --queued)
  delete   delete the TPU VM (or the queued resource and its VM, with --queued);
           the gs:// workdir is not touched

Options (or environment variables of the same name in capitals):
  --name NAME           TPU_NAME     TPU VM name (default figs-tpu)
  --zone ZONE           ZONE         e.g. us-central2-b (v4), europe-west4-a (v3)
  --project PROJECT     PROJECT      (default: gcloud's configured project)
  --accelerator TYPE    ACCELERATOR  v4-8 (default), v3-8, v4-32, v5litepod-8, ...
  --backend NAME        BACKEND      tensorflow (default on one host) or jax
                                     (default on multi-host slices); see the top
                                     of this script
  --version VERSION     VERSION      TPU software version (default: tensorflow
                                     tpu-vm-tf-$TF_VERSION-pjrt, -pod-pjrt on pods,
                                     TF_VERSION default 2.18.0; jax by generation:
                                     v2/v3/v4 tpu-ubuntu2204-base, v5e (v5litepod)
                                     v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5, v6e
                                     v2-alpha-tpuv6e)
  --config PATH[:VAR]   CONFIG       config file, relative to the repository
                                     (default: the embedded default config)
  --workdir DIR         WORKDIR      gs://BUCKET/RUN (required for run and logs)
  --data-dir DIR        DATA_DIR     tfds data_dir, gs://BUCKET/tensorflow_datasets
  --spot                SPOT=1       Spot VM: much cheaper, may be preempted at any time
  --queued              QUEUED=1     create/status/delete through a queued resource
                                     (QUEUED_RESOURCE, default <name>-qr)
  --multi-host 0|1      MULTI_HOST   override the pod detection from ACCELERATOR
  --run-name NAME       RUN_NAME     log name on the VM (default: from WORKDIR)
  --follow                           logs: keep following
  --yes                              delete: do not ask
  --dry-run                          print the commands only
  -h, --help

Examples:
  ZONE=us-central2-b launch/tpu_vm.sh create --spot --dry-run
  launch/tpu_vm.sh run --zone us-central2-b --config experiments/resnet_imagenet.py:50 \
      --workdir gs://BUCKET/resnet50_half --data-dir gs://BUCKET/tensorflow_datasets \
      -- --config.search.steps_per_checkpoint=1000
EOF
}

# --- settings -----------------------------------------------------------------
# TPU software versions (images), from Google's table "TPU software versions"
# (https://cloud.google.com/tpu/docs/runtimes, read 2026-12 through its copies of
# 2025-08/09):
# - PyTorch and JAX: v6e (Trillium) v2-alpha-tpuv6e, v5p v2-alpha-tpuv5,
#   v5e v2-alpha-tpuv5-lite, v4 and older tpu-ubuntu2204-base (jax_image below).
# - TensorFlow: tpu-vm-tf-x.y.z[-pod][-pjrt], the same names on every
#   generation (v5e, v5p and v6e need TF >= 2.15 with -pjrt). The newest
#   TensorFlow in the table is 2.18.0 (libtpu 1.12.0); 2.17.1, 2.17.0, 2.16.2,
#   2.16.1, 2.15.x follow. The registry's tensorflow-tpu wheels go to 2.20.0
#   (2.16.1 ... 2.18.0, 2.19.1, 2.20.0), none for 2.21, so TF 2.18.0 is the
#   newest version with both an image and a wheel.
# - Keras: TF 2.18 installs any Keras >= 3.5, and setup.py asks for >= 3.7.
#   Keras's own CI ran against TF 2.18 from Keras 3.7.0 to 3.12.x
#   (tensorflow-cpu~=2.18 in its requirements.txt) and against 2.20 from 3.13,
#   so on a tpu-vm-tf-2.18 image `copy` installs keras>=3.7,<3.13, not the
#   newest Keras (keras_for_tf below). figs_tf itself is developed on TF 2.21 /
#   Keras 3.15 and has not run on a TPU.
# List what a zone offers with
#   gcloud compute tpus tpu-vm versions list --zone=$ZONE
# `copy` keeps the image's TensorFlow: the PyPI tensorflow wheel has no TPU support.
TF_VERSION=${TF_VERSION:-2.18.0}
TPU_NAME=${TPU_NAME:-figs-tpu}
ZONE=${ZONE:-}
PROJECT=${PROJECT:-}
ACCELERATOR=${ACCELERATOR:-v4-8}
VERSION=${VERSION:-}
CONFIG=${CONFIG:-}
WORKDIR=${WORKDIR:-}
DATA_DIR=${DATA_DIR:-}
SPOT=${SPOT:-0}
QUEUED=${QUEUED:-0}
QUEUED_RESOURCE=${QUEUED_RESOURCE:-}
MULTI_HOST=${MULTI_HOST:-}
BACKEND=${BACKEND:-}
RUN_NAME=${RUN_NAME:-}
REMOTE_DIR=figs_tf          # on the VM, relative to the home directory
REMOTE_LOGS=figs_logs       # ditto: <run name>.log and <run name>.pid
FOLLOW=0
YES=0
DRY_RUN=0
EXTRA=()
POSITIONAL=()
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

SCRIPT=tpu_vm.sh
# shellcheck source=launch/common.sh
. "$REPO/launch/common.sh"

# The image for the JAX backend, by TPU generation (the table above).
jax_image() {  # jax_image ACCELERATOR -> the TPU software version, or nothing for an unknown type
  case "$1" in
    v6e-*) echo v2-alpha-tpuv6e ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-*|v5e-*) echo v2-alpha-tpuv5-lite ;;
    v2-*|v3-*|v4-*) echo tpu-ubuntu2204-base ;;
  esac
}

# The Keras releases whose own CI ran on a TensorFlow minor version (the table above).
keras_for_tf() {  # keras_for_tf 2.18.0 -> keras>=3.7,<3.13; nothing when unknown
  case "$1" in
    2.18.*) echo "keras>=3.7,<3.13" ;;
    2.20.*) echo "keras>=3.13" ;;
  esac
}

run() {  # prints a command, then runs it unless --dry-run
  show "$@"
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

# --- commands that run ON the TPU VM (started by copy / run over ssh) ----------
# They live in this file so that the ssh command lines stay short and need no
# nested quoting: `copy` puts this script on the VM with the rest of the code.

on_vm_install() {  # on_vm_install BACKEND; cwd: the copied repository
  local backend=${1:-tensorflow} py=${PYTHON:-python3} requirements
  if [ "$backend" = jax ]; then
    echo "[$(hostname)] installing figs_tf with JAX for TPUs (jax[tpu]) and TensorFlow for tf.data"
    show "$py" -m pip install -e ".[jax]" "jax[tpu]"
    "$py" -m pip install -e ".[jax]" "jax[tpu]"
    "$py" -c 'import jax, keras; print(f"[figs_tf ok] JAX {jax.__version__} sees {jax.local_device_count()} TPU cores, Keras {keras.__version__}")'
    return
  fi
  if "$py" -c 'import tensorflow' >/dev/null 2>&1; then
    local tf_version keras
    tf_version=$("$py" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null)
    keras=$(keras_for_tf "$tf_version")
    echo "[$(hostname)] keeping the image's TensorFlow $tf_version${keras:+, with $keras (the Keras releases tested on it)}"
    if [ -z "$keras" ]; then
      echo "[$(hostname)] warning: no known Keras range for TensorFlow $tf_version: pip picks the newest Keras"
    fi
    # setup.py's requirements without tensorflow, so pip cannot replace the
    # TPU build of TensorFlow with the PyPI wheel, and with Keras held to
    # the releases tested on this TensorFlow.
    requirements=$(KERAS_REQUIREMENT="$keras" "$py" - <<'PY'
import os, re, setuptools
captured = {}
setuptools.setup = lambda **kwargs: captured.update(kwargs)
exec(open("setup.py", encoding="utf-8").read())
keras = os.environ.get("KERAS_REQUIREMENT")
for requirement in captured["install_requires"]:
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
    if name not in ("tensorflow", "tensorflow-cpu"):
        print(keras if keras and name == "keras" else requirement)
PY
)
    mapfile -t requirements <<<"$requirements"
    show "$py" -m pip install --no-deps -e .
    "$py" -m pip install --no-deps -e .
    show "$py" -m pip install "${requirements[@]}"
    "$py" -m pip install "${requirements[@]}"
  else
    echo "[$(hostname)] no TensorFlow on this image: installing everything from PyPI (no TPU support!)"
    show "$py" -m pip install -e .
    "$py" -m pip install -e .
  fi
  "$py" -c 'import figs_tf, keras, tensorflow as tf; print(f"[figs_tf ok] TensorFlow {tf.__version__}, Keras {keras.__version__}")'
}

on_vm_run() {  # on_vm_run RUN_NAME MODE(single|pod|jax) PJRT(0|1) TPU -- BINARY ARGS...
  local name=$1 mode=$2 pjrt=$3 tpu=$4 py=${PYTHON:-python3}
  shift 4
  if [ "${1:-}" = "--" ]; then shift; fi
  local log="$HOME/$REMOTE_LOGS/$name.log" pidfile="$HOME/$REMOTE_LOGS/$name.pid"
  mkdir -p "$HOME/$REMOTE_LOGS"
  # Still running? (the pid is alive and is our job, not a reused pid)
  if [ -f "$pidfile" ] && ps -p "$(cat "$pidfile")" -o args= 2>/dev/null | grep -q figs_tf; then
    echo "[$(hostname)] $name is still running (pid $(cat "$pidfile")); not starting another."
    echo "  Read its log with: launch/tpu_vm.sh logs --run-name $name"
    return 0
  fi
  if [ "$mode" = jax ]; then
    export KERAS_BACKEND=jax  # every host runs this; JAX joins them (--num_processes=auto)
  elif [ "$mode" = pod ]; then
    # One TensorFlow client (this process) for the whole pod; the TPU runtime
    # of this host must stay with the TPU server, not be loaded here.
    export TPU_LOAD_LIBRARY=0 TPU_NAME="$tpu"
  elif [ "$pjrt" = 1 ]; then
    export NEXT_PLUGGABLE_DEVICE_USE_C_API=${NEXT_PLUGGABLE_DEVICE_USE_C_API:-true}
    export TF_PLUGGABLE_DEVICE_LIBRARY_PATH=${TF_PLUGGABLE_DEVICE_LIBRARY_PATH:-/lib/libtpu.so}
  fi
  {
    echo "=== $(date '+%F %T') on $(hostname): search then retrain"
    local variable
    for variable in KERAS_BACKEND TPU_LOAD_LIBRARY TPU_NAME NEXT_PLUGGABLE_DEVICE_USE_C_API TF_PLUGGABLE_DEVICE_LIBRARY_PATH; do
      if printenv "$variable" >/dev/null; then echo "    $variable=$(printenv "$variable")"; fi
    done
    show "$py" -m figs_tf.train.search "$@"
    show "$py" -m figs_tf.train.retrain "$@"
  } >>"$log"
  # setsid + nohup: the job survives the end of the ssh session; `$@` is handed
  # to the inner shell as arguments, so nothing is quoted twice.
  # shellcheck disable=SC2016  # expanded by the inner shell, on purpose
  setsid nohup bash -c 'py=$1; shift; "$py" -m figs_tf.train.search "$@" && "$py" -m figs_tf.train.retrain "$@"' \
    figs-job "$py" "$@" >>"$log" 2>&1 </dev/null &
  echo "$!" >"$pidfile"
  echo "[$(hostname)] started $name: pid $!, log ~/$REMOTE_LOGS/$name.log"
}

case "${1:-}" in
  on-vm-install) shift; on_vm_install "$@"; exit ;;
  on-vm-run) shift; on_vm_run "$@"; exit ;;
esac

# --- arguments ------------------------------------------------------------------
SUBCOMMAND=${1:-}
case "$SUBCOMMAND" in
  create|copy|run|logs|status|delete) shift ;;
  -h|--help|"") usage; exit 0 ;;
  -*) die "the subcommand comes first (create, copy, run, logs, status, delete); see -h" ;;
  *) SUBCOMMAND=run ;;  # launch/tpu_vm.sh CONFIG WORKDIR ...
esac
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --spot) SPOT=1 ;;
    --queued) QUEUED=1 ;;
    --follow|-f) FOLLOW=1 ;;
    --yes|-y) YES=1 ;;
    --name|--zone|--project|--accelerator|--version|--config|--workdir|--data-dir|--multi-host|--run-name|--backend)
      need_value "$1" $#
      case "$1" in
        --name) TPU_NAME=$2 ;; --zone) ZONE=$2 ;; --project) PROJECT=$2 ;;
        --accelerator) ACCELERATOR=$2 ;; --version) VERSION=$2 ;; --config) CONFIG=$2 ;;
        --workdir) WORKDIR=$2 ;; --data-dir) DATA_DIR=$2 ;; --multi-host) MULTI_HOST=$2 ;;
        --run-name) RUN_NAME=$2 ;; --backend) BACKEND=$2 ;;
      esac
      shift ;;
    --name=*) TPU_NAME=${1#*=} ;;
    --zone=*) ZONE=${1#*=} ;;
    --project=*) PROJECT=${1#*=} ;;
    --accelerator=*) ACCELERATOR=${1#*=} ;;
    --version=*) VERSION=${1#*=} ;;
    --config=*) CONFIG=${1#*=} ;;
    --workdir=*) WORKDIR=${1#*=} ;;
    --data-dir=*) DATA_DIR=${1#*=} ;;
    --multi-host=*) MULTI_HOST=${1#*=} ;;
    --run-name=*) RUN_NAME=${1#*=} ;;
    --backend=*) BACKEND=${1#*=} ;;
    --config.*) EXTRA+=("$1") ;;  # a config override: for the binaries
    --) shift; EXTRA+=("$@"); break ;;
    -*) die "unknown option $1 (binary flags go after --; see -h)" ;;
    *) POSITIONAL+=("$1") ;;
  esac
  shift
done
if [ ${#POSITIONAL[@]} -gt 0 ]; then
  [ "$SUBCOMMAND" = run ] || die "$SUBCOMMAND takes no positional arguments (got ${POSITIONAL[*]})"
  [ ${#POSITIONAL[@]} -le 2 ] || die "run takes at most CONFIG and WORKDIR as positional arguments"
  CONFIG=${POSITIONAL[0]}
  if [ ${#POSITIONAL[@]} = 2 ]; then WORKDIR=${POSITIONAL[1]}; fi
fi

# Multi-host or not, from the accelerator type: the number after the dash
# counts TensorCores (v2-v4, v5p) or chips (v5e "v5litepod", v6e); either way
# one host serves at most 8, so more than 8 means a pod slice with several hosts.
if [ -z "$MULTI_HOST" ]; then
  size=${ACCELERATOR##*-}
  case "$size" in
    ''|*[!0-9]*) die "cannot tell the slice size from ACCELERATOR=$ACCELERATOR; pass --multi-host 0 or 1" ;;
  esac
  if [ "$size" -gt 8 ]; then MULTI_HOST=1; else MULTI_HOST=0; fi
fi
case "$MULTI_HOST" in 0|1) ;; *) die "--multi-host takes 0 or 1" ;; esac
if [ -z "$BACKEND" ]; then
  if [ "$MULTI_HOST" = 1 ]; then BACKEND=jax; else BACKEND=tensorflow; fi
fi
case "$BACKEND" in tensorflow|jax) ;; *) die "--backend takes tensorflow or jax, not '$BACKEND'" ;; esac
if [ -z "$VERSION" ]; then
  if [ "$BACKEND" = jax ]; then
    VERSION=$(jax_image "$ACCELERATOR")
    [ -n "$VERSION" ] || die "no known JAX image for ACCELERATOR=$ACCELERATOR (v2-v4, v5litepod, v5p, v6e are):" \
                             "pass --version (gcloud compute tpus tpu-vm versions list --zone=ZONE)"
  elif [ "$MULTI_HOST" = 1 ]; then VERSION="tpu-vm-tf-$TF_VERSION-pod-pjrt"
  else VERSION="tpu-vm-tf-$TF_VERSION-pjrt"; fi
fi
QUEUED_RESOURCE=${QUEUED_RESOURCE:-$TPU_NAME-qr}

if [ -z "$ZONE" ]; then
  if [ "$DRY_RUN" = 1 ]; then
    echo "# (ZONE is not set: shown as <ZONE>; set ZONE or --zone)"
    ZONE="<ZONE>"
  else
    die "set the zone: --zone ZONE or ZONE=... (e.g. us-central2-b for v4, europe-west4-a for v3)"
  fi
fi
if [ "$DRY_RUN" = 0 ] && ! command -v gcloud >/dev/null 2>&1; then
  die "gcloud is not installed (or not on PATH): install the Google Cloud CLI
  (https://cloud.google.com/sdk/docs/install), run \`gcloud auth login\`, or use --dry-run to see the commands."
fi

COMMON=("--zone=$ZONE")
if [ -n "$PROJECT" ]; then COMMON+=("--project=$PROJECT"); fi

# The run's name on the VM (log and pid files): the last part of WORKDIR.
run_name() {
  if [ -n "$RUN_NAME" ]; then printf '%s' "$RUN_NAME"; return; fi
  [ -n "$WORKDIR" ] || die "$SUBCOMMAND needs --workdir (or WORKDIR=..., or --run-name)"
  local base=${WORKDIR%/}
  base=${base##*/}
  printf '%s' "$base" | tr -c 'A-Za-z0-9_.-' '_'
}

describe_slice() {
  echo "# TPU $TPU_NAME: $ACCELERATOR in $ZONE${PROJECT:+ (project $PROJECT)}," \
       "$([ "$MULTI_HOST" = 1 ] && echo "multi-host pod slice" || echo "single host"), software $VERSION," \
       "Keras backend $BACKEND"
}

# --- subcommands ------------------------------------------------------------------
cmd_create() {
  describe_slice
  if [ "$SPOT" = 1 ]; then
    echo "# --spot: a Spot TPU costs much less but can be preempted at any time; a preempted"
    echo "#   TPU VM has to be deleted and created again (its disk is gone). Keep WORKDIR on"
    echo "#   gs://: after delete / create / copy / run the job resumes from its checkpoint."
  fi
  if [ "$QUEUED" = 1 ]; then
    echo "# --queued: the request waits in a queue until capacity is free (state"
    echo "#   WAITING_FOR_RESOURCES -> PROVISIONING -> ACTIVE); then the TPU VM $TPU_NAME exists."
    echo "#   Other provisioning flags: --reserved (a reservation), --guaranteed; the alpha"
    echo "#   track also has --best-effort (gcloud alpha compute tpus queued-resources create)."
    local args=(gcloud compute tpus queued-resources create "$QUEUED_RESOURCE" "--node-id=$TPU_NAME"
                "${COMMON[@]}" "--accelerator-type=$ACCELERATOR" "--runtime-version=$VERSION")
    if [ "$SPOT" = 1 ]; then args+=(--spot); fi
    run "${args[@]}"
    echo "# Wait for ACTIVE, then: launch/tpu_vm.sh copy"
    show gcloud compute tpus queued-resources describe "$QUEUED_RESOURCE" "${COMMON[@]}" "--format=value(state.state)"
  else
    local args=(gcloud compute tpus tpu-vm create "$TPU_NAME" "${COMMON[@]}"
                "--accelerator-type=$ACCELERATOR" "--version=$VERSION")
    if [ "$SPOT" = 1 ]; then args+=(--spot); fi
    run "${args[@]}"
    echo "# Next: launch/tpu_vm.sh copy"
  fi
}

STAGE=""
cmd_copy() {
  describe_slice
  local stage
  if [ "$DRY_RUN" = 1 ]; then
    stage="<temporary directory>"
    echo "# stage the code: the repository's tracked and untracked-but-not-ignored files"
    echo "#   (git ls-files --cached --others --exclude-standard) from $REPO"
  else
    stage=$(mktemp -d "${TMPDIR:-/tmp}/figs_tf_stage.XXXXXX")
    STAGE=$stage
    trap 'rm -rf "$STAGE"' EXIT
    mkdir -p "$stage/$REMOTE_DIR"
    if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
      (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
         | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
         | tar --null -T - -cf -) | tar -C "$stage/$REMOTE_DIR" -xf -
    else
      tar -C "$REPO" --exclude=.git --exclude='.venv*' --exclude=runs --exclude='__pycache__' \
        --exclude='*.egg-info' -cf - . | tar -C "$stage/$REMOTE_DIR" -xf -
    fi
    echo "# staged $(find "$stage/$REMOTE_DIR" -type f | wc -l) files from $REPO in $stage/$REMOTE_DIR"
  fi
  echo "# copy them to ~/$REMOTE_DIR on every worker (files deleted from the repository stay there)"
  run gcloud compute tpus tpu-vm scp --recurse "$stage/$REMOTE_DIR" "$TPU_NAME:~/" "${COMMON[@]}" --worker=all
  if [ "$BACKEND" = jax ]; then
    echo "# install on every worker: figs_tf with JAX for TPUs (pip install -e '.[jax]' 'jax[tpu]')"
  else
    echo "# install on every worker: figs_tf and its requirements, keeping the image's TensorFlow"
    echo "#   (pip install --no-deps -e . ; pip install <setup.py requirements except tensorflow>)"
  fi
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${COMMON[@]}" --worker=all \
    "--command=cd $REMOTE_DIR && bash launch/tpu_vm.sh on-vm-install $BACKEND"
}

cmd_run() {
  describe_slice
  [ -n "$WORKDIR" ] || die "run needs --workdir gs://BUCKET/RUN (or WORKDIR=...)"
  if [ -n "$CONFIG" ] && [[ "$CONFIG" != /* ]] && [ ! -f "$REPO/${CONFIG%%:*}" ]; then
    die "no config file ${CONFIG%%:*} in $REPO (configs are given relative to the repository, which copy puts on the VM)"
  fi
  case "$CONFIG" in
    /*) echo "# warning: CONFIG=$CONFIG is an absolute path; it must exist on the TPU VM." \
             "Configs inside the repository are best given relative to it (experiments/...)." ;;
  esac
  local mode=single tpu=local pjrt=0 workers=0
  case "$VERSION" in *pjrt*) pjrt=1 ;; esac
  if [ "$MULTI_HOST" = 1 ]; then
    [[ "$WORKDIR" == gs://* ]] || die "a multi-host slice needs WORKDIR on gs:// (got '$WORKDIR')"
    [[ "$DATA_DIR" == gs://* ]] || die "a multi-host slice needs DATA_DIR on gs:// (got '${DATA_DIR:-<unset>}'):" \
      "every host reads its share of the data; see WORKSPACE.md for preparing it"
  else
    if [[ "$WORKDIR" != gs://* ]]; then
      echo "# warning: WORKDIR=$WORKDIR is on the TPU VM's disk: it is lost with the VM (deletion,"
      echo "#   Spot preemption), and so is the resume point. Prefer gs://BUCKET/RUN."
    fi
    if [ -n "$DATA_DIR" ] && [[ "$DATA_DIR" != gs://* ]]; then
      echo "# note: DATA_DIR=$DATA_DIR must exist on the TPU VM."
    fi
  fi
  if [ "$BACKEND" = jax ]; then
    mode=jax
    workers=all
  elif [ "$MULTI_HOST" = 1 ]; then
    mode=pod
    tpu=$TPU_NAME
  fi
  local name
  name=$(run_name)
  # --config first: ml_collections refuses --config.KEY overrides before it.
  local args=()
  if [ -n "$CONFIG" ]; then args+=("--config=$CONFIG"); fi
  args+=("--workdir=$WORKDIR" "--config.strategy=tpu" "--config.tpu=$tpu")
  if [ -n "$DATA_DIR" ]; then args+=("--config.data_dir=$DATA_DIR"); fi
  if [ "$mode" = jax ] && [ "$MULTI_HOST" = 1 ]; then args+=("--num_processes=auto"); fi
  args+=(${EXTRA[@]+"${EXTRA[@]}"})
  local data_warning
  data_warning=$(cd "$REPO" && manual_dataset_warning 0 "$CONFIG" "${args[@]}")
  if [ -n "$data_warning" ]; then
    if [ "$DRY_RUN" = 0 ]; then die "$data_warning With this script: --data-dir DIR."; fi
    echo "# warning: $data_warning With this script: --data-dir DIR."
  fi
  if [ "$mode" = jax ]; then
    echo "# on every worker, in ~/$REMOTE_DIR, in the background (log ~/$REMOTE_LOGS/$name.log on each;"
    echo "#   worker 0's has the results):"
    echo "#   KERAS_BACKEND=jax  (one process per host; JAX joins them through the TPU metadata)"
  else
    echo "# on worker 0, in ~/$REMOTE_DIR, in the background (log ~/$REMOTE_LOGS/$name.log):"
  fi
  if [ "$mode" = pod ]; then
    echo "#   TPU_LOAD_LIBRARY=0 TPU_NAME=$TPU_NAME  (one TensorFlow client drives the whole pod)"
  elif [ "$mode" = single ] && [ "$pjrt" = 1 ]; then
    echo "#   NEXT_PLUGGABLE_DEVICE_USE_C_API=true TF_PLUGGABLE_DEVICE_LIBRARY_PATH=/lib/libtpu.so  (PJRT image)"
  fi
  echo "#   $(show python3 -m figs_tf.train.search "${args[@]}" | cut -c3-)"
  echo "#   $(show python3 -m figs_tf.train.retrain "${args[@]}" | cut -c3-)"
  local remote arg
  remote="cd $REMOTE_DIR && bash launch/tpu_vm.sh on-vm-run $(quote "$name") $mode $pjrt $(quote "$tpu") --"
  for arg in "${args[@]}"; do remote+=" $(quote "$arg")"; done
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${COMMON[@]}" "--worker=$workers" "--command=$remote"
  echo "# Follow it:   launch/tpu_vm.sh logs --follow --run-name $(quote "$name") --name $(quote "$TPU_NAME") --zone $(quote "$ZONE")"
  echo "# TensorBoard: tensorboard --logdir $(quote "$WORKDIR")"
  echo "# After a preemption: delete, create, copy, then this same run command (it resumes)."
}

cmd_logs() {
  local name lines=200
  name=$(run_name)
  local tail_args="-n $lines"
  if [ "$FOLLOW" = 1 ]; then tail_args+=" -F"; fi
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${COMMON[@]}" --worker=0 \
    "--command=tail $tail_args $REMOTE_LOGS/$(quote "$name").log"
  if [ -n "$WORKDIR" ]; then
    echo "# Progress is also in $WORKDIR/{search,retrain}/ (TensorBoard: tensorboard --logdir $(quote "$WORKDIR"))"
  fi
}

cmd_status() {
  if [ "$QUEUED" = 1 ]; then
    run gcloud compute tpus queued-resources describe "$QUEUED_RESOURCE" "${COMMON[@]}" "--format=value(state.state)"
  fi
  run gcloud compute tpus tpu-vm describe "$TPU_NAME" "${COMMON[@]}" "--format=value(state,health,acceleratorType,runtimeVersion)"
  echo "# READY = usable; PREEMPTED = Spot capacity taken back: delete, create, copy, run to resume."
}

cmd_delete() {
  local quiet=()
  if [ "$YES" = 1 ]; then quiet=(--quiet); fi
  echo "# deletes $TPU_NAME and its disk (anything written on the VM, ~/$REMOTE_LOGS included);"
  echo "#   gs:// workdirs and data are not touched."
  if [ "$QUEUED" = 1 ]; then
    run gcloud compute tpus queued-resources delete "$QUEUED_RESOURCE" "${COMMON[@]}" --force ${quiet[@]+"${quiet[@]}"}
  else
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${COMMON[@]}" ${quiet[@]+"${quiet[@]}"}
  fi
}

"cmd_$SUBCOMMAND"
if [ "$DRY_RUN" = 1 ]; then echo "(--dry-run: nothing was run)"; fi
