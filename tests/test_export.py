"""Export: the one alive rule, operator removal, the architecture JSON."""

import json
import os

import numpy as np
import pytest

import figs_tf
from figs_tf.wrapping import channel_graph_of, gates_of

from helpers import residual_concat_depthwise_model, set_all_logits, set_group_logits, to_numpy


def test_exported_widths_are_floor_of_expected_widths():
    search = figs_tf.wrap(residual_concat_depthwise_model())
    rng = np.random.default_rng(3)
    gates = gates_of(search)
    logits = rng.normal(1.0, 2.0, gates.logits.shape).astype(np.float32)
    gates.set_logits(logits)
    graph = channel_graph_of(search)
    architecture = figs_tf.export_architecture(search)
    for group_id, group in enumerate(graph.groups):
        pi = 1 / (1 + np.exp(-logits[gates.group_slice(group_id)].astype(np.float64)))
        expected = max(int(np.floor(pi.sum())), 1)  # each group here is a kernel's whole input
        for producer in group.producers:
            assert architecture[producer] == expected, producer
    assert architecture["fc"] == 10


def test_inference_mask_zeroes_exactly_the_exported_channels():
    search = figs_tf.wrap(residual_concat_depthwise_model())
    set_all_logits(search, 30.0)
    set_group_logits(search, "c1", [30, -30, 30, -30, 30, 30, 30, 30])
    network = figs_tf.exported_network(search)
    residual = next(i for i, g in enumerate(network.graph.groups) if "c1" in g.producers)
    np.testing.assert_array_equal(network.kept_channels[residual], [0, 2, 4, 5, 6, 7])
    # read the masked tensor after the Add in inference: channels 1 and 3 are zero
    import keras
    # the Add layer is shared with the original model: its newest node is the search model's
    add_in_search = search.get_layer("add")._inbound_nodes[-1].outputs[0]
    probe = keras.Model(search.inputs, add_in_search)
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    values = to_numpy(probe(x, training=False))
    assert np.all(values[..., [1, 3]] == 0)
    assert np.all(np.abs(values[..., [0, 2, 4, 5, 6, 7]]).sum(axis=(0, 1, 2)) > 0)


def test_a_concat_branch_whose_gates_are_all_off_is_removed():
    model = residual_concat_depthwise_model()
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    set_group_logits(search, "c3", -30.0)
    network = figs_tf.exported_network(search)
    live = [c.name for c in network.live_calls]
    assert "c3" not in live and "dw" in live
    assert figs_tf.export_architecture(search)["c3"] == 0
    # c3's kernel+bias (8*4 + 4) and the 4 classifier rows reading it (4*10) are gone
    assert network.cost("params") == model.count_params() - (8 * 4 + 4) - 4 * 10


def test_keep_one_rule_keeps_a_layer_fed():
    search = figs_tf.wrap(residual_concat_depthwise_model())
    set_all_logits(search, 30.0)
    set_group_logits(search, "c1", -30.0)  # the residual stream feeds c2, dw and c3
    architecture = figs_tf.export_architecture(search)
    assert architecture["c1"] == architecture["c2"] == 1


def test_architecture_json_round_trip(tmp_path):
    search = figs_tf.wrap(residual_concat_depthwise_model())
    architecture = figs_tf.export_architecture(search)
    path = os.path.join(tmp_path, "sub", "arch.json")
    figs_tf.save_architecture(architecture, path, note="test")
    assert figs_tf.load_architecture(path) == architecture
    with open(path) as f:
        document = json.load(f)
    assert document["format"] == "figs_tf.architecture" and document["metadata"] == {"note": "test"}
    assert not [name for name in os.listdir(os.path.dirname(path)) if ".tmp" in name]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"widths": {"c1": 3}}', "not a figs_tf architecture"),
    ('{"format": "figs_tf.architecture", "version": 99, "widths": {}}', "version 99"),
    ('{"format": "figs_tf.architecture", "version": 1, "widths": {"c1": -2}}', "'c1' must be an integer >= 0"),
    ('{"format": "figs_tf.architecture", "version": 1, "widths": {"c1": 2.5}}', "'c1' must be an integer >= 0"),
])
def test_bad_architecture_files_are_refused_with_the_reason(tmp_path, content, message):
    path = os.path.join(tmp_path, "arch.json")
    with open(path, "w") as f:
        f.write(content)
    with pytest.raises(ValueError, match=message):
        figs_tf.load_architecture(path)
