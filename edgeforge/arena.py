"""Measures the TFLite Micro tensor arena with the tflite-micro interpreter's recording allocator."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeforge.errors import EdgeforgeError, ModelError, UnsupportedOpError
from edgeforge.model.tflite import ModelInfo
from edgeforge.quiet import captured_output

#: Added to the host measurement before it is emitted. The host is 64-bit, so the tail
#: (pointer-holding structs) is larger than on a 32-bit MCU; but temporaries requested
#: during Prepare are not always recorded (tensorflow/tflite-micro#2738): keep a margin.
ARENA_MARGIN = 0.10
ALIGN = 16


@dataclass(frozen=True)
class ArenaMeasurement:
    total: int  # bytes, as measured on the host
    head: int
    tail: int
    emitted: int  # what kTensorArenaSize is set to: total plus the margin, 16-byte aligned
    margin: float
    report: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "measured_bytes": self.total, "head_bytes": self.head, "tail_bytes": self.tail,
            "emitted_bytes": self.emitted, "margin": self.margin,
            "method": "tflite-micro RecordingMicroAllocator on the host (64-bit), after one invoke",
        }


def _field(text: str, name: str) -> int:
    m = re.search(rf"Arena allocation {name} (\d+) bytes", text)
    if not m:
        raise RuntimeError(f"tflite-micro printed no arena {name}: {text[:500]}")
    return int(m.group(1))


def _measure_here(model: bytes, inputs: list[tuple[tuple[int, ...], str]]) -> str:
    from edgeforge.hostrun import tflm_interpreter

    ip = tflm_interpreter(model)
    for i, (shape, dtype) in enumerate(inputs):
        ip.set_input(np.zeros(shape, dtype=np.dtype(dtype)), i)
    with captured_output() as out:
        ip.invoke()
        ip.print_allocations()
    return out.text


def worker_main() -> None:
    """Child-process side of ``_isolated``: a pickled (model, inputs) on stdin, a pickled reply on stdout."""
    import pickle
    import sys

    model, inputs = pickle.loads(sys.stdin.buffer.read())
    try:
        reply: tuple[str, str, str] = ("ok", _measure_here(model, inputs), "")
    except EdgeforgeError as exc:
        reply = (type(exc).__name__, exc.message, exc.hint)
    except Exception as exc:  # the interpreter refused the model
        reply = ("ModelError", f"TFLite Micro cannot run the model: {str(exc)[:300]}", "")
    sys.stdout.buffer.write(pickle.dumps(reply))


def _isolated(model: bytes, inputs: list[tuple[tuple[int, ...], str]], timeout_s: float) -> str:
    """Run the first TFLM contact with a model in a child process.

    TFLite Micro trusts the graph it is given: a malformed but well-formed flatbuffer (a zero-sized
    dimension, a wrong channel count) can crash or hang it. A crash there must become exit 65, not
    take the whole build down. A fresh interpreter (not multiprocessing) so that no caller's
    ``__main__`` is re-imported and no TensorFlow thread state is inherited.
    """
    import pickle
    import subprocess
    import sys

    cmd = [sys.executable, "-c", "from edgeforge.arena import worker_main; worker_main()"]
    package_root = str(Path(__file__).resolve().parent.parent)  # importable from a plain checkout too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(cmd, input=pickle.dumps((model, inputs)), capture_output=True, timeout=timeout_s,
                              env=env)
    except subprocess.TimeoutExpired:
        raise ModelError(f"TFLite Micro did not finish one inference in {timeout_s:.0f} s",
                         "the model is malformed or far too large for an MCU") from None
    if proc.returncode != 0:
        raise ModelError(f"the model crashed TFLite Micro's interpreter (exit {proc.returncode})",
                         "the .tflite file is malformed; re-export it")
    kind, message, hint = pickle.loads(proc.stdout)
    if kind != "ok":
        cls = UnsupportedOpError if kind == "UnsupportedOpError" else ModelError
        raise cls(message, hint or "run `edgeforge analyze MODEL --target ID` to see its ops and tensors")
    return str(message)


def measure_arena(model: bytes, info: ModelInfo, timeout_s: float = 600.0) -> ArenaMeasurement:
    """Allocate, invoke once on zeros, and read the recording allocator's report."""
    inputs = [(t.shape, t.dtype) for t in info.input_tensors()]
    text = _isolated(model, inputs, timeout_s)
    total = _field(text, "total")
    emitted = math.ceil(total * (1 + ARENA_MARGIN) / ALIGN) * ALIGN
    lines = tuple(ln.strip() for ln in text.splitlines() if "[RecordingMicroAllocator]" in ln)
    return ArenaMeasurement(total, _field(text, "head"), _field(text, "tail"), emitted, ARENA_MARGIN, lines)
