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
