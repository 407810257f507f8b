"""Runs a .tflite on this machine with the runtime a target uses: TFLite Micro's reference
interpreter (bit-exact with the MCU's reference kernels) or LiteRT (phones, Raspberry Pi)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeforge.errors import ModelError, ToolMissingError, UnsupportedOpError
from edgeforge.quiet import captured_output
from edgeforge.runtimes import Runtime


def verify_flatbuffer(model: bytes) -> None:
    """Run LiteRT's flatbuffer verifier: TFLite Micro trusts its input and crashes on malformed offsets."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return  # nothing to verify with; read_tflite's checks still ran
    try:
        with captured_output():
            Interpreter(model_content=model)
    except ValueError as exc:
        if "not a valid flatbuffer" in str(exc).lower():
            raise ModelError("the .tflite file is corrupt: it fails the flatbuffer verifier",
                             "re-export the model; the file was damaged") from None
        # other construction errors (e.g. unresolved custom ops) are reported where they matter


def tflm_interpreter(model: bytes, arena_size: int | None = None) -> Any:
    verify_flatbuffer(model)
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise ToolMissingError("the tflite-micro package is not installed", "pip install tflite-micro") from None
    size = arena_size or max(8 << 20, 10 * len(model))
    with captured_output() as out:
        try:
            return runtime.Interpreter.from_bytes(model, arena_size=size)
        except Exception as exc:
            err: Exception = exc
    raise _tflm_error(err, out.text)


def _tflm_error(exc: Exception, log: str) -> Exception:
    text = f"{exc}\n{log}"
    missing = re.findall(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'", text)
    if missing:
        return UnsupportedOpError(f"TFLite Micro has no kernel for op {', '.join(sorted(set(missing)))}",
                                  "replace the op in the model, or choose a target whose runtime is litert")
    first = next((ln.strip() for ln in log.splitlines() if ln.strip()), str(exc))
    return ModelError(f"TFLite Micro cannot load the model: {first[:300]}",
                      "run `edgeforge analyze MODEL --target ID` to see which ops and tensors it uses")


def litert_interpreter(model: bytes) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ToolMissingError("the ai-edge-litert package is not installed", "pip install ai-edge-litert") from None
    with captured_output():
        try:
            ip = Interpreter(model_content=model, num_threads=1)
            ip.allocate_tensors()
        except Exception as exc:
            raise ModelError(f"LiteRT cannot load the model: {str(exc).splitlines()[0][:300]}",
                             "the model may use custom or Select-TF ops; see `edgeforge analyze`") from None
    return ip


def runner(model: bytes, runtime: str) -> Callable[[np.ndarray], np.ndarray]:
    """A function from one input sample (with batch dim 1) to the first output (batch 1)."""
    if runtime == Runtime.TFLM:
        ip = tflm_interpreter(model)

        def run_tflm(x: np.ndarray) -> np.ndarray:
            ip.set_input(x, 0)
            ip.invoke()
            return np.array(ip.get_output(0))

        return run_tflm
    lite = litert_interpreter(model)
    inp = lite.get_input_details()[0]["index"]
    out = lite.get_output_details()[0]["index"]

    def run_litert(x: np.ndarray) -> np.ndarray:
        lite.set_tensor(inp, x)
        lite.invoke()
        return np.array(lite.get_tensor(out))

    return run_litert


def run_batch(model: bytes, runtime: str, x: np.ndarray,
              progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Outputs for every sample of ``x`` [N, *input_shape_with_batch_1] -> [N, *output_shape]."""
    fn = runner(model, runtime)
    outs = []
    for i in range(len(x)):
        outs.append(fn(x[i]))
        if progress and (i % 50 == 49 or i == len(x) - 1):
            progress(i + 1, len(x))
    return np.stack(outs) if outs else np.zeros((0,))
