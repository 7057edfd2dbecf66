"""Several processes training one model, as a multi-host job does, here on 127.0.0.1 (JAX backend).

`launch/local.sh --processes 2` runs search then retraining as 2 cooperating
processes; a SIGKILL of one of them and the same command again must end where
the uninterrupted run ends (architecture, kept channels, step count). And the
binaries run as one process on the JAX backend.
"""

import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import checkpoint_steps, exported_architecture

pytest.importorskip("jax")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# 1024 examples, 2 AL passes of 16 steps (batch 64 = 32 per process), a checkpoint every 4 steps;
# retraining 1 pass of 8 steps.
SMALL = ["--config.space_kwargs.widths=(8, 16, 16)", "--config.train_examples=1024", "--config.eval_examples=1000",
         "--config.search.epochs=2", "--config.search.batch_size=64", "--config.search.steps_per_checkpoint=4",
         "--config.retrain.epochs=1", "--config.retrain.batch_size=128", "--config.progress=none"]
RUN_SECONDS = 1200  # bounds one launch on a loaded 2-core machine; an idle one needs about a minute


def _environment():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHON=sys.executable,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("KERAS_BACKEND", None)  # local.sh --processes 2 chooses JAX itself
    return env


def _local(workdir, *args):
    return ["bash", os.path.join(ROOT, "launch", "local.sh"), "--processes", "2", "--workdir", str(workdir), *args,
            *SMALL]


def _run(command):
    """Runs a launch in its own session; whatever is left of it when it ends is killed."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=_environment(), start_new_session=True)
    try:
        output, _ = process.communicate(timeout=RUN_SECONDS)
    finally:
        _kill_session(process)
    return process.returncode, output


def _kill_session(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _running_in_session(pgid):
    """Processes of the process group `pgid` that still run (zombies waiting for a reaper do not)."""
    running = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            running.append(int(entry))
    return running


def _wait_until_ended(pgid, seconds=60):
    deadline = time.time() + seconds
    while _running_in_session(pgid) and time.time() < deadline:
        time.sleep(0.5)
    return _running_in_session(pgid)


def _summary(workdir, phase):
    with open(os.path.join(workdir, phase, "summary.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The acceptance run: search and retraining as 2 processes, never interrupted."""
    workdir = tmp_path_factory.mktemp("two_processes")
    returncode, output = _run(_local(workdir))
    assert returncode == 0, output[-5000:]
    return workdir, output


def test_two_processes_search_and_retrain_and_write_each_file_once(two_processes):
    workdir, output = two_processes
    search, retrain = _summary(workdir, "search"), _summary(workdir, "retrain")
    assert (search["processes"], search["devices"], retrain["processes"]) == (2, 2, 2)
    assert search["steps"] == search["configured_steps"] == 32
    assert retrain["steps"] == retrain["configured_steps"] == 8
    assert retrain["architecture"] == search["architecture"] == exported_architecture(workdir)[0]
    assert retrain["keras_count_params"] == search["exported"]["params"]
    assert "exported_inherited_accuracy" in search  # process 0's own evaluation of the slimmed copy
    # One writer: one TensorBoard file per phase, one history row per Keras epoch, one summary printed.
    for phase, epochs in (("search", 8), ("retrain", 1)):
        assert len(glob.glob(os.path.join(workdir, phase, "tensorboard", "train", "events.*"))) == 1
        with open(os.path.join(workdir, phase, "history.csv")) as f:
            assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(epochs))
        assert not glob.glob(os.path.join(workdir, phase, "checkpoint", "writing_*"))
    assert output.count("FiGS search: exported architecture") == 1
    assert output.count("FiGS retraining of the exported architecture") == 1
    # Each process announced the processes, its share of the batch and the devices.
    assert "search: 2 process(es) (this is process 0), 2 cpu device(s)" in output
    assert "[process 1] " in output and "global batch 64 = 32 per process" in output


def test_a_process_killed_mid_search_and_the_same_command_again_end_where_the_uninterrupted_run_ends(
        two_processes, tmp_path):
    workdir = tmp_path / "killed"
    command = _local(workdir, "--only", "search")
    launch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=_environment(), start_new_session=True)
    try:
        deadline = time.time() + RUN_SECONDS
        while time.time() < deadline and launch.poll() is None and not checkpoint_steps(workdir / "search"):
            time.sleep(0.2)
        assert launch.poll() is None, "the run ended before its first checkpoint:\n" + launch.stdout.read()[-3000:]
        children = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(launch.pid)], capture_output=True,
                                  text=True).stdout.splitlines()
        victim = [int(line.split()[0]) for line in children if "--process_id=1" in line]
        assert len(victim) == 1, children
        os.kill(victim[0], signal.SIGKILL)
        output, _ = launch.communicate(timeout=120)  # local.sh stops process 0 and gives up
        left = _wait_until_ended(launch.pid)
    finally:
        _kill_session(launch)
    assert launch.returncode != 0
    assert "stopping the others" in output
    assert not left, f"processes of the killed run still running: {left}"
    assert not os.path.exists(workdir / "search" / "summary.json")

    returncode, output = _run(command)  # the same command again
    assert returncode == 0, output[-5000:]
    assert "Resuming search" in output
    assert _summary(workdir, "search")["resumed_from_step"] >= 4
    assert exported_architecture(workdir) == exported_architecture(two_processes[0])


def test_the_binaries_on_the_jax_backend_in_one_process_over_its_local_devices(tmp_path):
    # Two CPU devices in one process: keras.distribution.DataParallel splits each batch over them.
    env = dict(_environment(), KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    flags = [f"--workdir={tmp_path}", "--config.space_kwargs.widths=(8, 16, 16)", "--config.train_examples=512",
             "--config.eval_examples=500", "--config.search.epochs=1", "--config.retrain.epochs=1",
             "--config.search.batch_size=64", "--config.progress=none"]
    for phase in ("search", "retrain"):
        result = subprocess.run([sys.executable, "-m", f"figs_tf.train.{phase}", *flags], capture_output=True,
                                text=True, timeout=RUN_SECONDS, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    search, retrain = _summary(tmp_path, "search"), _summary(tmp_path, "retrain")
    assert search["steps"] == search["configured_steps"] == 8
    assert (search["processes"], search["devices"], retrain["processes"], retrain["devices"]) == (1, 2, 1, 2)
    assert retrain["steps"] == retrain["configured_steps"] == 2
    assert retrain["keras_count_params"] == search["exported"]["params"]
    assert os.path.exists(tmp_path / "retrain" / "model.keras")
