"""Finds target profiles on a search path, resolves ``extends`` and aliases, validates them.

Search path, lowest precedence first: the profiles bundled with edgeforge, each folder of
``EDGEFORGE_TARGETS_PATH`` (``os.pathsep``-separated), the project's ``.edgeforge/targets/``
folder, then ``--targets-dir``. A later file with the same id replaces an earlier one; a
profile whose ``extends`` names its own id extends the earlier definition instead, so a
user can change one budget without copying the whole profile.
"""

from __future__ import annotations

import copy
import os
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
    folders.append((cwd or Path.cwd()) / PROJECT_DIR)
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
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
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

    def _merged(self, key: str, level: int | None = None, chain: tuple[str, ...] = ()) -> dict[str, Any]:
        layers = self._layers.get(key)
        if not layers:
            raise TargetError(f"profile {chain[-1] if chain else key!r} extends unknown profile {key!r}",
                              "check the 'extends' field; bases live under targets/_base/")
        level = len(layers) - 1 if level is None else level
        raw = layers[level]
        marker = f"{key}@{level}"
        if marker in chain:
            raise TargetError(f"target profile {raw.path}: 'extends' forms a cycle ({' -> '.join(chain)})",
                              "break the cycle in the 'extends' fields")
        parent_key = raw.data.get("extends")
        data = {k: v for k, v in raw.data.items() if k != "extends"}
        if parent_key is None:
            return data
        if parent_key == key:
            if level == 0:
                raise TargetError(f"target profile {raw.path} extends itself but nothing earlier defines {key!r}",
                                  "extend another profile, or remove 'extends'")
            parent = self._merged(key, level - 1, chain + (marker,))
        else:
            parent = self._merged(parent_key, None, chain + (marker,))
        parent.pop("abstract", None)
        return deep_merge(parent, data)

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
            for alias in self._layers[key][-1].data.get("aliases", []) or []:
                table[alias] = key
        return table

    def _validated(self, key: str) -> Target:
        raw = self._layers[key][-1]
        data = self._merged(key)
        data.pop("abstract", None)
        errors = sorted(jsonschema.Draft202012Validator(TARGET_SCHEMA).iter_errors(data), key=lambda e: list(e.path))
        if errors:
            err = errors[0]
            where = ".".join(str(p) for p in err.path) or "(top level)"
            raise TargetError(f"invalid target profile {raw.path}: {where}: {err.message}",
                              "see the schema in edgeforge/target/schema.py and the bundled profiles under targets/")
        return target_from_data(data, str(raw.path))

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


def load_registry(extra_dirs: Iterable[Path] = (), cwd: Path | None = None) -> TargetRegistry:
    return TargetRegistry(search_path(extra_dirs, cwd))
