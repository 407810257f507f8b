"""Budgets as a gate: one verdict per budget, with how much is left or missing."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from edgeforge.errors import UsageError
from edgeforge.target.schema import Budget


@dataclass(frozen=True)
class Verdict:
    budget: str  # model_flash_bytes | model_ram_bytes | latency_ms | max_accuracy_drop
    limit: float
    value: float | None  # None: could not be evaluated
    basis: str  # measured / estimated / not evaluated, and how

    @property
    def fits(self) -> bool | None:
        return None if self.value is None else self.value <= self.limit

    @property
    def excess(self) -> float | None:
        return None if self.value is None else self.value - self.limit

    def to_json(self) -> dict[str, Any]:
        return {"budget": self.budget, "limit": self.limit, "value": self.value, "fits": self.fits,
                "excess": self.excess, "basis": self.basis}


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1 << 20, "mb": 1000_000, "mib": 1 << 20}


def parse_bytes(text: str) -> int:
    """'65536', '64K', '64KiB', '1.5M', '96kB' -> bytes (K and M are binary, kB and MB decimal)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise UsageError(f"cannot read {text!r} as a size", "write e.g. 65536, 64K, 64KiB, 1M or 96kB")
    return int(float(m.group(1)) * _UNITS[unit])


def with_overrides(budget: Budget, flash: str | None = None, ram: str | None = None,
                   latency_ms: float | None = None, max_drop: float | None = None) -> Budget:
    changes: dict[str, Any] = {}
    if flash is not None:
        changes["model_flash_bytes"] = parse_bytes(flash)
    if ram is not None:
        changes["model_ram_bytes"] = parse_bytes(ram)
    if latency_ms is not None:
        if latency_ms <= 0:
            raise UsageError("--latency-budget-ms must be positive", "e.g. --latency-budget-ms 50")
        changes["latency_ms"] = float(latency_ms)
    if max_drop is not None:
        if not 0 <= max_drop <= 1:
            raise UsageError("--max-accuracy-drop is a fraction between 0 and 1", "e.g. 0.02 for two points")
        changes["max_accuracy_drop"] = float(max_drop)
    return replace(budget, **changes)
