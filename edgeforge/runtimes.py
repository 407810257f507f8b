"""The runtimes a build can target, and which ops each can run.

``Runtime`` names each one and carries the behaviour that differs between them (what goes to flash, whether
it runs on a microcontroller, which host interpreter reproduces its outputs, ...), so callers ask a question
instead of comparing names. Op support is data: ``targets/_runtimes/<name>.toml``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
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


class Runtime(StrEnum):
    """A runtime; a string equal to its name (``Runtime.NATIVE == "native"``, ``str(Runtime.NATIVE) == "native"``),
    so profiles, manifests and JSON keep plain names."""

    TFLM = "tflm"  # TensorFlow Lite Micro: the .tflite flatbuffer and an interpreter on the microcontroller
    LITERT = "litert"  # LiteRT on Linux / Android: the .tflite file, arena planned at run time
    NATIVE = "native"  # edgeforge's ahead-of-time C (firmware/runtime): constants in C arrays, a static arena

    @property
    def support(self) -> RuntimeSupport:
        return runtime_support(self.value)

    @property
    def generates_c(self) -> bool:
        """The build emits the model as C (kernel calls and constants): no flatbuffer, no interpreter; flash
        holds the weights as stored (sparse, packed int4), and the generated C is what runs and is measured."""
        return self is Runtime.NATIVE

    @property
    def flash_holds_flatbuffer(self) -> bool:
        """What goes to flash is the .tflite flatbuffer itself: its size is the exact model flash."""
        return not self.generates_c

    @property
    def on_microcontroller(self) -> bool:
        """Runs on a microcontroller with an arena fixed at build time (calibration, QEMU bench)."""
        return self in (Runtime.TFLM, Runtime.NATIVE)

    @property
    def skips_zero_weights(self) -> bool:
        """Pruned weights leave flash and cost no MACs (the native runtime's sparse kernels)."""
        return self.generates_c

    @property
    def selectable_rounding(self) -> bool:
        """``--rounding single`` (TFLITE_SINGLE_ROUNDING arithmetic) can be generated for it."""
        return self.generates_c

    @property
    def reference_interpreter(self) -> Runtime:
        """The host interpreter whose outputs this runtime reproduces byte for byte (with double rounding):
        the native kernels are bit-exact with TFLM's reference kernels."""
        return Runtime.TFLM if self is Runtime.NATIVE else self

    @classmethod
    def of(cls, name: str | Runtime) -> Runtime:
        return cls(name)


#: every runtime name, in the profiles' order
RUNTIME_NAMES: tuple[str, ...] = tuple(r.value for r in Runtime)
