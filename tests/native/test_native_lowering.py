"""What lower() hands the planner and emitter: unsupported ops raise UnsupportedOpError naming the op,
the KernelCall flags (in place, alias-only), constant naming, and the kernel library's build hygiene."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fbedit import set_quant
from harness import RUNTIME, _cache_dir
from opgen import make_model

from edgeforge.errors import ExitCode, UnsupportedOpError
from edgeforge.model.tflite import ModelInfo, read_tflite
from edgeforge.native.ir import Copy, operands
from edgeforge.native.lower import SUPPORTED_OPS, lower

# ---- unsupported ops and configurations ------------------------------------------------------------


def test_unsupported_op_names_the_op() -> None:
    data = make_model("transpose", 0)
    info = read_tflite(data)
    assert "TRANSPOSE" in info.op_names
    with pytest.raises(UnsupportedOpError) as exc:
        lower(info, data)
    assert "TRANSPOSE" in exc.value.message
    assert exc.value.message.startswith("native runtime has no kernel for TRANSPOSE")
    assert exc.value.hint == "build with --runtime tflm"
    assert exc.value.exit_code == ExitCode.DATA


def test_concatenation_with_different_scales_is_unsupported() -> None:
    data = make_model("concat", 0)
    info = read_tflite(data)
    op = info.ops[0]
    t = info.tensors[op.inputs[0]]
    bad = set_quant(data, t.index, t.scale[0] * 1.5, t.zero_point[0])
    with pytest.raises(UnsupportedOpError, match="CONCATENATION"):
        lower(read_tflite(bad), bad)


def test_softmax_output_must_be_1_over_256() -> None:
    data = make_model("softmax", 0)
    info = read_tflite(data)
    sm = next(o for o in info.ops if o.op == "SOFTMAX")
    bad = set_quant(data, sm.outputs[0], 1.0 / 128, -128)
    with pytest.raises(UnsupportedOpError, match="SOFTMAX"):
        lower(read_tflite(bad), bad)


def test_int16_activations_are_unsupported() -> None:
    from fbedit import load, save
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    data = make_model("logistic", 0)
    m = load(data)
    for t in m.subgraphs[0].tensors:
        t.type = schema.TensorType.INT16
    bad = save(m)
    with pytest.raises(UnsupportedOpError, match="LOGISTIC.*int16"):
        lower(read_tflite(bad), bad)


# ---- KernelCall contents ------------------------------------------------------------------------------


def _check_calls(info: ModelInfo, data: bytes) -> None:
    calls = lower(info, data)
    assert [c.op for c in calls] == [o.op for o in info.ops]
    names = [a.name for c in calls for a in c.consts]
    assert len(names) == len(set(names)), "constant names must be unique in a model"
    for c, op in zip(calls, info.ops, strict=True):
        assert c.op_index == op.index
        assert c.outputs == op.outputs
        assert all(not info.tensors[i].is_constant for i in c.inputs)
        assert set(c.inputs) == {i for i in op.inputs if i >= 0 and not info.tensors[i].is_constant}
        reads, writes, consts = operands(c.kernel)
        # the kernel's operands are exactly what the planner is told about
        assert {r for r in reads if isinstance(r, int)} == set(c.inputs)
        assert tuple(writes) == c.outputs
        assert {a.name for a in consts} == {a.name for a in c.consts}
        for a in c.consts:
            assert a.name.startswith(f"op{op.index}_")
            assert a.values.dtype == {"int8_t": np.int8, "uint8_t": np.uint8, "int32_t": np.int32,
                                      "float": np.float32, "int16_t": np.int16}[a.ctype]
        if c.op == "ADD":
            assert c.inplace and not c.alias_only
        if c.op == "RESHAPE":
            assert c.alias_only and isinstance(c.kernel, Copy)
        if c.op in ("CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED"):
            assert not c.inplace and not c.alias_only
        assert c.scratch_bytes == 0


@pytest.mark.parametrize("kind", ["residual", "branch", "reshape_chain", "add_const", "concat", "float_io"])
def test_kernel_call_flags_and_operands(kind: str) -> None:
    data = make_model(kind, 0)
    _check_calls(read_tflite(data), data)


def test_kernel_call_flags_and_operands_on_resnet(mlperf: Path) -> None:
    data = (mlperf / "ic" / "pretrainedResnet_quant.tflite").read_bytes()
    _check_calls(read_tflite(data), data)


def test_broadcast_add_is_not_in_place_when_input0_is_smaller() -> None:
    for seed in range(40):
        data = make_model("add", seed)
        info = read_tflite(data)
        op = info.ops[0]
        a, y = info.tensors[op.inputs[0]], info.tensors[op.outputs[0]]
        try:
            (call,) = lower(info, data)
        except UnsupportedOpError:
            continue
        assert call.inplace == (a.shape == y.shape)


def test_supported_ops_list() -> None:
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MUL",
            "SOFTMAX", "RESHAPE", "MEAN", "PAD", "PADV2", "CONCATENATION", "LOGISTIC", "QUANTIZE",
            "DEQUANTIZE"} <= set(SUPPORTED_OPS)


# ---- the kernel library builds clean --------------------------------------------------------------------

STRICT = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]


@pytest.mark.parametrize("single", [0, 1])
def test_runtime_compiles_warning_free_on_the_host(single: int) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    out = _cache_dir() / f"strict-{single}"
    out.mkdir(exist_ok=True)
    for src in sorted(RUNTIME.glob("*.c")):
        proc = subprocess.run([cc, *STRICT, f"-DEF_SINGLE_ROUNDING={single}", "-I", str(RUNTIME), "-c", str(src),
                               "-o", str(out / (src.stem + ".o"))], capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("single", [0, 1])
def test_runtime_cross_compiles_for_cortex_m4_without_float_on_int8_paths(single: int) -> None:
    out = _cache_dir() / f"arm-{single}"
    out.mkdir(exist_ok=True)
    for src in sorted(RUNTIME.glob("*.c")):
        obj = out / (src.stem + ".o")
        proc = subprocess.run(["arm-none-eabi-gcc", *STRICT, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft",
                               f"-DEF_SINGLE_ROUNDING={single}", "-I", str(RUNTIME), "-c", str(src), "-o", str(obj)],
                              capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr
        undefined = subprocess.run(["arm-none-eabi-nm", "-u", str(obj)], capture_output=True, text=True,
                                   check=True).stdout.split()
        assert not {"malloc", "calloc", "realloc", "free"} & set(undefined), (src.name, undefined)
        soft_float = [s for s in undefined if re.match(r"__aeabi_[fd]|__aeabi_[ui]2[fd]|__aeabi_[fd]2", s)]
        if src.name != "ef_quantize.c":  # QUANTIZE / DEQUANTIZE use float by design
            assert not soft_float, (src.name, soft_float)
