"""Measures the TFLite Micro tensor arena with the tflite-micro interpreter's recording allocator."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

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


def measure_arena(model: bytes, info: ModelInfo) -> ArenaMeasurement:
    """Allocate, invoke once on zeros, and read the recording allocator's report."""
    from edgeforge.hostrun import tflm_interpreter

    ip = tflm_interpreter(model)
    for i, t in enumerate(info.input_tensors()):
        ip.set_input(np.zeros(t.shape, dtype=np.dtype(t.dtype)), i)
    with captured_output() as out:
        ip.invoke()
        ip.print_allocations()
    text = out.text
    total = _field(text, "total")
    emitted = math.ceil(total * (1 + ARENA_MARGIN) / ALIGN) * ALIGN
    lines = tuple(ln.strip() for ln in text.splitlines() if "[RecordingMicroAllocator]" in ln)
    return ArenaMeasurement(total, _field(text, "head"), _field(text, "tail"), emitted, ARENA_MARGIN, lines)
