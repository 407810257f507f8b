"""The op registry: what edgeforge knows about each TFLite builtin op, in one table.

Per op: its name (a constant below, so no module spells it), its kind (what the latency cost model prices it
as), whether it carries a weight filter and in which layout (the ops the compression search works on), its
multiply-accumulate count, and whether the native runtime has a kernel for it. Derived from this table:
``native.lower``'s dispatch, ``native.sparse``'s weight ops, ``analyze``'s MAC count; checked against it in
``tests/test_ops.py``: ``targets/_runtimes/native.toml`` and ``tflm.toml``, the cost model's op kinds and the
search's weight-layer set. Ops the table does not list are unknown to edgeforge: zero MACs, priced as
element-wise, runnable wherever a runtime's TOML says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from edgeforge.model.tflite import ModelInfo, OpInfo

# ---- names (the schema's BuiltinOperator spelling) ----------------------------------------------------------------
ADD = "ADD"
AVERAGE_POOL_2D = "AVERAGE_POOL_2D"
BATCH_MATMUL = "BATCH_MATMUL"
CONCATENATION = "CONCATENATION"
CONV_2D = "CONV_2D"
CONV_3D = "CONV_3D"
DEPTHWISE_CONV_2D = "DEPTHWISE_CONV_2D"
DEQUANTIZE = "DEQUANTIZE"
DIV = "DIV"
EXPAND_DIMS = "EXPAND_DIMS"
FULLY_CONNECTED = "FULLY_CONNECTED"
L2_POOL_2D = "L2_POOL_2D"
LOGISTIC = "LOGISTIC"
MAX_POOL_2D = "MAX_POOL_2D"
MAXIMUM = "MAXIMUM"
MEAN = "MEAN"
MINIMUM = "MINIMUM"
MUL = "MUL"
PAD = "PAD"
PADV2 = "PADV2"
QUANTIZE = "QUANTIZE"
REDUCE_MAX = "REDUCE_MAX"
REDUCE_MIN = "REDUCE_MIN"
REDUCE_PROD = "REDUCE_PROD"
RESHAPE = "RESHAPE"
SHAPE = "SHAPE"
SOFTMAX = "SOFTMAX"
SQUARED_DIFFERENCE = "SQUARED_DIFFERENCE"
SQUEEZE = "SQUEEZE"
SUB = "SUB"
SUM = "SUM"
TANH = "TANH"
TRANSPOSE_CONV = "TRANSPOSE_CONV"

# ---- kinds (the cost model's feature names) -------------------------------------------------------------------------
CONV = "conv_2d"
DEPTHWISE = "depthwise_conv_2d"
FC = "fully_connected"
VIEW = "view"  # only reinterprets its input
POOL = "pool"  # accumulates windows or reductions: work = elements read
ELEMENTWISE = "elementwise"
MAC_KINDS: tuple[str, ...] = (CONV, DEPTHWISE, FC)

Macs = Callable[[OpInfo, ModelInfo], int]


def _no_macs(op: OpInfo, info: ModelInfo) -> int:
    return 0


def _conv_macs(op: OpInfo, info: ModelInfo) -> int:
    w = info.tensors[op.inputs[1]].shape  # [O, KH, KW, I]
    return info.tensors[op.outputs[0]].elements * math.prod(w[1:])


def _depthwise_macs(op: OpInfo, info: ModelInfo) -> int:
    w = info.tensors[op.inputs[1]].shape  # [1, KH, KW, O]
    return info.tensors[op.outputs[0]].elements * w[1] * w[2]


def _fc_macs(op: OpInfo, info: ModelInfo) -> int:
    return info.tensors[op.outputs[0]].elements * info.tensors[op.inputs[1]].shape[-1]


def _transpose_conv_macs(op: OpInfo, info: ModelInfo) -> int:
    if len(op.inputs) <= 2:
        return 0
    w = info.tensors[op.inputs[1]].shape
    return info.tensors[op.inputs[2]].elements * math.prod(w[:3])


def _batch_matmul_macs(op: OpInfo, info: ModelInfo) -> int:
    return info.tensors[op.outputs[0]].elements * info.tensors[op.inputs[0]].shape[-1] if op.inputs else 0


def _pool_macs(op: OpInfo, info: ModelInfo) -> int:
    window = int(op.options.get("filterHeight", 1)) * int(op.options.get("filterWidth", 1))
    return info.tensors[op.outputs[0]].elements * window


def _reduce_macs(op: OpInfo, info: ModelInfo) -> int:
    return info.tensors[op.inputs[0]].elements if op.inputs else 0


def _per_output(op: OpInfo, info: ModelInfo) -> int:
    return info.tensors[op.outputs[0]].elements


@dataclass(frozen=True)
class Op:
    """What edgeforge knows about one builtin op."""

    name: str
    kind: str  # the cost model's kind (when the op has its weights: see ``kind_of``)
    #: layout of the constant filter at input 1 (TFLite's): "OHWI" (CONV_2D), "1HWO" (DEPTHWISE_CONV_2D),
    #: "OI" (FULLY_CONNECTED); None for ops the compression search does not touch
    weight_layout: str | None = None
    macs: Macs = _no_macs  # multiply-accumulates (pools and element-wise ops: one per accumulated value)
    native: bool = False  # edgeforge's native runtime has a kernel (native/lower.py)

    @property
    def has_weights(self) -> bool:
        return self.weight_layout is not None


def _table(*ops: Op) -> dict[str, Op]:
    return {op.name: op for op in ops}


OPS: dict[str, Op] = _table(
    Op(CONV_2D, CONV, "OHWI", _conv_macs, native=True),
    Op(DEPTHWISE_CONV_2D, DEPTHWISE, "1HWO", _depthwise_macs, native=True),
    Op(FULLY_CONNECTED, FC, "OI", _fc_macs, native=True),
    Op(CONV_3D, CONV, None, _conv_macs),
    Op(TRANSPOSE_CONV, CONV, None, _transpose_conv_macs),
    Op(BATCH_MATMUL, FC, None, _batch_matmul_macs),
    Op(AVERAGE_POOL_2D, POOL, None, _pool_macs, native=True),
    Op(MAX_POOL_2D, POOL, None, _pool_macs, native=True),
    Op(L2_POOL_2D, POOL, None, _pool_macs),
    Op(MEAN, POOL, None, _reduce_macs, native=True),
    Op(SUM, POOL, None, _reduce_macs),
    Op(REDUCE_MAX, POOL),
    Op(REDUCE_MIN, POOL),
    Op(REDUCE_PROD, POOL),
    Op(ADD, ELEMENTWISE, None, _per_output, native=True),
    Op(MUL, ELEMENTWISE, None, _per_output, native=True),
    Op(SUB, ELEMENTWISE, None, _per_output),
    Op(DIV, ELEMENTWISE, None, _per_output),
    Op(SQUARED_DIFFERENCE, ELEMENTWISE, None, _per_output),
    Op(MAXIMUM, ELEMENTWISE, None, _per_output),
    Op(MINIMUM, ELEMENTWISE, None, _per_output),
    Op(SOFTMAX, ELEMENTWISE, native=True),
    Op(LOGISTIC, ELEMENTWISE, native=True),
    Op(TANH, ELEMENTWISE, native=True),
    Op(PAD, ELEMENTWISE, native=True),
    Op(PADV2, ELEMENTWISE, native=True),
    Op(CONCATENATION, ELEMENTWISE, native=True),
    Op(QUANTIZE, ELEMENTWISE, native=True),
    Op(DEQUANTIZE, ELEMENTWISE, native=True),
    Op(RESHAPE, VIEW, native=True),
    Op(SQUEEZE, VIEW, native=True),
    Op(EXPAND_DIMS, VIEW, native=True),
    Op(SHAPE, VIEW),
)

#: ops whose filter the compression search quantizes, prunes and the native runtime may store sparse
WEIGHT_OPS: tuple[str, ...] = tuple(name for name, op in OPS.items() if op.has_weights)
#: ops the native runtime has a kernel for (sorted)
NATIVE_OPS: tuple[str, ...] = tuple(sorted(name for name, op in OPS.items() if op.native))


def op_macs(op: OpInfo, info: ModelInfo) -> int:
    """Multiply-accumulates of one op of ``info`` (0 for ops the registry does not know, or without outputs)."""
    spec = OPS.get(op.op)
    if spec is None or not op.outputs:
        return 0
    if spec.kind in MAC_KINDS and spec.name != TRANSPOSE_CONV and spec.name != BATCH_MATMUL and len(op.inputs) < 2:
        return 0  # a weight op without its filter (malformed): nothing to count
    return spec.macs(op, info)


def kind_of(op: OpInfo) -> str:
    """The cost model's kind of one op: a MAC kind only when the op has its weight input."""
    spec = OPS.get(op.op)
    if spec is None:
        return ELEMENTWISE
    if spec.kind in MAC_KINDS and len(op.inputs) < 2:
        return ELEMENTWISE
    return spec.kind
