"""MCU emitters: TFLite Micro C arrays (``carray``) and a PlatformIO project (``platformio``) for either
runtime, whose ``main.cpp`` is an application skeleton with user blocks that survive regeneration."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from edgeforge.emit.render import header_guard, hex_rows, render
from edgeforge.emit.symbol import model_symbol
from edgeforge.errors import UnsupportedOpError
from edgeforge.model.tflite import ModelInfo, TensorInfo
from edgeforge.runtimes import runtime_support

Files = dict[str, bytes]


#: C element type and TfLitePtrUnion member of each I/O dtype main.cpp reads.
_CTYPES = {"int8": ("int8_t", "int8"), "uint8": ("uint8_t", "uint8"), "int16": ("int16_t", "i16"),
           "float32": ("float", "f")}


def _io(role: str, index: int, t: TensorInfo) -> dict[str, Any]:
    ctype, member = _CTYPES.get(t.dtype, ("uint8_t", "uint8"))
    return {"role": role, "index": index, "name": c_comment(t.name), "dtype": t.dtype, "shape": list(t.shape),
            "bytes": t.nbytes, "count": int(np.prod(t.shape)) if len(t.shape) else 1,
            "scale": repr(float(t.scale[0])) if t.scale else "0.0",
            "zero_point": t.zero_point[0] if t.zero_point else 0, "ctype": ctype, "member": member}


def tensors_context(info: ModelInfo) -> list[dict[str, Any]]:
    """model_settings.h's view of the model's inputs and outputs (shapes, bytes, quantization)."""
    return ([_io("input", i, t) for i, t in enumerate(info.input_tensors())]
            + [_io("output", i, t) for i, t in enumerate(info.output_tensors())])


def c_comment(text: str) -> str:
    """Text safe inside a C comment or string: no comment terminators, quotes or control characters."""
    return "".join(ch if ch.isprintable() and ch not in '"\\' else "_" for ch in text).replace("*/", "*_")


def tflm_context(base: dict[str, Any], model: bytes, info: ModelInfo, symbol: str) -> dict[str, Any]:
    support = runtime_support("tflm")
    missing = [op for op in sorted(set(info.op_names)) if op not in support.ops]
    if missing:
        raise UnsupportedOpError(f"TFLite Micro has no resolver entry for {', '.join(missing)}",
                                 "replace those ops, or build for a target whose runtime is litert")
    ident = model_symbol(symbol)
    name = base["model"]["name"]
    return {
        **base,
        "symbol": ident,
        "model": {**base["model"], "bytes": len(model), "hex_rows": hex_rows(model), "name": c_comment(name)},
        "runtime": "tflm",
        "ops": _resolver_ops(info, support, base["target"].get("platformio", {}).get("tflm_int8_kernels", True)),
        "tensors": tensors_context(info),
    }


def io_context(base: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
    """The model's name and I/O tensors for templates of runtimes other than TFLM (no resolver check)."""
    return {**base, "model": {**base["model"], "name": c_comment(base["model"]["name"])},
            "tensors": tensors_context(info)}


def _int8_only(info: ModelInfo, kind: str) -> bool:
    """Every op of ``kind`` reads and writes int8 only (a bias, input 2, may be int32)."""
    def ok(op: Any) -> bool:
        ins = [(i, info.tensors[t].dtype) for i, t in enumerate(op.inputs) if t >= 0]
        return (all(d == "int8" or (i == 2 and d == "int32") for i, d in ins)
                and all(info.tensors[t].dtype == "int8" for t in op.outputs))
    return all(ok(op) for op in info.ops if op.op == kind)


def _resolver_ops(info: ModelInfo, support: Any, int8_kernels: bool) -> list[dict[str, str]]:
    """One resolver entry per op kind: the int8-only registration where TFLM has one and the model allows it."""
    out = []
    for op in sorted(set(info.op_names)):
        reg = support.int8_registrations.get(op) if int8_kernels and _int8_only(info, op) else None
        out.append({"name": op, "method": support.ops[op], "registration": f"tflite::{reg}()" if reg else ""})
    return out


def carray(ctx: dict[str, Any]) -> Files:
    files: Files = {}
    for name, stem in (("model_data.h", "MODEL_DATA"), ("model_settings.h", "MODEL_SETTINGS"),
                       ("op_resolver.h", "OP_RESOLVER")):
        files[name] = render(f"tflm/{name}.j2", {**ctx, "guard": header_guard("EDGEFORGE", stem)})
    files["model_data.cc"] = render("tflm/model_data.cc.j2", ctx)
    return files


def _pio(ctx: dict[str, Any], sample: bytes | None) -> dict[str, Any]:
    pio = dict(ctx["target"]["platformio"])
    for key in ("upload_protocol", "board_build_partitions"):
        pio.setdefault(key, "")
    for key in ("monitor_filters", "build_flags"):
        pio.setdefault(key, [])
    tensors = ctx["tensors"]
    return {**ctx, "pio": pio, "has_sample": sample is not None,
            "input": next(t for t in tensors if t["role"] == "input"),
            "output": next(t for t in tensors if t["role"] == "output")}


def _sample_header(ctx: dict[str, Any], sample: bytes) -> bytes:
    return render("platformio/sample_input.h.j2", {**ctx, "sample_rows": hex_rows(sample),
                                                   "guard": header_guard("EDGEFORGE", "SAMPLE_INPUT")})


def platformio(ctx: dict[str, Any], sample: bytes | None = None) -> Files:
    """A PlatformIO project running the model with TFLite Micro (``ctx`` from :func:`tflm_context`)."""
    pctx = _pio(ctx, sample)
    files = {"platformio.ini": render("platformio/platformio.ini.j2", pctx),
             "src/main.cpp": render("platformio/main.cpp.j2", pctx)}
    for name, data in carray(ctx).items():
        files[f"src/{name}"] = data
    if sample is not None:
        files["src/sample_input.h"] = _sample_header(pctx, sample)
    return files


def native_platformio(base: dict[str, Any], info: ModelInfo, native_files: Files,
                      sample: bytes | None = None) -> Files:
    """A PlatformIO project around the native runtime: the generated model and the kernel library go
    into ``src/`` side by side (their includes are flat), no TFLM library is pulled in."""
    ctx = {**base, "runtime": "native", "tensors": tensors_context(info)}
    pctx = _pio(ctx, sample)
    files = {"platformio.ini": render("platformio/platformio.ini.j2", pctx),
             "src/main.cpp": render("platformio/main.cpp.j2", pctx),
             "src/model_settings.h": render("tflm/model_settings.h.j2",
                                            {**ctx, "guard": header_guard("EDGEFORGE", "MODEL_SETTINGS")})}
    for rel, data in native_files.items():
        name = rel.rsplit("/", 1)[-1]
        if rel in ("ef_model.c", "ef_model.h") or (rel.startswith("runtime/") and name.endswith((".c", ".h"))):
            files[f"src/{name}"] = data
    if sample is not None:
        files["src/sample_input.h"] = _sample_header(pctx, sample)
    return files


_BLOCK = re.compile(rb"^[ \t]*// edgeforge:user-begin ([A-Za-z0-9_-]+)[ \t]*\r?\n"
                    rb"(.*?)^[ \t]*// edgeforge:user-end \1\b", re.M | re.S)


def user_blocks(text: bytes) -> dict[bytes, bytes]:
    """The bodies of the ``// edgeforge:user-begin NAME`` ... ``// edgeforge:user-end NAME`` blocks."""
    return {m.group(1): m.group(2) for m in _BLOCK.finditer(text)}


def keep_user_blocks(new: bytes, old: bytes) -> bytes:
    """``new`` with each user block's body taken from ``old`` where ``old`` has a block of that name."""
    kept = user_blocks(old)

    def swap(m: re.Match[bytes]) -> bytes:
        body = kept.get(m.group(1))
        if body is None:
            return m.group(0)
        return m.group(0)[: m.start(2) - m.start(0)] + body + m.group(0)[m.end(2) - m.start(0):]

    return _BLOCK.sub(swap, new)
