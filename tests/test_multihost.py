"""Several processes training one model, as a multi-host job does, here on 127.0.0.1 (JAX backend).

`launch/local.sh --processes 2` runs search then retraining as 2 cooperating
processes. The uninterrupted run is the reference; then, each on its own
workdir:
- process 0 (the coordinator and the one writer) is lost mid-AL: frozen with
  SIGSTOP, so that it holds its sockets open and only stops sending heartbeats,
  as a host that went down or off the network does. Process 1 must stop on
  its own within --peer_timeout_seconds, with JAX's message; then process 0 is
  SIGKILLed. The same command again resumes and must end at the uninterrupted
  run's weights (every array of the final checkpoint: gate logits, kernels,
  BatchNorm statistics, optimizer slots), bit for bit.
- the same killed search resumed by 1 process is refused before any work,
  naming both counts (the data stream depends on the process count).
- process 1 is lost mid-retraining the same way: process 0 must stop within
  the timeout; the rerun must end at the uninterrupted retraining's weights.
And the binaries run as one process on the JAX backend.
"""

import csv
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import checkpoint_arrays, checkpoint_steps, differing_arrays, exported_architecture, h5_arrays

pytest.importorskip("jax")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# 1024 examples; AL and retraining 2 passes of 16 steps each (batch 64 = 32 per process), a checkpoint
# every 4 steps: a process frozen on seeing the first checkpoint (4 steps, about a second, later the
# next) is frozen mid-phase.
SMALL = ["--config.space_kwargs.widths=(8, 16, 16)", "--config.train_examples=1024", "--config.eval_examples=1000",
         "--config.search.epochs=2", "--config.search.batch_size=64", "--config.search.steps_per_checkpoint=4",
         "--config.retrain.epochs=2", "--config.retrain.batch_size=64", "--config.retrain.steps_per_checkpoint=4",
         "--config.progress=none"]
SEARCH_STEPS = RETRAIN_STEPS = 32
RUN_SECONDS = 1200  # bounds one launch on a loaded 2-core machine; an idle one needs about a minute
# The killed runs' --peer_timeout_seconds, and what a survivor may take beyond it to exit (JAX's
# heartbeat checks run every half timeout; exit and a loaded machine take the rest).
PEER_TIMEOUT = 20
EXIT_MARGIN = 15
JAX_STOPS_THEM = "Terminating process because the JAX distributed service detected fatal errors"
# XLA programs compiled by one launch, reused by the later launches of this module (a dict: set once
# per module by `_compilation_cache`). Every launch builds the same programs (weight initializers, train
# and eval steps); compiling them is most of a launch's CPU time on this backend (the search with these
# flags in one process: 58 s of CPU with an empty cache, 17 s with the filled one, its final checkpoint
# byte-identical). XLA compiles a program to the same executable every time, so reuse changes no
# result: the bit-for-bit checks below compare the same arithmetic.
_CACHE = {}


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
    """JAX's persistent compilation cache in a directory of this module's own (empty at its start, so
    a test run alone compiles what it needs). Only process 0 writes entries; a size limit makes JAX
    lock the directory, so a process never reads an entry while another writes it."""
    _CACHE["dir"] = str(tmp_path_factory.mktemp("jax_compilation_cache"))
    yield
    _CACHE.clear()


def _environment():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHON=sys.executable,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("KERAS_BACKEND", None)  # local.sh --processes 2 chooses JAX itself
    if "dir" in _CACHE:
        env.update(JAX_COMPILATION_CACHE_DIR=_CACHE["dir"], JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1", JAX_COMPILATION_CACHE_MAX_SIZE=str(2**30))
    return env


def _local(workdir, *args, processes=2):
    return ["bash", os.path.join(ROOT, "launch", "local.sh"), "--processes", str(processes), "--workdir",
            str(workdir), *args, *SMALL]


def _start(command):
    """A launch in its own session (so that whatever is left of it can be killed)."""
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_environment(), start_new_session=True)


def _run(command):
    """Runs a launch to its end; whatever is left of it then is killed."""
    process = _start(command)
    try:
        output, _ = process.communicate(timeout=RUN_SECONDS)
    finally:
        _kill_session(process)
    return process.returncode, output


def _kill_session(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)  # stopped ones too
    except ProcessLookupError:
        pass


def _state(pid):
    """(state letter, process group) of `pid`, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
    except OSError:
        return None
    return fields[0], int(fields[2])


def _running(pid):
    state = _state(pid)
    return state is not None and state[0] != "Z"  # a zombie waits for its reaper only


def _running_in_session(pgid):
    """Processes of the process group `pgid` that still run."""
    return [int(entry) for entry in os.listdir("/proc")
            if entry.isdigit() and _running(entry) and (_state(entry) or ("", None))[1] == pgid]


def _wait_until_ended(pgid, seconds=60):
    deadline = time.time() + seconds
    while _running_in_session(pgid) and time.time() < deadline:
        time.sleep(0.5)
    return _running_in_session(pgid)


def _summary(workdir, phase):
    with open(os.path.join(workdir, phase, "summary.json")) as f:
        return json.load(f)


def _lose_one_mid_phase(workdir, phase, lost, command):
    """Starts `command` (a 2-process launch of `phase`), freezes process `lost` after the phase's first
    checkpoint, waits until the other process has stopped on its own, then SIGKILLs the frozen one.

    Returns (seconds from the freeze to the other's exit, local.sh's status, its output, the
    checkpoint steps on disk after the kill).
    """
    launch = _start(command)
    try:
        deadline = time.time() + RUN_SECONDS
        while time.time() < deadline and launch.poll() is None and not checkpoint_steps(workdir / phase):
            time.sleep(0.05)
        assert launch.poll() is None, "the run ended before its first checkpoint:\n" + launch.stdout.read()[-3000:]
        children = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(launch.pid)], capture_output=True,
                                  text=True).stdout.splitlines()
        pids = {i: [int(line.split()[0]) for line in children if f"--process_id={i}" in line] for i in (0, 1)}
        assert [len(pids[0]), len(pids[1])] == [1, 1], children
        victim, survivor = pids[lost][0], pids[1 - lost][0]
        os.kill(victim, signal.SIGSTOP)
        frozen = time.time()
        while _running(survivor) and time.time() < frozen + PEER_TIMEOUT + 120:
            time.sleep(0.1)
        seconds = time.time() - frozen
        os.kill(victim, signal.SIGKILL)
        output, _ = launch.communicate(timeout=120)
        left = _wait_until_ended(launch.pid)
    finally:
        _kill_session(launch)
    assert not left, f"processes of the killed run still running: {left}"
    return seconds, launch.returncode, output, checkpoint_steps(workdir / phase)


def _files(directory):
    """{relative path: bytes} of every file under `directory`."""
    found = {}
    for folder, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = f.read()
    return found


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The reference: search and retraining as 2 processes, never interrupted."""
    workdir = tmp_path_factory.mktemp("two_processes")
    returncode, output = _run(_local(workdir))
    assert returncode == 0, output[-5000:]
    return workdir, output


def _without_short_timeout(command):
    """The killed run's command for its rerun, with JAX's default peer timeout: the short one is for timing
    the stop of a lost run; a rerun on a loaded 2-core machine (the other test worker's processes) could
    miss a 20 s heartbeat while importing or compiling, which is not what the resume tests check."""
    return [a for a in command if not a.startswith("--peer_timeout_seconds")]


@pytest.fixture(scope="module")
def writer_lost_mid_search(tmp_path_factory):
    """A 2-process search whose process 0 was frozen after the first checkpoint, then SIGKILLed.

    Returns (workdir, an untouched copy of it, the launch's status and output, the seconds
    process 1 took to stop, the checkpoint steps left).
    """
    workdir = tmp_path_factory.mktemp("writer_lost") / "run"
    command = _local(workdir, "--only", "search", f"--peer_timeout_seconds={PEER_TIMEOUT}")
    seconds, returncode, output, steps = _lose_one_mid_phase(workdir, "search", 0, command)
    pristine = tmp_path_factory.mktemp("writer_lost_copy") / "run"
    shutil.copytree(workdir, pristine)
    return dict(workdir=workdir, pristine=pristine, command=command, returncode=returncode, output=output,
                seconds=seconds, steps=steps)


@pytest.fixture(scope="module")
def peer_lost_mid_retraining(two_processes, tmp_path_factory):
    """The reference's finished search, then a 2-process retraining whose process 1 was frozen after
    the first checkpoint, then SIGKILLed."""
    workdir = tmp_path_factory.mktemp("peer_lost") / "run"
    shutil.copytree(two_processes[0] / "search", workdir / "search")
    command = _local(workdir, "--only", "retrain", f"--peer_timeout_seconds={PEER_TIMEOUT}")
    seconds, returncode, output, steps = _lose_one_mid_phase(workdir, "retrain", 1, command)
    return dict(workdir=workdir, command=command, returncode=returncode, output=output, seconds=seconds,
                steps=steps)


def test_two_processes_search_and_retrain_and_write_each_file_once(two_processes):
    workdir, output = two_processes
    search, retrain = _summary(workdir, "search"), _summary(workdir, "retrain")
    assert (search["processes"], search["devices"], retrain["processes"]) == (2, 2, 2)
    assert search["steps"] == search["configured_steps"] == SEARCH_STEPS
    assert retrain["steps"] == retrain["configured_steps"] == RETRAIN_STEPS
    assert retrain["architecture"] == search["architecture"] == exported_architecture(workdir)[0]
    assert retrain["keras_count_params"] == search["exported"]["params"]
    assert "exported_inherited_accuracy" in search  # process 0's own evaluation of the slimmed copy
    # One writer: one TensorBoard file per phase, one history row per Keras epoch, one summary printed.
    for phase, epochs in (("search", SEARCH_STEPS // 4), ("retrain", RETRAIN_STEPS // 4)):
        assert len(glob.glob(os.path.join(workdir, phase, "tensorboard", "train", "events.*"))) == 1
        with open(os.path.join(workdir, phase, "history.csv")) as f:
            assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(epochs))
        assert not glob.glob(os.path.join(workdir, phase, "checkpoint", "writing_*"))
        with open(os.path.join(workdir, phase, "checkpoint", f"step_{epochs * 4:012d}.json")) as f:
            assert json.load(f)["processes"] == 2  # what a resume with another count is checked against
    assert output.count("FiGS search: exported architecture") == 1
    assert output.count("FiGS retraining of the exported architecture") == 1
    # Each process announced the processes, its share of the batch and the devices.
    assert "search: 2 process(es) (this is process 0), 2 cpu device(s)" in output
    assert "[process 1] " in output and "global batch 64 = 32 per process" in output
    assert "the others stop within about 100 s (--peer_timeout_seconds)" in output  # the default


def test_a_lost_coordinator_stops_the_other_process_within_the_peer_timeout(writer_lost_mid_search):
    run = writer_lost_mid_search
    output = run["output"]
    # Stopped by JAX's heartbeat check at the timeout given (the default, 100 s, would take longer).
    assert run["seconds"] <= PEER_TIMEOUT + EXIT_MARGIN, (run["seconds"], output[-3000:])
    assert run["returncode"] != 0
    lines = [line for line in output.splitlines() if line.startswith("[process 1] ")]
    assert any(JAX_STOPS_THEM in line for line in lines), "\n".join(lines[-20:])
    # What to do was said at the start, by every process.
    told = f"the others stop within about {PEER_TIMEOUT} s (--peer_timeout_seconds)"
    assert any(told in line for line in lines) and output.count(told) == 2
    assert "rerun the same command on every process to resume from the last checkpoint" in output
    assert "stopping the others" in output  # local.sh then ended the launch
    print(f"process 1 stopped {run['seconds']:.1f} s after process 0 froze")


def test_the_writer_killed_mid_search_resumes_to_the_uninterrupted_weights(two_processes, writer_lost_mid_search):
    run = writer_lost_mid_search
    assert run["steps"] and run["steps"][-1] < SEARCH_STEPS, run["steps"]  # killed mid-AL, after a checkpoint
    assert not os.path.exists(run["workdir"] / "search" / "summary.json")

    returncode, output = _run(_without_short_timeout(run["command"]))  # the same command again
    assert returncode == 0, output[-5000:]
    assert "Resuming search" in output
    summary = _summary(run["workdir"], "search")
    assert summary["resumed_from_step"] == run["steps"][-1] >= 4
    assert summary["steps"] == SEARCH_STEPS
    with open(run["workdir"] / "search" / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(SEARCH_STEPS // 4))
    assert exported_architecture(run["workdir"]) == exported_architecture(two_processes[0])
    # Every array of the final checkpoint: the gate logits, kernels, BatchNorm statistics, Adam's slots.
    resumed = checkpoint_arrays(run["workdir"] / "search", SEARCH_STEPS)
    reference = checkpoint_arrays(two_processes[0] / "search", SEARCH_STEPS)
    assert differing_arrays(resumed, reference) == []
    # what was compared: the gate logits (one per channel of the widths 8, 16, 16) and the 3 conv kernels
    assert reference["layers/mask_layer/vars/0"].shape == (8 + 16 + 16,), sorted(reference)
    assert len([name for name in reference if name.startswith("layers/conv2d")]) == 3, sorted(reference)
    print(f"{len(reference)} arrays bit-identical")


def test_resuming_with_another_process_count_is_refused_before_any_work(writer_lost_mid_search, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(writer_lost_mid_search["pristine"], workdir)
    before = _files(workdir)
    started = time.time()
    returncode, output = _run(_local(workdir, "--only", "search", processes=1))
    assert returncode != 0
    assert "written by a run of 2 process(es), and this run has 1" in output, output[-3000:]
    assert "Rerun with 2 process(es) (launch/local.sh --processes 2" in output
    assert "Resuming" not in output
    assert _files(workdir) == before  # nothing trained, nothing written
    print(f"refused after {time.time() - started:.1f} s")


def test_a_peer_lost_mid_retraining_stops_the_writer_and_the_rerun_ends_at_the_same_weights(
        two_processes, peer_lost_mid_retraining, tmp_path):
    run = peer_lost_mid_retraining
    # Process 0 (the coordinator, here the survivor) stops within the timeout.
    assert run["seconds"] <= PEER_TIMEOUT + EXIT_MARGIN, (run["seconds"], run["output"][-3000:])
    assert run["returncode"] != 0
    process_0 = [line for line in run["output"].splitlines() if not line.startswith("[process 1] ")]
    assert any(JAX_STOPS_THEM in line for line in process_0), "\n".join(process_0[-20:])
    assert run["steps"] and run["steps"][-1] < RETRAIN_STEPS, run["steps"]

    returncode, output = _run(_without_short_timeout(run["command"]))  # the same command again
    assert returncode == 0, output[-5000:]
    assert "Resuming retrain" in output
    summary = _summary(run["workdir"], "retrain")
    assert summary["resumed_from_step"] == run["steps"][-1]
    assert summary["steps"] == RETRAIN_STEPS
    resumed = checkpoint_arrays(run["workdir"] / "retrain", RETRAIN_STEPS)
    reference = checkpoint_arrays(two_processes[0] / "retrain", RETRAIN_STEPS)
    assert differing_arrays(resumed, reference) == [] and len(reference) > 10
    print(f"process 0 stopped {run['seconds']:.1f} s after process 1 froze; {len(reference)} arrays bit-identical")
    # and the saved model (model.keras holds model.weights.h5)
    models = []
    for name, workdir in (("resumed", run["workdir"]), ("reference", two_processes[0])):
        shutil.unpack_archive(workdir / "retrain" / "model.keras", tmp_path / name, "zip")
        models.append(h5_arrays(tmp_path / name / "model.weights.h5"))
    assert differing_arrays(*models) == []


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
