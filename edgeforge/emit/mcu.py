"""MCU emitters: TFLite Micro C arrays (``carray``) and a PlatformIO project (``platformio``)."""

from __future__ import annotations

from typing import Any

from edgeforge.emit.render import header_guard, hex_rows, render
from edgeforge.emit.symbol import model_symbol
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
    ident = model_symbol(symbol)
    name = base["model"]["name"]
    return {
        **base,
        "symbol": ident,
        "model": {**base["model"], "bytes": len(model), "hex_rows": hex_rows(model), "name": c_comment(name)},
        "ops": [{"name": op, "method": support.ops[op]} for op in sorted(set(info.op_names))],
        "tensors": [_io("input", i, t) for i, t in enumerate(info.input_tensors())]
        + [_io("output", i, t) for i, t in enumerate(info.output_tensors())],
    }


def io_context(base: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
    """The model's name and I/O tensors for templates of runtimes other than TFLM (no resolver check)."""
    return {**base, "model": {**base["model"], "name": c_comment(base["model"]["name"])},
            "tensors": [_io("input", i, t) for i, t in enumerate(info.input_tensors())]
            + [_io("output", i, t) for i, t in enumerate(info.output_tensors())]}


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
