#!/usr/bin/env bash
# Runs a FiGS search and then the retraining of its exported architecture on
# this machine (CPU, or whatever TensorFlow finds), in one workdir.
#
#   launch/local.sh                                   # embedded default config -> runs/default
#   launch/local.sh --config experiments/fashion_mnist.py:one_shot
#   launch/local.sh --workdir /tmp/fm --config.strength=5e-6 --config.search.epochs=2
#   launch/local.sh --dry-run ...                     # print the commands, run nothing
#
# Rerunning the same command resumes an interrupted phase from its checkpoint;
# a finished phase (summary.json present) only prints its summary. WORKSPACE.md
# describes what lands in the workdir.
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
  --dry-run                print what would run and stop.
  -h, --help               this message.

Environment: PYTHON (default python3).
Installs nothing, except `pip install -e <repo>` when figs_tf or one of its
dependencies cannot be imported (it says so first).
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
    --) shift; EXTRA+=("$@"); break ;;
    *) EXTRA+=("$1") ;;
  esac
  shift
done

phases_for "$ONLY"
NAME=${NAME:-$(default_run_name "$CONFIG")}
WORKDIR=${WORKDIR:-runs/$NAME}
require_python
check_config_file "$CONFIG" "$DRY_RUN"
binary_args "$CONFIG" "$WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"}
missing=$(missing_python_modules)

echo "== FiGS local run"
echo "   config:  ${CONFIG:-embedded default (figs_tf/train/default_config.py)}"
echo "   workdir: $WORKDIR"
echo "   python:  $(command -v "$PYTHON")"
for phase in "${PHASES[@]}"; do
  case "$WORKDIR" in
    *://*) ;;  # not looked into: the binaries say whether they resume
    *)
      if [ -f "$WORKDIR/$phase/summary.json" ]; then
        echo "   $phase: already finished in $WORKDIR/$phase (it will only print its summary)"
      elif [ -f "$WORKDIR/$phase/checkpoint/training_metadata.json" ]; then
        echo "   $phase: will resume from $WORKDIR/$phase/checkpoint"
      fi ;;
  esac
done
echo
echo "The commands:"
if [ -n "$missing" ]; then
  echo "# figs_tf is not importable here (missing: $missing): installing the repository first"
  show "$PYTHON" -m pip install -e "$REPO"
fi
for phase in "${PHASES[@]}"; do
  show "$PYTHON" -m "$(phase_module "$phase")" "${ARGS[@]}"
done

if [ "$DRY_RUN" = 1 ]; then
  echo
  echo "(--dry-run: nothing was run)"
  exit 0
fi

if [ -n "$missing" ]; then
  echo
  echo "== pip install -e $REPO"
  "$PYTHON" -m pip install -e "$REPO"
fi
for phase in "${PHASES[@]}"; do
  echo
  echo "== $(phase_module "$phase") ($(date '+%F %T'))"
  show "$PYTHON" -m "$(phase_module "$phase")" "${ARGS[@]}"
  "$PYTHON" -m "$(phase_module "$phase")" "${ARGS[@]}"
done
echo
echo "== done ($(date '+%F %T')). Results in $WORKDIR; TensorBoard: tensorboard --logdir $(quote "$WORKDIR")"
