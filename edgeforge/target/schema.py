"""The target-profile schema (JSON Schema over the merged TOML) and the typed view of a profile."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

RUNTIMES = ("tflm", "litert", "native")
QUANTIZATIONS = ("int8", "float16", "dynamic-int8", "float32")
EMITTERS = ("carray", "platformio", "bundle")
KINDS = ("mcu", "sbc", "mobile")
FLASH_TOOLS = ("platformio", "esptool", "picotool", "openocd", "adb", "scp", "none")

_POS_INT = {"type": "integer", "minimum": 1}
_POS_NUM = {"type": "number", "exclusiveMinimum": 0}


def _enum_list(values: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "array", "items": {"enum": list(values)}, "minItems": 1, "uniqueItems": True}


def _strict(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_NONNEG = {"type": "number", "minimum": 0}

#: ``[perf.ops.<runtime>]``: cycles per MAC of each weighted op kind, per output element of those ops
#: (bias, requantisation, activation), per output element of element-wise ops (ADD, softmax, ...), per element
#: read by pools and reductions (``pool``, default: ``elementwise``), per op invocation, per weight position a
#: sparse kernel scans (native), per int4 MAC decoded in the inner loop (``int4_unpack``; depthwise:
#: ``int4_unpack_depthwise``, default ``int4_unpack``) and per int4 weight unpacked on each invoke (TFLM's
#: reference kernels). See edgeforge/compress/cost.py.
_PERF_OPS = _strict(
    {
        "conv_2d": _POS_NUM,
        "depthwise_conv_2d": _POS_NUM,
        "fully_connected": _POS_NUM,
        "output": _NONNEG,
        "elementwise": _NONNEG,
        "pool": _NONNEG,
        "per_op": _NONNEG,
        "sparse_scan": _NONNEG,
        "int4_unpack": _NONNEG,
        "int4_unpack_depthwise": _NONNEG,
        "int4_unpack_weight": _NONNEG,
        "source": {"type": "string", "minLength": 1},
    },
    ["conv_2d", "depthwise_conv_2d", "fully_connected", "elementwise", "per_op", "source"],
)


#: JSON Schema of a concrete (merged) profile. Abstract bases are checked only once merged into a child.
TARGET_SCHEMA: dict[str, Any] = _strict(
    {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "extends": {"type": "string"},
        "abstract": {"const": False},
        "aliases": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}},
        "kind": {"enum": list(KINDS)},
        "runtimes": _enum_list(RUNTIMES),
        "quantization": _enum_list(QUANTIZATIONS),
        "emit": _enum_list(EMITTERS),
        "hardware": _strict(
            {
                "arch": {"type": "string"},
                "cpu": {"type": "string"},
                "cores": _POS_INT,
                "clock_mhz": _POS_NUM,
                "flash_bytes": _POS_INT,
                "ram_bytes": _POS_INT,
                "features": _strict(
                    {k: {"type": "boolean"} for k in ("dsp", "simd", "fpu", "mve", "neon")},
                    ["dsp", "simd", "fpu", "mve", "neon"],
                ),
            },
            ["arch", "cpu", "cores", "clock_mhz", "flash_bytes", "ram_bytes", "features"],
        ),
        "budget": _strict(
            {
                "model_flash_bytes": _POS_INT,
                "model_ram_bytes": _POS_INT,
                "latency_ms": _POS_NUM,
                "max_accuracy_drop": {"type": "number", "minimum": 0, "maximum": 1},
            },
            ["model_flash_bytes", "model_ram_bytes", "latency_ms", "max_accuracy_drop"],
        ),
        "perf": _strict(
            {
                "cycles_per_mac": _POS_NUM,
                "source": {"type": "string"},
                # optional per-runtime latency cost tables (edgeforge/compress/cost.py); a runtime without one
                # falls back to cycles_per_mac
                "ops": {"type": "object", "properties": {rt: _PERF_OPS for rt in RUNTIMES},
                        "additionalProperties": False},
            },
            ["cycles_per_mac", "source"],
        ),
        "platformio": _strict(
            {
                "env": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                "platform": {"type": "string", "minLength": 1},
                "board": {"type": "string", "minLength": 1},
                "framework": {"type": "string", "minLength": 1},
                "lib_deps": {"type": "array", "items": {"type": "string"}},
                "build_flags": {"type": "array", "items": {"type": "string"}},
                "monitor_speed": _POS_INT,
                "tflm_header": {"type": "string"},
                "upload_protocol": {"type": "string"},
                "monitor_filters": {"type": "array", "items": {"type": "string"}},
                "board_build_partitions": {"type": "string"},
                # the TFLM kernel set the project's TFLM library compiles (edgeforge benches the same one)
                "tflm_kernels": {"enum": ["reference", "cmsis_nn"]},
                # false when the project's TFLM library predates the int8-only registrations (Register_*_INT8)
                "tflm_int8_kernels": {"type": "boolean"},
            },
            ["env", "platform", "board", "framework", "lib_deps", "monitor_speed", "tflm_header"],
        ),
        "toolchain": _strict(
            {
                "cross": {"type": "string", "pattern": "^[a-z0-9_-]+$"},
                "cflags": {"type": "array", "items": {"type": "string"}},
                "flash_origin": {"type": "integer", "minimum": 0},
                "ram_origin": {"type": "integer", "minimum": 0},
            },
            ["cross", "cflags", "flash_origin", "ram_origin"],
        ),
        "flash": _strict(
            {"tool": {"enum": list(FLASH_TOOLS)}, "remote_dir": {"type": "string"}},
            ["tool"],
        ),
        "serial": _strict(
            {
                "baud": _POS_INT,
                "reset": {"enum": ["dtr-rts", "1200bps-touch", "none"]},
                "usb_ids": {"type": "array", "items": {"type": "string", "pattern": "^[0-9A-F]{4}:[0-9A-F]{4}$"}},
            },
            ["baud", "reset"],
        ),
    },
    ["id", "name", "kind", "runtimes", "quantization", "emit", "hardware", "budget", "perf", "flash"],
)


@dataclass(frozen=True)
class Budget:
    model_flash_bytes: int
    model_ram_bytes: int
    latency_ms: float
    max_accuracy_drop: float


@dataclass(frozen=True)
class Target:
    """A validated, merged target profile. ``data`` keeps every field for templates and JSON."""

    id: str
    name: str
    kind: str
    aliases: tuple[str, ...]
    runtimes: tuple[str, ...]
    quantization: tuple[str, ...]
    emit: tuple[str, ...]
    budget: Budget
    source: str
    data: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def runtime(self) -> str:
        """The default runtime (the profile's first)."""
        return self.runtimes[0]

    @property
    def is_mcu(self) -> bool:
        return self.kind == "mcu"

    @property
    def hardware(self) -> dict[str, Any]:
        return self.data["hardware"]

    @property
    def platformio(self) -> dict[str, Any] | None:
        return self.data.get("platformio")

    @property
    def profile_hash(self) -> str:
        """sha256 of the merged profile: changes whenever any effective setting changes."""
        canonical = json.dumps(self.data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {**self.data, "source": self.source, "profile_sha256": self.profile_hash}


def target_from_data(data: dict[str, Any], source: str) -> Target:
    b = data["budget"]
    return Target(
        id=data["id"],
        name=data["name"],
        kind=data["kind"],
        aliases=tuple(data.get("aliases", ())),
        runtimes=tuple(data["runtimes"]),
        quantization=tuple(data["quantization"]),
        emit=tuple(data["emit"]),
        budget=Budget(
            model_flash_bytes=int(b["model_flash_bytes"]),
            model_ram_bytes=int(b["model_ram_bytes"]),
            latency_ms=float(b["latency_ms"]),
            max_accuracy_drop=float(b["max_accuracy_drop"]),
        ),
        source=source,
        data=data,
    )
