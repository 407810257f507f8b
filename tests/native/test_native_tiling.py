"""The blocked CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED kernels (firmware/runtime/ef_conv.c) on the
shapes the property suite does not reach, and under other compile-time tilings, byte-exact against tflite-micro.

* "wide" single-op models: many channels (16-channel depthwise vectors, several output-channel tiles), receptive
  fields longer than one im2col chunk (K > EF_KC, and K > 4 * EF_KC for one-pixel FC), several 4-pixel blocks
  plus a ragged last block, grouped and dilated convs, padding on every side, batches; int8 and packed int4;
* the same models and the property-suite conv/dw/fc models compiled with -DEF_NPIX / -DEF_KC / -DEF_OT set to the
  scalar-MCU default (one pixel, four filter rows per pass) and to deliberately awkward tiles (chunks of 8 or 16
  elements, 3 or 5 output channels per tile), so every chunk/tile/remainder path runs; for int4 depthwise
  -DEF_DW4V / -DEF_DW4K: the MCU's 4-channel blocks, 3-channel blocks (overlapping last blocks), and at most 4
  taps unpacked (larger kernels read in place);
* the prepared requantisation (ef_rq_*, used by the kernels in place of ef_mbqm) against the Python model of
  MultiplyByQuantizedMultiplier in both rounding modes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fbedit import to_int4
from harness import CFLAGS, RUNTIME, Program, _cache_dir, random_inputs, tflm_run_many
from opgen import _act, _convert, _range, _tf_version, _weights, make_model
from opgen import _cache_dir as _model_cache

from edgeforge.model.tflite import read_tflite
from edgeforge.native import qparams as qp

WIDE_VERSION = 2
PER_KIND = 5

#: (name, extra C flags); the first is the host default
TILINGS = [
    ("default", []),
    ("mcu", ["-DEF_NPIX=1", "-DEF_KC=64", "-DEF_OT=16", "-DEF_DWV=8", "-DEF_DW4V=4"]),
    ("px4-kc16-ot5", ["-DEF_NPIX=4", "-DEF_KC=16", "-DEF_OT=5", "-DEF_DW4V=3"]),
    ("px1-kc8-ot3", ["-DEF_NPIX=1", "-DEF_KC=8", "-DEF_OT=3", "-DEF_DWV=4", "-DEF_DW4V=4", "-DEF_DW4K=4"]),
]


# ---- wide single-op models ------------------------------------------------------------------------------


def _gen_conv_wide(rng: np.random.Generator) -> tuple[Any, ...]:
    import tensorflow as tf

    n = int(rng.choice([1, 1, 2]))
    h, w = int(rng.integers(3, 11)), int(rng.integers(3, 11))
    cin, cout = int(rng.integers(8, 41)), int(rng.integers(8, 41))
    fic = cin
    if rng.random() < 0.25:  # grouped
        groups = int(rng.integers(2, 4))
        fic = int(rng.integers(4, 17))
        cin, cout = groups * fic, groups * int(rng.integers(3, 12))
    kh, kw = int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(w, 4) + 1))
    dil = fic == cin and rng.random() < 0.25
    dh, dw = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if dil else (1, 1)
    sh, sw = (1, 1) if dil else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = "SAME" if rng.random() < 0.6 else "VALID"
    if padding == "VALID" and ((kh - 1) * dh + 1 > h or (kw - 1) * dw + 1 > w):
        padding = "SAME"
    wt = _weights(rng, (kh, kw, fic, cout), 3)
    b = rng.normal(size=cout).astype(np.float32)
    act = int(rng.integers(0, 1 << 30))

    def f(x):  # type: ignore[no-untyped-def]
        y = tf.nn.conv2d(x, wt, strides=[1, sh, sw, 1], padding=padding, dilations=[1, dh, dw, 1]) + b
        return _act(np.random.default_rng(act), y)

    return f, [((n, h, w, cin), _range(rng))]


def _gen_depthwise_wide(rng: np.random.Generator) -> tuple[Any, ...]:
    import tensorflow as tf

    h, w = int(rng.integers(3, 11)), int(rng.integers(3, 11))
    cin, mult = int(rng.choice([16, 32, int(rng.integers(17, 50))])), int(rng.choice([1, 1, 1, 2]))
    kh, kw = int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(w, 4) + 1))
    d, s = (int(rng.integers(2, 3)), 1) if rng.random() < 0.25 else (1, int(rng.integers(1, 3)))
    padding = "SAME" if rng.random() < 0.6 else "VALID"
    if padding == "VALID" and ((kh - 1) * d + 1 > h or (kw - 1) * d + 1 > w):
        padding = "SAME"
    wt = _weights(rng, (kh, kw, cin, mult), 2)
    b = rng.normal(size=cin * mult).astype(np.float32)
    act = int(rng.integers(0, 1 << 30))

    def f(x):  # type: ignore[no-untyped-def]
        y = tf.nn.depthwise_conv2d(x, wt, strides=[1, s, s, 1], padding=padding, dilations=[d, d]) + b
        return _act(np.random.default_rng(act), y)

    return f, [((1, h, w, cin), _range(rng))]


def _gen_fc_wide(rng: np.random.Generator) -> tuple[Any, ...]:
    import tensorflow as tf

    bsz, d, o = int(rng.integers(1, 7)), int(rng.integers(60, 700)), int(rng.integers(4, 80))
    wt = _weights(rng, (d, o), 1)
    b = rng.normal(size=o).astype(np.float32)
    act = int(rng.integers(0, 1 << 30))
    per_tensor = bool(rng.random() < 0.5)

    def f(x):  # type: ignore[no-untyped-def]
        return _act(np.random.default_rng(act), tf.matmul(x, wt) + b)

    return f, [((bsz, d), _range(rng))], False, per_tensor


def _gen_pool_wide(rng: np.random.Generator) -> tuple[Any, ...]:
    """Pools over 16-channel steps plus a remainder (the pooling kernels' vector width)."""
    import tensorflow as tf

    h, w, c = int(rng.integers(2, 12)), int(rng.integers(2, 12)), int(rng.choice([16, 32, int(rng.integers(17, 50))]))
    kh, kw = int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    padding = "SAME" if rng.random() < 0.6 else "VALID"
    act = int(rng.integers(0, 1 << 30))
    pool = tf.nn.avg_pool2d if rng.random() < 0.6 else tf.nn.max_pool2d

    def f(x):  # type: ignore[no-untyped-def]
        return _act(np.random.default_rng(act), pool(x, ksize=[kh, kw], strides=[sh, sw], padding=padding))

    return f, [((int(rng.choice([1, 2])), h, w, c), _range(rng))]


_WIDE = {"conv_wide": _gen_conv_wide, "depthwise_wide": _gen_depthwise_wide, "fc_wide": _gen_fc_wide,
         "pool_wide": _gen_pool_wide}


def _wide_model(kind: str, seed: int) -> bytes:
    key = hashlib.sha256(f"wide{WIDE_VERSION}:{_tf_version()}:{kind}:{seed}".encode()).hexdigest()[:24]
    path = _model_cache() / f"{kind}-{seed}-{key}.tflite"
    if path.exists():
        return path.read_bytes()
    data = _convert(*_WIDE[kind](np.random.default_rng([seed, 2000 + sorted(_WIDE).index(kind)])))
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


def _models() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for kind in sorted(_WIDE):
        for seed in range(PER_KIND):
            out.append((f"{kind}-{seed}", _wide_model(kind, seed)))
    for kind in ("conv", "conv_dilated", "depthwise", "fc"):
        for seed in range(4):
            out.append((f"{kind}-{seed}", make_model(kind, seed)))
    # packed int4 filters (FC: per-tensor only)
    for name, data in list(out):
        info = read_tflite(data)
        if name.startswith("pool") or (name.startswith("fc")
                                       and len(info.tensors[info.ops[0].inputs[1]].scale) > 1):
            continue
        m4, _ = to_int4(data, rng=np.random.default_rng(len(out)))
        out.append((f"{name}-int4", m4))
    return out


@pytest.fixture(scope="module")
def cases() -> list[tuple[str, bytes, list[list[np.ndarray]], list[list[np.ndarray]]]]:
    """(name, model, input batches, tflite-micro outputs)."""
    rng = np.random.default_rng(31)
    out = []
    for name, data in _models():
        info = read_tflite(data)
        batches = [random_inputs(info, rng) for _ in range(2)]
        batches.append([rng.choice(np.array([-128, 127], np.int8), size=info.tensors[info.inputs[0]].shape)])
        out.append((name, data, batches, tflm_run_many(data, batches)))
    return out


def test_wide_models_reach_the_blocked_paths(cases: list[Any]) -> None:
    """The wide models really have what the tiling needs: K beyond a chunk, > 16 output channels,
    16-channel depthwise vectors with a remainder, more than 4 output pixels, one-pixel FC with K > 256."""
    seen = set()
    for name, data, _, _ in cases:
        info = read_tflite(data)
        op = info.ops[0]
        y = info.tensors[op.outputs[0]]
        f = info.tensors[op.inputs[1]] if len(op.inputs) > 1 else y
        if op.op == "CONV_2D":
            k = f.shape[1] * f.shape[2] * f.shape[3]
            seen.add("conv K>64" if k > 64 else "conv K<=64")
            seen.add("conv oc>16" if f.shape[0] > 16 else "conv oc<=16")
            if info.tensors[op.inputs[0]].shape[3] != f.shape[3]:
                seen.add("grouped")
            if int(np.prod(y.shape[:3])) % 4:
                seen.add("ragged pixel block")
        elif op.op == "DEPTHWISE_CONV_2D":
            c = info.tensors[op.inputs[0]].shape[3]
            if c == y.shape[3] and c >= 16:
                seen.add("dw vectors" + (" + rest" if c % 16 else ""))
        elif op.op == "FULLY_CONNECTED":
            if f.shape[1] > 256 and y.elements == f.shape[0]:
                seen.add("fc one pixel K>256")
        elif op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            seen.add(op.op)
            seen.add("pool 16-channel steps" + (" + rest" if y.shape[3] % 16 else ""))
    assert seen >= {"conv K>64", "conv K<=64", "conv oc>16", "grouped", "ragged pixel block", "dw vectors",
                    "dw vectors + rest", "fc one pixel K>256", "AVERAGE_POOL_2D", "MAX_POOL_2D",
                    "pool 16-channel steps", "pool 16-channel steps + rest"}, seen


@pytest.mark.parametrize("tiling", [t for t, _ in TILINGS])
def test_conv_dw_fc_bit_exact_under_tiling(tiling: str, cases: list[Any]) -> None:
    flags = dict(TILINGS)[tiling]

    class Tiled(Program):
        def _defines(self) -> list[str]:
            return [*super()._defines(), *flags]

    program = Tiled([(read_tflite(data), data) for _, data, _, _ in cases])
    requests = [(k, xs) for k, (_, _, batches, _) in enumerate(cases) for xs in batches]
    got = program.run_many(requests)
    wants = [w for _, _, _, outs in cases for w in outs]
    bad = [cases[k][0] for (k, _), g, w in zip(requests, got, wants, strict=True)
           if any(a.tobytes() != b.tobytes() for a, b in zip(g, w, strict=True))]
    assert not bad, f"{tiling}: differ from tflite-micro: {sorted(set(bad))}"


@pytest.mark.mlperf
def test_kws_with_the_mcu_tiling(mlperf: Path) -> None:
    """The whole KWS model with the scalar-MCU tiling (what a Cortex-M build compiles)."""
    model = (mlperf / "kws" / "kws_ref_model_int8.tflite").read_bytes()
    info = read_tflite(model)

    class Mcu(Program):
        def _defines(self) -> list[str]:
            return [*super()._defines(), *dict(TILINGS)["mcu"]]

    rng = np.random.default_rng(8)
    batches = [random_inputs(info, rng) for _ in range(4)]
    got = Mcu([(info, model)]).run_many([(0, xs) for xs in batches])
    want = tflm_run_many(model, batches)
    assert all(g[0].tobytes() == w[0].tobytes() for g, w in zip(got, want, strict=True))


# ---- prepared requantisation --------------------------------------------------------------------------------


def _rq_vectors(n: int, seed: int) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    out = [(3, 1 << 30, -2), (-3, 1 << 30, -2), (5, 1 << 30, 0), (-5, 1 << 30, 0), (0, 0, 0), (7, 0, -5),
           (-(1 << 31), (1 << 31) - 1, 0), ((1 << 31) - 1, (1 << 31) - 1, 0), (123, 1 << 30, -31),
           (-(1 << 31), (1 << 31) - 1, -31), ((1 << 31) - 1, (1 << 31) - 1, -31), (-(1 << 31), -(1 << 31), 0),
           (-(1 << 31), -(1 << 31), -3), (-(1 << 30) + 1, 1 << 30, -1), (-(1 << 30), 1 << 30, -1)]
    for _ in range(n):
        m = int(rng.integers(1 << 30, 1 << 31))
        e = int(rng.integers(-31, 1))
        out.append((int(rng.integers(-(1 << 31), 1 << 31)), m, e))
        out.append((int(rng.integers(-(1 << 22), 1 << 22)), m, e))
        k = -e  # exact ties of the second rounding, both signs
        if 1 <= k <= 20:
            out.append((int(rng.integers(-(1 << 10), 1 << 10)), 1 << 30, e))
    for _ in range(n // 4):  # positive shifts with small x
        e = int(rng.integers(1, 12))
        out.append((int(rng.integers(-(1 << (30 - e)), 1 << (30 - e))), int(rng.integers(1 << 30, 1 << 31)), e))
    return out


@pytest.mark.parametrize("single", [False, True])
def test_prepared_requantisation_matches_python_model(single: bool) -> None:
    cc = shutil.which("cc") or "gcc"
    src = _cache_dir() / f"rq_test_{os.getpid()}_{int(single)}.c"
    src.write_text(
        '#include <stdio.h>\n#include "ef_kernels.h"\n'
        "int main(void) { long x, m, e; while (scanf(\"%ld %ld %ld\", &x, &m, &e) == 3) {\n"
        "  const ef_rq r = ef_rq_prepare((int32_t)m, (int32_t)e);\n"
        "  printf(\"%ld %ld %d\\n\", (long)ef_rq_mbqm(&r, (int32_t)x), (long)ef_rq_apply(&r, (int32_t)x), r.exact); }\n"
        "  return 0; }\n")
    exe = _cache_dir() / f"rq_test_{os.getpid()}_{int(single)}"
    subprocess.run([cc, *CFLAGS, f"-DEF_SINGLE_ROUNDING={int(single)}", "-I", str(RUNTIME), str(src), "-o",
                    str(exe)], check=True, capture_output=True, text=True)
    vecs = [v for v in _rq_vectors(4000, 11) if not (single and v[1] == -(1 << 31))]
    stdin = "\n".join(f"{x} {m} {e}" for x, m, e in vecs) + "\n"
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, check=True).stdout.split("\n")
    src.unlink()
    exe.unlink()
    for (x, m, e), line in zip(vecs, out, strict=False):
        full, fast, exact = (int(v) for v in line.split())
        want = qp.mbqm(x, m, e, single)
        assert full == want, (x, m, e, full, want)
        if exact:
            assert fast == want, (x, m, e, fast, want)
        else:
            assert m == -(1 << 31)
