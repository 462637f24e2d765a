"""The package's import graph: one direction between parts, no cycle, no import of the thin entry-point folders.

Every ``import`` of every module of ``matseg_hub`` counts, the ones inside functions too (a lazy import is still a
dependency). The allowed direction between subpackages is the map in CONTRIBUTING.md.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

PKG = Path(__file__).resolve().parents[1] / "matseg_hub"
ENTRY_FOLDERS = {"builders", "generation", "train", "metrics", "bench", "tests"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: Dict[str, Path] = {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path) -> List[str]:
    """The modules ``path`` imports (absolute names; ``from a import b`` counts as ``a.b`` when that is a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                out.append(full if full in MODULES else module)
    return out


GRAPH: Dict[str, Set[str]] = {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    assert "matseg_hub.metrics.triplet" in GRAPH["matseg_hub.benchmark.evaluation"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_library_never_imports_an_entry_point_folder(module):
    bad = [i for i in _imports(MODULES[module]) if i.split(".")[0] in ENTRY_FOLDERS]
    assert bad == [], f"{module} imports {bad}: library code lives in matseg_hub/, entry points call it"


# part -> the parts it may import (besides itself, errors, citation and utils, which every part may use)
ALLOWED = {
    "utils": set(),
    "metrics": set(),
    "hub": set(),
    "benchmark": {"metrics", "hub", "models"},
    "synthetic": {"hub"},
    "materials": {"hub", "synthetic"},
    "scenes3d": {"hub", "synthetic", "materials"},
    "models": {"metrics"},
    "training": {"models", "synthetic", "benchmark", "metrics", "hub"},
    "segmentation": {"metrics", "hub", "models", "synthetic", "benchmark"},
    "cli": {"", "benchmark", "metrics", "synthetic", "materials", "scenes3d", "models", "training", "hub",
            "segmentation"},
}
BASE = {"errors", "citation", "utils"}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _part(m) in ALLOWED))
def test_parts_import_only_what_the_map_allows(module):
    part = _part(module)
    bad = sorted(i for i in GRAPH[module] if _part(i) not in BASE | {part} | ALLOWED[part])
    assert bad == [], f"{module} ({part}/) imports {bad}: see the package map in CONTRIBUTING.md"
