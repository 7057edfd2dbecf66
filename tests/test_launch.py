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


# Google's table "TPU software versions" (cloud.google.com/tpu/docs/runtimes): JAX images by
# generation; TensorFlow images are tpu-vm-tf-<version>[-pod]-pjrt on every generation.
@pytest.mark.parametrize("accelerator, backend, image", [
    ("v4-8", "", "tpu-vm-tf-2.18.0-pjrt"),  # one host: TensorFlow by default
    ("v4-8", "jax", "tpu-ubuntu2204-base"),
    ("v5litepod-16", "", "v2-alpha-tpuv5-lite"),  # two hosts: JAX by default
    ("v5litepod-16", "tensorflow", "tpu-vm-tf-2.18.0-pod-pjrt"),
    ("v5p-8", "", "tpu-vm-tf-2.18.0-pjrt"),
    ("v5p-8", "jax", "v2-alpha-tpuv5"),
    ("v6e-8", "", "tpu-vm-tf-2.18.0-pjrt"),
    ("v6e-8", "jax", "v2-alpha-tpuv6e"),
])
def test_tpu_vm_create_names_the_image_of_the_generation(accelerator, backend, image):
    env = {"ACCELERATOR": accelerator, "BACKEND": backend, "VERSION": "", "TF_VERSION": ""}
    for command in ("create", "create --queued"):
        result = launch("tpu_vm.sh", *command.split(), "--dry-run", "--zone=z", env=env)
        assert result.returncode == 0, result.stderr
        create = [l for l in result.stdout.splitlines() if l.startswith("+ gcloud") and " create " in l]
        assert len(create) == 1
        flag = "--runtime-version=" if "--queued" in command else "--version="
        assert f" {flag}{image}" in create[0] + " ", create[0]


def test_tpu_vm_refuses_to_guess_the_jax_image_of_an_unknown_accelerator():
    result = launch("tpu_vm.sh", "create", "--dry-run", "--zone=z", "--backend=jax", "--accelerator=v9x-8",
                    env={"VERSION": ""})
    assert result.returncode == 2 and "no known JAX image for ACCELERATOR=v9x-8" in result.stderr
    given = launch("tpu_vm.sh", "create", "--dry-run", "--zone=z", "--backend=jax", "--accelerator=v9x-8",
                   "--version=my-image")
    assert given.returncode == 0 and "--version=my-image" in given.stdout


def _fake_python(tmp_path, tf_version):
    """A python3 that runs real Python, but has a TF `tf_version` image and records pip instead of running it."""
    script = tmp_path / "python3"
    script.write_text(f"""#!/bin/bash
if [ "$1" = -m ] && [ "$2" = pip ]; then echo "PIP ${{*:3}}"; exit 0; fi
if [ "$1" = -c ]; then
  case "$2" in
    'import tensorflow') exit 0 ;;
    *'print(tf.__version__)'*) echo {tf_version}; exit 0 ;;
    *figs_tf*) echo "[figs_tf ok]"; exit 0 ;;
  esac
fi
exec {shutil.which("python3")} "$@"
""")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("tf_version, keras", [("2.18.0", "keras>=3.7,<3.13"), ("2.21.0", "keras>=3.7")])
def test_tpu_vm_install_keeps_the_image_tensorflow_and_holds_keras_to_what_its_ci_ran(tmp_path, tf_version, keras):
    result = launch("tpu_vm.sh", "on-vm-install", "tensorflow", env={"PYTHON": _fake_python(tmp_path, tf_version)})
    assert result.returncode == 0, result.stderr
    installs = [l.split()[1:] for l in result.stdout.splitlines() if l.startswith("PIP ")]
    assert installs[0] == ["install", "--no-deps", "-e", "."]
    requirements = installs[1][1:]
    assert keras in requirements  # 2.21: no known range, setup.py's own requirement (and a warning)
    assert not any(r.startswith(("keras", "tensorflow")) and r != keras and not r.startswith("tensorflow-datasets")
                   for r in requirements), requirements
    assert ("warning: no known Keras range" in result.stdout) == (tf_version == "2.21.0")


def _python_without_jax(tmp_path):
    """PYTHONPATH entries under which `importlib.util.find_spec("jax")` finds nothing."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['jax'] = None\n")
    return os.pathsep.join([str(tmp_path), ROOT])


def test_local_processes_print_commands_that_run_as_printed_and_install_the_jax_extra(tmp_path):
    # PYTHON as local.sh's default (CI's own PYTHON=python would change the printed commands)
    result = launch("local.sh", "--dry-run", "--processes", "2", "--workdir", "/tmp/x",
                    env={"KERAS_BACKEND": "", "PYTHON": "python3", "PYTHONPATH": _python_without_jax(tmp_path)})
    assert result.returncode == 0, result.stderr
    commands = [l[2:].split() for l in result.stdout.splitlines() if " -m figs_tf.train." in l]
    assert len(commands) == 4 and all(c[0] == "KERAS_BACKEND=jax" for c in commands)
    assert "missing: jax" in result.stdout
    assert f"+ python3 -m pip install -e '{ROOT}[jax]'" in result.stdout
    one = launch("local.sh", "--dry-run", "--workdir", "/tmp/x",
                 env={"PYTHON": "python3", "PYTHONPATH": _python_without_jax(tmp_path)})
    assert "[jax]" not in one.stdout and "missing: jax" not in one.stdout  # one process needs no JAX


def test_gpu_refuses_when_jax_sees_no_gpu():
    pytest.importorskip("jax")  # else gpu.sh would install the jax extra
    result = launch("gpu.sh", "--backend", "jax", "--workdir", "/tmp/x",
                    env={"JAX_PLATFORMS": "cpu", "PYTHON": shutil.which("python") or "python3",
                         "PYTHONPATH": ROOT})
    assert result.returncode == 2
    assert "gpu.sh: JAX sees no GPU, so this would train on the CPU" in result.stderr
    assert "--skip-gpu-check" in result.stderr


def test_gpu_refuses_when_jax_cannot_be_imported(tmp_path):
    # jax is found but its import fails, as with a CUDA plugin that does not load
    (tmp_path / "sitecustomize.py").write_text("""
import importlib.abc, importlib.machinery, sys
class _Broken(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, self) if name == "jax" else None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise ImportError("libcudart.so.12: cannot open shared object file")
sys.meta_path.insert(0, _Broken())
""")
    result = launch("gpu.sh", "--backend", "jax", "--workdir", "/tmp/x",
                    env={"PYTHON": shutil.which("python") or "python3",
                         "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])})
    assert result.returncode == 2
    assert "gpu.sh: JAX cannot be imported" in result.stderr and "libcudart.so.12" in result.stderr
    assert "jax[cuda12]" in result.stderr


@pytest.mark.parametrize("script, args", [
    ("tpu_vm.sh", ("run", "--zone=z", "--workdir=gs://b/r")),
    ("local.sh", ()),
    ("gpu.sh", ()),
])
def test_an_imagenet_config_without_data_dir_is_named_at_start(script, args, tmp_path):
    env = {"TFDS_DATA_DIR": str(tmp_path)}  # an empty tfds directory: no ImageNet there
    config = ("--config", "experiments/one_shot_imagenet.py:A")
    warned = launch(script, *args, *config, "--dry-run", env=env)
    assert warned.returncode == 0, warned.stderr
    assert "imagenet2012 needs a data_dir" in warned.stdout and "WORKSPACE.md" in warned.stdout
    given = ("--data-dir=gs://b/d",) if script == "tpu_vm.sh" else ("--config.data_dir=/data/tfds",)
    for quiet in (launch(script, *args, *config, *given, "--dry-run", env=env),
                  launch(script, *args, "--config", "experiments/cifar10.py:resnet", "--dry-run", env=env)):
        assert quiet.returncode == 0 and "needs a data_dir" not in quiet.stdout
