"""MCU emitters: TFLite Micro C arrays (``carray``) and a PlatformIO project (``platformio``)."""

from __future__ import annotations

from typing import Any

from edgeforge.emit.render import c_identifier, header_guard, hex_rows, render
from edgeforge.errors import UnsupportedOpError
from edgeforge.model.tflite import ModelInfo, TensorInfo
from edgeforge.runtimes import runtime_support

Files = dict[str, bytes]


def _io(role: str, index: int, t: TensorInfo) -> dict[str, Any]:
    return {"role": role, "index": index, "name": c_comment(t.name), "dtype": t.dtype, "shape": list(t.shape),
            "bytes": t.nbytes, "scale": repr(float(t.scale[0])) if t.scale else "0.0",
            "zero_point": t.zero_point[0] if t.zero_point else 0}


def c_comment(text: str) -> str:
    """Text safe inside a C comment or string: no comment terminators, quotes or control characters."""
    return "".join(ch if ch.isprintable() and ch not in '"\\' else "_" for ch in text).replace("*/", "*_")


def tflm_context(base: dict[str, Any], model: bytes, info: ModelInfo, symbol: str) -> dict[str, Any]:
    support = runtime_support("tflm")
    missing = [op for op in sorted(set(info.op_names)) if op not in support.ops]
    if missing:
        raise UnsupportedOpError(f"TFLite Micro has no resolver entry for {', '.join(missing)}",
                                 "replace those ops, or build for a target whose runtime is litert")
    ident = c_identifier(symbol, "g_model")
    name = base["model"]["name"]
    return {
        **base,
        "symbol": ident,
        "model": {**base["model"], "bytes": len(model), "hex_rows": hex_rows(model), "name": c_comment(name)},
        "ops": _resolver_ops(info, support, base["target"].get("platformio", {}).get("tflm_int8_kernels", True)),
        "tensors": [_io("input", i, t) for i, t in enumerate(info.input_tensors())]
        + [_io("output", i, t) for i, t in enumerate(info.output_tensors())],
    }


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


def platformio(ctx: dict[str, Any]) -> Files:
    pio = dict(ctx["target"]["platformio"])
    for key in ("upload_protocol", "board_build_partitions"):
        pio.setdefault(key, "")
    for key in ("monitor_filters", "build_flags"):
        pio.setdefault(key, [])
    pctx = {**ctx, "pio": pio}
    files = {"platformio.ini": render("platformio/platformio.ini.j2", pctx),
             "src/main.cpp": render("platformio/main.cpp.j2", pctx)}
    for name, data in carray(ctx).items():
        files[f"src/{name}"] = data
    return files
