"""The architecture rule, read from the source: data flows one way through the layers, and no two modules
import each other (directly or through a chain) at import time.

Layers, left to right (a module may import its own layer and those to its left, never one to its right)::

    base (_io, _types, _validation, _checks) -> processes -> scores -> training -> data -> sampling
        -> analysis -> studies -> cli

Imports inside functions count for the layer rule (a lazy import is still a dependency) but not for cycles
(they are how a module legitimately defers an optional or heavy dependency).
"""

import ast
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1] / "diffsim"
ORDER = ["base", "processes", "scores", "training", "data", "sampling", "analysis", "studies", "cli"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "diffsim":
        return None
    if len(parts) == 1:
        return "face"
    head = parts[1]
    if head in ("_io", "_types", "_validation", "_checks", "_version"):
        return "base"
    return head if head in ORDER else "base"


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text())
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # imports under a module-level `if`/`try` are module-level too
        if isinstance(node, (ast.If, ast.Try)):
            top_level |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from . import x` may name a submodule
                candidate = f"{target}.{alias.name}"
                if (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    ROOT.parent / candidate.replace(".", "/") / "__init__.py"
                ).exists():
                    out.append((candidate, id(node) in top_level))
                else:
                    out.append((target, id(node) in top_level))
    return [(m, top) for m, top in out if m.startswith("diffsim")]


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def test_layers_import_only_leftwards():
    violations = []
    for module, imports in GRAPH.items():
        mine = _layer(module)
        if mine == "face":
            continue
        for target, _ in imports:
            theirs = _layer(target)
            if theirs in (None, "face"):
                if theirs == "face" and mine != "base":
                    # the package face re-exports from every layer: import the layer itself instead
                    violations.append(f"{module} imports the package face {target}")
                continue
            if ORDER.index(theirs) > ORDER.index(mine):
                violations.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert not violations, "layer rule broken:\n" + "\n".join(sorted(set(violations)))


def _cycles() -> list[list[str]]:
    edges = {
        m: sorted({t for t, top in imps if top and t in MODULES and t != m}) for m, imps in GRAPH.items()
    }
    # a submodule importing its own package's face at import time is the normal Python package pattern
    # only when the face does not import it back; keep every edge and report strongly connected components
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                comps.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return comps


def _is_package_face_cycle(comp: list[str]) -> bool:
    """A package face and its own private submodules (``pkg/__init__`` re-exporting ``pkg._x``, which imports
    a sibling through ``from . import``) is not a dependency cycle between modules of one job."""
    faces = [m for m in comp if MODULES[m].name == "__init__.py"]
    return len(faces) == 1 and all(m == faces[0] or m.startswith(faces[0] + ".") for m in comp)


def test_no_import_cycles():
    cycles = [c for c in _cycles() if not _is_package_face_cycle(c)]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("layer", ["scores", "data", "sampling", "analysis"])
def test_layer_has_an_explicit_face(layer):
    face = ROOT / layer / "__init__.py"
    assert face.exists()
    tree = ast.parse(face.read_text())
    assert ast.get_docstring(tree), f"diffsim.{layer} needs a docstring saying what it holds"
    exported = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert exported, f"diffsim.{layer} re-exports nothing"
