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
    bctx = {**ctx, "inputs": inputs, "outputs": outputs, "has_labels": bool(labels)}
    files: Files = {
        "model.tflite": model,
        "manifest.json": (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(),
        "run_model.py": render("bundle/run_model.py.j2", bctx),
        "ANDROID.md": render("bundle/ANDROID.md.j2", bctx),
        "README.md": render("bundle/README.md.j2", bctx),
    }
    if labels:
        files["labels.txt"] = ("\n".join(labels) + "\n").encode()
    return files
