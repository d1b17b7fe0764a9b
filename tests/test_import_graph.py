"""The import graph of the ``i3d`` package: no cycle, no module importing its own package's root.

Every import counts, module-level and deferred (inside a function) alike: a
deferred import only hides a cycle from Python, not from the reader. Imports
under ``if TYPE_CHECKING:`` do not run and do not count.

``python tests/test_import_graph.py`` prints the counts (modules, edges,
cycles, upward imports) and lists each cycle and upward import.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "i3d"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The ``i3d`` modules that ``tree`` (module ``name``) imports; ``from P import m`` counts as ``P.m`` if
    ``m`` is a module."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    found.add(f"{source}.{alias.name}")
                elif source in modules:
                    found.add(source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module name -> the ``i3d`` modules it imports."""
    paths = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    modules = set(paths)
    return {
        name: _imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py", modules)
        for name, path in paths.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(module, package)`` pairs where a module imports the root (``__init__``) of a package that holds it."""
    return sorted(
        (module, target) for module, targets in graph.items() for target in targets if module.startswith(target + ".")
    )


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_module_imports_its_own_package_root():
    assert upward_imports(import_graph()) == []


if __name__ == "__main__":
    graph = import_graph()
    found = cycles(graph)
    upward = upward_imports(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} import edges")
    print(f"{len(found)} cycles" + "".join(f"\n  {' <-> '.join(c)}" for c in found))
    print(f"{len(upward)} upward imports" + "".join(f"\n  {m} -> {p}" for m, p in upward))
