"""The README's list of keras_hub backbones tried cannot go stale: it names every backbone class keras_hub
exports and every configuration in benchmarks/keras_hub_zoo.py's table (names only: nothing is built, and
neither TensorFlow nor keras_hub is imported).
"""

import importlib.util
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "#### keras_hub backbones tried"


def load_zoo():
    spec = importlib.util.spec_from_file_location("keras_hub_zoo", os.path.join(ROOT, "benchmarks", "keras_hub_zoo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


zoo = load_zoo()
EXPORTED = zoo.exported_backbone_names()
pytestmark = pytest.mark.skipif(EXPORTED is None, reason="keras_hub is not installed")


def readme_rows():
    """The first cell (in backticks) of every row of the README's table under SECTION."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    assert SECTION in text, f"README.md has no '{SECTION}' section"
    section = re.split(r"\n#{1,4} ", text.split(SECTION, 1)[1], maxsplit=1)[0]
    return [match.group(1) for match in re.finditer(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)]


def test_the_zoo_table_has_every_backbone_keras_hub_exports():
    tabled = {zoo.class_name(entry) for entry in zoo.TINY} | set(zoo.NOT_TRIED)
    assert len(EXPORTED) > 50  # the source parse found keras_hub's list, not an empty match
    assert not set(EXPORTED) - tabled, "add a tiny configuration (TINY) or a reason (NOT_TRIED)"
    assert not tabled - set(EXPORTED), "names keras_hub does not export"
    assert not set(zoo.TINY) & set(zoo.NOT_TRIED)


def test_the_readme_lists_every_backbone_tried_once():
    rows = readme_rows()
    assert len(rows) == len(set(rows)), sorted({row for row in rows if rows.count(row) > 1})
    expected = set(zoo.TINY) | set(zoo.NOT_TRIED)
    assert set(rows) == expected, (f"missing from README: {sorted(expected - set(rows))}; not in the script: "
                                   f"{sorted(set(rows) - expected)}; rerun benchmarks/keras_hub_zoo.py --markdown")
    assert {zoo.class_name(row) for row in rows} >= set(EXPORTED)
