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
PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-}
WORKDIR=${WORKDIR:-}
NAME=${NAME:-}
ONLY=""
DRY_RUN=0
EXTRA=()

need_value() {  # need_value FLAG NUMBER_OF_REMAINING_ARGS
  if [ "$2" -lt 2 ]; then echo "local.sh: $1 needs a value (see -h)" >&2; exit 2; fi
}

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

case "$ONLY" in
  "") PHASES=(search retrain) ;;
  search|retrain) PHASES=("$ONLY") ;;
  *) echo "local.sh: --only takes search or retrain, not '$ONLY'" >&2; exit 2 ;;
esac

# Quotes one word for display only when it needs it, so the printed commands
# can be pasted into a shell as they are.
quote() {
  case "$1" in
    ''|*[!A-Za-z0-9_./:=+,@%^-]*) printf "'%s'" "${1//\'/\'\\\'\'}" ;;
    *) printf '%s' "$1" ;;
  esac
}
show() {
  local word line="+"
  for word in "$@"; do line+=" $(quote "$word")"; done
  echo "$line"
}

# The run name: experiments/cifar10.py:resnet -> cifar10_resnet.
if [ -z "$NAME" ]; then
  if [ -n "$CONFIG" ]; then
    file=${CONFIG%%:*}
    NAME=$(basename "$file" .py)
    if [ "$CONFIG" != "$file" ]; then NAME+="_${CONFIG#*:}"; fi
    NAME=$(printf '%s' "$NAME" | tr -c 'A-Za-z0-9_.-' '_')
  else
    NAME=default
  fi
fi
WORKDIR=${WORKDIR:-runs/$NAME}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "local.sh: no Python interpreter '$PYTHON' (set PYTHON=...)" >&2
  exit 1
fi

# A config file that is not there fails later inside absl; say it now.
if [ -n "$CONFIG" ] && [[ "$CONFIG" != *://* ]] && [ ! -f "${CONFIG%%:*}" ]; then
  echo "local.sh: no config file ${CONFIG%%:*} (relative to $(pwd))" >&2
  if [ "$DRY_RUN" = 0 ]; then exit 2; fi
fi

# --config must come before any --config.KEY override (ml_collections checks the order).
ARGS=()
if [ -n "$CONFIG" ]; then ARGS+=("--config=$CONFIG"); fi
ARGS+=("--workdir=$WORKDIR")
ARGS+=(${EXTRA[@]+"${EXTRA[@]}"})

# Importable from here? (find_spec only: nothing is imported, so this is quick.)
missing=$("$PYTHON" - <<'PY'
import importlib.util
modules = ["figs_tf", "tensorflow", "keras", "tensorflow_datasets", "ml_collections", "absl"]
print(" ".join(m for m in modules if importlib.util.find_spec(m) is None))
PY
)

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
  show "$PYTHON" -m "figs_tf.$phase" "${ARGS[@]}"
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
  echo "== figs_tf.$phase ($(date '+%F %T'))"
  show "$PYTHON" -m "figs_tf.$phase" "${ARGS[@]}"
  "$PYTHON" -m "figs_tf.$phase" "${ARGS[@]}"
done
echo
echo "== done ($(date '+%F %T')). Results in $WORKDIR; TensorBoard: tensorboard --logdir $(quote "$WORKDIR")"
