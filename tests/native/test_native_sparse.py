"""Sparse filter storage (edgeforge/native/sparse.py, "sparse_rows") and the kernels that read it
(ef_*_sparse in firmware/runtime/ef_sparse.c): pruned CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED filters,
int8 and packed int4, unstructured (50 / 75 / 95 % zeros) and structured (whole output channels zero), stay
bit-exact with tflite-micro; ``weight_storage`` is exactly what the emitter writes; unpruned models are
emitted exactly as without sparse storage.

Pruned models are the property-suite models (opgen) and the tiling suite's wide ones with their filter values
rewritten (fbedit), so no extra TensorFlow conversion is needed.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FIXTURES, FULL
from fbedit import set_int4_values, set_int8_values, to_int4
from harness import Program, random_inputs, tflm_run_many
from opgen import make_model

from edgeforge.compress.apply import prune_all
from edgeforge.model.tflite import constant_data, read_tflite
from edgeforge.native import sparse
from edgeforge.native.csource import render_call
from edgeforge.native.emit import model_context, native_files, prepare_native
from edgeforge.native.ir import ConvAdd
from edgeforge.model.rewrite import unpack_int4 as _unpack_int4
from edgeforge.native.lower import lower
from edgeforge.native.sparse import DENSE, SPARSE, decode, encode, weight_storage

SEEDS = 6 if FULL else 3  # opgen models per kind
WIDE_SEEDS = 5 if FULL else 2  # wide models per kind (test_native_tiling)
PATTERNS = ("u50", "u75", "u95", "all", "struct", "struct_u60") if not FULL else \
    ("u50", "u60", "u75", "u90", "u95", "all", "struct", "struct_u60", "struct_u80")
_OPS = {"conv": "CONV_2D", "conv_dilated": "CONV_2D", "depthwise": "DEPTHWISE_CONV_2D", "fc": "FULLY_CONNECTED",
        "conv_wide": "CONV_2D", "depthwise_wide": "DEPTHWISE_CONV_2D", "fc_wide": "FULLY_CONNECTED"}


# ---- pruning --------------------------------------------------------------------------------------------------


def _channel_axis(op: str) -> int:
    return 3 if op == "DEPTHWISE_CONV_2D" else 0


def prune_unstructured(values: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The ``fraction`` smallest-magnitude values set to 0 (ties broken at random)."""
    v = values.copy().reshape(-1)
    order = np.lexsort((rng.random(v.size), np.abs(v.astype(np.int16))))
    v[order[: round(fraction * v.size)]] = 0
    return v.reshape(values.shape)


def prune_channels(values: np.ndarray, op: str, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """About ``fraction`` of the output channels (at least one, never all) entirely 0."""
    v = values.copy()
    axis = _channel_axis(op)
    n = v.shape[axis]
    k = min(max(round(fraction * n), 1), max(n - 1, 1)) if n > 1 else 0
    idx = [slice(None)] * v.ndim
    idx[axis] = rng.choice(n, size=k, replace=False)
    v[tuple(idx)] = 0
    return v


def prune(values: np.ndarray, op: str, pattern: str, rng: np.random.Generator) -> np.ndarray:
    if pattern == "all":
        return np.zeros_like(values)
    if pattern.startswith("struct"):
        values = prune_channels(values, op, 0.4, rng)
        pattern = pattern[len("struct_") :] if "_" in pattern else ""
    if pattern.startswith("u"):
        values = prune_unstructured(values, int(pattern[1:]) / 100, rng)
    return values


def _filter_values(model: bytes) -> tuple[np.ndarray, str, int, str]:
    """(values in TFLite layout, tensor dtype, bits, op) of a one-op model's filter."""
    info = read_tflite(model)
    op = info.ops[0]
    f = info.tensors[op.inputs[1]]
    raw = constant_data(model, f.index)
    if f.dtype == "int4":
        return _unpack_int4(raw, f.elements).reshape(f.shape), f.dtype, 4, op.op
    return raw.astype(np.int8).reshape(f.shape), f.dtype, 8, op.op


def _with_values(model: bytes, values: np.ndarray, bits: int) -> bytes:
    return set_int4_values(model, values) if bits == 4 else set_int8_values(model, values)


# ---- the case set ----------------------------------------------------------------------------------------------


def _base_models() -> list[tuple[str, bytes]]:
    from test_native_tiling import _wide_model

    out = [(f"{kind}-{seed}", make_model(kind, seed)) for kind in ("conv", "conv_dilated", "depthwise", "fc")
           for seed in range(SEEDS)]
    out += [(f"fc-{seed}", make_model("fc", seed)) for seed in (4, 10) if seed >= SEEDS]  # per-tensor: int4 too
    out.append(("depthwise-15", make_model("depthwise", 15)))  # SAME, input offset, 8 interior columns
    out += [(f"{kind}-{seed}", _wide_model(kind, seed)) for kind in ("conv_wide", "depthwise_wide", "fc_wide")
            for seed in range(WIDE_SEEDS)]
    # a depthwise multiplier > 1 and a row longer than 255 (2-byte header) for sure
    extra = [("depthwise", s) for s in range(SEEDS, 40)]
    for kind, seed in extra:
        data = make_model(kind, seed)
        info = read_tflite(data)
        if info.tensors[info.ops[0].inputs[0]].shape[3] != info.tensors[info.ops[0].outputs[0]].shape[3]:
            out.append((f"{kind}-{seed}", data))
            break
    return out


def _cases() -> list[dict[str, Any]]:
    cases = []
    for k, (name, base) in enumerate(_base_models()):
        info = read_tflite(base)
        f = info.tensors[info.ops[0].inputs[1]]
        widths = [8]
        if not (info.ops[0].op == "FULLY_CONNECTED" and len(f.scale) > 1):  # TFLM: int4 FC is per-tensor only
            widths.append(4)
        for bits in widths:
            src = base if bits == 8 else to_int4(base, rng=np.random.default_rng(k))[0]
            values, _, _, op = _filter_values(src)
            for j, pattern in enumerate(PATTERNS):
                rng = np.random.default_rng([k, bits, j])
                pruned = prune(values, op, pattern, rng)
                cases.append({"name": f"{name}-int{bits}-{pattern}", "model": _with_values(src, pruned, bits),
                              "values": pruned, "bits": bits, "op": op, "pattern": pattern})
    return cases


@pytest.fixture(scope="module")
def cases() -> list[dict[str, Any]]:
    """Every case with its lowering, inputs and tflite-micro outputs."""
    out = _cases()
    rng = np.random.default_rng(17)
    for c in out:
        info = read_tflite(c["model"])
        c["info"] = info
        c["calls"] = lower(info, c["model"])
        c["batches"] = [random_inputs(info, rng) for _ in range(2)]
        c["batches"].append([rng.choice(np.array([-128, 127], np.int8), size=info.tensors[info.inputs[0]].shape)])
        c["want"] = tflm_run_many(c["model"], c["batches"])
    return out


def _run_all(program: Program, cases: list[dict[str, Any]]) -> list[str]:
    requests = [(k, xs) for k, c in enumerate(cases) for xs in c["batches"]]
    got = program.run_many(requests)
    wants = [w for c in cases for w in c["want"]]
    return sorted({cases[k]["name"] for (k, _), g, w in zip(requests, got, wants, strict=True)
                   if any(a.tobytes() != b.tobytes() for a, b in zip(g, w, strict=True))})


def test_pruned_filters_bit_exact(cases: list[dict[str, Any]]) -> None:
    program = Program([(c["info"], c["model"]) for c in cases])
    bad = _run_all(program, cases)
    assert not bad, f"differ from tflite-micro: {bad}"


def test_cases_reach_every_sparse_path(cases: list[dict[str, Any]]) -> None:
    """The suite really runs each sparse kernel: every op in int8 and int4, all-zero / dense / bitmap rows,
    a depthwise multiplier > 1, grouped convs, rows longer than 255 (2-byte header) and than one chunk."""
    seen = set()
    for c in cases:
        (call,) = c["calls"]
        (fs,) = call.filters
        if fs.storage.format != SPARSE:
            continue
        assert call.kernel.weights.sparse and call.kernel.weights.bits == c["bits"], call.kernel
        seen.add(f"{c['op']} int{c['bits']}")
        r = sparse.rows(c["values"], c["op"])
        nnz = np.count_nonzero(r, axis=1)
        K = r.shape[1]
        blob = next(a for a in call.consts if a.name == fs.name).values
        entries = blob[: r.shape[0]] if K <= 255 else blob[: 2 * r.shape[0]].view("<u2")
        seen.update(name for name, hit in (("empty rows", (entries == 0).any()), ("dense rows", (entries == K).any()),
                                           ("bitmap rows", ((entries > 0) & (entries < K)).any())) if hit)
        info = c["info"]
        op = info.ops[0]
        x, y, f = (info.tensors[i] for i in (op.inputs[0], op.outputs[0], op.inputs[1]))
        if c["op"] == "DEPTHWISE_CONV_2D" and y.shape[3] != x.shape[3]:
            seen.add("depth multiplier")
        if c["op"] == "DEPTHWISE_CONV_2D" and call.kernel.params.in_offset != 0:
            kw, sw = f.shape[2], int(op.options.get("strideW", 1))
            if (x.shape[2] - (kw - 1) * int(op.options.get("dilationWFactor", 1))) // sw >= 3:
                seen.add("depthwise interior pairs with an input offset")
        if c["op"] == "CONV_2D" and x.shape[3] != f.shape[3]:
            seen.add("grouped")
        if K > 255:
            seen.add("K > 255")
        if K > 128 and c["op"] != "DEPTHWISE_CONV_2D":
            seen.add("K > chunk")
        if nnz.max() == 0:
            seen.add("all zero")
    want = {f"{op} int{b}" for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") for b in (8, 4)}
    want |= {"empty rows", "dense rows", "bitmap rows", "depth multiplier", "grouped", "K > 255", "K > chunk",
             "depthwise interior pairs with an input offset"}
    assert seen >= want, want - seen


def test_weight_storage_is_what_is_emitted(cases: list[dict[str, Any]]) -> None:
    """For every case: the filter array's size is weight_storage's stored_bytes, its format the kernel's, and it
    decodes back to the filter values."""
    sparse_count = 0
    for c in cases:
        (call,) = c["calls"]
        (fs,) = call.filters
        ws = weight_storage(c["values"], c["bits"], c["op"])
        assert fs.storage == ws, c["name"]
        arr = next(a for a in call.consts if a.name == fs.name)
        assert arr.nbytes == ws.stored_bytes, c["name"]
        assert ws.dense_bytes == (c["values"].size * c["bits"] + 7) // 8
        if ws.format == SPARSE:
            sparse_count += 1
            assert ws.stored_bytes < ws.dense_bytes
            assert call.kernel.weights.sparse
            assert np.array_equal(decode(arr.values, c["values"].shape, c["bits"], c["op"]), c["values"]), c["name"]
        else:
            assert not call.kernel.weights.sparse
    assert sparse_count >= len(cases) // 2


def test_sparse_storage_saves_what_it_should(cases: list[dict[str, Any]]) -> None:
    """Whole zero output channels cost their header byte(s) only; unstructured 75 % zeros at least halve an
    int8 filter of some size (bitmap 1 bit + a quarter of the values per weight)."""
    for c in cases:
        ws = weight_storage(c["values"], c["bits"], c["op"])
        r = sparse.rows(c["values"], c["op"])
        R, K = r.shape
        header = R * (1 if K <= 255 else 2)
        if c["pattern"] == "struct" and ws.format == SPARSE:
            kept = int((np.count_nonzero(r, axis=1) > 0).sum())
            assert ws.stored_bytes <= header + (kept * K * c["bits"] + 7) // 8 + 1, c["name"]
        if c["pattern"] == "u75" and c["bits"] == 8 and R * K >= 512 and K >= 16:
            assert ws.stored_bytes <= 0.5 * ws.dense_bytes, (c["name"], ws)
        if c["pattern"] == "all" and header < ws.dense_bytes:
            assert ws.stored_bytes == header and ws.format == SPARSE


#: sparse-kernel tilings: the MCU defaults and deliberately small chunks / tiles
SPARSE_TILINGS = [("mcu", ["-DEF_NPIX=1", "-DEF_KC=64", "-DEF_OT=16", "-DEF_DWV=8", "-DEF_SKC=64", "-DEF_SOT=16",
                          "-DEF_SNPIX=4"]),
                  # odd sizes; and the Cortex-M0 count-trailing-zeros (de Bruijn) on this machine
                  ("skc32-sot3-snpix3-m0ctz", ["-DEF_SKC=32", "-DEF_SOT=3", "-DEF_SNPIX=3", "-D__ARM_ARCH_6M__=1"])]


@pytest.mark.parametrize("tiling", [t for t, _ in SPARSE_TILINGS])
def test_pruned_filters_bit_exact_under_tiling(tiling: str, cases: list[dict[str, Any]]) -> None:
    flags = dict(SPARSE_TILINGS)[tiling]
    subset = [c for c in cases if "wide" in c["name"] or c["name"].startswith("conv-")]

    class Tiled(Program):
        def _defines(self) -> list[str]:
            return [*super()._defines(), *flags]

    bad = _run_all(Tiled([(c["info"], c["model"]) for c in subset]), subset)
    assert not bad, f"{tiling}: differ from tflite-micro: {bad}"


# ---- dense models are emitted as before ------------------------------------------------------------------------


def test_unpruned_models_emit_exactly_what_dense_storage_emits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pruning a filter stays dense: the lowering (code and constants) is identical with sparse storage
    switched off, and so are the emitted files of a whole model."""
    models = [make_model(kind, seed) for kind in ("conv", "depthwise", "fc") for seed in (1, 2, 3)]
    models.append((FIXTURES / "tiny_int8.tflite").read_bytes())
    for data in models:
        info = read_tflite(data)
        for call in lower(info, data):
            for fs in call.filters:
                assert fs.storage.format == DENSE and fs.storage.stored_bytes == fs.storage.dense_bytes
        on = lower(info, data)
        monkeypatch.setenv(sparse.ENV_SWITCH, "0")
        off = lower(info, data)
        monkeypatch.delenv(sparse.ENV_SWITCH)
        assert [render_call(c, str) for c in on] == [render_call(c, str) for c in off]
        assert [[(a.name, a.ctype, a.values.tobytes()) for a in c.consts] for c in on] == \
            [[(a.name, a.ctype, a.values.tobytes()) for a in c.consts] for c in off]
    data = models[-1]
    info = read_tflite(data)
    base = {"version": "t", "target_id": "t", "model_name": "m", "model_sha256": "0"}
    native = prepare_native(info, data)
    files_on = native_files(native, info, base, None)
    monkeypatch.setenv(sparse.ENV_SWITCH, "0")
    files_off = native_files(prepare_native(info, data), info, base, None)
    assert files_on == files_off
    raw = {t.index: constant_data(data, t.index) for t in info.tensors if t.is_constant and t.dtype == "int8"}
    emitted = {a["name"]: a for a in model_context(native, info, base)["consts"]}
    for call_op in (o for o in info.ops if o.op in sparse.OPS):  # the filter bytes as the .tflite holds them
        a = emitted[f"op{call_op.index}_filter"]
        assert a["ctype"] == "int8_t" and a["count"] == raw[call_op.inputs[1]].size


def test_weight_accounting_in_the_native_model(cases: list[dict[str, Any]]) -> None:
    """NativeModel.weights and const_bytes: sparse storage where emitted, int4 counted at its width; the
    emitted ef_model.c declares each filter with weight_storage's size."""
    base = {"version": "t", "target_id": "t", "model_name": "m", "model_sha256": "0"}
    for c in cases[:: max(len(cases) // 12, 1)]:
        nm = prepare_native(c["info"], c["model"])
        ws = weight_storage(c["values"], c["bits"], c["op"])
        w = nm.weights.to_json()
        assert w == {"stored_bytes": ws.stored_bytes, "dense_bytes": ws.dense_bytes,
                     "int8_dense_bytes": c["values"].size,
                     "sparse_saved_bytes": ws.dense_bytes - ws.stored_bytes,
                     "int4_saved_bytes": c["values"].size - ws.dense_bytes,
                     "sparse_tensors": int(ws.format == SPARSE)}, c["name"]
        assert nm.const_bytes == sum(a.nbytes for call in nm.calls for a in call.consts)
        a = {a["name"]: a for a in model_context(nm, c["info"], base)["consts"]}["op0_filter"]
        assert a["count"] == max(ws.stored_bytes, 1), c["name"]
        assert a["ctype"] == ("int8_t" if ws.format == DENSE and c["bits"] == 8 else "uint8_t")


def test_weight_storage_is_fast_and_checks_its_arguments() -> None:
    rng = np.random.default_rng(0)
    v = rng.integers(-127, 128, (64, 3, 3, 64)).astype(np.int8)
    v = prune_unstructured(v, 0.6, rng)
    weight_storage(v, 8, "CONV_2D")
    start = time.perf_counter()
    for _ in range(50):
        ws = weight_storage(v, 8, "CONV_2D")
    per_call = (time.perf_counter() - start) / 50
    assert ws.format == SPARSE and ws.dense_bytes == v.size and ws.stored_bytes < 0.75 * v.size
    assert per_call < 0.01, f"{per_call * 1e3:.2f} ms per call"
    assert weight_storage(v, 4, "CONV_2D").dense_bytes == v.size // 2
    with pytest.raises(ValueError):
        weight_storage(v, 2, "CONV_2D")
    with pytest.raises(ValueError):
        weight_storage(v, 8, "ADD")
    # the format's own limits: depthwise with more taps than the kernel decodes, rows longer than 65535
    big_dw = np.zeros((1, 9, 9, 4), np.int8)
    big_dw[0, 0, 0] = 1
    assert weight_storage(big_dw, 8, "DEPTHWISE_CONV_2D").format == DENSE
    assert weight_storage(np.zeros((2, 70000), np.int8), 8, "FULLY_CONNECTED").format == DENSE


def test_encoding_layout() -> None:
    """The documented layout on a small example: header, bitmaps of bitmap rows, values (int8 and int4)."""
    v = np.zeros((4, 1, 1, 32), np.int8)
    v[1, 0, 0, :] = np.arange(1, 33)  # dense row
    v[2, 0, 0, [0, 9, 31]] = [5, -3, 7]  # bitmap row
    ws, blob = encode(v, 8, "CONV_2D")
    assert ws.format == SPARSE
    assert blob[:4].tolist() == [0, 32, 3, 0]
    assert blob[4:8].tolist() == [0x01, 0x02, 0x00, 0x80]
    assert blob[8:].view(np.int8).tolist() == list(range(1, 33)) + [5, -3, 7]
    v4 = np.clip(v, -7, 7)
    ws4, blob4 = encode(v4, 4, "CONV_2D")
    assert ws4.stored_bytes == 4 + 4 + (32 + 3 + 1) // 2 == blob4.size
    assert np.array_equal(decode(blob4, v4.shape, 4, "CONV_2D"), v4)
    # depthwise rows are the channels: [1, kh, kw, C] -> row c = taps of channel c
    d = np.zeros((1, 3, 3, 2), np.int8)
    d[0, 1, 1, 1] = 9
    _, dblob = encode(d, 8, "DEPTHWISE_CONV_2D")
    assert dblob.tolist() == [0, 1, 0x10, 0x00, 9]


# ---- MLPerf Tiny -------------------------------------------------------------------------------------------------


def prune_model(model: bytes, fraction: float) -> bytes:
    """Every CONV_2D / DEPTHWISE_CONV_2D / FC filter with its ``fraction`` smallest magnitudes set to 0."""
    return prune_all(model, fraction)


def _native_outputs(native: Any, info: Any, tmp: Path, batches: list[list[np.ndarray]]) -> list[bytes]:
    """The emitted C (planned arena, fused calls) compiled for this machine and run on ``batches``."""
    from edgeforge.native.toolchain import host_runner

    base = {"version": "t", "target_id": "t", "model_name": "m", "model_sha256": "0"}
    for rel, data in native_files(native, info, base, None).items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    (tmp / "in.bin").write_bytes(b"".join(xs[0].tobytes() for xs in batches))
    subprocess.run([str(host_runner(tmp)), str(tmp / "in.bin"), str(tmp / "out.bin")], check=True)
    out = (tmp / "out.bin").read_bytes()
    n = len(out) // len(batches)
    return [out[i * n : (i + 1) * n] for i in range(len(batches))]


@pytest.mark.mlperf
def test_kws_pruned_60_bit_exact_and_smaller(mlperf: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    model = prune_model((mlperf / "kws" / "kws_ref_model_int8.tflite").read_bytes(), 0.6)
    info = read_tflite(model)
    files = sorted((mlperf / "samples" / "kws01").glob("*.bin"))[:: 50 if not FULL else 5]
    batches = [[np.frombuffer(f.read_bytes(), np.int8).reshape(1, 49, 10, 1)] for f in files]
    rng = np.random.default_rng(60)
    batches += [random_inputs(info, rng) for _ in range(8)]
    want = [w[0].tobytes() for w in tflm_run_many(model, batches)]
    got = Program([(info, model)]).run_many([(0, xs) for xs in batches])
    assert [g[0].tobytes() for g in got] == want
    native = prepare_native(info, model)
    assert _native_outputs(native, info, tmp_path, batches) == want  # the emitted model itself
    w = native.weights
    assert w.sparse_tensors == 10 and w.int8_dense_bytes == w.dense_bytes == 22016
    assert w.stored_bytes < 0.7 * w.dense_bytes
    monkeypatch.setenv(sparse.ENV_SWITCH, "0")
    dense = prepare_native(info, model)
    assert dense.weights.sparse_tensors == 0
    assert native.const_bytes == dense.const_bytes - (w.dense_bytes - w.stored_bytes) < dense.const_bytes


@pytest.mark.mlperf
def test_resnet_pruned_sparse_convs_fuse_with_their_residual_add(mlperf: Path, tmp_path: Path) -> None:
    """IC ResNet-8 pruned at 50 %: 3x3 convs read sparse filters, the residual fusion still applies
    (row-by-row calls of the sparse kernel), bit-exact through the emitted C."""
    model = prune_model((mlperf / "ic" / "pretrainedResnet_quant.tflite").read_bytes(), 0.5)
    info = read_tflite(model)
    native = prepare_native(info, model)
    fused = [c.kernel for c in native.calls if isinstance(c.kernel, ConvAdd)]
    assert fused and all(k.conv.weights.sparse and k.conv.weights.bits == 8 for k in fused)
    rng = np.random.default_rng(50)
    batches = [random_inputs(info, rng) for _ in range(4 if not FULL else 16)]
    want = [w[0].tobytes() for w in tflm_run_many(model, batches)]
    assert _native_outputs(native, info, tmp_path, batches) == want


@pytest.mark.mlperf
def test_kws_pruned_on_the_emulated_cortex_m4_is_byte_identical(mlperf: Path, tmp_path: Path) -> None:
    """The Cortex-M4 build (its DSP path: paired 16-bit loads, SMLABB/SMLABT) of KWS pruned at 60 % with one int4
    layer, run on QEMU by the bench: outputs byte-identical with the host build (which equals tflite-micro)."""
    from edgeforge.bench.run import bench_build
    from edgeforge.build import BuildOptions, build
    from edgeforge.device.boards import qemu_available
    from edgeforge.native.toolchain import arm_available
    from edgeforge.target import load_registry

    if not (qemu_available() and arm_available()):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    model, _ = to_int4(prune_model((mlperf / "kws" / "kws_ref_model_int8.tflite").read_bytes(), 0.6), op_index=2)
    src = tmp_path / "kws_pruned.tflite"
    src.write_bytes(model)
    result = build(src, load_registry().get("cortex-m4"), BuildOptions(out_dir=tmp_path / "b", runtime="native"))
    weights = result.manifest.native["weights"]
    assert weights["sparse_tensors"] == 10 and weights["int4_saved_bytes"] == 2048
    assert "ef_conv2d_s4_sparse(" in (tmp_path / "b" / "native" / "ef_model.c").read_text()
    x = np.random.default_rng(4).integers(-128, 128, (3, 49, 10, 1)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    doc = bench_build(tmp_path / "b", "qemu-cortex-m4", None, runs=1, warmup=0, input_path=tmp_path / "x.npy",
                      count=3).doc
    assert doc["outputs"]["byte_identical"], doc["outputs"]
