"""The import graph of ``src/pinengine`` has no loop.

An edge is a module-level import of one pinengine module by another (imports
under ``if TYPE_CHECKING:`` and inside functions do not run at import time and
are not edges). A loop means a newcomer cannot read the package bottom-up, and
one import order away from a partly initialised module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pinengine

# The package under test, wherever it is installed (the source tree, or a
# wheel in another environment, as in the edge runs).
PACKAGE = Path(pinengine.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: module level, including try/if bodies, not functions."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
                for handler in node.handlers:
                    walk(handler.body)
                walk(node.orelse)
                walk(node.finalbody)
            elif isinstance(node, (ast.With,)):
                walk(node.body)

    walk(tree.body)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module name -> the pinengine modules it imports at module level."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _top_level_imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = package.split(".")
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts)
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                # ``from . import x`` imports the submodule x; any other name is read
                # from the module ``mod`` itself, which must have run first.
                submodules = [f"{mod}.{alias.name}" for alias in node.names if f"{mod}.{alias.name}" in modules]
                targets = submodules
                if len(submodules) < len(node.names) or not submodules:
                    targets = [mod, *submodules]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
                # Importing a.b.c runs a/__init__ and a/b/__init__ first.
                parts = target.split(".")
                for i in range(1, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent in modules and parent != name and not name.startswith(parent + "."):
                        graph[name].add(parent)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (or a self-loop), as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
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
            if len(component) > 1 or v in graph[v]:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return components


def _loop_path(graph: dict[str, set[str]], component: list[str]) -> str:
    """One concrete loop through the component's first module, e.g. ``a -> b -> a``."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return " -> ".join(paths[v] + [start])
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return " <-> ".join(component)  # pragma: no cover - a component always has a loop


def test_graph_sees_the_package() -> None:
    graph = import_graph()
    assert "pinengine.policy" in graph
    assert "pinengine._hostnames" in graph["pinengine.policy"]
    assert "pinengine.stores._base" in graph["pinengine.stores.sqlite"]


def test_finder_names_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    (component,) = find_cycles(graph)
    assert component == ["a", "b", "c"]
    assert _loop_path(graph, component) == "a -> b -> c -> a"
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_loop() -> None:
    graph = import_graph()
    loops = [_loop_path(graph, c) for c in find_cycles(graph)]
    assert not loops, "import loops among module-level imports of pinengine:\n  " + "\n  ".join(loops)


def test_bottom_layers_import_nothing_above_them() -> None:
    graph = import_graph()
    bottom = {"pinengine._errors", "pinengine._hostnames", "pinengine._types"}
    for name in bottom:
        assert graph[name] <= bottom, f"{name} imports {sorted(graph[name] - bottom)}"


def test_the_twin_exports_only_the_core_api() -> None:
    """Every public name of the pure-Python core is the core API (its ``__all__``), a type of it, or an import."""
    import typing

    import pinengine._core_py as twin

    extra = {
        name for name, value in vars(twin).items()
        if not name.startswith("_") and name not in twin.__all__
        and not isinstance(value, type(typing)) and not hasattr(typing, name) and name != "annotations"
    }
    assert extra == {"CertificateInfo", "CertificateParseError"}  # the types in its signatures, as the compiled core's
