"""``edgeforge run``: runs a finished build on this machine, the way the device would.

Native builds are compiled with the host compiler and run as C; TFLM builds go through the tflite-micro
interpreter (bit-exact with TFLM's reference kernels); bundles through LiteRT. Inputs are in the model's
input dtype (or real values, quantized with the model's input parameters); outputs come back raw, in the
model's output dtype, as one array [N, ...]."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeforge.data import InputQuant, load_dataset, model_view
from edgeforge.errors import ModelError, UsageError
from edgeforge.manifest import Manifest, read_manifest
from edgeforge.hostrun import run_batch
from edgeforge.model.tflite import ModelInfo, read_tflite
from edgeforge.runtimes import Runtime


@dataclass(frozen=True)
class RunResult:
    outputs: np.ndarray
    runtime: str
    samples: int
    data_note: str = ""  # how the inputs were read (data quantization, conversion)


def recorded_quant(manifest: Manifest) -> InputQuant | None:
    """The data quantization the build was given (``build --data-quant``), from its manifest."""
    q = manifest.compression.data_quant
    return None if q is None else InputQuant(q[0], q[1])


def _same(a: InputQuant, scale: float | None, zero_point: int | None) -> bool:
    return scale is not None and abs(a.scale - scale) <= 1e-6 * max(scale, 1e-12) and a.zero_point == zero_point


def read_inputs(path: Path, info: ModelInfo, manifest: Manifest,
                data_quant: InputQuant | None = None) -> tuple[np.ndarray, str]:
    """Inputs for the build's model from ``path`` (samples in the model's input dtype, [N, *sample]) and a
    note on how they were read. See the module docstring for the convention."""
    inp = info.input_tensors()[0]
    sample = tuple(inp.shape[1:] if len(inp.shape) > 1 and inp.shape[0] == 1 else inp.shape)
    scale = inp.scale[0] if inp.scale else None
    zp = inp.zero_point[0] if inp.zero_point else None
    recorded = recorded_quant(manifest)
    quant, origin = (data_quant, "--data-quant") if data_quant is not None else (recorded, "recorded by the build")
    dtype = np.dtype(inp.dtype)
    ds = load_dataset(path, sample, dtype, quant)
    integer = ds.x.dtype.kind in "iu" and ds.x.dtype.itemsize == 1
    if data_quant is not None and not integer:
        raise UsageError(f"--data-quant applies to 8-bit integer data; {path.name} holds {ds.x.dtype.name} values",
                         "drop --data-quant for real-valued data (it is quantized with the model's input parameters)")
    if integer and quant is not None and ds.quant is None:
        ds = replace(ds, quant=quant)  # int8 data for an int8 model: still carries its own quantization
    x = model_view(ds, inp.dtype, scale, zp)
    if integer and scale is None and quant is not None:
        note = f"8-bit inputs dequantized with their data quantization ({quant.scale:g}, {quant.zero_point}; {origin})"
    elif not integer:
        note = "real-valued inputs" + (f", quantized with the model input's ({scale:g}, {zp})" if scale else "")
    elif quant is None or _same(quant, scale, zp):
        note = f"8-bit inputs in the model input's quantization ({scale:g}, {zp})" if scale else "8-bit inputs"
    else:
        note = (f"8-bit inputs converted from their data quantization ({quant.scale:g}, {quant.zero_point}; "
                f"{origin}) to the model input's ({scale:g}, {zp})")
    return x, note


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


def run_build(build_dir: Path, input_path: Path, data_quant: InputQuant | None = None) -> RunResult:
    manifest, model, info = read_build(build_dir)
    runtime = manifest.target.runtime
    inp, out = info.input_tensors()[0], info.output_tensors()[0]
    x, note = read_inputs(input_path, info, manifest, data_quant)
    x = x.reshape((len(x), *inp.shape))
    out_sample = out.shape[1:] if len(out.shape) > 1 and out.shape[0] == 1 else out.shape
    if runtime == Runtime.NATIVE:
        y = run_native(build_dir / "native", x, tuple(out_sample), out.dtype)
    else:
        y = run_batch(model, runtime, x).reshape((len(x), *out_sample))
    return RunResult(y, runtime, len(x), note)
