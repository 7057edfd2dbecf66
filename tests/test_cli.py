"""The binaries as a user meets them: --help, --print_config, user errors, output sent to a pipe.

Through the installed console scripts (`figs-search`, `figs-retrain` next to
this Python; `python -m` where they are not installed), with this checkout on
PYTHONPATH and TF_CPP_MIN_LOG_LEVEL unset, as for a user.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

import ml_collections
import pytest

from figs_tf.train import default_config
from figs_tf.train import loop

pytestmark = pytest.mark.tensorflow_only
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = {"figs-search": "figs_tf.train.search", "figs-retrain": "figs_tf.train.retrain"}
# The README's first command at a few steps: 256 examples, batch 128, a tiny supernet.
TINY = ["--config.space_kwargs.widths=(8, 16, 16)", "--config.train_examples=256", "--config.eval_examples=500",
        "--config.search.epochs=1", "--config.search.recalibrated_eval=False", "--config.retrain.epochs=1"]


def command(binary):
    script = os.path.join(os.path.dirname(sys.executable), binary)
    return [script] if os.path.exists(script) else [sys.executable, "-m", MODULES[binary]]


def run(binary, *args, env=None):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    environment.update(env or {})
    start = time.perf_counter()
    result = subprocess.run([*command(binary), *args], capture_output=True, text=True, timeout=300,
                            env=environment)
    result.seconds = time.perf_counter() - start
    return result


@pytest.mark.parametrize("binary, purpose", [("figs-search", "Architecture learning"),
                                             ("figs-retrain", "Retraining")])
def test_help_comes_before_tensorflow_and_lists_the_binarys_own_flags_first(binary, purpose):
    result = run(binary, "--help", env={"PYTHONPROFILEIMPORTTIME": "1"})  # each import, on stderr
    print(f"`{binary} --help`: {result.seconds:.2f} s wall (with import timing on)")
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    assert "absl.flags" in imported  # the timing worked
    assert not {"tensorflow", "keras", "jax"} & {name.split(".")[0] for name in imported}
    text = result.stdout
    assert text.startswith(f"{binary}: {purpose}")
    positions = [text.index(f"  --{flag}\n") for flag in ("workdir", "config", "print_config", "coordinator_address")]
    assert positions == sorted(positions)  # its own flags, then the process flags
    assert "figs_tf/train/default_config.py" in text and "--helpfull" in text


def _flat_keys(config, prefix=""):
    """Every leaf key of a ConfigDict, dotted: the independent list --print_config must cover."""
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _flat_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_print_config_lists_every_key_with_its_value_type_and_range():
    result = run("figs-search", "--print_config", "--config.strength=5e-06", "--config.search.epochs=3")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:-1]}
    config = default_config.get_config()
    assert set(rows) == set(_flat_keys(config))
    assert rows["strength"].split()[1:3] == ["5e-06", "float"] and "λ ≥ 0" in rows["strength"]
    assert rows["search.epochs"].split()[1] == "3.0"
    assert rows["retrain.epochs"].split()[1] == repr(config.retrain.epochs)
    assert "'fashion_mnist', 'cifar10', 'imagenet2012'" in rows["dataset"]  # the choices that are checked
    assert "float or None" in rows["target"]
    assert result.stderr == ""


def _lines(text):
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    """A 2-epoch tiny search through `figs-search … | cat` (stdout a pipe); its result and workdir."""
    workdir = str(tmp_path_factory.mktemp("cli") / "run")
    flags = [f"--workdir={workdir}", *TINY, "--config.search.steps_per_checkpoint=1"]  # 2 steps: 2 Keras epochs
    result = run("figs-search", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, workdir, flags


def test_output_to_a_pipe_is_one_line_per_epoch(finished_search):
    result, _, _ = finished_search
    assert "\r" not in result.stdout and "\b" not in result.stdout
    assert re.findall(r"^Epoch (\d+)/2$", result.stdout, re.M) == ["1", "2"]
    assert len(re.findall(r"^1/1 - .*loss: ", result.stdout, re.M)) == 2  # Keras's verbose=2 line per epoch
    assert "Kept / total" in result.stdout  # figs_tf.summary after the search


def test_progress_auto_is_the_bar_on_a_terminal():
    class Terminal:
        @staticmethod
        def isatty():
            return True
    assert loop.keras_verbosity("auto", Terminal()) == 1
    assert loop.keras_verbosity("auto", open(os.devnull, "w")) == 2
    assert loop.keras_verbosity("bar", open(os.devnull, "w")) == 1


def _resumable(source, directory):
    """A copy of a finished search workdir that looks preempted after its last epoch."""
    shutil.copytree(source, directory)
    os.remove(os.path.join(directory, "search", "summary.json"))
    return directory


def _written_by_two_processes(directory):
    for path in glob.glob(os.path.join(directory, "search", "checkpoint", "step_*.json")):
        with open(path) as f:
            state = json.load(f)
        state["processes"] = 2
        with open(path, "w") as f:
            json.dump(state, f)
    return directory


USER_ERRORS = {
    # name: (binary, flags given the tmp dir and the finished search's workdir and flags, words of the message)
    "unknown key": ("figs-search", lambda d, w, f: [f"--workdir={d}", "--config.search.epoch=3"],
                    ['no config key', 'Did you mean "epochs"']),
    "bad value": ("figs-search", lambda d, w, f: [f"--workdir={d}", "--config.search.epochs=abc"],
                  ["--config.search.epochs=abc", "could not convert"]),
    "missing config file": ("figs-search", lambda d, w, f: [f"--workdir={d}", f"--config={d}/missing.py"],
                            ["missing.py", "No such file"]),
    "missing workdir": ("figs-search", lambda d, w, f: [], ["--workdir is required"]),
    "out of range": ("figs-search", lambda d, w, f: [f"--workdir={d}", "--config.strength=-1"],
                     ["config.strength", "out of range", "λ ≥ 0"]),
    "unknown choice": ("figs-search", lambda d, w, f: [f"--workdir={d}", "--config.space=resnet50"],
                       ["config.space", "'small_cnn'"]),
    "unwritable workdir": ("figs-search", lambda d, w, f: [f"--workdir={d}/a_file"], ["not writable"]),
    "retrain before search": ("figs-retrain", lambda d, w, f: [f"--workdir={d}"], ["Run `figs-search`"]),
    "several processes on TensorFlow": (
        "figs-search", lambda d, w, f: [f"--workdir={d}", "--num_processes=2", "--process_id=0",
                                        "--coordinator_address=127.0.0.1:1"], ["KERAS_BACKEND=jax"]),
    "resume with another config": (
        "figs-search", lambda d, w, f: [*f, f"--workdir={_resumable(w, d + '/copy')}", "--config.strength=1e-3"],
        ["different config (changed: strength)", "new --workdir"]),
    "resume with another process count": (
        "figs-search", lambda d, w, f: [*f, f"--workdir={_written_by_two_processes(_resumable(w, d + '/copy'))}"],
        ["written by a run of 2 process(es)", "Rerun with 2"]),
}


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_a_user_error_is_a_short_message_and_status_2(case, tmp_path, request):
    binary, flags, words = USER_ERRORS[case]
    (tmp_path / "a_file").write_text("not a directory")
    workdir, search_flags = "", []
    if case.startswith("resume"):
        _, workdir, search_flags = request.getfixturevalue("finished_search")
    result = run(binary, *flags(str(tmp_path), workdir, search_flags))
    assert result.returncode == 2, result.stderr[-3000:]
    lines = _lines(result.stderr)
    assert len(lines) <= 3 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"{binary}: error: ")
    for word in words:
        assert word in result.stderr


def test_verbosity_1_adds_the_traceback(tmp_path):
    result = run("figs-search", f"--workdir={tmp_path}", "--config.search.epoch=3", "--verbosity=1")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and 'Did you mean "epochs"' in result.stderr
