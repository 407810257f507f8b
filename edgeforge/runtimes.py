"""Which ops each runtime can run, read from ``targets/_runtimes/*.toml`` (data, not code)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache

from edgeforge.resources import data_dir


@dataclass(frozen=True)
class RuntimeSupport:
    name: str
    ops: dict[str, str]  # op -> TFLM resolver method (empty for litert)
    all_builtins: bool
    int8_registrations: dict[str, str] = field(default_factory=dict)  # op -> TFLM int8-only registration

    def supports(self, op: str) -> bool:
        if op.startswith("CUSTOM:"):
            return False
        return self.all_builtins or op in self.ops

    def unsupported(self, ops: list[str]) -> list[str]:
        return [op for op in ops if not self.supports(op)]


@cache
def runtime_support(name: str) -> RuntimeSupport:
    path = data_dir("targets") / "_runtimes" / f"{name}.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return RuntimeSupport(name, dict(data.get("ops", {})), bool(data.get("all_builtins", False)),
                          dict(data.get("int8_registrations", {})))
