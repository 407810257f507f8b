"""The op registry (edgeforge/ops.py) and the Runtime type (edgeforge/runtimes.py) agree with every other list
of ops or runtimes in the project: the native lowering, the runtime TOMLs, the cost model's op kinds, the
search's weight layers, the sparse storage, the analyzer's MAC counts and the profile schema."""

from __future__ import annotations

import math
import tomllib

import pytest
from conftest import FIXTURES, ROOT

from edgeforge import ops
from edgeforge.model.tflite import OpInfo, read_tflite
from edgeforge.runtimes import RUNTIME_NAMES, Runtime, runtime_support


def _toml_ops(name: str) -> set[str]:
    data = tomllib.loads((ROOT / "targets" / "_runtimes" / f"{name}.toml").read_text())
    return set(data.get("ops", {}))


def test_native_op_lists_agree() -> None:
    """The lowering dispatches on exactly the registry's native ops, and native.toml lists exactly those (it had
    drifted: TANH, SQUEEZE and EXPAND_DIMS were lowered but not listed, so analyze called them unsupported)."""
    from edgeforge.native import lower

    assert set(lower._LOWER) == set(ops.NATIVE_OPS) == set(lower.SUPPORTED_OPS)
    assert _toml_ops("native") == set(ops.NATIVE_OPS)
    for op in (ops.TANH, ops.SQUEEZE, ops.EXPAND_DIMS):
        assert runtime_support("native").supports(op)


def test_native_ops_are_tflm_ops() -> None:
    """The native kernels are bit-exact ports of TFLM's: every one has a TFLM resolver entry."""
    assert set(ops.NATIVE_OPS) <= _toml_ops("tflm")


def test_weight_ops_agree() -> None:
    from edgeforge.compress.layers import WEIGHT_OPS
    from edgeforge.native import sparse

    assert ops.WEIGHT_OPS == (ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED)
    assert tuple(WEIGHT_OPS) == ops.WEIGHT_OPS == tuple(sparse.OPS)
    assert all(ops.OPS[o].native and ops.OPS[o].kind in ops.MAC_KINDS for o in ops.WEIGHT_OPS)


def _op(name: str, inputs: int = 3) -> OpInfo:
    return OpInfo(0, name, tuple(range(inputs)), (inputs,), {})


def test_cost_model_kinds_agree() -> None:
    from edgeforge.cost import latency as cost

    assert tuple(cost.MAC_KINDS) == ops.MAC_KINDS
    assert set(ops.MAC_KINDS) | {"elementwise", "pool"} <= set(cost.FEATURES)
    assert cost.VIEW_OPS == {n for n, o in ops.OPS.items() if o.kind == ops.VIEW}
    assert cost.POOL_OPS == {n for n, o in ops.OPS.items() if o.kind == ops.POOL}
    for name in [*ops.OPS, "TRANSPOSE", "CUSTOM:Foo"]:
        for inputs in (1, 3):
            assert cost.op_kind(_op(name, inputs)) == ops.kind_of(_op(name, inputs)), (name, inputs)


def test_mac_counts() -> None:
    """The registry's MAC formulas on a real model, written out by hand."""
    data = (FIXTURES / "tiny_int8.tflite").read_bytes()
    info = read_tflite(data)
    from edgeforge.analyze import op_macs

    seen = set()
    for op in info.ops:
        t = info.tensors
        out = t[op.outputs[0]]
        want = 0
        if op.op == ops.CONV_2D:
            want = out.elements * math.prod(t[op.inputs[1]].shape[1:])
        elif op.op == ops.DEPTHWISE_CONV_2D:
            want = out.elements * t[op.inputs[1]].shape[1] * t[op.inputs[1]].shape[2]
        elif op.op == ops.FULLY_CONNECTED:
            want = out.elements * t[op.inputs[1]].shape[1]
        elif op.op in (ops.ADD, ops.MUL):
            want = out.elements
        elif op.op in (ops.MEAN,):
            want = t[op.inputs[0]].elements
        elif op.op in (ops.AVERAGE_POOL_2D, ops.MAX_POOL_2D):
            want = out.elements * op.options["filterHeight"] * op.options["filterWidth"]
        assert ops.op_macs(op, info) == op_macs(op, info) == want, op.op
        seen.add(op.op)
    assert seen & set(ops.MAC_KINDS and ops.WEIGHT_OPS)
    # unknown ops and weight ops without their filter count nothing
    assert ops.op_macs(OpInfo(0, "TRANSPOSE", (0,), (1,), {}), info) == 0
    assert ops.op_macs(OpInfo(0, ops.CONV_2D, (0,), (1,), {}), info) == 0


def test_runtime_names_agree_with_the_schema_and_the_tomls() -> None:
    from edgeforge.target.schema import RUNTIMES

    assert set(RUNTIME_NAMES) == set(RUNTIMES)
    assert {p.stem for p in (ROOT / "targets" / "_runtimes").glob("*.toml")} == set(RUNTIME_NAMES)


def test_runtime_behaviour() -> None:
    assert Runtime("native") is Runtime.NATIVE and Runtime.NATIVE == "native" and f"{Runtime.TFLM}" == "tflm"
    assert [r for r in Runtime if r.generates_c] == [Runtime.NATIVE]
    assert [r for r in Runtime if r.flash_holds_flatbuffer] == [Runtime.TFLM, Runtime.LITERT]
    assert {r for r in Runtime if r.on_microcontroller} == {Runtime.TFLM, Runtime.NATIVE}
    assert Runtime.NATIVE.reference_interpreter is Runtime.TFLM
    assert Runtime.LITERT.reference_interpreter is Runtime.LITERT
    assert Runtime.NATIVE.support.supports(ops.TANH) and not Runtime.TFLM.support.supports("CUSTOM:x")
    assert Runtime.LITERT.support.all_builtins
    with pytest.raises(ValueError):
        Runtime("tvm")


def test_analyze_native_accepts_every_lowered_op() -> None:
    """The drift the registry fixed, as analyze reports it: a TANH model is runnable by the native runtime."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "native"))
    from opgen import make_model

    from edgeforge.analyze import analyze_model

    info = read_tflite(make_model("tanh", 0))
    assert ops.TANH in info.op_names
    a = analyze_model(info, None, "native", None)
    assert a.unsupported_ops == () and all(r.supported for r in a.layers)
