"""``edgeforge run``: runs a finished build on this machine, the way the device would.

Native builds are compiled with the host compiler and run as C; TFLM builds go through the tflite-micro
interpreter (bit-exact with TFLM's reference kernels); bundles through LiteRT. Inputs are in the model's
input dtype (or real values, quantized with the model's input parameters); outputs come back raw, in the
model's output dtype, as one array [N, ...]."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeforge.data import load_dataset, model_view
from edgeforge.errors import ModelError
from edgeforge.manifest import Manifest, read_manifest
from edgeforge.hostrun import run_batch
from edgeforge.model.tflite import ModelInfo, read_tflite
from edgeforge.runtimes import Runtime


@dataclass(frozen=True)
class RunResult:
    outputs: np.ndarray
    runtime: str
    samples: int


def read_build(build_dir: Path) -> tuple[Manifest, bytes, ModelInfo]:
    manifest = read_manifest(build_dir)  # usage error (exit 2): no build folder, damaged or too-new manifest
    try:
        model = (build_dir / manifest.model.path).read_bytes()
    except OSError as exc:
        raise ModelError(f"the build in {build_dir} is incomplete or damaged ({exc})", "rebuild it") from None
    return manifest, model, read_tflite(model, "the build's model.tflite")


def run_native(native_dir: Path, x: np.ndarray, out_shape: tuple[int, ...], out_dtype: str) -> np.ndarray:
    from edgeforge.native.toolchain import host_runner

    exe = host_runner(native_dir)
    with tempfile.TemporaryDirectory(prefix="edgeforge-run-") as tmp:
        inp, out = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        inp.write_bytes(np.ascontiguousarray(x).tobytes())
        proc = subprocess.run([str(exe), str(inp), str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ModelError(f"the native model failed on the host: {proc.stderr.strip()[:300]}",
                             "rebuild; if it persists, build with --runtime tflm and report the bug")
        data = np.frombuffer(out.read_bytes(), dtype=np.dtype(out_dtype))
    return data.reshape((len(x), *out_shape))


def run_build(build_dir: Path, input_path: Path) -> RunResult:
    manifest, model, info = read_build(build_dir)
    runtime = manifest.target.runtime
    inp, out = info.input_tensors()[0], info.output_tensors()[0]
    sample = inp.shape[1:] if len(inp.shape) > 1 and inp.shape[0] == 1 else inp.shape
    ds = load_dataset(input_path, tuple(sample), np.dtype(inp.dtype))
    x = model_view(ds, inp.dtype, inp.scale[0] if inp.scale else None, inp.zero_point[0] if inp.zero_point else None)
    x = x.reshape((len(x), *inp.shape))
    out_sample = out.shape[1:] if len(out.shape) > 1 and out.shape[0] == 1 else out.shape
    if runtime == Runtime.NATIVE:
        y = run_native(build_dir / "native", x, tuple(out_sample), out.dtype)
    else:
        y = run_batch(model, runtime, x).reshape((len(x), *out_sample))
    return RunResult(y, runtime, len(x))
