"""The sandbox package's imports run one way (no cycles), counting every import statement: module level,
inside functions and under ``if TYPE_CHECKING:``, plus the service modules app.py loads with importlib.

Layers, bottom up: leaf helpers (errors, state, stats, faults, keys, expression, graph_odata, certs, config,
seed) -> the core (context) -> services (entra, gitlab, control, graph, arm) -> app (wiring) -> __main__.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "oidc_sandbox"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE
CORE = {"errors", "state", "stats", "faults", "keys", "expression", "graph_odata", "certs", "config", "seed",
        "context"}


def _optional_services(tree: ast.Module) -> set[str]:
    """Module names in app.py's ``_OPTIONAL`` (the services it imports with importlib)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_OPTIONAL" for t in node.targets):
            return {value.value for value in node.value.values}  # type: ignore[attr-defined]
    return set()


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """``module -> package modules it imports``; ``sources`` maps module names (``__init__`` for the package)
    to their source text.  Every ``import``/``from`` anywhere in the tree counts."""
    modules = set(sources)
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, text in sources.items():
        tree = ast.parse(text)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level > 1:
                    raise AssertionError(f"{name}: imports from outside the package ({'.' * node.level})")
                base = node.module or ""
                if node.level == 0:
                    if base != PACKAGE and not base.startswith(PACKAGE + "."):
                        continue
                    base = base[len(PACKAGE) + 1:]
                if base:
                    targets.append(base.split(".")[0])
                else:  # from . import x: a submodule, or a name of the package's __init__
                    targets += [alias.name if alias.name in modules else "__init__" for alias in node.names]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == PACKAGE:
                        targets.append(parts[1] if len(parts) > 1 else "__init__")
            elif isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in ("import_module", "__import__"):
                    if name != "app":
                        raise AssertionError(f"{name}: dynamic imports belong in app.py only")
                    targets += sorted(_optional_services(tree))
            graph[name].update(target for target in targets if target != name)
    unknown = {target for targets in graph.values() for target in targets} - modules
    assert not unknown, f"imports of modules that do not exist: {sorted(unknown)}"
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``) or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def package_graph() -> dict[str, set[str]]:
    return import_graph({path.stem: path.read_text(encoding="utf-8") for path in PACKAGE_DIR.glob("*.py")})


def test_the_package_imports_run_one_way():
    cycle = find_cycle(package_graph())
    assert cycle is None, "import cycle in oidc_sandbox: " + " -> ".join(cycle or [])


def test_layers():
    """The core knows no service, only __main__ imports the app, and the app wires every service."""
    graph = package_graph()
    for module in CORE:
        assert graph[module] <= CORE | {"__init__"}, f"core module {module} imports {graph[module] - CORE}"
    assert {m for m, targets in graph.items() if "app" in targets} <= {"__main__"}
    assert graph["app"] >= {"context", "control", "entra", "gitlab", "graph", "arm"}


@pytest.mark.parametrize("source", [
    "from . import b\n",
    "def f():\n    from .b import thing\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import Thing\n",
    "import oidc_sandbox.b\n",
    "class C:\n    def m(self):\n        from oidc_sandbox import b\n",
])
def test_the_checker_sees_every_kind_of_import(source):
    graph = import_graph({"a": source, "b": "from .a import x\n", "__init__": ""})
    assert find_cycle(graph) in (["a", "b", "a"], ["b", "a", "b"])


def test_the_checker_counts_apps_dynamic_imports():
    graph = import_graph({
        "app": "import importlib\n_OPTIONAL = {'graph': 'graph'}\ndef f(n):\n    importlib.import_module(n)\n",
        "graph": "from . import app\n", "__init__": ""})
    assert find_cycle(graph) == ["app", "graph", "app"]
    with pytest.raises(AssertionError, match="dynamic imports belong in app.py"):
        import_graph({"other": "import importlib\nimportlib.import_module('x')\n", "__init__": ""})
