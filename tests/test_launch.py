"""The launch/ scripts: help, dry runs and the commands they print (nothing is started)."""

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("local.sh", "gpu.sh", "tpu_vm.sh")


def launch(script, *args, env=None):
    return subprocess.run(["bash", os.path.join(ROOT, "launch", script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_parses_and_has_help(script):
    assert subprocess.run(["bash", "-n", os.path.join(ROOT, "launch", script)]).returncode == 0
    result = launch(script, "-h")
    assert result.returncode == 0 and result.stdout.startswith("Usage: launch/" + script)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_finds_nothing():
    paths = [os.path.join(ROOT, "launch", name) for name in (*SCRIPTS, "common.sh", "run_tests.sh")]
    result = subprocess.run(["shellcheck", "-x", *paths], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout


def test_local_dry_run_prints_both_binaries_with_the_same_arguments():
    result = launch("local.sh", "--dry-run", "--config", "experiments/fashion_mnist.py:one_shot",
                    "--config.search.epochs=1")
    assert result.returncode == 0, result.stderr
    lines = [l for l in result.stdout.splitlines() if " -m figs_tf.train." in l]
    assert [l.split()[3] for l in lines] == ["figs_tf.train.search", "figs_tf.train.retrain"]
    for line in lines:
        assert line.split()[4:] == ["--config=experiments/fashion_mnist.py:one_shot",
                                    "--workdir=runs/fashion_mnist_one_shot", "--config.search.epochs=1"]
    assert "(--dry-run: nothing was run)" in result.stdout


def test_the_modules_the_scripts_start_exist():
    import importlib.util  # pylint: disable=import-outside-toplevel
    for script, args in (("local.sh", ()), ("gpu.sh", ()), ("tpu_vm.sh", ("run", "--zone=z", "--workdir=gs://b/r"))):
        output = launch(script, *args, "--dry-run").stdout
        modules = set(re.findall(r"-m (figs_tf[\w.]*)", output))
        assert modules == {"figs_tf.train.search", "figs_tf.train.retrain"}, (script, output)
        assert all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.mark.parametrize("script, args, message", [
    ("local.sh", ("--only", "bad"), "local.sh: --only takes search or retrain, not 'bad'"),
    ("local.sh", ("--config",), "local.sh: --config needs a value (see -h)"),
    ("gpu.sh", ("--strategy", "bad"), "gpu.sh: --strategy takes gpus, one_device or multi_worker"),
    ("tpu_vm.sh", ("--bad",), "tpu_vm.sh: the subcommand comes first"),
    ("tpu_vm.sh", ("run", "--dry-run", "--zone=z", "--accelerator=v4-32", "--workdir=/tmp/x"),
     "tpu_vm.sh: a multi-host slice needs WORKDIR on gs://"),
])
def test_bad_arguments_are_named(script, args, message):
    result = launch(script, *args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize("subcommand", ["create --spot", "create --queued", "copy", "status --queued",
                                        "delete --yes", "logs --follow --workdir=gs://b/r"])
def test_tpu_vm_subcommands_dry_run_without_gcloud(subcommand):
    result = launch("tpu_vm.sh", *subcommand.split(), "--dry-run", "--zone=us-central2-b",
                    env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "+ gcloud compute tpus" in result.stdout and "(--dry-run: nothing was run)" in result.stdout
