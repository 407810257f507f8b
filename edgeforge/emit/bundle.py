"""Android / Raspberry Pi bundle: model.tflite, labels, manifest of I/O, runner, Android snippet."""

from __future__ import annotations

import json
from typing import Any

from edgeforge.emit.render import render
from edgeforge.manifest import TensorSpec
from edgeforge.model.tflite import ModelInfo, TensorInfo

Files = dict[str, bytes]


def io_spec(t: TensorInfo) -> dict[str, Any]:
    return TensorSpec.of(t).to_json()


_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
_ITEMSIZE = {"int8": 1, "uint8": 1, "int16": 2, "float32": 4, "int32": 4, "float16": 2}


def _android_io(role: str, t: TensorInfo) -> dict[str, Any]:
    """ANDROID.md's view of a tensor: buffer size, element count, quantization as Kotlin literals."""
    count = 1
    for d in t.shape:
        count *= int(d)
    quantized = t.dtype in _RANGES and len(t.scale) == 1
    qmin, qmax = _RANGES.get(t.dtype, (0, 0))
    zp = int(t.zero_point[0]) if quantized and t.zero_point else 0
    return {"q_minus_zp": f"q - {zp}" if zp >= 0 else f"q + {-zp}", "plus_zp": f"+ {zp}" if zp >= 0 else f"- {-zp}",
            "role": role, "name": t.name, "shape": list(t.shape), "dtype": t.dtype, "count": count,
            "bytes": count * _ITEMSIZE.get(t.dtype, 1), "quantized": quantized,
            "scale": repr(float(t.scale[0])) if quantized else "1.0",
            "zero_point": zp, "qmin": qmin, "qmax": qmax}


def bundle(ctx: dict[str, Any], model: bytes, info: ModelInfo, labels: list[str] | None,
           normalization: dict[str, Any]) -> Files:
    inputs = [io_spec(t) for t in info.input_tensors()]
    outputs = [io_spec(t) for t in info.output_tensors()]
    manifest = {
        "format": "edgeforge-bundle/1",
        "model": "model.tflite",
        "model_sha256": ctx["model"]["output_sha256"],
        "compression": ctx["compression"],
        "inputs": inputs,
        "outputs": outputs,
        "normalization": normalization,
        "labels": "labels.txt" if labels else None,
    }
    ios = [_android_io("input", t) for t in info.input_tensors()] + [_android_io("output", t)
                                                                       for t in info.output_tensors()]
    android = ctx["target"]["kind"] == "mobile"  # a Raspberry Pi gets a README section instead
    bctx = {**ctx, "inputs": inputs, "outputs": outputs, "has_labels": bool(labels), "ios": ios,
            "inp": ios[0], "out": next(io for io in ios if io["role"] == "output"), "normalization": normalization,
            "android": android}
    files: Files = {
        "model.tflite": model,
        "manifest.json": (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(),
        "run_model.py": render("bundle/run_model.py.j2", bctx),
        "README.md": render("bundle/README.md.j2", bctx),
    }
    if android:
        files["ANDROID.md"] = render("bundle/ANDROID.md.j2", bctx)
    if labels:
        files["labels.txt"] = ("\n".join(labels) + "\n").encode()
    return files
