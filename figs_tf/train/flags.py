"""The command line of the training binaries, defined once for both: flags, help, user errors.

    figs-search --config=experiments/one_shot_imagenet.py:A --config.strength=1e-6 \
        --workdir=gs://bucket/run1
    figs-search --help                   # the binary's purpose and its flags, in a second
    figs-search --print_config [--config=...] [--config.KEY=VALUE ...]   # every key: value, type, range

`--config` is an ml_collections config file; `path.py:arg` passes `arg` to its
`get_config(arg)` (a variant), `--config.key=value` overrides a key. The config
is locked: an override of a key that does not exist is an error. Without
`--config` the embedded default (figs_tf/train/default_config.py) is used.

This module imports absl and ml_collections only: `figs_tf/train/startup.py`
parses the command line with it (`parse_command_line`) before keras and
TensorFlow are imported, so `--help` and a bad flag answer at once. A user
error (`figs_tf.train.errors.UserError`, or a flag absl or ml_collections
rejects) prints one short message on stderr and exits with status 2; the
traceback only with `--verbosity=1`.
"""

import ast
import logging as std_logging
import os
import sys
import textwrap
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from figs_tf.train import errors

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # figs_tf/

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_config.py")
# What each binary does, for --help (the modules' docstrings say it at length).
PURPOSES = {
    "figs-search": (
        "Architecture learning (FiGS AL): trains a supernet's weights and its channel gates under a "
        "parameter or FLOP cost and exports the per-layer widths it learned to "
        "<workdir>/search/architecture.json. A rerun of the same command resumes after a preemption."),
    "figs-retrain": (
        "Retraining: builds the architecture that figs-search exported (<workdir>/search/architecture.json, "
        "or --config.retrain.architecture) with fresh weights and trains it from scratch (or, with "
        "--config.retrain.init=inherited, from the search's weights; --config.retrain.teacher=search distils "
        "from the search model); writes <workdir>/retrain/model.keras. Run figs-search with the same --config "
        "and --workdir first."),
}
MODULES = {"figs-search": "figs_tf.train.search", "figs-retrain": "figs_tf.train.retrain"}
HELP_ARGUMENTS = ("-h", "-?", "--help", "--helpshort")

WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory (local or gs://) for checkpoints, the exported architecture, logs "
    "and TensorBoard; search and retrain share it. Required.")
PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the resolved config (every key with its value, type and allowed values) "
    "and exit; no --workdir needed.")
# Several processes (JAX backend; figs_tf/train/runtime.py). Unset: Keras's environment
# variables KERAS_DISTRIBUTION_JOB_ADDRESSES / _NUM_PROCESSES / _PROCESS_ID, else one process.
COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 when several processes train together (the same on "
    "every process; launch/local.sh --processes N picks a free 127.0.0.1 port).")
NUM_PROCESSES = flags.DEFINE_string(
    "num_processes", None, "How many processes train together (default 1), or 'auto' on a Cloud TPU slice, where "
    "JAX finds them itself. Needs KERAS_BACKEND=jax when more than 1.")
PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index, 0 .. num_processes - 1; process 0 writes the workdir.")
PEER_TIMEOUT_SECONDS = flags.DEFINE_integer(
    "peer_timeout_seconds", None, "Several processes: a process that sent no "
    "heartbeat for this many seconds is taken as lost (killed, host down or unreachable) and the others stop "
    "with an error, to be rerun to resume. Unset: figs_tf.train.runtime.DEFAULT_PEER_TIMEOUT_SECONDS (100, "
    "JAX's own heartbeat timeout).")
OWN_FLAGS = ("workdir", "config", "print_config")
PROCESS_FLAGS = ("coordinator_address", "num_processes", "process_id", "peer_timeout_seconds")
VERBOSITY_HELP = ("absl's log level: 1 also shows debug logs, every library's INFO lines and the traceback of "
                  "a user error (without it: one short message and exit status 2).")


def binary_name(argv=None):
    """`figs-search` or `figs-retrain`: this process's binary (from argv[0] or `python -m`)."""
    argv = sys.argv if argv is None else argv
    name = os.path.basename(argv[0]) if argv else ""
    if name in PURPOSES:
        return name
    module = sys.modules.get("__main__")
    spec = getattr(module, "__spec__", None)
    for binary, module_name in MODULES.items():
        if (spec is not None and spec.name == module_name) or module_name in getattr(sys, "orig_argv", ()):
            return binary
    return "figs-search"


def help_text(binary):
    """What `--help` prints: purpose, usage, this binary's flags, where the config keys are."""
    wrap = lambda text, indent: textwrap.fill(text, 100, initial_indent=indent, subsequent_indent=indent)  # noqa: E731

    def flag_lines(names):
        lines = []
        for name in names:
            flag = flags.FLAGS[name]
            default = "" if flag.default in (None, False) or name == "config" else f" (default {flag.default})"
            lines += [f"  --{name}", wrap(flag.help + default, "      ")]
        return lines

    return "\n".join([
        f"{binary}: {PURPOSES[binary]}", "",
        f"Usage: {binary} --workdir=DIR [--config=FILE.py[:VARIANT]] [--config.KEY=VALUE ...]",
        f"       {binary} --print_config [--config=FILE.py[:VARIANT]] [--config.KEY=VALUE ...]", "",
        "Flags:", *flag_lines(OWN_FLAGS), "  --verbosity", wrap(VERBOSITY_HELP, "      "), "",
        "Several processes (KERAS_BACKEND=jax; launch/local.sh, launch/gpu.sh and launch/tpu_vm.sh set these):",
        *flag_lines(PROCESS_FLAGS), "",
        "Config keys: `--print_config` lists every key with its value, type and allowed values; each key is",
        "explained in figs_tf/train/default_config.py, and experiments/*.py are ready configs (README,",
        "\"Training binaries\"). absl's own flags: --helpfull. Exit status: 0 done, 2 a user error (the message",
        "says what to change), 1 anything else.",
    ])


def user_error(binary, message, error=None):
    """Prints a user error on stderr (its message, one problem a line, and where help is) and exits 2.

    With --verbosity ≥ 1 (once the flags are parsed) the traceback of `error` comes first.
    """
    if error is not None and _verbose():
        traceback.print_exception(error)
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    sys.stderr.write(f"{binary}: error: " + "\n".join(lines) + "\n")
    sys.stderr.write(f"({binary} --help lists the flags, --print_config every config key; --verbosity=1 shows "
                     "the traceback.)\n")
    sys.stderr.flush()
    sys.exit(errors.EXIT_STATUS)


def _verbose():
    if flags.FLAGS.is_parsed():
        return (flags.FLAGS.verbosity or 0) >= 1
    return any(a.startswith("--verbosity=") and a.split("=", 1)[1] not in ("0", "-1") for a in sys.argv)


_PARSED = []


def parse_command_line(argv=None):
    """Parses this binary's command line (absl flags and the config file) before any heavy import.

    `--help` prints `help_text` and exits 0; a flag absl or ml_collections
    rejects (an unknown config key, a value of the wrong type, a config file
    that is missing or fails to load) is a user error (status 2). Returns the
    arguments absl leaves (the program name). Parses once per process.
    """
    argv = list(sys.argv if argv is None else argv)
    binary = binary_name(argv)
    if _PARSED:
        return _PARSED[0]
    if any(argument in HELP_ARGUMENTS for argument in argv[1:]):
        try:
            print(help_text(binary), flush=True)
        except BrokenPipeError:  # `figs-search --help | head`: the reader left
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    app.define_help_flags()  # --helpfull stays absl's
    try:
        remaining = flags.FLAGS(argv)
        CONFIG.value.to_dict  # pylint: disable=pointless-statement  # a config file that failed to load raises
    except flags.Error as error:
        user_error(binary, _flag_error_message(error), error)
    except (AttributeError, KeyError) as error:  # ml_collections: an override of a key the config lacks
        user_error(binary, _unknown_key_message(error), error)
    except OSError as error:  # ml_collections: the config file does not exist
        user_error(binary, _config_file_message(error), error)
    if len(remaining) > 1:
        user_error(binary, f"unexpected argument(s) {remaining[1:]}: every setting is a flag (--name=value), "
                           f"e.g. --workdir=DIR.")
    if not PRINT_CONFIG.value and not WORKDIR.value:
        user_error(binary, "--workdir is required: the directory (local or gs://) where this run writes; "
                           "search and retrain share it.")
    _PARSED.append(remaining)
    return remaining


def _flag_error_message(error):
    message = str(error)
    if "Error whilst parsing config file" in message:  # the config file itself raised: name its last line
        last = [line for line in message.splitlines() if line.strip()][-1].strip()
        value = message.split(":", 1)[0]
        return f"{value}: the config file raised {last}"
    return message


def _unknown_key_message(error):
    text = str(error)
    try:
        text = ast.literal_eval(text)  # KeyError's repr inside AttributeError: "'epoch'\nDid you mean ..."
    except (ValueError, SyntaxError):
        pass
    key, _, suggestion = str(text).partition("\n")
    overrides = [a.split("=", 1)[0] for a in sys.argv[1:] if a.startswith("--config.")]
    overrides = [a for a in overrides if key.strip("'\"") in a[len("--config."):].split(".")] or overrides
    return (f"no config key {key} (in {', '.join(overrides) or 'a --config.KEY override'}). "
            f"{suggestion or 'Check the spelling.'}")


def _config_file_message(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (f"cannot load the config file: {lines[-1] if lines else error}\n"
            "Pass --config=PATH.py (or PATH.py:VARIANT) of an existing file, e.g. experiments/fashion_mnist.py.")


def _define_config_flag():
    """--config. ml_collections reads the --config.KEY overrides of sys.argv already here, so an
    override of a key the config lacks is a user error at definition."""
    try:
        return config_flags.DEFINE_config_file(
            "config", DEFAULT_CONFIG, "Training config file (path.py or path.py:variant); override a key with "
            "--config.KEY=VALUE (e.g. --config.search.epochs=3). Default: the embedded Fashion-MNIST config.",
            lock_config=True)
    except (AttributeError, KeyError) as error:
        user_error(binary_name(), _unknown_key_message(error), error)


CONFIG = _define_config_flag()


class OwnInfoOnly(std_logging.Filter):
    """Passes warnings and errors of every library, but INFO lines only from figs_tf."""

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or record.pathname.startswith(PACKAGE_DIR)


def quiet_logging():
    """The binaries' status lines (resuming, already finished, processes) at INFO; the INFO
    logs of tfds, TensorFlow and JAX would bury the progress, so they show only when
    `--verbosity` is given."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.INFO)
        logging.get_absl_handler().addFilter(OwnInfoOnly())


def process_settings():
    """The processes of this run, from the flags or else Keras's environment variables."""
    from figs_tf.train import runtime  # pylint: disable=import-outside-toplevel  # keras: after the flags
    return runtime.ProcessSettings.from_environment(COORDINATOR_ADDRESS.value, NUM_PROCESSES.value,
                                                    PROCESS_ID.value, PEER_TIMEOUT_SECONDS.value)


def print_config(config):
    """`--print_config`: the resolved config, then its problems as a user error (status 2) if any."""
    from figs_tf.train import config_checks  # pylint: disable=import-outside-toplevel  # the registries: keras
    print(config_checks.describe(config))
    config_checks.check(config)


def main_for(run):
    """The absl `main` of a binary whose whole work is `run(config, workdir, processes=...)`.

    A `figs_tf.train.errors.UserError` from `run` becomes one short message and
    exit status 2 (`user_error`).

    Example:

    >>> app.run(flags.main_for(search.run), flags_parser=flags.parse_command_line)  # `figs-search`
    """
    def main(argv):
        del argv
        quiet_logging()
        binary = binary_name()
        try:
            if PRINT_CONFIG.value:
                print_config(CONFIG.value)
                return
            run(CONFIG.value, WORKDIR.value, processes=process_settings())
        except errors.UserError as error:
            user_error(binary, str(error), error)
    return main


def run_binary(run):
    """A console script's body: flags first (`parse_command_line`), then `main_for(run)`."""
    app.run(main_for(run), flags_parser=parse_command_line)
