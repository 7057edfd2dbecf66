# shellcheck shell=bash
# Shared by launch/local.sh, launch/gpu.sh and launch/tpu_vm.sh (sourced, not run):
# quoting for display, argument checks, the run name, the Python checks and the
# binaries' arguments. The caller sets SCRIPT (its name, for messages) first.
#
#   SCRIPT=local.sh
#   . "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# The training binaries, one module per phase, in the order they run.
PHASE_MODULE_PREFIX=figs_tf.train
# Modules the binaries import (find_spec only, so the check is quick).
REQUIRED_MODULES="figs_tf tensorflow keras tensorflow_datasets ml_collections absl"

die() { echo "$SCRIPT: $*" >&2; exit 2; }

need_value() {  # need_value FLAG NUMBER_OF_REMAINING_ARGS
  if [ "$2" -lt 2 ]; then die "$1 needs a value (see -h)"; fi
}

# Quotes one word for display only when it needs it, so the printed commands
# can be pasted into a shell as they are.
quote() {
  case "$1" in
    ''|*[!A-Za-z0-9_./:=+,@%^-]*) printf "'%s'" "${1//\'/\'\\\'\'}" ;;
    *) printf '%s' "$1" ;;
  esac
}

show() {  # prints a command as "+ word word ..."
  local word line="+"
  for word in "$@"; do line+=" $(quote "$word")"; done
  echo "$line"
}

phase_module() {  # phase_module search -> figs_tf.train.search
  printf '%s.%s' "$PHASE_MODULE_PREFIX" "$1"
}

phases_for() {  # phases_for ONLY -> sets PHASES (search retrain, or the one asked for)
  # shellcheck disable=SC2034  # PHASES is the callers'
  case "$1" in
    "") PHASES=(search retrain) ;;
    search|retrain) PHASES=("$1") ;;
    *) die "--only takes search or retrain, not '$1'" ;;
  esac
}

default_run_name() {  # default_run_name CONFIG -> experiments/cifar10.py:resnet gives cifar10_resnet
  local config=$1 file name
  if [ -z "$config" ]; then printf 'default'; return; fi
  file=${config%%:*}
  name=$(basename "$file" .py)
  if [ "$config" != "$file" ]; then name+="_${config#*:}"; fi
  printf '%s' "$name" | tr -c 'A-Za-z0-9_.-' '_'
}

require_python() {
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "$SCRIPT: no Python interpreter '$PYTHON' (set PYTHON=...)" >&2
    exit 1
  fi
}

# A config file that is not there fails later inside absl; say it now (a dry run goes on).
check_config_file() {  # check_config_file CONFIG DRY_RUN
  if [ -n "$1" ] && [[ "$1" != *://* ]] && [ ! -f "${1%%:*}" ]; then
    echo "$SCRIPT: no config file ${1%%:*} (relative to $(pwd))" >&2
    if [ "$2" = 0 ]; then exit 2; fi
  fi
}

missing_python_modules() {  # prints the required modules that $PYTHON cannot find
  # shellcheck disable=SC2086  # one argument per module name
  "$PYTHON" - $REQUIRED_MODULES <<'PY'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
PY
}

# --config must come before any --config.KEY override (ml_collections checks the order).
binary_args() {  # binary_args CONFIG WORKDIR [MORE ARGS...] -> sets ARGS
  ARGS=()
  if [ -n "$1" ]; then ARGS+=("--config=$1"); fi
  ARGS+=("--workdir=$2")
  shift 2
  ARGS+=("$@")
}

# Datasets that tfds cannot download: they must be prepared by hand (WORKSPACE.md, "Preparing data").
MANUAL_DATASETS="imagenet2012"

run_dataset() {  # run_dataset CONFIG ARGS... -> the dataset the run reads (a --config.dataset= override wins)
  local config=$1 arg dataset=""
  shift
  for arg in "$@"; do
    case "$arg" in --config.dataset=*) dataset=${arg#*=} ;; esac
  done
  if [ -z "$dataset" ] && [ -n "$config" ] && [ -f "${config%%:*}" ]; then
    # The ImageNet configs call default_config.paper_imagenet (or name the dataset); reading
    # the file is enough and imports nothing (loading the config would import TensorFlow).
    if grep -qE 'paper_imagenet|imagenet2012' "${config%%:*}"; then dataset=imagenet2012; fi
  fi
  printf '%s' "$dataset"
}

has_data_dir() {  # has_data_dir ARGS... -> status 0 when a --config.data_dir= is passed
  local arg
  for arg in "$@"; do
    case "$arg" in --config.data_dir=*) return 0 ;; esac
  done
  return 1
}

# Prints why a run of a manually prepared dataset without data_dir will fail, or nothing.
# The local default (tfds's data_dir) counts when the dataset is there.
manual_dataset_warning() {  # manual_dataset_warning LOCAL(0|1) CONFIG ARGS...
  local local_default=$1 config=$2 dataset
  shift 2
  dataset=$(run_dataset "$config" "$@")
  case " $MANUAL_DATASETS " in *" $dataset "*) ;; *) return 0 ;; esac
  if has_data_dir "$@"; then return 0; fi
  if [ "$local_default" = 1 ] && [ -d "${TFDS_DATA_DIR:-$HOME/tensorflow_datasets}/$dataset" ]; then return 0; fi
  echo "$dataset needs a data_dir: tfds cannot download it, so the run fails when it reads the data. Prepare it" \
       "once (WORKSPACE.md, \"Preparing data\") and pass --config.data_dir=DIR (gs://BUCKET/tensorflow_datasets on TPUs)."
}
