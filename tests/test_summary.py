"""figs_tf.summary and the reprs of analyze / exported_network: checked against the slimmed model and hand counts."""

import re

import keras
import numpy as np
import pytest

import figs_tf
from helpers import set_all_logits, set_group_logits, small_cnn

L = keras.layers


def _lines(search, **kwargs):
    lines = []
    figs_tf.summary(search, print_fn=lines.append, **kwargs)
    return lines


def _rows(lines):
    """{layer: (kept, total, cost or None)} from the table's rows."""
    rows = {}
    for line in lines:
        match = re.match(r"^(\S+)(?: \(removed\))?\s+(\d+) / (\d+)(?:\s+([\d,]+)\s+[\d.]+ %)?$", line)
        if match:
            cost = match.group(4)
            rows[match.group(1)] = (int(match.group(2)), int(match.group(3)),
                                    None if cost is None else int(cost.replace(",", "")))
    return rows


def test_summary_rows_and_totals_are_what_slim_builds():
    model = small_cnn()  # convs 16/32/64
    search = figs_tf.wrap(model, cost="params", target=5_000)
    set_all_logits(search, 30.0)
    set_group_logits(search, "conv1", [30.0] * 12 + [-30.0] * 20)  # conv1 keeps 12 of 32
    set_group_logits(search, "conv2", [30.0] * 40 + [-30.0] * 24)  # conv2 keeps 40 of 64
    lines = _lines(search)
    slim = figs_tf.slim(search)
    rows = _rows(lines)
    assert {name: row[:2] for name, row in rows.items()} == {
        "conv0": (16, 16), "conv1": (12, 32), "conv2": (40, 64)}
    for name, (kept, _, cost) in rows.items():
        layer = slim.get_layer(name)
        assert layer.filters == kept and cost == layer.count_params()
    other = re.search(r"^other layers\s+([\d,]+)", "\n".join(lines), re.M)
    assert sum(row[2] for row in rows.values()) + int(other.group(1).replace(",", "")) == slim.count_params()
    text = "\n".join(lines)
    assert f"Exported: {slim.count_params():,} params" in text
    assert f"of the supernet's {model.count_params():,}" in text
    assert "Target: 5,000 params; exported is " in text
    assert "Not searched (1, graph.notes says why): classifier" in text
    assert len(lines) <= 16 and max(map(len, lines)) <= 100  # one glance


def _bottleneck_model():
    """stem -> add(stem, b2(relu(b1(stem)))): the b1-b2 branch is removable when b1 keeps nothing."""
    inputs = keras.Input((8, 8, 3), name="image")
    stem = L.ReLU(name="relu0")(L.Conv2D(8, 3, padding="same", name="stem")(inputs))
    branch = L.Conv2D(8, 1, name="b2")(L.ReLU(name="relu1")(L.Conv2D(4, 1, name="b1")(stem)))
    x = L.GlobalAveragePooling2D(name="gap")(L.Add(name="add")([stem, branch]))
    return keras.Model(inputs, L.Dense(3, name="fc")(x), name="bottleneck")


def test_summary_names_a_removed_summand_and_a_fixed_lambda():
    search = figs_tf.wrap(_bottleneck_model(), cost="flops", strength=1e-6)
    set_all_logits(search, 30.0)
    set_group_logits(search, "b1", -30.0)
    lines = _lines(search)
    assert not {"b1", "b2"} & {layer.name for layer in figs_tf.slim(search).layers}
    assert any(re.match(r"^b1 \(removed\)\s+0 / 4\s+0\s+0.0 %$", line) for line in lines), lines
    text = "\n".join(lines)
    assert "mult-adds" in text and "Target: none (a fixed λ)" in text
    assert "Removable summands (operators, blocks): 1 of 1 removed: " in text
    choices = _lines(search, operators=lambda arch: {"block0": {"conv": arch["b1"] > 0, "skip": True}})
    assert "  block0: skip (removed: conv)" in choices


def test_summary_of_a_keras_hub_vit_reads_heads_and_mlp_widths():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=8, num_layers=2, num_heads=4,
                                            hidden_dim=16, mlp_dim=32)
    images = keras.Input((16, 16, 3), name="images")
    model = keras.Model(images, L.Dense(3, name="classes")(backbone(images)[:, 0, :]))
    search = figs_tf.wrap(model, cost="flops", strength=1e-7)
    set_all_logits(search, 30.0)
    lines = _lines(search)
    rows = _rows(lines)
    heads = {name: row for name, row in rows.items() if name.endswith("/heads")}
    assert len(heads) == 2 and all(row[:2] == (4, 4) for row in heads.values())
    mlp = [row for name, row in rows.items() if not name.endswith("/heads")]
    assert len(mlp) == 2 and all(row[:2] == (32, 32) for row in mlp)
    assert f"Exported: {figs_tf.count(model, 'flops'):,} mult-adds, 100.0 %" in "\n".join(lines)
    assert len(lines) <= 18 and max(map(len, lines)) <= 88


def test_reprs_are_one_short_line():
    model = small_cnn()
    graph = figs_tf.analyze(model)
    search = figs_tf.wrap(model)
    set_all_logits(search, 30.0)
    set_group_logits(search, "conv1", [30.0] * 3 + [-30.0] * 29)
    for text in (repr(graph), repr(figs_tf.exported_network(search)), repr(graph.calls[0])):
        assert "\n" not in text and len(text) < 300 and "KerasTensor" not in text, text
    assert repr(graph) == ("<ChannelGraph: 13 layer calls, inputs image (None, 28, 28, 1); 3 channel groups: "
                           "conv0 16, conv1 32, conv2 64; 1 note>")
    assert "conv0 16/16, conv1 3/32, conv2 64/64, classifier 10/10" in repr(figs_tf.exported_network(search))
    assert str(graph).splitlines()[1:] == [
        "  group 0: 16 channels of conv0", "  group 1: 32 channels of conv1", "  group 2: 64 channels of conv2",
        "  note: kept out of search: channels of ['classifier'] because they are model outputs"]
