"""The training binaries end to end: search -> retrain, strategies, preemption, bad input."""

import csv
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import keras
import ml_collections
import numpy as np
import pytest

import figs_tf
from figs_tf import export
from figs_tf.train import default_config, retrain, search, loop
from figs_tf.train import workdir as workdir_lib

from helpers import checkpoint_arrays, checkpoint_steps, differing_arrays, exported_architecture

pytestmark = pytest.mark.tensorflow_only
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def tiny_config(**changes):
    """The default config at a few steps: 512 examples, batch 128, a small supernet."""
    config = default_config.get_config()
    config.space_kwargs.widths = (8, 16, 32)
    config.train_examples, config.eval_examples, config.eval_batch_size = 512, 1000, 500
    config.search.update(dict(epochs=1, batch_size=128, recalibrated_eval=False))
    config.retrain.update(dict(epochs=1, batch_size=128))
    config.progress = "none"
    config.strength = 2e-4  # strong enough that 4 steps prune something
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory):
    """(workdir, summary) of one finished search of `tiny_config()`, shared by the tests that need such a
    search (they copy its search/ into their own workdir before writing): the binaries seed every run
    themselves, so this is the search each of them would run (test_same_seed_and_config_give_the_same_
    architecture checks that a second run is the same)."""
    workdir = tmp_path_factory.mktemp("tiny_search")
    keras.backend.clear_session()
    found = search.run(tiny_config(), str(workdir))
    keras.backend.clear_session()
    return workdir, found


def _with_search_of(tiny_search, workdir):
    """`workdir` holding a copy of the shared search's search/ (what `search.run(tiny_config(), workdir)`
    writes); returns `workdir`."""
    shutil.copytree(tiny_search[0] / "search", workdir / "search")
    return workdir


def _environment():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_the_binaries_print_only_their_results(tmp_path):
    """What the README's first command shows: the results, no tfds or TensorFlow start-up noise.

    TF_CPP_MIN_LOG_LEVEL unset, as for a user: the binaries choose its default
    themselves (figs_tf/train/startup.py).
    """
    env = {k: v for k, v in _environment().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    flags = [f"--workdir={tmp_path}", "--config.space_kwargs.widths=(8, 16, 16)", "--config.train_examples=256",
             "--config.eval_examples=500", "--config.search.epochs=1", "--config.retrain.epochs=1",
             "--config.progress=none"]
    for phase, title in (("search", "FiGS search"), ("retrain", "FiGS retraining")):
        result = subprocess.run([sys.executable, "-m", f"figs_tf.train.{phase}", *flags], capture_output=True,
                                text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stderr == ""  # no "Variant folder ... has no dataset_info.json", no I0000 lines
        assert result.stdout.lstrip().startswith(title)
    finished = {name: os.path.getmtime(tmp_path / "search" / name) for name in os.listdir(tmp_path / "search")}
    again = subprocess.run([sys.executable, "-m", "figs_tf.train.search", *flags], capture_output=True, text=True,
                           timeout=300, env=env)
    assert again.returncode == 0
    assert "has already finished; not touching it" in again.stderr  # a status line, through absl logging
    assert again.stderr.count("\n") == 1
    # nothing rewritten
    assert {name: os.path.getmtime(tmp_path / "search" / name) for name in os.listdir(tmp_path / "search")} == finished


def test_only_the_binaries_change_tensorflow_logging():
    """A program that imports figs_tf keeps TensorFlow's logging as it was: figs_tf sets no TF_CPP_MIN_LOG_LEVEL
    and imports neither keras nor TensorFlow (a program may still set it before they load)."""
    code = ("import os, sys\n"
            "import figs_tf\n"
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'import figs_tf loaded keras'\n"
            "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL', 'unset'))\n")
    env = {k: v for k, v in _environment().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "unset"


def test_search_then_retrain_on_real_fashion_mnist(tmp_path, tiny_search):
    config = tiny_config()
    found = tiny_search[1]
    _with_search_of(tiny_search, tmp_path)
    assert found["steps"] == found["configured_steps"] == 4  # 512 // 128 steps, one pass
    architecture = export.load_architecture(workdir_lib.architecture_path(str(tmp_path)))
    assert architecture == found["architecture"]
    assert any(architecture[name] < found["supernet_widths"][name] for name in architecture), "nothing pruned"

    retrained = retrain.run(config, str(tmp_path))
    # Independent truth: the space's supernet built at the exported widths, counted
    # by Keras itself, and the exported cost the search reported.
    supernet = loop.build_supernet(config)
    fresh = figs_tf.build_from_architecture(supernet, architecture)
    assert retrained["exported"]["params"] == fresh.count_params() == found["exported"]["params"]
    assert retrained["exported"]["flops"] == found["exported"]["flops"]
    assert retrained["steps"] == retrained["configured_steps"] == 4
    model = keras.saving.load_model(os.path.join(tmp_path, "retrain", "model.keras"))
    assert model.count_params() == fresh.count_params()
    for phase in ("search", "retrain"):
        with open(os.path.join(tmp_path, phase, "history.csv")) as f:
            assert len(list(csv.DictReader(f))) == 1
        assert os.listdir(os.path.join(tmp_path, phase, "tensorboard"))
    with open(os.path.join(tmp_path, "search", "history.csv")) as f:
        row = next(csv.DictReader(f))
    assert int(row["figs_exported_params"]) == found["exported"]["params"]
    assert {"epoch_loss", "epoch_accuracy", "epoch_figs_expected_params", "epoch_figs_exported_params",
            "epoch_figs_strength", "epoch_figs_width/conv1"} <= _tensorboard_tags(tmp_path / "search")
    assert os.path.exists(os.path.join(tmp_path, "search", "widths.png"))


def _tensorboard_tags(directory):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tags = set()
    for path in glob.glob(os.path.join(directory, "tensorboard", "**", "events.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def _script_result(script, tmp_path):
    """Runs tests/scripts/<script> on `tmp_path` in a fresh process; returns the JSON of its last RESULT line."""
    result = subprocess.run([sys.executable, os.path.join(HERE, "scripts", script), str(tmp_path)],
                            capture_output=True, text=True, timeout=600, env=_environment())
    assert result.returncode == 0, result.stderr[-3000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_search_and_retrain_under_mirrored_strategy_with_mock_data(tmp_path):
    outcome = _script_result("search_retrain_mirrored_mock.py", tmp_path)
    assert outcome["replicas"] == 2
    assert outcome["search"]["steps"] == outcome["search"]["configured_steps"] == 4  # 256 / 64
    assert outcome["retrain"]["steps"] == outcome["retrain"]["configured_steps"] == 4
    assert outcome["retrain"]["architecture"] == outcome["search"]["architecture"]
    assert outcome["retrain"]["keras_count_params"] == outcome["search"]["exported"]["params"]


def _search_command(workdir):
    return [sys.executable, "-m", "figs_tf.train.search", f"--workdir={workdir}",
            "--config.space_kwargs.widths=(8, 16, 16)", "--config.train_examples=512",
            "--config.eval_examples=500", "--config.search.batch_size=32",
            "--config.search.steps_per_checkpoint=4", "--config.search.epochs=2",
            "--config.search.recalibrated_eval=False", "--config.progress=epoch"]


def test_a_killed_search_resumes_and_exports_what_the_uninterrupted_search_exports(tmp_path):
    workdir = str(tmp_path / "killed")
    process = subprocess.Popen(_search_command(workdir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=_environment(), text=True)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None and len(checkpoint_steps(f"{workdir}/search")) < 2:
        time.sleep(0.02)
    assert process.poll() is None, "the search finished before it could be killed:\n" + process.stdout.read()
    process.send_signal(signal.SIGKILL)  # mid-AL, at whatever instant this is
    process.wait()
    assert not os.path.exists(os.path.join(workdir, "search", "summary.json"))

    result = subprocess.run(_search_command(workdir), capture_output=True, text=True, timeout=900,
                            env=_environment())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Resuming search" in result.stderr  # a status line, through absl logging
    with open(os.path.join(workdir, "search", "summary.json")) as f:
        summary = json.load(f)
    assert summary["resumed_from_step"] >= 8
    # 512 // 32 = 16 steps a pass, 2 passes, checkpoints every 4 steps: 8 Keras epochs.
    assert summary["steps"] == summary["configured_steps"] == 32 > summary["resumed_from_step"]
    with open(os.path.join(workdir, "search", "history.csv")) as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == list(range(8))  # one row per epoch: none lost, none repeated by the resume

    # The same command never interrupted: the same architecture, kept channels and steps, and the same
    # final checkpoint bit for bit (gate logits, kernels, BatchNorm statistics, Adam's slots).
    # (That a finished search's rerun changes nothing: test_the_binaries_print_only_their_results.)
    uninterrupted = subprocess.run(_search_command(str(tmp_path / "once")), capture_output=True, text=True,
                                   timeout=900, env=_environment())
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    assert exported_architecture(workdir) == exported_architecture(tmp_path / "once")
    reference = checkpoint_arrays(tmp_path / "once" / "search", 32)
    assert differing_arrays(checkpoint_arrays(os.path.join(workdir, "search"), 32), reference) == []
    assert "layers/mask_layer/vars/0" in reference and len(reference) > 10, sorted(reference)


class AtEpochStart(keras.callbacks.Callback):
    """Runs `action(model, epoch)` at the start of Keras epoch `at` (a preemption, a diverging run)."""

    def __init__(self, at, action):
        super().__init__()
        self.at, self.action = at, action

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            self.action(self.model, epoch)


def preempt(at):
    """Stops training at the start of Keras epoch `at`, as a preemption between checkpoints would."""
    def stop(model, epoch):
        raise KeyboardInterrupt(f"preempted at epoch {epoch}")
    return AtEpochStart(at, stop)


def poison_weights(at):
    """Makes the loss NaN from epoch `at` on, as a diverging run would."""
    def poison(model, epoch):
        kernel = model.get_layer("classifier").kernel
        kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
    return AtEpochStart(at, poison)


def _once_and_resumed(run, config, tmp_path, preempt_at):
    """The summaries of `run` in <tmp>/once, and in <tmp>/resumed preempted at `preempt_at` and rerun."""
    keras.backend.clear_session()
    once = run(config, str(tmp_path / "once"))
    keras.backend.clear_session()
    with pytest.raises(KeyboardInterrupt):
        run(config, str(tmp_path / "resumed"), callbacks=[preempt(at=preempt_at)])
    keras.backend.clear_session()
    return once, run(config, str(tmp_path / "resumed"))


@pytest.mark.parametrize("controller", ["none", "target"])
def test_a_resumed_search_and_retraining_are_the_uninterrupted_ones(tmp_path, controller):
    """Bit for bit: the gates' noise, the data order and the λ controller continue where they were."""
    config = tiny_config(target=6_000.0 if controller == "target" else None)
    config.search.update(dict(epochs=2, batch_size=64, steps_per_checkpoint=3))  # 16 steps, 6 checkpoints
    config.retrain.update(dict(epochs=1, batch_size=64, steps_per_checkpoint=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 16-step AL may miss the target: the same way in both runs
        once, resumed = _once_and_resumed(search.run, config, tmp_path, preempt_at=3)
    assert resumed["resumed_from_step"] == 9 and resumed["steps"] == once["steps"] == 18
    assert exported_architecture(tmp_path / "resumed") == exported_architecture(tmp_path / "once")
    assert resumed["strength"] == once["strength"]  # λ took the same path
    assert resumed["search_model_accuracy"] == once["search_model_accuracy"]
    if controller == "target":
        return
    retrained_once, retrained = _once_and_resumed(retrain.run, config, tmp_path, preempt_at=2)
    assert retrained["resumed_from_step"] == 6 and retrained["steps"] == retrained_once["steps"] == 9
    models = [keras.saving.load_model(os.path.join(tmp_path, run, "retrain", "model.keras")) for run in ("once", "resumed")]
    for a, b in zip(*(model.get_weights() for model in models)):
        np.testing.assert_array_equal(a, b)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config()
    config.search.steps_per_checkpoint = 1  # 4 Keras epochs of 1 step
    with pytest.raises(loop.NonFiniteLossError, match=r"nan.*last good checkpoint \(step 2\)"):
        search.run(config, str(tmp_path), callbacks=[poison_weights(at=2)])
    assert checkpoint_steps(tmp_path / "search") == [1, 2]
    assert not os.path.exists(os.path.join(tmp_path, "search", "summary.json"))
    with pytest.raises(ValueError, match=r"has not finished.*Rerun `figs-search` with the same flags"):
        retrain.run(config, str(tmp_path))  # an unfinished search's architecture is not used silently
    keras.backend.clear_session()
    resumed = search.run(config, str(tmp_path))  # same command, no poison: resumes and finishes
    assert resumed["resumed_from_step"] == 2
    assert resumed["steps"] == resumed["configured_steps"] == 4
    assert np.isfinite(resumed["search_model_accuracy"])


def test_unknown_config_key_on_the_command_line_is_an_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "figs_tf.train.search", f"--workdir={tmp_path}",
                             "--config.search.epoch=3"], capture_output=True, text=True, timeout=120,
                            env=_environment())
    assert result.returncode != 0
    assert "epoch" in result.stderr and "search" in result.stderr
    assert not os.listdir(tmp_path)  # nothing written


def test_wrong_type_on_the_command_line_is_an_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "figs_tf.train.search", f"--workdir={tmp_path}",
                             "--config.search.batch_size=large"], capture_output=True, text=True,
                            timeout=120, env=_environment())
    assert result.returncode != 0
    assert "batch_size" in result.stderr
    assert not os.listdir(tmp_path)


def test_config_file_with_a_misspelt_key_or_wrong_type_names_key_and_fix(tmp_path):
    config = tiny_config()
    config.unlock()
    config.strenght = 1e-6
    # A config file that builds a section from scratch is not type-checked by ml_collections.
    config.search = ml_collections.ConfigDict(dict(config.search.to_dict(), learning_rate="fast"))
    with pytest.raises(ValueError) as error:
        search.run(config, str(tmp_path))
    message = str(error.value)
    assert "config.strenght: unknown key" in message
    assert "config.search.learning_rate: must be float, got 'fast'" in message
    assert not os.path.exists(tmp_path / "search")


def test_negative_strength_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"config.strength: -1e-06 is out of range; expected λ ≥ 0"):
        search.run(tiny_config(strength=-1e-6), str(tmp_path))


def test_gate_temperature_and_initial_logit_come_from_the_config(tmp_path):
    with pytest.raises(ValueError, match=r"config.temperature: 0.0 is out of range; expected τ"):
        search.run(tiny_config(temperature=0.0), str(tmp_path / "zero"))
    with pytest.raises(ValueError, match=r"config.logit_gradient_multiplier: -1.0 is out of range"):
        search.run(tiny_config(logit_gradient_multiplier=-1.0), str(tmp_path / "negative_m"))
    # initial logit -3: π ≈ 0.047, so ⌊Σπ⌋ = 0 in every layer before any step; with λ = 0
    # and 4 steps the export keeps one channel per layer (the keep-one rule)
    found = search.run(tiny_config(initial_logit=-3.0, strength=0.0), str(tmp_path / "low"))
    assert [found["architecture"][name] for name in ("conv0", "conv1", "conv2")] == [1, 1, 1]


def test_a_space_with_operators_reports_which_ones_each_layer_kept(tmp_path):
    config = tiny_config(space="resnet", strength=1e-4)
    config.space_kwargs = ml_collections.ConfigDict(dict(width_multiplier=0.125, small_input=True,
                                                         blocks_per_stage=(1, 1, 1, 1)))
    found = search.run(config, str(tmp_path))
    with open(workdir_lib.architecture_path(str(tmp_path))) as f:
        document = json.load(f)
    # by hand: a bottleneck is kept when each of its three convolutions kept a channel (a removed one
    # exports 0 for its inner convolutions); the shortcut always stays
    architecture = found["architecture"]
    by_hand = {f"conv{stage}_block1": {"bottleneck": all(architecture[f"conv{stage}_block1_{i}_conv"] > 0
                                                         for i in (1, 2, 3)), "shortcut": True}
               for stage in range(2, 6)}
    assert document["operators"] == found["operators"] == by_hand
    assert os.path.getsize(os.path.join(str(tmp_path), "search", "operators.png")) > 1000


def test_gate_speed_comes_from_the_config(tmp_path):
    with pytest.raises(ValueError, match=r"config.gate_speed: 0.0 is out of range; expected None \(chosen by the budget"):
        search.run(tiny_config(gate_speed=0.0), str(tmp_path / "zero"))
    search.run(tiny_config(gate_speed=4.0, target=7_000.0), str(tmp_path / "fixed"))  # a number: kept
    with open(os.path.join(str(tmp_path / "fixed"), "search", "history.csv")) as f:
        assert [float(row["figs_gate_speed"]) for row in csv.DictReader(f)] == [4.0]


def test_a_budget_run_chooses_the_same_gate_speed_under_mirrored_strategy(tmp_path):
    outcome = _script_result("budget_gate_speed_mirrored.py", tmp_path)
    assert outcome["mirrored"]["replicas"] == 2 and outcome["single"]["replicas"] == 1
    assert outcome["mirrored"]["steps"] == outcome["single"]["steps"] == 8
    # chosen from the config alone, assigned to every replica: the same gate speed as on one device
    assert outcome["mirrored"]["speeds"] == outcome["single"]["speeds"] and outcome["single"]["speeds"][0] > 1


def test_pareto_budgets_give_one_architecture_per_budget(tmp_path):
    config = tiny_config(pareto_budgets=(7_000, 6_000))  # the initial export has 7,419 of 8,946
    config.train_examples, config.search.batch_size = 4096, 32  # 128 AL steps
    found = search.run(config, str(tmp_path))
    assert found["pareto_missing"] == []
    assert sorted(found["pareto"]) == ["6000", "7000"]
    for budget, path in found["pareto"].items():
        assert path == os.path.join(str(tmp_path), "search", "pareto", f"architecture_{budget}.json")
        # an independent count: the architecture built fresh, counted by Keras
        network = figs_tf.build_from_architecture(loop.build_supernet(config), export.load_architecture(path))
        assert network.count_params() <= float(budget)
    with pytest.raises(ValueError, match=r"config.target and config.pareto_budgets are both set.*"
                                         r"unset the others \(--config.target=None or --config.pareto_budgets=\(\)\)"):
        search.run(tiny_config(target=5_000.0, pareto_budgets=(7_000,)), str(tmp_path / "both"))
    with pytest.raises(ValueError, match=r"config.target and config.target_fraction are both set"):
        search.run(tiny_config(target=5_000.0, target_fraction=0.5), str(tmp_path / "both"))
    with pytest.raises(ValueError, match=r"config.pareto_budgets: \(7000, -1\) is out of range"):
        search.run(tiny_config(pareto_budgets=(7_000, -1)), str(tmp_path / "negative"))


def test_a_target_fraction_is_a_fraction_of_the_supernets_cost(tmp_path):
    config = tiny_config(target_fraction=0.8)
    with pytest.warns(UserWarning, match="missed the target"):  # 4 AL steps are too few to land
        found = search.run(config, str(tmp_path))
    # independent truth: Keras's own count of the supernet the config builds
    assert found["target"] == pytest.approx(0.8 * loop.build_supernet(config).count_params())
    assert found["supernet"]["params"] == loop.build_supernet(config).count_params()
    with pytest.raises(ValueError, match=r"config.target_fraction: 1.5 is out of range; expected None or a "
                                         r"fraction in \(0, 1\]"):
        search.run(tiny_config(target_fraction=1.5), str(tmp_path / "over"))


def test_unwritable_workdir_is_rejected_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"--workdir .*a_file/search is not writable.*pass a directory"):
        search.run(tiny_config(), str(blocker))


def test_retrain_without_a_search_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Run `figs-search` with the same --config and --workdir"):
        retrain.run(tiny_config(), str(tmp_path))


def test_architecture_that_does_not_fit_the_space_is_rejected(tmp_path):
    path = str(tmp_path / "other.json")
    figs_tf.save_architecture({"conv0": 4, "conv1": 8, "conv7": 3}, path)
    config = tiny_config()
    config.retrain.architecture = path
    with pytest.raises(ValueError, match=r"does not fit the search space of this config.*conv7"):
        retrain.run(config, str(tmp_path / "run"))
    figs_tf.save_architecture({"conv0": 4, "conv1": 99, "conv2": 3, "classifier": 10}, path)
    with pytest.raises(ValueError, match=r"does not fit.*conv1"):
        retrain.run(config, str(tmp_path / "run"))


def test_a_rerun_with_a_different_config_is_refused(tmp_path):
    config = tiny_config()
    config.search.steps_per_checkpoint = 1
    with pytest.raises(loop.NonFiniteLossError):
        search.run(config, str(tmp_path), callbacks=[poison_weights(at=1)])
    keras.backend.clear_session()
    other = tiny_config(strength=1e-3)
    other.search.steps_per_checkpoint = 1
    with pytest.raises(ValueError, match=r"different config \(changed: strength\)"):
        search.run(other, str(tmp_path))


def test_same_seed_and_config_give_the_same_architecture(tmp_path, tiny_search):
    """Determinism on one machine: same seed, data order and config -> same export (the shared search ran
    earlier in this process, after whatever ran before it)."""
    keras.backend.clear_session()
    search.run(tiny_config(), str(tmp_path / "second"))
    documents = []
    for workdir in (tiny_search[0], tmp_path / "second"):
        with open(workdir_lib.architecture_path(str(workdir))) as f:
            documents.append(json.load(f))
    assert documents[0]["widths"] == documents[1]["widths"]
    assert documents[0]["channels"] == documents[1]["channels"]  # the same channels, not just counts
    assert documents[0]["widths"] != {}


def test_a_remote_workdir_goes_through_tf_io_gfile():
    """gs:// workdirs use tf.io.gfile; TensorFlow's in-memory ram:// file system stands in for GCS."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    workdir = f"ram://figs_test_{os.getpid()}/run"
    config = tiny_config()
    found = search.run(config, workdir)
    retrained = retrain.run(config, workdir)
    assert not os.path.exists("ram:")  # nothing written to a local directory named after the URL
    assert {"architecture.json", "summary.json", "history.csv", "checkpoint", "config.json", "widths.png"} <= set(
        tf.io.gfile.listdir(f"{workdir}/search"))
    assert export.load_architecture(f"{workdir}/search/architecture.json") == found["architecture"]
    with tf.io.gfile.GFile(f"{workdir}/retrain/history.csv") as f:
        assert len(list(csv.DictReader(f))) == 1
    assert tf.io.gfile.exists(f"{workdir}/retrain/model.keras")
    assert retrained["exported"]["params"] == found["exported"]["params"]


def _recovery_config(init, teacher):
    config = tiny_config()
    config.retrain.update(dict(epochs=1, batch_size=64, steps_per_checkpoint=3, init=init, teacher=teacher))
    return config


def test_retraining_can_start_from_the_search_weights_and_distil_from_the_search_model(tmp_path, tiny_search):
    """Each `retrain.init` / `retrain.teacher` mode for a few steps: what it starts from and what it fits."""
    search_model = figs_tf.load_model(os.path.join(tiny_search[0], "search", "search_model.keras"))
    inherited = [w.copy() for w in figs_tf.slim(search_model).get_weights()]
    for init, teacher in (("scratch", ""), ("inherited", ""), ("inherited", "search"), ("scratch", "search")):
        keras.backend.clear_session()
        workdir = _with_search_of(tiny_search, tmp_path / f"{init}_{teacher or 'none'}")
        seen = {}

        def record(model, epoch, seen=seen):
            seen["fitted"] = type(model).__name__
            student = getattr(model, "student", model)
            seen["start"] = [np.array(w) for w in student.get_weights()]
        logs = []
        summary = retrain.run(_recovery_config(init, teacher), str(workdir),
                              callbacks=[AtEpochStart(0, record), keras.callbacks.LambdaCallback(
                                  on_epoch_end=lambda epoch, epoch_logs, logs=logs: logs.append(dict(epoch_logs)))])
        assert summary["steps"] == 9 and np.isfinite(summary["test_accuracy"])
        assert seen["fitted"] == ("Distiller" if teacher else "Functional")
        assert ("distillation_loss" in logs[-1]) == bool(teacher)
        same = len(seen["start"]) == len(inherited) and all(
            a.shape == b.shape and np.array_equal(a, b) for a, b in zip(seen["start"], inherited))
        assert same == (init == "inherited")
        saved = keras.saving.load_model(os.path.join(workdir, "retrain", "model.keras"))
        assert type(saved).__name__ == "Functional" and saved.count_params() == summary["exported"]["params"]


def test_a_resumed_recovery_is_the_uninterrupted_one(tmp_path, tiny_search):
    """Bit for bit with inherited weights and distillation: the teacher is rebuilt from the same file."""
    config = _recovery_config("inherited", "search")
    for run in ("once", "resumed"):
        _with_search_of(tiny_search, tmp_path / run)
    retrained_once, retrained = _once_and_resumed(retrain.run, config, tmp_path, preempt_at=2)
    assert retrained["resumed_from_step"] == 6 and retrained["steps"] == retrained_once["steps"] == 9
    models = [keras.saving.load_model(os.path.join(tmp_path, run, "retrain", "model.keras")) for run in ("once", "resumed")]
    for a, b in zip(*(model.get_weights() for model in models), strict=True):
        np.testing.assert_array_equal(a, b)
