"""Every config in experiments/ loads, passes the config checks and builds its supernet."""

import glob
import importlib.util
import os

import pytest

import figs_tf
from figs_tf.train import config_checks, loop

pytestmark = pytest.mark.tensorflow_only
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# figs-search configs (a get_config); experiments/stdlib_lm.py is a standalone script (tests/test_stdlib_lm.py)
CONFIG_FILES = sorted(path for path in glob.glob(os.path.join(ROOT, "experiments", "*.py"))
                      if "def get_config(" in open(path, encoding="utf-8").read())


def load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def variants(module):
    table = getattr(module, "STRENGTHS", None) or getattr(module, "VARIANTS", None)
    if table is None:  # resnet_imagenet: depths, optionally with a budget fraction
        return list(module.DEPTHS) + ["50:0.3"]
    return list(table)


ALL = [(os.path.basename(path), variant) for path in CONFIG_FILES for variant in variants(load(path))]


def test_every_paper_experiment_has_a_config():
    names = {name for name, _ in ALL}
    assert {"one_shot_imagenet.py", "fbnet_imagenet.py", "resnet_imagenet.py", "flops_vs_params.py",
            "fashion_mnist.py", "cifar10.py"} <= names
    assert {v for n, v in ALL if n == "one_shot_imagenet.py"} == {"A", "B", "C"}
    assert {v for n, v in ALL if n == "fbnet_imagenet.py"} == {"B", "C"}


@pytest.mark.parametrize("name, variant", ALL)
def test_config_loads_and_passes_the_checks(name, variant):
    module = load(os.path.join(ROOT, "experiments", name))
    config = module.get_config(variant)
    config_checks.check(config)
    assert f"--config=experiments/{name}" in module.__doc__  # the docstring shows the command


def test_paper_strengths_are_the_papers():
    one_shot = load(os.path.join(ROOT, "experiments", "one_shot_imagenet.py"))
    fbnet = load(os.path.join(ROOT, "experiments", "fbnet_imagenet.py"))
    assert [one_shot.get_config(v).strength for v in "ABC"] == [1.2e-6, 5e-7, 3e-7]
    assert [fbnet.get_config(v).strength for v in "BC"] == [2e-9, 1.3e-9]
    config = one_shot.get_config("A")
    assert (config.search.batch_size, config.search.learning_rate, config.retrain.batch_size,
            config.retrain.learning_rate) == (512, 1.6, 1024, 3.2)
    assert config.optimizer.epsilon == 1.0 and config.optimizer.ema_momentum == 0.9997


def test_unknown_variant_names_the_choices():
    module = load(os.path.join(ROOT, "experiments", "one_shot_imagenet.py"))
    with pytest.raises(ValueError, match=r"Unknown One-Shot variant 'D'.*\['A', 'B', 'C'\]"):
        module.get_config("D")


def _unique_models():
    seen = {}
    for name, variant in ALL:
        config = load(os.path.join(ROOT, "experiments", name)).get_config(variant)
        key = (config.dataset, config.space, repr(sorted(config.space_kwargs.to_dict().items())))
        seen.setdefault(key, (name, variant))
    return sorted(seen.values())


@pytest.mark.heavy
@pytest.mark.parametrize("name, variant", _unique_models())
def test_config_builds_its_supernet_and_the_search_model(name, variant):
    config = load(os.path.join(ROOT, "experiments", name)).get_config(variant)
    if config.dataset == "imagenet2012":
        config.image_size = 64  # the parameter count does not depend on it; building is faster
    supernet = loop.build_supernet(config)
    assert figs_tf.count(supernet, "params") == supernet.count_params()
    assert supernet.output_shape[-1] == {"imagenet2012": 1000}.get(config.dataset, 10)
    search = figs_tf.wrap(supernet, cost=config.cost, strength=config.strength)
    assert figs_tf.export_architecture(search)  # gates found, an architecture exported


def test_imagenet_configs_keep_the_papers_gates():
    """The paper's experiments use its gate parametrisation (s = 1), also those under a budget."""
    for name, variant in ALL:
        config = load(os.path.join(ROOT, "experiments", name)).get_config(variant)
        if config.dataset == "imagenet2012":
            assert config.gate_speed == 1.0, (name, variant)
        else:
            assert config.gate_speed is None, (name, variant)  # small runs: chosen by the controller
