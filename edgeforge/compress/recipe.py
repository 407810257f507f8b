"""Compression recipes as data: what each weight layer becomes (bits, sparsity, structured or not).

A recipe names only the layers it changes; every other weight layer stays dense int8. Recipes are
what the search explores, what the report lists and what ``--recipe FILE`` (TOML) replays.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeforge.errors import UsageError
from edgeforge.ops import CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
from edgeforge.resources import data_dir

BITS = (8, 4)


@dataclass(frozen=True, order=True)
class LayerChoice:
    """One weight layer's compression: weight bit width and the fraction of its weights set to zero."""

    bits: int = 8
    sparsity: float = 0.0
    structured: bool = False  # zero whole output channels (lowest L2 norm) instead of single weights

    @property
    def is_default(self) -> bool:
        return self.bits == 8 and self.sparsity == 0.0

    def label(self) -> str:
        text = f"int{self.bits}"
        if self.sparsity:
            text += f" {self.sparsity * 100:g}% {'channels ' if self.structured else ''}pruned"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"bits": self.bits, "sparsity": self.sparsity, "structured": self.structured}


DENSE_INT8 = LayerChoice()
_SHORT = {CONV_2D: "conv", DEPTHWISE_CONV_2D: "dw", FULLY_CONNECTED: "fc"}


def layer_name(op: str, index: int) -> str:
    """A weight layer's short, stable name: op kind and op index (converted models' tensor names are opaque)."""
    return f"{_SHORT.get(op, op.lower())}{index}"


@dataclass(frozen=True)
class Recipe:
    """Per-layer choices keyed by the op index of the layer in the int8 model."""

    name: str
    layers: tuple[tuple[int, LayerChoice], ...] = field(default=())

    @staticmethod
    def of(name: str, choices: Mapping[int, LayerChoice]) -> Recipe:
        return Recipe(name, tuple(sorted((k, c) for k, c in choices.items() if not c.is_default)))

    def choice(self, op_index: int) -> LayerChoice:
        return dict(self.layers).get(op_index, DENSE_INT8)

    @property
    def key(self) -> tuple[tuple[int, LayerChoice], ...]:
        return self.layers

    def summary(self, names: Mapping[int, str] | None = None) -> str:
        if not self.layers:
            return "all int8"
        groups: dict[str, list[str]] = {}
        for op, c in self.layers:
            groups.setdefault(c.label(), []).append(names[op] if names and op in names else f"#{op}")
        return "; ".join(f"{label}: {', '.join(ops)}" for label, ops in sorted(groups.items()))

    def to_json(self, all_layers: Iterable[int]) -> dict[str, dict[str, Any]]:
        return {str(op): self.choice(op).to_json() for op in all_layers}

    def to_toml(self) -> str:
        lines = [f'name = "{self.name}"', ""]
        for op, c in self.layers:
            lines += ["[[layer]]", f"op = {op}", f"bits = {c.bits}", f"sparsity = {c.sparsity}",
                      f"structured = {'true' if c.structured else 'false'}", ""]
        return "\n".join(lines)


@dataclass(frozen=True)
class SearchSpace:
    """The choices the search may make per layer and the uniform presets it always evaluates (data:
    ``targets/_search/space.toml``, overridable per target with a ``[search]`` table)."""

    bits: tuple[int, ...]
    sparsities: tuple[float, ...]
    structured_sparsities: tuple[float, ...]
    presets: tuple[tuple[str, LayerChoice], ...]
    screen_samples: int
    verify_neighbours: int
    frontier_points: int
    finetune_candidates: int = 2

    def options(self) -> list[LayerChoice]:
        """Every per-layer choice, dense int8 first."""
        out = [LayerChoice(b, s, False) for b in self.bits for s in (0.0, *self.sparsities)]
        out += [LayerChoice(b, s, True) for b in self.bits for s in self.structured_sparsities]
        return sorted(set(out), key=lambda c: (not c.is_default, c.bits != 8, c.structured, c.sparsity, -c.bits))


def load_space(overrides: Mapping[str, Any] | None = None) -> SearchSpace:
    doc = tomllib.loads((data_dir("targets") / "_search" / "space.toml").read_text(encoding="utf-8"))
    doc.update(overrides or {})
    try:
        bits = tuple(int(b) for b in doc["bits"])
        if not set(bits) <= set(BITS) or 8 not in bits:
            raise ValueError("bits must include 8 and be among 8 and 4")
        sp = tuple(float(s) for s in doc["sparsities"])
        st = tuple(float(s) for s in doc["structured_sparsities"])
        if any(not 0 < s < 1 for s in sp + st):
            raise ValueError("sparsities are fractions strictly between 0 and 1")
        presets = tuple((str(p["name"]), LayerChoice(int(p.get("bits", 8)), float(p.get("sparsity", 0.0)),
                                                     bool(p.get("structured", False)))) for p in doc["preset"])
        return SearchSpace(bits, sp, st, presets, int(doc["screen_samples"]), int(doc["verify_neighbours"]),
                           int(doc["frontier_points"]), int(doc.get("finetune_candidates", 2)))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"invalid search space: {exc}", "see targets/_search/space.toml for the format") from None


def _typed(row: Any, key: str, kind: type, default: Any) -> Any:
    """``row[key]`` if it has TOML type ``kind`` (an int is a valid float; a bool is not a number), else
    ValueError: "false" must not mean true, 2.7 must not become op 2, inf must not crash int()."""
    if not isinstance(row, dict):
        raise ValueError("each [[layer]] must be a table")
    if key not in row:
        if default is None:
            raise ValueError(f"a [[layer]] has no {key!r}")
        return default
    value = row[key]
    ok = isinstance(value, bool) if kind is bool else (
        not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else kind))
    if not ok:
        want = "true/false" if kind is bool else "an integer" if kind is int else "a number"
        raise ValueError(f"{key} = {value!r} is not {want}")
    return value


def read_recipe(path: Path, layer_ops: Iterable[int]) -> Recipe:
    """A recipe written by ``Recipe.to_toml`` (or by hand) for replay with ``--recipe``."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        valid = set(layer_ops)
        choices: dict[int, LayerChoice] = {}
        rows = doc.get("layer", [])
        if not isinstance(rows, list):
            raise ValueError("[[layer]] must be an array of tables")
        for row in rows:
            op = _typed(row, "op", int, None)
            if op not in valid:
                raise ValueError(f"op {op} is not a weight layer (weight layers: {sorted(valid)})")
            c = LayerChoice(_typed(row, "bits", int, 8), float(_typed(row, "sparsity", float, 0.0)),
                            _typed(row, "structured", bool, False))
            if c.bits not in BITS or not 0 <= c.sparsity < 1:
                raise ValueError(f"op {op}: bits must be 8 or 4 and sparsity in [0, 1)")
            choices[op] = c
        return Recipe.of(str(doc.get("name", path.stem)), choices)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot read recipe {path}: {exc}",
                         "use the recipe.toml a search wrote into its build folder as the example") from None
