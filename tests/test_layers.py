"""The package's layers (docs/architecture.md): every import of budgetune's own modules, at module level and inside
functions, read from the source with ast. The graph between packages has no cycle, and the directions the
architecture forbids do not occur."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import budgetune

ROOT = Path(budgetune.__file__).parent

# Top-level modules that are one concern split into files count as one node.
GROUPS = {"flops": "flops", "flop_profile": "flops", "flop_plan": "flops", "flops_reference": "flops"}

# What a node may import, where the architecture limits it (None: any lower layer).
ONLY = {
    "budget": {"atomic", "errors"},
    "report": {"atomic", "errors", "lazy"},  # the run directory's files, read through the io helpers
    "memory": {"errors", "models", "lazy"},  # pure terms and the model spec: the bottom of the planner
}
FORBIDDEN = {("governor", "train"), ("memory", "methods"), ("memory", "planner")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(path: Path, tree: ast.AST) -> list[tuple[str, int]]:
    """(imported budgetune module, line) for every import in the file, wherever it sits."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "budgetune"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "budgetune":
                continue
            for alias in node.names:  # `from . import x` imports the module budgetune.x
                sub = f"{module}.{alias.name}"
                is_module = (ROOT.parent / sub.replace(".", "/")).with_suffix(".py").exists() or (
                    ROOT.parent / sub.replace(".", "/")).is_dir()
                out.append((sub if is_module else module, node.lineno))
    return out


def node(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return GROUPS.get(top, top)


def import_graph() -> dict[tuple[str, str], list[str]]:
    """(importing node, imported node) → where, for every import that crosses nodes."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(ROOT.rglob("*.py")):
        source = node(_module_name(path))
        for target, line in _targets(path, ast.parse(path.read_text(encoding="utf-8"))):
            if target == "budgetune":
                continue
            dest = node(target)
            if dest != source:
                edges[(source, dest)].append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    return edges


def cycles(edges) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_module_and_function_level_imports():
    # Known by construction: loop.py imports the budget at module level; run_files.py imports the planner inside
    # a function; selection/ranks.py reaches budgetune.dist through a relative import.
    edges = import_graph()
    assert any("train/loop.py" in w and "budgetune.budget" in w for w in edges[("train", "budget")])
    assert any("train/run_files.py" in w for w in edges[("train", "planner")])
    assert any("selection/ranks.py" in w for w in edges[("selection", "dist")])


def test_cycle_finder_on_a_known_graph():
    assert cycles({("a", "b"): [], ("b", "c"): [], ("c", "a"): [], ("c", "d"): []}) == [["a", "b", "c"]]
    assert cycles({("a", "b"): [], ("b", "c"): []}) == []


def test_no_cycle_between_packages():
    edges = import_graph()
    found = cycles(edges)
    detail = [w for comp in found for (a, b), where in edges.items() if a in comp and b in comp for w in where]
    assert not found, f"import cycles {found}:\n" + "\n".join(detail)


def test_no_forbidden_direction():
    edges = import_graph()
    bad = [w for (a, b), where in edges.items()
           if (a, b) in FORBIDDEN or (a in ONLY and b not in ONLY[a]) for w in where]
    assert not bad, "imports the layers forbid:\n" + "\n".join(bad)
