"""No module of forwarder/ imports one that imports it back, even lazily (inside a function).

A cycle makes the import order matter and hides which module depends on which; the entry
points run one way: cli -> lifecycle -> app -> settings.
"""

from __future__ import annotations

import ast
from pathlib import Path

import forwarder

PACKAGE_DIR = Path(forwarder.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The forwarder modules a file imports anywhere in it (top level or in a function)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # ``from a import b`` imports the module a.b when there is one, else a name of a.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE_DIR.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) - {module_name(p)} for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per cycle found by a depth-first walk: [a, b, ..., a]."""
    found, done, stack = [], set(), []

    def visit(node: str) -> None:
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt in stack:
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in done:
                visit(nxt)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b", "a"]]


def test_the_entry_points_import_one_way():
    graph = import_graph()
    assert "forwarder.lifecycle" in graph["forwarder.cli"]
    assert "forwarder.app" in graph["forwarder.lifecycle"]
    assert "forwarder.settings" in graph["forwarder.app"]


def test_no_import_cycles_in_forwarder():
    assert cycles(import_graph()) == []
