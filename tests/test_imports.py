"""The package's modules depend on each other one way only: no import circle, lazy imports included.

Every ``import`` and ``from … import`` in every ``framereel/**/*.py`` file (at module level, inside
functions, under ``if TYPE_CHECKING``) is an edge from that module to the framereel module it names;
the graph they make must have no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "framereel"

KNOWN_CYCLES: set[frozenset[str]] = set()  # pairs of modules allowed to import each other (none)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.AST, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """The framereel modules one import statement names (a submodule where ``from X import name`` names one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "framereel"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    if target.split(".")[0] != "framereel":
        return []
    subs = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules]
    return subs if subs and len(subs) == len(node.names) else [target, *subs]


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        edges = {t for node in ast.walk(tree) for t in imported(node, module, is_package, set(files))}
        graph[module] = {t for t in edges if t in files and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module, as one cycle through it (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [cycle_through(graph, g) for g in groups]


def cycle_through(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """One path a → … → a inside ``group`` (breadth first from its first module)."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & group):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    return sorted(group)


def without_known(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    pairs = {tuple(sorted(p)) for p in KNOWN_CYCLES}
    return {v: {w for w in ws if tuple(sorted((v, w))) not in pairs} for v, ws in graph.items()}


def test_the_import_graph_sees_lazy_imports():
    graph = import_graph()
    assert "framereel.validate" in graph["framereel.settings"]  # at module level
    assert "framereel.ffmpeg" in graph["framereel.doctor"]  # inside a function
    assert "framereel.backends.tt_chips" in graph["framereel.backends"]  # expand_devices: inside the function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle():
    found = cycles(without_known(import_graph()))
    assert not found, "import cycles: " + "; ".join(" → ".join(c) for c in found)
