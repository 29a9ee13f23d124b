"""The package's import graph, read from the source: no cycle, counting the imports inside functions too (a lazy
import that closes a cycle only moves the failure to the first call), and models that import no task, no Lightning,
no dataset code and no inference code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mobilevision"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions (not under `if TYPE_CHECKING:`, which never
    runs), as absolute names: `from a.b import c` counts `a.b` and `a.b.c` (c may be a module)."""
    found: set[str] = set()

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
                found.update(f"{child.module}.{alias.name}" for alias in child.names)
            walk(child)

    walk(ast.parse(path.read_text()))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    # Importing `a.b.c` runs the packages `a` and `a.b` first: edges to them, except for an importer inside that
    # package (its package was imported before its own code ran).
    for name in list(graph):
        packages = {".".join(m.split(".")[:i]) for m in graph[name] for i in range(1, m.count(".") + 1)}
        graph[name] |= {p for p in packages if p in modules and p != name and not name.startswith(p + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path a -> ... -> a, or None. An edge from a module to a package that contains it is
    not followed (the package is already being imported)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def test_find_cycle_finds_one_through_a_function_level_import(tmp_path: Path) -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from mobilevision.tasks import table\n")
    assert "mobilevision.tasks.table" in _imports(source)


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


FORBIDDEN = ("lightning", "pytorch_lightning", "mobilevision.tasks", "mobilevision.data", "mobilevision.inference")


@pytest.mark.parametrize("path", sorted((PACKAGE / "models").rglob("*.py")), ids=lambda p: p.name)
def test_models_import_no_task_lightning_data_or_inference(path: Path) -> None:
    bad = sorted(m for m in _imports(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}"


def _package_of(module: str) -> str:
    """The unit a private name must not leave: a task package (`mobilevision.tasks.detection`) or a top-level
    package (`mobilevision.models`)."""
    parts = module.split(".")
    return ".".join(parts[:3] if parts[1:2] == ["tasks"] and len(parts) > 2 else parts[:2])


def test_no_private_name_is_imported_across_packages() -> None:
    modules = _modules()
    crossing = set()
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mobilevision"):
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and _package_of(node.module) != _package_of(name):
                        crossing.add((name, f"{node.module}.{alias.name}"))
    assert not crossing, f"private names imported across packages: {sorted(crossing)}"
