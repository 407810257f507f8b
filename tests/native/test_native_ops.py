"""Property tests: single-op int8 models from TensorFlow's converter (random shapes, strides,
dilations, padding, per-channel scales, fused activations, input ranges, broadcasting, axes), each
lowered, compiled with the native kernels and run on random inputs; every output byte must equal
the tflite-micro reference interpreter's.

`make test` runs 12 models per kind (19 kinds: 228 models); EDGEFORGE_FULL_TESTS=1 runs 36 per kind.
Converted models are cached on disk (see opgen.py), so only the first run pays for TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FULL
from fbedit import to_requantize
from harness import Program, random_inputs, tflm_run
from opgen import KINDS, make_model

from edgeforge.errors import UnsupportedOpError
from edgeforge.model.tflite import ModelInfo, read_tflite
from edgeforge.native.lower import lower

PER_KIND = 36 if FULL else 12
RUNS = 3  # random inputs per model (plus one edge-case input)

#: kinds where a random calibration range can make TFLM itself reject the model (e.g. ADD whose
#: output range collapsed to a point under a fused RELU: its output multiplier exceeds 1)
MAY_BE_DEGENERATE = {"add", "add_const", "float_io", "mul"}


def _collect(kind: str, count: int) -> list[tuple[int, bytes, ModelInfo]]:
    """The first ``count`` models of ``kind`` TFLM can run (seeded, deterministic)."""
    out: list[tuple[int, bytes, ModelInfo]] = []
    seed = skipped = 0
    while len(out) < count:
        data = make_model(kind, seed) if kind != "requantize" else _requantize_model(seed)
        info = read_tflite(data)
        try:
            lower(info, data)
        except UnsupportedOpError:
            if kind not in MAY_BE_DEGENERATE:
                raise
            skipped += 1
            assert skipped <= count // 3 + 2, f"too many degenerate {kind} models"
        else:
            out.append((seed, data, info))
        seed += 1
    return out


def _requantize_model(seed: int) -> bytes:
    """int8 -> int8 QUANTIZE (the converter only emits it inside larger graphs)."""
    rng = np.random.default_rng([seed, 99])
    base = make_model("logistic", seed)
    return to_requantize(base, float(np.exp(rng.uniform(-7, 2))), int(rng.integers(-128, 128)))


def _edge_inputs(info: ModelInfo, rng: np.random.Generator) -> list[np.ndarray]:
    """Extremes for int8 inputs; exact rounding ties for float inputs (QUANTIZE)."""
    xs = []
    for i in info.inputs:
        t = info.tensors[i]
        if t.dtype == "int8":
            xs.append(rng.choice(np.array([-128, 127, -127, 126, 0], np.int8), size=t.shape))
        else:
            graph_q = next(o for o in info.ops if o.op == "QUANTIZE" and o.inputs[0] == i)
            q = info.tensors[graph_q.outputs[0]]
            k = rng.integers(-140, 140, size=t.shape).astype(np.float32)
            xs.append(((k + np.float32(0.5)) * np.float32(q.scale[0])).astype(np.float32))
    return xs


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.size == b.size and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("kind", [*KINDS, "requantize"])
def test_single_op_models_bit_exact(kind: str) -> None:
    cases = _collect(kind, PER_KIND if kind != "requantize" else max(PER_KIND // 2, 6))
    program = Program([(info, data) for _, data, info in cases])
    rng = np.random.default_rng(KINDS.index(kind) if kind in KINDS else 1000)
    requests = []
    for k, (_, _, info) in enumerate(cases):
        for _ in range(RUNS):
            requests.append((k, random_inputs(info, rng)))
        requests.append((k, _edge_inputs(info, rng)))
    outputs = program.run_many(requests)
    failures = []
    for (k, xs), got in zip(requests, outputs, strict=True):
        seed, data, info = cases[k]
        want = tflm_run(data, xs)
        for j, (w, g) in enumerate(zip(want, got, strict=True)):
            if not _same(w.reshape(-1), g.reshape(-1)):
                diff = np.abs(w.astype(np.float64).reshape(-1) - g.astype(np.float64).reshape(-1))
                failures.append(f"{kind} seed {seed} output {j}: {int((diff > 0).sum())}/{diff.size} differ, "
                                f"max |diff| {diff.max()}; ops {[o.op for o in info.ops]}")
    assert not failures, "\n".join(failures[:20])
    ops = {o.op for _, _, info in cases for o in info.ops}
    expected = {"conv": "CONV_2D", "conv_dilated": "CONV_2D", "depthwise": "DEPTHWISE_CONV_2D",
                "fc": "FULLY_CONNECTED", "avgpool": "AVERAGE_POOL_2D", "maxpool": "MAX_POOL_2D", "add": "ADD",
                "mul": "MUL", "softmax": "SOFTMAX", "reshape": "RESHAPE", "mean": "MEAN", "pad": "PAD",
                "padv2": "PADV2", "concat": "CONCATENATION", "logistic": "LOGISTIC", "tanh": "TANH",
                "float_io": "DEQUANTIZE", "requantize": "QUANTIZE", "add_const": "ADD"}[kind]
    assert expected in ops, (kind, ops)


def test_property_suite_covers_the_configurations() -> None:
    """The generated models really exercise what the kernels must get right."""
    seen: dict[str, set[object]] = {"act": set(), "pad": set(), "dil": set(), "fc_quant": set(), "groups": set(),
                                    "zp": set(), "bcast": set(), "mean_axes": set()}
    for kind in ("conv", "conv_dilated", "depthwise", "fc", "avgpool", "add", "mul", "mean"):
        for _, _, info in _collect(kind, PER_KIND):
            for op in info.ops:
                o = op.options
                if "fusedActivationFunction" in o:
                    seen["act"].add(o["fusedActivationFunction"])
                if "padding" in o:
                    seen["pad"].add(o["padding"])
                if o.get("dilationHFactor", 1) > 1 or o.get("dilationWFactor", 1) > 1:
                    seen["dil"].add(op.op)
                if op.op == "FULLY_CONNECTED":
                    seen["fc_quant"].add(len(info.tensors[op.inputs[1]].scale) > 1)
                if op.op == "CONV_2D":
                    x, f = info.tensors[op.inputs[0]], info.tensors[op.inputs[1]]
                    seen["groups"].add(x.shape[3] // f.shape[3])
                if op.op in ("ADD", "MUL"):
                    a, b = info.tensors[op.inputs[0]], info.tensors[op.inputs[1]]
                    seen["bcast"].add(a.shape != b.shape)
                if op.op == "MEAN":
                    seen["mean_axes"].add(info.tensors[op.inputs[0]].elements)
            for t in info.tensors:
                if t.dtype == "int8" and not t.is_constant:
                    seen["zp"].add(t.zero_point[0])
    assert seen["act"] >= {0, 1, 2, 3}
    assert seen["pad"] == {0, 1}
    assert seen["dil"] >= {"CONV_2D", "DEPTHWISE_CONV_2D"}
    assert seen["fc_quant"] == {True, False}
    assert max(seen["groups"]) > 1
    assert seen["bcast"] == {True, False}
    assert len(seen["zp"]) > 40


def test_repository_fixture_model_bit_exact() -> None:
    """tests/fixtures/tiny_int8.tflite (CONV, DW, MEAN, FC, SOFTMAX), as a whole graph."""
    from conftest import FIXTURES

    data = (FIXTURES / "tiny_int8.tflite").read_bytes()
    info = read_tflite(data)
    program = Program([(info, data)])
    rng = np.random.default_rng(3)
    for _ in range(10):
        xs = random_inputs(info, rng)
        assert _same(program.run(0, xs)[0], tflm_run(data, xs)[0])
