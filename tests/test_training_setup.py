"""The training recipe, the strategy choice and the checkpoints, checked without a TPU."""

import csv
import os

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

import figs_tf
from figs_tf import spaces
from figs_tf.train import config_checks, default_config, input_pipeline, loop, runtime, strategies
from figs_tf.train import workdir as workdir_lib

pytestmark = pytest.mark.tensorflow_only


class FakeResolver:
    def __init__(self, tpu=None):
        self.tpu = tpu


class FakeTPUStrategy:
    num_replicas_in_sync = 8

    def __init__(self, resolver):
        self.resolver = resolver


@pytest.fixture
def fake_tpu(monkeypatch):
    """Replaces the TPU entry points of TensorFlow with recorders."""
    calls = []
    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver",
                        lambda tpu=None: calls.append(("resolver", tpu)) or FakeResolver(tpu))
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster",
                        lambda resolver: calls.append(("connect", resolver.tpu)))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system",
                        lambda resolver: calls.append(("initialize", resolver.tpu)))
    monkeypatch.setattr(tf.distribute, "TPUStrategy",
                        lambda resolver: calls.append(("strategy", resolver.tpu)) or FakeTPUStrategy(resolver))
    monkeypatch.setattr(strategies, "_STRATEGIES_MADE", {})
    return calls


def test_tpu_vm_initialises_the_local_tpu_and_returns_a_tpu_strategy(fake_tpu):
    strategy = strategies.make_strategy("tpu", tpu="local")
    assert isinstance(strategy, FakeTPUStrategy)
    # On a TPU VM the chips are local: no remote connection.
    assert fake_tpu == [("resolver", "local"), ("initialize", "local"), ("strategy", "local")]
    assert strategies.make_strategy("tpu", tpu="local") is strategy  # initialised once per process
    assert len(fake_tpu) == 3


def test_named_tpu_connects_first_and_auto_picks_it(fake_tpu):
    strategy = strategies.make_strategy("auto", tpu="my-tpu")
    assert isinstance(strategy, FakeTPUStrategy)
    assert fake_tpu == [("resolver", "my-tpu"), ("connect", "my-tpu"), ("initialize", "my-tpu"),
                        ("strategy", "my-tpu")]


def test_auto_without_accelerators_is_the_default_strategy(monkeypatch):
    # One device: the default strategy, twice as fast as OneDeviceStrategy on a 2-core CPU.
    monkeypatch.setattr(strategies, "_tpu_is_local", lambda: False)
    monkeypatch.setattr(strategies, "_STRATEGIES_MADE", {})
    strategy = strategies.make_strategy("auto")
    assert strategy is tf.distribute.get_strategy()  # outside any scope: the default strategy
    assert not isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.num_replicas_in_sync == 1


def one_device():
    return runtime.tensorflow_runtime(tf.distribute.get_strategy())


def test_unknown_strategy_is_named_and_multi_worker_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match=r"Unknown strategy 'tpus'; choose one of auto, tpu"):
        strategies.make_strategy("tpus")
    refusal = r"multi_worker.*refused.*keras-team/keras#20585.*tensorflow/tensorflow#72388.*JAX backend"
    with pytest.raises(ValueError, match=refusal):
        strategies.make_strategy("multi_worker")
    config = default_config.get_config()
    config.strategy = "multi_worker"
    with pytest.raises(ValueError, match=refusal):  # before any work: loop.check runs first in both binaries
        loop.check(config, runtime.ProcessSettings())
    config.strategy = "auto"
    with pytest.raises(ValueError, match=r"--num_processes=2 on the TensorFlow backend.*KERAS_BACKEND=jax"):
        loop.check(config, runtime.ProcessSettings("127.0.0.1:1234", 2, 1))


@pytest.mark.parametrize("settings, message", [
    (dict(num_processes="2"), r"--num_processes=2 needs --coordinator_address=HOST:PORT"),
    (dict(coordinator_address="h:1", num_processes="2", process_id=2), r"--process_id=2 is not one of the 2"),
    (dict(num_processes="zero"), r"--num_processes must be a positive number or 'auto', got 'zero'"),
    (dict(peer_timeout_seconds=0), r"--peer_timeout_seconds must be a positive number of seconds, got 0"),
])
def test_process_settings_name_the_flag_and_the_fix(settings, message):
    with pytest.raises(ValueError, match=message):
        runtime.ProcessSettings.from_environment(**settings).check()


def test_process_settings_fall_back_to_kerass_environment_variables(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "4")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "3")
    assert runtime.ProcessSettings.from_environment() == runtime.ProcessSettings("10.0.0.1:1234", 4, 3)
    assert runtime.ProcessSettings.from_environment(process_id=1).process_id == 1  # a flag wins
    assert runtime.ProcessSettings.from_environment(num_processes="auto").num_processes == "auto"


def test_the_config_checks_read_keys_and_types_from_the_default_config(monkeypatch):
    """A key added to default_config.py is checked without being written anywhere else."""
    original = default_config.get_config

    def with_a_new_key(arg=None):
        config = original(arg)
        config.new_knob = 3
        config.search.new_rate = ml_collections.config_dict.placeholder(float)
        return config

    monkeypatch.setattr(default_config, "get_config", with_a_new_key)
    config = with_a_new_key()
    config_checks.check(config)  # the default itself passes
    values = config.to_dict()  # as a config file that builds its own dicts could have it
    values["new_knob"], values["search"]["new_rate"] = "three", 0.5
    with pytest.raises(ValueError) as error:
        config_checks.check(ml_collections.ConfigDict(values))
    assert "config.new_knob: must be int, got 'three'" in str(error.value)
    assert "config.search.new_rate" not in str(error.value)  # a float placeholder takes 0.5 (or None)
    del config["new_knob"]
    with pytest.raises(ValueError, match=r"config.new_knob: missing; start from figs_tf/train/default_config.py"):
        config_checks.check(config)


def test_every_range_names_a_key_of_the_default_config_and_choices_come_from_the_registries():
    def dotted(types, prefix=""):
        for key, value in types.items():
            yield from dotted(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    keys = set(dotted(config_checks.schema()))
    assert set(config_checks.RULES) <= keys and set(config_checks.HINTS) <= keys
    config = default_config.get_config()
    for key, registry in (("dataset", input_pipeline.KNOWN_DATASETS), ("space", spaces.SPACES)):
        for name in registry:
            assert config_checks.RULES[key].check(name), (key, name)
        assert not config_checks.RULES[key].check("mnist")
    config.space = "tiny_resnet"
    with pytest.raises(ValueError, match=r"config.space: 'tiny_resnet' is out of range; expected one of "
                                         r"\('small_cnn', 'resnet', 'fbnet', 'one_shot'\)"):
        config_checks.check(config)


@pytest.mark.parametrize("changes, message", [
    (dict(init="warm"), r"config.retrain.init: 'warm' is out of range; expected one of \('scratch', 'inherited'\)"),
    (dict(teacher="supernet"), r"config.retrain.teacher: 'supernet' is out of range; expected one of \('', 'search'\)"),
    (dict(distill_temperature=0.0), r"config.retrain.distill_temperature: 0.0 is out of range; expected > 0"),
    (dict(distill_label_weight=1.5), r"config.retrain.distill_label_weight: 1.5 is out of range; expected in \[0, 1\]"),
    (dict(teacher="search", distill_label_weight=1.0), r"gives the teacher no share of the loss; lower the weight"),
])
def test_the_recovery_keys_of_retraining_are_checked(changes, message):
    config = default_config.get_config()
    config.retrain.update(changes)
    with pytest.raises(ValueError, match=message):
        config_checks.check(config)


def test_tpu_batches_are_full_and_split_per_replica(monkeypatch):
    """On TPU every batch is full (static shapes) and the global batch splits over 8 cores."""
    config = default_config.get_config()
    config.train_examples, config.eval_examples, config.eval_batch_size = 1024, 1000, 64
    strategy = FakeTPUStrategy(None)
    monkeypatch.setattr(strategies, "is_tpu", lambda s: s is strategy)
    seen = []

    def distribute(dataset_fn):
        context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=8)
        dataset = dataset_fn(context)
        seen.append(dataset)
        return dataset

    strategy.distribute_datasets_from_function = distribute
    run = runtime.Runtime("tensorflow", 1, 0, 8, 8, "tpu", strategy=strategy)
    plan = loop.make_plan(config, "search", run)
    train, evaluation = loop.training_data(config, plan, run), loop.evaluation_data(config, run)
    assert train.element_spec[0].shape.as_list() == [128 // 8, 28, 28, 1]  # per replica, static
    assert evaluation.element_spec[0].shape.as_list() == [64 // 8, 28, 28, 1]  # drop_remainder: static
    assert loop.evaluation_steps(config, run) == 1000 // 64
    config.search.batch_size = 100
    with pytest.raises(ValueError, match=r"batch_size = 100 .* 8 replicas"):
        loop.make_plan(config, "search", run)


def test_plan_rounds_up_to_whole_checkpoint_intervals():
    config = default_config.get_config()
    config.train_examples = 1000
    config.search.update(dict(batch_size=100, epochs=2.5, steps_per_checkpoint=4, decay_epochs=35.0))
    plan = loop.make_plan(config, "search", one_device())
    assert (plan.steps_per_data_epoch, plan.steps_per_epoch, plan.epochs) == (10, 4, 7)  # 25 -> 28 steps
    assert plan.total_steps == 28 and plan.decay_steps == 350


def test_optimizer_is_the_papers_adam_with_smooth_decay_and_no_decay_on_gates():
    config = default_config.get_config()
    config.space_kwargs.widths = (4, 8, 8)
    config.train_examples = 1280
    config.search.update(dict(batch_size=128, learning_rate=1.6, decay_epochs=35.0, decay_factor=0.5))
    config.optimizer.update(dict(weight_decay=0.01, ema_momentum=0.9997))
    plan = loop.make_plan(config, "search", one_device())
    search = figs_tf.wrap(loop.build_supernet(config), cost="params", strength=0.0)
    loop.compile_model(search, config, plan)
    optimizer = search.optimizer
    assert optimizer.epsilon == 1.0 and optimizer.use_ema and optimizer.ema_momentum == 0.9997
    schedule = optimizer._learning_rate  # pylint: disable=protected-access
    # Smooth: ×0.5 after 35 epochs (350 steps here), ×0.5**0.5 halfway.
    np.testing.assert_allclose([float(schedule(0)), float(schedule(175)), float(schedule(350))],
                               [1.6, 1.6 * 0.5 ** 0.5, 0.8], rtol=1e-6)
    # One step with zero gradients: only weight decay moves variables.
    variables = search.trainable_variables
    before = {v.path: np.array(v) for v in variables}
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in variables])
    for variable in variables:
        after = np.array(variable)
        if "logits" in variable.path or "gamma" in variable.path or "beta" in variable.path:
            np.testing.assert_array_equal(after, before[variable.path], err_msg=variable.path)
        elif "kernel" in variable.path:
            np.testing.assert_allclose(after, before[variable.path] * (1 - 1.6 * 0.01), rtol=1e-5,
                                       err_msg=variable.path)


def test_batchnorm_momentum_comes_from_the_config():
    config = default_config.get_config()
    config.bn_momentum = 0.9997
    supernet = loop.build_supernet(config)
    momenta = {layer.momentum for layer in supernet.layers if "bn" in layer.name}
    assert momenta == {0.9997}


def test_input_shape_of_every_dataset_matches_the_pipeline():
    assert input_pipeline.input_shape("imagenet2012") == (224, 224, 3)
    assert input_pipeline.input_shape("cifar10", 40) == (40, 40, 3)


# --- checkpoints that survive a kill at any instant -------------------------------------------

STEPS_PER_EPOCH = 4


class Noise(keras.layers.Layer):
    """Adds uniform noise in training, from its own SeedGenerator (whose state Keras does not save)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(7)

    def call(self, x, training=None):
        return x + keras.random.uniform(keras.ops.shape(x), seed=self.seed_generator) if training else x


def _checkpointed_fit(backup_dir, epochs):
    """A tiny noisy model trained to `epochs` with workdir.Checkpoints; returns (model, epochs run)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(Noise()(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    checkpoints = workdir_lib.Checkpoints(str(backup_dir), one_device())
    step = checkpoints.restore(model)
    x, y = np.ones((STEPS_PER_EPOCH * 2, 3), "float32"), np.zeros((STEPS_PER_EPOCH * 2, 1), "float32")
    history = model.fit(x, y, batch_size=2, epochs=epochs, initial_epoch=step // STEPS_PER_EPOCH, verbose=0,
                        shuffle=False, callbacks=[checkpoints])
    return model, len(history.history.get("loss", []))


def _weights(model):
    return [np.array(v) for v in model.variables]  # with the noise's SeedGenerator state


def test_a_resumed_fit_ends_where_the_uninterrupted_fit_ends(tmp_path):
    uninterrupted, _ = _checkpointed_fit(tmp_path / "once", epochs=5)
    _checkpointed_fit(tmp_path / "twice", epochs=3)
    keras.backend.clear_session()
    resumed, epochs_run = _checkpointed_fit(tmp_path / "twice", epochs=5)
    assert epochs_run == 2
    for a, b in zip(_weights(uninterrupted), _weights(resumed)):
        np.testing.assert_array_equal(a, b)  # the noise state came back too: the same draws, bit for bit
    names = sorted(os.listdir(tmp_path / "twice"))
    assert names == [f"step_{s:012d}.{kind}" for s in (16, 20) for kind in ("json", "weights.h5")]  # the two newest


@pytest.mark.parametrize("damage, epochs_left", [
    ("weights_half_written", 3),  # a damaged newest pair: the one before (epoch 2) is used
    ("state_missing", 3),  # killed before the state file: the weights alone are not a resume point
    ("only_a_temporary_file", 2),  # killed while writing epoch 4's weights: the finished epoch 3 is used
])
def test_a_checkpoint_damaged_by_a_kill_still_resumes_to_the_configured_steps(tmp_path, damage, epochs_left):
    _checkpointed_fit(tmp_path, epochs=3)  # step_12 and step_8
    weights, state = tmp_path / f"step_{12:012d}.weights.h5", tmp_path / f"step_{12:012d}.json"
    if damage == "weights_half_written":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "state_missing":
        state.unlink()
    else:
        (tmp_path / f"writing_{16:012d}.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    model, epochs_run = _checkpointed_fit(tmp_path, epochs=5)
    assert epochs_run == epochs_left
    assert int(model.optimizer.iterations.numpy()) == 5 * STEPS_PER_EPOCH
    assert not any(name.startswith("writing_") for name in os.listdir(tmp_path))


def test_a_first_checkpoint_cut_short_starts_the_phase_over(tmp_path):
    (tmp_path / f"step_{4:012d}.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    (tmp_path / f"step_{4:012d}.json").write_text('{"step": 4, "variables": [], "callbacks": {}}')
    model, epochs_run = _checkpointed_fit(tmp_path, epochs=2)
    assert epochs_run == 2
    assert int(model.optimizer.iterations.numpy()) == 2 * STEPS_PER_EPOCH


def test_a_resumed_history_has_exactly_one_row_per_epoch(tmp_path):
    """Keras's CSVLogger writes epochs 0-5; the kill came after epoch 5's row (written before its
    checkpoint) and cut epoch 6's row in half, so the run resumes at epoch 5: `trim_history` drops
    rows 5 and the half row, and the resumed CSVLogger appends 5 and 6 once each."""
    path = str(tmp_path / "history.csv")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32)
    model.fit(x, y, epochs=6, verbose=0, callbacks=[keras.callbacks.CSVLogger(path, append=True)])
    with open(path, "a") as f:
        f.write("6,0.2")  # no line end: the kill
    workdir_lib.trim_history(path, start_epoch=5)
    model.fit(x, y, initial_epoch=5, epochs=7, verbose=0, callbacks=[keras.callbacks.CSVLogger(path, append=True)])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == list(range(7))
    assert all(None not in row and None not in row.values() and row["loss"] for row in rows)  # whole rows
    workdir_lib.trim_history(str(tmp_path / "absent.csv"), start_epoch=3)  # nothing to trim: no file made
    assert not os.path.exists(tmp_path / "absent.csv")
