"""The package's shape: the library never reaches into the binaries, no import circles, no TensorFlow.

Imports are read from the source (every `import` statement, at module level or
inside a function: a lazy import hides a circle, it does not remove it).
"""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "figs_tf")


def _module_names():
    """{module name: source path} of every module under figs_tf/."""
    modules = {}
    for directory, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(target, modules):
    """The figs_tf module an import of `target` loads (a name in a package resolves to the package)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def import_graph():
    """{module: set of figs_tf modules it imports}."""
    modules = _module_names()
    graph = {}
    for module, path in modules.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        edges = set()
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            targets = []
            if module == "figs_tf" and isinstance(node, ast.Constant) and node.value in modules:
                targets = [node.value]  # the lazy package's table: figs_tf.<name> imports that module
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from figs_tf import cost` imports the module figs_tf.cost
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target.startswith("figs_tf"):
                    resolved = _resolve(target, modules)
                    if resolved and resolved != module:
                        edges.add(resolved)
        graph[module] = edges
    return graph


def _cycles(graph):
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in graph.get(node, ()):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_is_read_from_the_source():
    graph = import_graph()
    # independent truth: edges we know are there
    assert "figs_tf.cost" in graph["figs_tf.export"]
    assert "figs_tf.train.loop" in graph["figs_tf.train.search"]
    assert "figs_tf.wrapping" in graph["figs_tf"]


def test_no_import_circle_anywhere_in_figs_tf():
    assert _cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_never_imports_the_training_binaries():
    offenders = {module: sorted(e for e in edges if e.startswith("figs_tf.train"))
                 for module, edges in import_graph().items()
                 if not module.startswith("figs_tf.train")}
    assert {m: e for m, e in offenders.items() if e} == {}


def test_import_figs_tf_under_jax_leaves_tensorflow_unimported():
    pytest.importorskip("jax")
    code = ("import sys\n"
            "import figs_tf, figs_tf.spaces\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets'))\n"
            "assert not loaded, loaded[:5]\n"
            "import keras\n"
            "assert keras.backend.backend() == 'jax'\n")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
