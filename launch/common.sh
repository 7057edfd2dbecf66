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
