"""The target-profile schema (JSON Schema over the merged TOML) and the typed view of a profile."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

RUNTIMES = ("tflm", "litert", "native")
QUANTIZATIONS = ("int8", "float16", "dynamic-int8", "float32")
EMITTERS = ("carray", "espidf", "platformio", "bundle")
#: Emitters that write a whole firmware project; a build writes one of them (the first a profile lists, or --emitter).
PROJECT_EMITTERS = ("espidf", "platformio")
KINDS = ("mcu", "sbc", "mobile")
FLASH_TOOLS = ("platformio", "esptool", "picotool", "openocd", "adb", "scp", "none")

_POS_INT = {"type": "integer", "minimum": 1}
_POS_NUM = {"type": "number", "exclusiveMinimum": 0}

# Safe grammars for every value that reaches a compiler, ``make``, ``ssh`` or an INI file. Profiles auto-load
# from the working directory (.edgeforge/targets/), so a profile is untrusted input: no value may smuggle an
# option (``-wrapper``, ``-B``, ``-specs``, ``@file``, ``-fplugin``, ``-Wl,``) or a new line into what edgeforge
# generates. The loader also rejects control characters and non-finite numbers anywhere in a profile.
# "x-grammar" is the human wording of a pattern, used in the error message.

#: compiler flags: -O*, -m<option>[=value], -f<option>[=value] (not plugins, profiling or dumps, which load or
#: write files), -D<identifier>[=value], -U<identifier>, -W<warning> (not -Wl/-Wa/-Wp, which pass options on),
#: -std=, -g*, -pipe
COMPILER_FLAG = {
    "type": "string",
    "pattern": r"^(-O[0-3sgz]?|-Ofast|-m[a-z0-9][a-z0-9_.+-]*(=[A-Za-z0-9_.+,-]+)?"
               r"|-f(?!plugin|profile|dump|debug-prefix|file-prefix|macro-prefix)"
               r"[a-z0-9][a-z0-9_.+-]*(=[A-Za-z0-9_.+,-]+)?"
               r"|-D[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_.+-]*)?|-U[A-Za-z_][A-Za-z0-9_]*"
               r"|-W(?![lap],)(no-)?[a-z0-9][a-z0-9_=-]*|-std=[a-z0-9+]+|-g[a-z0-9]*|-pipe)$",
    "x-grammar": "an allowed compiler flag (-O*, -m*, -f* except plugins/profiling/dumps, -D<identifier>[=value], "
                 "-U<identifier>, -W<warning> except -Wl,/-Wa,/-Wp,, -std=, -g*)",
}
#: a PlatformIO word (platform, board, framework): a name, name@version or a URL, nothing INI or shell would split
PIO_WORD = {"type": "string", "minLength": 1, "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.@/:#~+=^-]*$",
            "x-grammar": "a PlatformIO name, name@version or URL (letters, digits and _ . @ / : # ~ + = ^ -)"}
#: a PlatformIO library: owner/name[@version] or an http(s)/git URL (PlatformIO builds its code: name it exactly)
PIO_LIB = {"type": "string",
           "pattern": r"^([A-Za-z0-9_][A-Za-z0-9_.-]*/)?[A-Za-z0-9_][A-Za-z0-9_.-]*( ?@ ?[A-Za-z0-9_.^~<>=*+-]+)?$"
                      r"|^(https|git\+https)://[A-Za-z0-9_.-]+(/[A-Za-z0-9_.~-]+)+(#[A-Za-z0-9_.-]+)?$",
           "x-grammar": "owner/name[@version] or an https:// URL"}
_VERSION_RANGE = {"type": "string", "pattern": r"^[<>=!~^*]{0,2}[0-9][0-9A-Za-z.*+-]*( *,? *[<>=!~^]{1,2}[0-9][0-9A-Za-z.*+-]*)*$",
                  "x-grammar": "a version range such as >=5.1 or ^1.4.0"}
_SIMPLE = {"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
           "x-grammar": "a plain name (letters, digits, _ . -)"}
#: a remote folder for ssh/scp/adb: no option, no shell metacharacter, no space
REMOTE_DIR = {"type": "string", "pattern": r"^[A-Za-z0-9_./][A-Za-z0-9_./-]*$",
              "x-grammar": "a path of letters, digits and _ . / - that does not start with -"}
#: free text that ends up in comments of generated files: no comment terminators
_TEXT = {"type": "string", "pattern": r"^((?!\*/)[^<>`$\\])*$",
         "x-grammar": "text without */, <, >, `, $ or backslashes"}


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
#: reference kernels). See edgeforge/cost/latency.py.
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
        "per_invoke_us": _NONNEG,  # fixed time per invoke (dispatch), microseconds; see cost.OpTable
        "source": {"type": "string", "minLength": 1},
        # the kernel set the coefficients describe (e.g. "reference", "cmsis-nn", "esp-nn"): named in the verdict
        "kernels": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
    },
    ["conv_2d", "depthwise_conv_2d", "fully_connected", "elementwise", "per_op", "source"],
)


#: JSON Schema of a concrete (merged) profile. Abstract bases are checked only once merged into a child.
TARGET_SCHEMA: dict[str, Any] = _strict(
    {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "name": {**_TEXT, "minLength": 1},
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
                "arch": _SIMPLE,
                "cpu": _TEXT,
                "cores": _POS_INT,
                # 1 kHz .. 100 GHz: a clock outside that is a typo (and 5e-324 would overflow every latency)
                "clock_mhz": {"type": "number", "minimum": 0.001, "maximum": 100000},
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
                "latency_ms": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e9},
                "max_accuracy_drop": {"type": "number", "minimum": 0, "maximum": 1},
            },
            ["model_flash_bytes", "model_ram_bytes", "latency_ms", "max_accuracy_drop"],
        ),
        "perf": _strict(
            {
                "cycles_per_mac": {"type": "number", "minimum": 1e-6, "maximum": 1e9},
                "source": {"type": "string"},
                # optional per-runtime latency cost tables (edgeforge/cost/latency.py); a runtime without one
                # falls back to cycles_per_mac
                "ops": {"type": "object", "properties": {rt: _PERF_OPS for rt in RUNTIMES},
                        "additionalProperties": False},
                # alternative TFLM tables by kernel set, used when the chosen emitter builds other kernels than
                # [perf.ops.tflm] describes (e.g. PlatformIO's TensorFlowLite_ESP32 builds reference kernels)
                "kernel_sets": {"type": "object", "additionalProperties": _PERF_OPS},
            },
            ["cycles_per_mac", "source"],
        ),
        "platformio": _strict(
            {
                "env": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                "platform": PIO_WORD,
                "board": PIO_WORD,
                "framework": PIO_WORD,
                "lib_deps": {"type": "array", "items": PIO_LIB},
                "build_flags": {"type": "array", "items": COMPILER_FLAG},
                "monitor_speed": _POS_INT,
                "tflm_header": {"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.h$",
                                "x-grammar": "a header file name (letters, digits, _ . / -, ending in .h)"},
                "upload_protocol": _SIMPLE,
                "monitor_filters": {"type": "array", "items": _SIMPLE},
                "board_build_partitions": _SIMPLE,
                "kernels": _SIMPLE,  # the TFLM kernel set the library compiles (see perf.kernel_sets)
                # the TFLM kernel set the project's TFLM library compiles (edgeforge benches the same one)
                "tflm_kernels": {"enum": ["reference", "cmsis_nn"]},
                # false when the project's TFLM library predates the int8-only registrations (Register_*_INT8)
                "tflm_int8_kernels": {"type": "boolean"},
            },
            ["env", "platform", "board", "framework", "lib_deps", "monitor_speed", "tflm_header"],
        ),
        "espidf": _strict(
            {
                "chip": {"enum": ["esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c5", "esp32c6",
                                  "esp32h2", "esp32p4"]},
                # component-manager version ranges (e.g. ">=5.1", "^1.4.0"): rendered into idf_component.yml
                "idf_version": _VERSION_RANGE,
                "tflite_micro_version": _VERSION_RANGE,
                "kernels": _SIMPLE,  # the kernel set esp-tflite-micro builds with this sdkconfig
                "flash_mode": {"enum": ["qio", "qout", "dio", "dout"]},
                "flash_freq": {"enum": ["20m", "26m", "40m", "80m"]},
                "bootloader_offset": {"type": "integer", "minimum": 0},
                "internal_arena_bytes": _POS_INT,  # the largest arena placed in internal RAM
                "psram_bytes": {"type": "integer", "minimum": 0},  # 0: no PSRAM
                "psram_mode": {"enum": ["quad", "oct"]},
                "flash_baud": _POS_INT,
            },
            ["chip", "idf_version", "tflite_micro_version", "kernels", "flash_mode", "flash_freq",
             "bootloader_offset", "internal_arena_bytes", "psram_bytes", "flash_baud"],
        ),
        "toolchain": _strict(
            {
                "cross": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$",
                          "x-grammar": "a cross-compiler prefix such as arm-none-eabi"},
                "cflags": {"type": "array", "items": COMPILER_FLAG},
                "flash_origin": {"type": "integer", "minimum": 0},
                "ram_origin": {"type": "integer", "minimum": 0},
            },
            ["cross", "cflags", "flash_origin", "ram_origin"],
        ),
        "flash": _strict(
            {"tool": {"enum": list(FLASH_TOOLS)}, "remote_dir": REMOTE_DIR},
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
