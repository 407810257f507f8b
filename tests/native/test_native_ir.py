"""Kernel calls as data (edgeforge/native/ir.py), residual fusion as a typed rewrite (fuse.py), the one C renderer
(csource.py) and the generated configuration header, on small synthetic graphs (opgen's "residual",
"branch" and "reshape_chain"): no ../shared needed.

Fusion reads only the typed calls, so no spelling of the generated C can switch it off: the residual fixture's
fused-call count and arena size are pinned here, and its emitted C runs bit-exact with tflite-micro.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from harness import RUNTIME, random_inputs, tflm_run_many
from opgen import make_model

from edgeforge.events import RecordingReporter
from edgeforge.model.tflite import ModelInfo, read_tflite
from edgeforge.native import csource
from edgeforge.native.emit import native_files, prepare_native
from edgeforge.native.fuse import fuse_residual_adds
from edgeforge.native.ir import STRUCTS, Binary, Conv, ConvAdd, Copy, KernelCall, operands
from edgeforge.native.lower import lower
from edgeforge.native.planner import plan

BASE = {"version": "t", "target_id": "t", "model_name": "m", "model_sha256": "0"}


def _model(kind: str) -> tuple[ModelInfo, bytes]:
    data = make_model(kind, 0)
    return read_tflite(data), data


# ---- the params dataclasses are the C structs ---------------------------------------------------------------


def _c_structs() -> dict[str, list[str]]:
    """Field names, in order, of every ``typedef struct {...} ef_*_params;`` in ef_kernels.h."""
    text = re.sub(r"/\*.*?\*/", "", (RUNTIME / "ef_kernels.h").read_text(), flags=re.S)
    out = {}
    for body, name in re.findall(r"typedef struct \{(.*?)\} (ef_\w+_params);", text, flags=re.S):
        names = []
        for decl in body.split(";"):
            decl = decl.strip()
            if not decl:
                continue
            _, rest = decl.split(None, 1)
            names += [re.sub(r"\[\d+\]", "", n).strip() for n in rest.split(",")]
        out[name] = names
    return out


def test_params_dataclasses_mirror_the_c_structs() -> None:
    structs = _c_structs()
    assert set(structs) == set(STRUCTS.values())
    for cls, cname in STRUCTS.items():
        assert [f.name for f in dataclasses.fields(cls)] == structs[cname], cname


# ---- residual fusion ---------------------------------------------------------------------------------------------


def test_residual_fixture_fuses_one_block_and_plans_a_smaller_arena() -> None:
    info, data = _model("residual")
    assert [o.op for o in info.ops] == ["CONV_2D", "CONV_2D", "CONV_2D", "ADD", "CONV_2D", "MEAN", "ADD", "MEAN"]
    native = prepare_native(info, data)
    fused = [c for c in native.calls if isinstance(c.kernel, ConvAdd)]
    assert len(fused) == 1
    (f,) = fused
    k = f.kernel
    assert isinstance(k, ConvAdd)
    # op 2's conv is fused into op 3's ADD; the skip is op 0's output (tensor 10), written over in place
    assert f.op_index == 3 and k.conv.params.out_h == 8 and k.row_bytes == 8 * 8
    assert k.skip == info.ops[0].outputs[0] and f.inputs[0] == k.skip and f.inplace
    assert k.add.shape == (1, 1, 1, 64) and k.add.elementwise
    assert f.scratch_bytes == 64
    # four 512-byte activations live at the unfused ADD (skip, conv input, conv output, sum) minus in-place;
    # fused: skip + conv input + one 64-byte row
    assert native.plan.arena_bytes == 2 * 512 + 64 == native.plan.lower_bound
    unfused = lower(info, data)
    assert plan(unfused, info).arena_bytes == 3 * 512
    assert native.tflm_like_head == 3 * 512
    # the second join broadcasts a per-channel mean: declined, with the reason
    assert native.fusion_declined == ("residual fusion: op 4 (CONV_2D) into op 6 (ADD) declined: shapes differ "
                                      "([1, 8, 8, 8], [1, 1, 1, 8] -> [1, 8, 8, 8])",)


def _readers_added(calls: list[KernelCall], tensor: int) -> list[KernelCall]:
    """``calls`` plus a copy of ``tensor`` into a fresh tensor id (a second reader)."""
    extra = KernelCall(99, "RESHAPE", Copy(tensor, 10_000, 512), (tensor,), (10_000,), alias_only=True)
    return [*calls, extra]


def test_fusion_declines_a_conv_with_two_readers_or_a_model_output() -> None:
    info, data = _model("residual")
    calls = lower(info, data)
    conv_out = info.ops[2].outputs[0]
    res = fuse_residual_adds(_readers_added(calls, conv_out), info)
    assert res.fused == 0
    assert [(d.conv_op, d.add_op, d.reason) for d in res.declined][0] == \
        (2, 3, "the convolution's output has 2 readers (it must feed the ADD only)")
    exposed = dataclasses.replace(info, outputs=(*info.outputs, conv_out))
    res = fuse_residual_adds(calls, exposed)
    assert res.fused == 0 and res.declined[0].reason == "the convolution's output is a model output"


def test_fusion_ignores_adds_without_a_conv_and_depthwise_producers() -> None:
    for kind in ("add", "branch", "reshape_chain"):
        info, data = _model(kind) if kind != "add" else (read_tflite(make_model("add", 1)), make_model("add", 1))
        calls = lower(info, data)
        res = fuse_residual_adds(calls, info)
        assert res.fused == 0 and res.declined == () and res.calls == calls


def test_fused_calls_render_and_run_bit_exact(tmp_path: Path) -> None:
    """The residual fixture through the emitted C (planned arena, fused call) equals tflite-micro."""
    from edgeforge.native.toolchain import host_runner

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no host C compiler")
    info, data = _model("residual")
    native = prepare_native(info, data)
    for rel, blob in native_files(native, info, BASE, None).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(blob)
    rng = np.random.default_rng(3)
    batches = [random_inputs(info, rng) for _ in range(6)]
    (tmp_path / "in.bin").write_bytes(b"".join(xs[0].tobytes() for xs in batches))
    subprocess.run([str(host_runner(tmp_path)), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True)
    out = (tmp_path / "out.bin").read_bytes()
    want = [w[0].tobytes() for w in tflm_run_many(data, batches)]
    n = len(out) // len(batches)
    assert [out[i * n : (i + 1) * n] for i in range(len(batches))] == want


def test_renaming_c_spellings_does_not_change_fusion_or_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's experiment: the block-local struct renamed ``p`` -> ``prm`` (valid C, same behaviour)."""
    info, data = _model("residual")
    before = prepare_native(info, data)
    monkeypatch.setattr(csource, "PARAMS_VAR", "prm")
    after = prepare_native(info, data)
    assert sum(isinstance(c.kernel, ConvAdd) for c in after.calls) == 1
    assert after.plan == before.plan
    text = native_files(after, info, BASE, None)["ef_model.c"].decode()
    assert "ef_conv_params prm =" in text and "(&prm," in text  # the new spelling did reach the C


# ---- operands and rendering ----------------------------------------------------------------------------------------


def test_every_tensor_operand_is_rendered_through_the_callers_pointer() -> None:
    """The renderer writes a tensor only through ``tensor(i)`` and constants only through ``const(a)``."""
    for kind in ("residual", "branch", "reshape_chain", "concat", "float_io", "add_const", "pad", "mean"):
        info, data = _model(kind)
        native = prepare_native(info, data)
        for call in native.calls:
            seen_t: list[int] = []
            seen_c: list[str] = []

            def tensor(i: int, seen: list[int] = seen_t) -> str:
                seen.append(i)
                return f"T{i}"

            def const(a: object, seen: list[str] = seen_c) -> str:
                seen.append(a.name)  # type: ignore[attr-defined]
                return f"C_{a.name}"  # type: ignore[attr-defined]

            code = csource.render_call(call, tensor, "SCRATCH", const)
            reads, writes, consts = operands(call.kernel)
            assert set(seen_t) == set(call.inputs) | set(call.outputs), (kind, call.op)
            assert set(seen_c) == {a.name for a in consts}, (kind, call.op)
            assert ("SCRATCH" in code) == (call.scratch_bytes > 0)
            for a in call.consts:
                assert not re.search(rf"(?<!C_)\b{a.name}\b", code), "a constant bypassed const()"


def test_int32_min_is_rendered_as_a_valid_literal() -> None:
    info, data = _model("residual")
    call = next(c for c in lower(info, data) if isinstance(c.kernel, Binary))
    k = call.kernel
    assert isinstance(k, Binary)
    odd = dataclasses.replace(call, kernel=dataclasses.replace(k, params=dataclasses.replace(k.params,
                                                                                             act_min=-(1 << 31))))
    assert ".act_min = (-2147483647 - 1)" in csource.render_call(odd, str)


def test_conv_kernel_variant_follows_the_filter_storage() -> None:
    info, data = _model("residual")
    conv = next(c.kernel for c in lower(info, data) if isinstance(c.kernel, Conv))
    assert isinstance(conv, Conv)
    for bits, sparse, fn in ((8, False, "ef_conv2d_s8("), (4, False, "ef_conv2d_s4("),
                             (8, True, "ef_conv2d_s8_sparse("), (4, True, "ef_conv2d_s4_sparse(")):
        k = dataclasses.replace(conv, weights=dataclasses.replace(conv.weights, bits=bits, sparse=sparse))
        call = KernelCall(0, "CONV_2D", k, (), (k.output,))
        assert fn in csource.render_call(call, str)


# ---- generated configuration ------------------------------------------------------------------------------------


def _macro(header: bytes, name: str, tmp: Path) -> str:
    """What the C preprocessor makes of ``name`` after including ``header``."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    (tmp / "h.h").write_bytes(header)
    out = subprocess.run([cc, "-E", "-dM", "-x", "c", str(tmp / "h.h")], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(rf"^#define {name} (.*)$", out, flags=re.M)
    assert m is not None, out
    return m.group(1).split("/*")[0].strip()


@pytest.mark.parametrize("single", [False, True])
def test_rounding_mode_reaches_the_config_header(single: bool, tmp_path: Path) -> None:
    info, data = _model("reshape_chain")
    files = native_files(prepare_native(info, data, single_rounding=single), info, BASE, None)
    assert _macro(files["runtime/ef_config.h"], "EF_SINGLE_ROUNDING", tmp_path) == str(int(single))
    if not single:  # the library's own copy is the default rendering
        assert files["runtime/ef_config.h"] == (RUNTIME / "ef_config.h").read_bytes()


def test_build_reports_declined_fusions_at_verbose(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "residual.tflite"
    src.write_bytes(make_model("residual", 0))
    r = cli("build", src, "--target", "cortex-m4", "--runtime", "native", "--out", tmp_path / "o", "-v")
    assert r.code == 0, r.err
    assert "residual fusion: op 4 (CONV_2D) into op 6 (ADD) declined: shapes differ" in r.err
    quiet = cli("build", src, "--target", "cortex-m4", "--runtime", "native", "--out", tmp_path / "q")
    assert quiet.code == 0 and "residual fusion" not in quiet.err


def test_library_stays_silent(tmp_path: Path) -> None:
    """The declined notes go to the reporter only (as detail events)."""
    from edgeforge.build import BuildOptions, build
    from edgeforge.target import load_registry

    src = tmp_path / "residual.tflite"
    src.write_bytes(make_model("residual", 0))
    rep = RecordingReporter()
    build(src, load_registry().get("cortex-m4"), BuildOptions(out_dir=tmp_path / "o", runtime="native"), rep)
    details = [m for kind, m in rep.events if kind == "detail"]
    assert any("op 4 (CONV_2D) into op 6 (ADD) declined" in str(m) for m in details)
