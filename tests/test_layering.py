"""The package's shape: no import cycles, ``promql`` below ``rules``, modules and functions of a readable size.

The import graph is read from the source (every ``import`` at any depth: module
level, inside functions, under ``if TYPE_CHECKING:``), so a cycle hidden by a
function-level or type-only import still fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "plugins" / "mlinfra"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# Modules over MAX_MODULE_LINES may instead state why at their top (a comment or the
# docstring containing "Size:"). Entries here are debts owned by other work in progress.
MODULE_ALLOWLIST: dict[str, str] = {}
# Functions over MAX_FUNCTION_LINES, each a debt to split ("qualname": "why it is still long").
FUNCTION_ALLOWLIST: dict[str, str] = {}
# ``from <another package> import _private``: each a debt.
PRIVATE_IMPORT_ALLOWLIST: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Every mlinfra module ``name`` imports, at any depth of its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod when there is one.
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def test_the_graph_sees_function_level_and_type_checking_imports() -> None:
    # These two edges exist only inside a function body / an ``if TYPE_CHECKING`` block.
    assert "mlinfra.hooks.alertmanager" in GRAPH["mlinfra.rules.evaluate"]
    assert "mlinfra.config" in GRAPH["mlinfra.rules.engines"]


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_promql_does_not_depend_on_rules() -> None:
    wrong = {
        (name, target)
        for name, targets in GRAPH.items()
        if name.startswith("mlinfra.promql")
        for target in targets
        if target.startswith("mlinfra.rules")
    }
    assert wrong == set()


def test_no_private_names_imported_from_another_package() -> None:
    wrong = []
    for name, path in MODULES.items():
        package = name.rsplit(".", 1)[0] if path.name != "__init__.py" else name
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlinfra"):
                source_package = node.module.rsplit(".", 1)[0] if node.module in MODULES else node.module
                if MODULES.get(node.module, Path()).name == "__init__.py":
                    source_package = node.module
                for alias in node.names:
                    found = f"{name}: from {node.module} import {alias.name}"
                    private = alias.name.startswith("_") and source_package != package
                    if private and found not in PRIVATE_IMPORT_ALLOWLIST:
                        wrong.append(found)
    assert wrong == []


def _states_its_size(path: Path) -> bool:
    head = path.read_text().split("\n", 40)[:40]
    return any("Size:" in line for line in head)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name: str) -> None:
    path = MODULES[name]
    lines = len(path.read_text().splitlines())
    if lines <= MAX_MODULE_LINES or _states_its_size(path) or name in MODULE_ALLOWLIST:
        return
    pytest.fail(
        f"{path.relative_to(PACKAGE.parent)} has {lines} lines (> {MAX_MODULE_LINES}): "
        "split it, or say at its top why not ('Size: ...')"
    )


def test_size_allowlists_hold_only_what_needs_them() -> None:
    for name in MODULE_ALLOWLIST:
        assert name in MODULES, f"{name} is gone: drop it from MODULE_ALLOWLIST"
        assert len(MODULES[name].read_text().splitlines()) > MAX_MODULE_LINES, (
            f"{name} fits now: drop it from MODULE_ALLOWLIST"
        )
    long_functions = {f for f, _ in _long_functions()}
    for qualname in FUNCTION_ALLOWLIST:
        assert qualname in long_functions, f"{qualname} fits now: drop it from FUNCTION_ALLOWLIST"


def _long_functions() -> list[tuple[str, int]]:
    out = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - first + 1
                if length > MAX_FUNCTION_LINES:
                    out.append((f"{name}:{node.name}", length))
    return out


def test_function_size() -> None:
    too_long = [f"{f} ({n} lines)" for f, n in _long_functions() if f not in FUNCTION_ALLOWLIST]
    assert too_long == [], f"functions over {MAX_FUNCTION_LINES} lines: split them"
