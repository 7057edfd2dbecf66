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
    ("gpu.sh", ("--strategy", "bad"), "gpu.sh: --strategy takes gpus or one_device, not 'bad'"),
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


def test_local_processes_dry_run_starts_n_cooperating_processes_on_one_free_port():
    result = launch("local.sh", "--dry-run", "--processes", "3", "--workdir", "/tmp/x", env={"KERAS_BACKEND": ""})
    assert result.returncode == 0, result.stderr
    lines = [l.split()[1:] for l in result.stdout.splitlines() if " -m figs_tf.train." in l]
    assert len(lines) == 6  # 3 processes, 2 phases
    ports = {arg.split(":")[-1] for line in lines for arg in line if arg.startswith("--coordinator_address=127.0.0.1:")}
    assert len(ports) == 1 and ports.pop().isdigit()
    assert [next(a for a in line if a.startswith("--process_id=")) for line in lines[:3]] == [
        "--process_id=0", "--process_id=1", "--process_id=2"]
    assert all("--num_processes=3" in line for line in lines)
    assert "KERAS_BACKEND=jax" in result.stdout


def test_gpu_several_machines_dry_run_passes_the_process_flags_on_the_jax_backend():
    result = launch("gpu.sh", "--dry-run", "--coordinator", "host0:1234", "--num-processes", "2", "--process-id", "1",
                    "--workdir", "gs://b/run", env={"KERAS_BACKEND": ""})
    assert result.returncode == 0, result.stderr
    lines = [l.split() for l in result.stdout.splitlines() if " -m figs_tf.train." in l]
    assert len(lines) == 2
    for line in lines:
        assert line[-3:] == ["--coordinator_address=host0:1234", "--num_processes=2", "--process_id=1"]
    assert "KERAS_BACKEND=jax" in result.stdout and "this is 1 of 2, coordinator host0:1234" in result.stdout


def test_tpu_vm_multi_host_runs_every_worker_on_jax_and_single_host_worker_0_on_tensorflow():
    pod = launch("tpu_vm.sh", "run", "--dry-run", "--zone=z", "--accelerator=v4-32", "--workdir=gs://b/r",
                 "--data-dir=gs://b/d")
    assert pod.returncode == 0, pod.stderr
    ssh = [l for l in pod.stdout.splitlines() if l.startswith("+ gcloud compute tpus tpu-vm ssh")]
    assert len(ssh) == 1 and "--worker=all" in ssh[0] and " jax " in ssh[0] and "--num_processes=auto" in ssh[0]
    assert "software tpu-ubuntu2204-base, Keras backend jax" in pod.stdout
    single = launch("tpu_vm.sh", "run", "--dry-run", "--zone=z", "--workdir=gs://b/r")
    ssh = [l for l in single.stdout.splitlines() if l.startswith("+ gcloud compute tpus tpu-vm ssh")]
    assert "--worker=0" in ssh[0] and " single 1 local " in ssh[0] and "--num_processes" not in ssh[0]
    copy = launch("tpu_vm.sh", "copy", "--dry-run", "--zone=z", "--accelerator=v4-32")
    assert "on-vm-install jax" in copy.stdout


@pytest.mark.parametrize("script, args, env, message", [
    ("local.sh", ("--processes", "0"), {}, "local.sh: --processes takes a positive number, not '0'"),
    ("local.sh", ("--processes", "2"), {"KERAS_BACKEND": "tensorflow"}, "local.sh: --processes 2 needs KERAS_BACKEND=jax"),
    # the suite runs under KERAS_BACKEND=tensorflow: unset, as a user's shell would leave it
    ("gpu.sh", ("--num-processes", "2"), {"KERAS_BACKEND": ""},
     "gpu.sh: --num-processes 2 needs --coordinator HOST:PORT"),
    ("gpu.sh", ("--num-processes", "2"), {"KERAS_BACKEND": "tensorflow"},
     "gpu.sh: --num-processes 2 needs --backend jax"),
    ("gpu.sh", ("--strategy", "multi_worker"), {}, "keras-team/keras#20585"),
    ("gpu.sh", ("--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"), {"KERAS_BACKEND": ""},
     "gpu.sh: --process-id 2 is not one of 0..1"),
    ("tpu_vm.sh", ("run", "--backend", "torch", "--zone=z", "--workdir=gs://b/r"), {},
     "tpu_vm.sh: --backend takes tensorflow or jax"),
])
def test_bad_process_arguments_are_named(script, args, env, message):
    result = launch(script, *args, env=env)
    assert result.returncode == 2
    assert message in result.stderr
