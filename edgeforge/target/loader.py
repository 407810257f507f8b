"""Finds target profiles on a search path, resolves ``extends`` and aliases, validates them.

Search path, lowest precedence first: the profiles bundled with edgeforge, each folder of
``EDGEFORGE_TARGETS_PATH`` (``os.pathsep``-separated), the project's ``.edgeforge/targets/``
folder, then ``--targets-dir``. A later file with the same id replaces an earlier one; a
profile whose ``extends`` names its own id extends the earlier definition instead, so a
user can change one budget without copying the whole profile.
"""

from __future__ import annotations

import copy
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from edgeforge.errors import TargetError
from edgeforge.resources import data_dir
from edgeforge.target.schema import TARGET_SCHEMA, Target, target_from_data

ENV_PATH = "EDGEFORGE_TARGETS_PATH"
#: A folder whose ``.edgeforge/targets/`` is not read even when it is the working directory: the test suite
#: sets it to the checkout, so an `edgeforge calibrate` run there does not change what the tests see.
ENV_IGNORE_PROJECT = "EDGEFORGE_IGNORE_PROJECT_DIR"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_EXTENDS_DEPTH = 32  # bases and overrides nest a few levels; more is a mistake (or an attack on the loader)
PROJECT_DIR = Path(".edgeforge") / "targets"


@dataclass(frozen=True)
class _Raw:
    key: str
    data: dict[str, Any]
    path: Path


def search_path(extra: Iterable[Path] = (), cwd: Path | None = None) -> list[Path]:
    """Folders searched for profiles, lowest precedence first."""
    folders = [data_dir("targets")]
    folders += [Path(p) for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p]
    project = cwd or Path.cwd()
    ignored = os.environ.get(ENV_IGNORE_PROJECT)
    if not (ignored and project.resolve() == Path(ignored).resolve()):
        folders.append(project / PROJECT_DIR)
    folders += list(extra)
    seen: set[Path] = set()
    unique = []
    for folder in folders:
        resolved = folder.resolve()
        if resolved not in seen and folder.is_dir():
            seen.add(resolved)
            unique.append(folder)
    return unique


def deep_merge(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Child wins; tables merge recursively; lists and scalars replace."""
    merged = copy.deepcopy(dict(base))
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read(path: Path, key: str | None = None) -> _Raw:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise TargetError(f"cannot read target profile {path}: {exc}", "fix the TOML syntax of that file") from None
    if key is None:
        if data.get("abstract"):
            key = path.stem
        elif isinstance(data.get("id"), str):
            key = data["id"]
        else:
            raise TargetError(f"target profile {path} has no 'id'", "add id = \"...\" (or abstract = true for a base)")
    return _Raw(key, data, path)


class TargetRegistry:
    """Every profile found on the search path, resolved lazily by id or alias."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self._layers: dict[str, list[_Raw]] = {}
        for folder in folders:
            for path in sorted(folder.glob("_base/*.toml")):
                self._add(_read(path, key=f"_base/{path.stem}"))
            for path in sorted(folder.glob("*.toml")):
                self._add(_read(path))
        self._cache: dict[str, Target] = {}

    def _add(self, raw: _Raw) -> None:
        self._layers.setdefault(raw.key, []).append(raw)

    @property
    def ids(self) -> list[str]:
        return sorted(k for k, layers in self._layers.items() if not layers[-1].data.get("abstract"))

    def _chain(self, key: str) -> list[_Raw]:
        """The layers a profile is merged from, the profile itself first and its root base last.

        Iterative and bounded: a chain longer than MAX_EXTENDS_DEPTH is an error, not a RecursionError."""
        chain: list[_Raw] = []
        markers: list[str] = []
        level: int | None = None
        name = key
        while True:
            layers = self._layers.get(name)
            if not layers:
                raise TargetError(f"target profile {chain[-1].path} extends unknown profile {name!r}",
                                  "check the 'extends' field; bases live under targets/_base/")
            level = len(layers) - 1 if level is None else level
            raw = layers[level]
            marker = f"{name}@{level}"
            if marker in markers:
                raise TargetError(f"target profile {raw.path}: 'extends' forms a cycle ({' -> '.join(markers)})",
                                  "break the cycle in the 'extends' fields")
            if len(chain) >= MAX_EXTENDS_DEPTH:
                raise TargetError(f"target profile {chain[0].path}: its 'extends' chain is deeper than "
                                  f"{MAX_EXTENDS_DEPTH} profiles", "extend a bundled profile or base directly")
            markers.append(marker)
            chain.append(raw)
            parent = raw.data.get("extends")
            if parent is None:
                return chain
            if not isinstance(parent, str):
                raise TargetError(f"invalid target profile {raw.path}: extends: must be a profile id (a string)",
                                  "e.g. extends = \"_base/mcu\"")
            if parent == name:
                if level == 0:
                    raise TargetError(f"target profile {raw.path} extends itself but nothing earlier defines "
                                      f"{name!r}", "extend another profile, or remove 'extends'")
                level -= 1  # an override: the earlier definition of the same id
            else:
                name, level = parent, None

    def _merged(self, key: str) -> dict[str, Any]:
        """Each layer of the chain deep-merged over its parent, root first."""
        data: dict[str, Any] = {}
        for raw in reversed(self._chain(key)):
            parent = {k: v for k, v in data.items() if k not in ("abstract", "aliases")}
            data = deep_merge(parent, {k: v for k, v in raw.data.items() if k not in ("extends", "aliases")})
        aliases = self._own_aliases(key)
        if aliases is not None:
            data["aliases"] = copy.deepcopy(aliases)
        return data

    def _own_aliases(self, key: str) -> Any:
        """A profile's aliases: from its own file, or from the definition of the same id it overrides
        (``extends = <its own id>``, what ``edgeforge calibrate`` writes). A new id extending another profile
        does not inherit that profile's aliases: two targets would claim the same names."""
        layers = self._layers.get(key, [])
        for raw in reversed(layers):
            if "aliases" in raw.data:
                return raw.data["aliases"]
            if raw.data.get("extends") != key:
                return None
        return None

    def get(self, name: str) -> Target:
        """The profile with id or alias ``name``; TargetError (exit 2) if none."""
        key = self.resolve_name(name)
        if key not in self._cache:
            self._cache[key] = self._validated(key)
        return self._cache[key]

    def resolve_name(self, name: str) -> str:
        if name in self._layers and not self._layers[name][-1].data.get("abstract"):
            return name
        aliases = self.aliases()
        if name in aliases:
            return aliases[name]
        lowered = name.lower()
        if lowered != name:
            return self.resolve_name(lowered)
        close = [i for i in self.ids if lowered in i or i in lowered]
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise TargetError(f"unknown target {name!r}", f"{hint}`edgeforge targets` lists the known ids and aliases")

    def aliases(self) -> dict[str, str]:
        table: dict[str, str] = {}
        for key in self.ids:
            aliases = self._own_aliases(key)
            for alias in aliases if isinstance(aliases, list) else []:
                if isinstance(alias, str):
                    table.setdefault(alias, key)
        return table

    def _validated(self, key: str) -> Target:
        data = self._merged(key)
        data.pop("abstract", None)
        bad = _unsafe_value(data)
        if bad is not None:
            where, why = bad
            raise TargetError(f"invalid target profile {self._origin(key, where)}: {_dotted(where)}: {why}",
                              "profile values may not hold control characters (a new line would start a new "
                              "line in a generated file) or nan/inf")
        errors = sorted(jsonschema.Draft202012Validator(TARGET_SCHEMA).iter_errors(data), key=lambda e: list(e.path))
        if errors:
            err = errors[0]
            where = tuple(err.path)
            message = err.message
            if err.validator == "pattern" and "x-grammar" in err.schema:
                message = f"{err.instance!r} is not {err.schema['x-grammar']}"
            raise TargetError(f"invalid target profile {self._origin(key, where)}: {_dotted(where)}: {message}",
                              "see the schema in edgeforge/target/schema.py and the bundled profiles under targets/")
        return target_from_data(data, str(self._layers[key][-1].path))

    def _origin(self, key: str, where: tuple[Any, ...]) -> Path:
        """The file of ``key``'s extends chain that sets the field at ``where`` (else the profile's own file)."""
        chain = self._chain(key)
        for raw in chain:
            node: Any = raw.data
            for part in where:
                if isinstance(node, dict) and part in node:
                    node = node[part]
                elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                    node = node[part]
                else:
                    break
            else:
                return raw.path
        return chain[0].path

    def all(self) -> list[Target]:
        """Every concrete profile, validated; also checks ids and aliases are unambiguous."""
        targets = [self.get(i) for i in self.ids]
        owner: dict[str, str] = {}
        for t in targets:
            for name in (t.id, *t.aliases):
                if name in owner and owner[name] != t.id:
                    raise TargetError(f"name {name!r} is used by targets {owner[name]!r} and {t.id!r}",
                                      "give each target unique aliases")
                owner[name] = t.id
        return targets


def _dotted(where: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in where) or "(top level)"


def _unsafe_value(data: Any) -> tuple[tuple[Any, ...], str] | None:
    """The first string with a control character or number that is not finite, and why; None if none."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            stack.extend(((*where, k), v) for k, v in reversed(list(node.items())))
            if any(isinstance(k, str) and _CONTROL.search(k) for k in node):
                return where, "a key holds a control character"
        elif isinstance(node, list):
            stack.extend(((*where, i), v) for i, v in reversed(list(enumerate(node))))
        elif isinstance(node, str) and _CONTROL.search(node):
            return where, f"{node!r} holds a control character"
        elif isinstance(node, float) and not math.isfinite(node):
            return where, f"{node} is not a finite number"
    return None


def load_registry(extra_dirs: Iterable[Path] = (), cwd: Path | None = None) -> TargetRegistry:
    return TargetRegistry(search_path(extra_dirs, cwd))
