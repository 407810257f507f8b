"""No two edgeforge modules import each other: the library is layered (stages below the pipeline, the cost
model below analyze, ...). Imports inside functions and under ``TYPE_CHECKING`` count too: a deferred import
is still a knot a reader has to untie. A package and its own submodules are exempt (``__init__`` re-exports)."""

from __future__ import annotations

import ast
from pathlib import Path

import edgeforge

PACKAGE = Path(edgeforge.__file__).parent


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for path in sorted(root.rglob("*.py")):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = path
    return mods


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body (relative imports resolved)."""
    mods = _modules(root)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            edges[mod] |= {t for t in targets if t in mods and t != mod}
    return edges


def mutual_imports(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted({tuple(sorted((a, b))) for a in edges for b in edges[a]  # type: ignore[misc]
                   if a in edges.get(b, ()) and not (a.startswith(b + ".") or b.startswith(a + "."))})


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that reach each other through imports (strongly connected components of more than one
    module). A module's import of a package it lives in (``from edgeforge import __version__``) is not counted."""
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is small, so recursion depth is not a concern
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycles_of_any_length() -> None:
    found = cycles(import_graph(PACKAGE))
    assert not found, "modules that reach each other through imports: " + "; ".join(" -> ".join(g) for g in found)


def test_no_two_modules_import_each_other() -> None:
    pairs = mutual_imports(import_graph(PACKAGE))
    assert not pairs, "modules that import each other: " + "; ".join(f"{a} <-> {b}" for a, b in pairs)


def test_the_check_sees_deferred_relative_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import a\n")  # a package re-exporting its own module: exempt
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n")
    (pkg / "c.py").write_text("import pkg.sub.b\n")
    edges = import_graph(pkg)
    assert edges["pkg.a"] == {"pkg.sub", "pkg.sub.b"} and edges["pkg.sub.b"] == {"pkg", "pkg.a"}
    assert mutual_imports(edges) == [("pkg.a", "pkg.sub.b")]
    assert cycles(edges) == [["pkg.a", "pkg.sub.b"]]
    (pkg / "a.py").write_text("from pkg import c\n")  # a -> c -> sub.b -> a: no pair, still a cycle
    (pkg / "c.py").write_text("import pkg.sub.b\n")
    (pkg / "sub" / "b.py").write_text("from pkg import a\n")
    edges = import_graph(pkg)
    assert mutual_imports(edges) == [] and cycles(edges) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
