"""What op lowering hands to fusion, the planner and the emitter: typed kernel calls, no C text.

Each op becomes one ``KernelCall``: the planner-facing facts (tensors read and written, constants, scratch,
in-place flags) plus a ``kernel`` value naming the kernel and every argument it takes. The ``*Params``
dataclasses mirror the ``ef_*_params`` structs of ``firmware/runtime/ef_kernels.h`` field for field (a test
checks the header against them); kernels without a struct carry their scalar arguments directly. C is
rendered from these values in one place, ``edgeforge.native.csource``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal, Union

import numpy as np

from edgeforge.native.sparse import WeightStorage


@dataclass(frozen=True)
class ConstArray:
    """A ``static const`` array in flash: weights, biases, per-channel multipliers and shifts."""

    name: str  # C identifier, unique within the model (e.g. "op3_filter")
    ctype: str  # "int8_t" | "uint8_t" | "int16_t" | "int32_t" | "float"
    values: np.ndarray  # 1-D, dtype matching ctype

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)


@dataclass(frozen=True)
class FilterStorage:
    """How one op's filter went into flash (dense or sparse; see ``edgeforge.native.sparse``)."""

    name: str  # the ConstArray that holds it
    op_index: int
    op: str
    bits: int  # 8 or 4
    elements: int
    storage: WeightStorage

    @property
    def int8_dense_bytes(self) -> int:
        return self.elements


#: a kernel argument that points at data: a non-constant tensor (its index) or a constant array in flash
Operand = Union[int, ConstArray]


# ---- the ef_*_params structs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvParams:
    """``ef_conv_params`` (CONV_2D and DEPTHWISE_CONV_2D)."""

    batches: int
    in_h: int
    in_w: int
    in_c: int
    out_h: int
    out_w: int
    out_c: int
    k_h: int
    k_w: int
    filter_in_c: int
    stride_h: int
    stride_w: int
    dil_h: int
    dil_w: int
    pad_h: int
    pad_w: int
    in_offset: int
    out_offset: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class FcParams:
    """``ef_fc_params``."""

    batches: int
    in_depth: int
    out_depth: int
    per_channel: int
    in_offset: int
    out_offset: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class PoolParams:
    """``ef_pool_params``."""

    batches: int
    in_h: int
    in_w: int
    channels: int
    out_h: int
    out_w: int
    k_h: int
    k_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class BinaryParams:
    """``ef_binary_params`` (ADD and MUL; the per-input multipliers are ADD's only, 0 for MUL)."""

    shape: tuple[int, int, int, int]
    stride1: tuple[int, int, int, int]
    stride2: tuple[int, int, int, int]
    in1_offset: int
    in2_offset: int
    out_offset: int
    left_shift: int
    in1_mult: int
    in1_shift: int
    in2_mult: int
    in2_shift: int
    out_mult: int
    out_shift: int
    act_min: int
    act_max: int

    @property
    def elementwise(self) -> bool:
        """Both inputs have the output's shape (no broadcasting): contiguous element i with element i."""
        return self.stride1 == self.stride2 == (0, 0, 0, 1)


@dataclass(frozen=True)
class MeanParams:
    """``ef_mean_params``."""

    shape: tuple[int, int, int, int]
    reduce: tuple[int, int, int, int]
    in_zp_times_n: int
    mult: int
    shift: int
    out_zp: int


@dataclass(frozen=True)
class PadParams:
    """``ef_pad_params``."""

    in_shape: tuple[int, int, int, int]
    out_shape: tuple[int, int, int, int]
    before: tuple[int, int, int, int]
    pad_value: int


#: every params dataclass and the C struct it mirrors
STRUCTS: dict[type, str] = {ConvParams: "ef_conv_params", FcParams: "ef_fc_params", PoolParams: "ef_pool_params",
                            BinaryParams: "ef_binary_params", MeanParams: "ef_mean_params",
                            PadParams: "ef_pad_params"}


def struct_fields(params: object) -> list[tuple[str, object]]:
    """(field, value) in declaration order, which is the C struct's order."""
    return [(f.name, getattr(params, f.name)) for f in fields(params)]  # type: ignore[arg-type]


# ---- kernels -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """The constant operands of a weighted kernel; ``bits`` and ``sparse`` pick the kernel variant."""

    filter: ConstArray
    bits: int  # 8 or 4 (packed)
    sparse: bool  # "sparse_rows" storage (edgeforge.native.sparse)
    bias: ConstArray | None
    mult: ConstArray
    shift: ConstArray


@dataclass(frozen=True)
class Conv:
    """``ef_conv2d_*`` / ``ef_dwconv2d_*``."""

    params: ConvParams
    depthwise: bool
    input: Operand
    weights: Weights
    output: int


@dataclass(frozen=True)
class FullyConnected:
    """``ef_fc_*``."""

    params: FcParams
    input: Operand
    weights: Weights
    output: int


@dataclass(frozen=True)
class Pool:
    """``ef_avgpool_s8`` / ``ef_maxpool_s8``."""

    params: PoolParams
    kind: Literal["avg", "max"]
    input: Operand
    output: int


@dataclass(frozen=True)
class Binary:
    """``ef_add_s8`` / ``ef_mul_s8``."""

    params: BinaryParams
    kind: Literal["add", "mul"]
    in1: Operand
    in2: Operand
    output: int


@dataclass(frozen=True)
class Softmax:
    """``ef_softmax_s8`` over the last dimension."""

    input: Operand
    output: int
    rows: int
    depth: int
    mult: int
    left_shift: int
    diff_min: int


@dataclass(frozen=True)
class Logistic:
    """``ef_logistic_s8`` / ``ef_tanh_s8``."""

    kind: Literal["logistic", "tanh"]
    input: Operand
    output: int
    size: int
    in_zp: int
    mult: int
    left_shift: int
    radius: int


@dataclass(frozen=True)
class Copy:
    """RESHAPE / SQUEEZE / EXPAND_DIMS: the bytes unchanged (no code at all when the planner aliases them)."""

    input: Operand
    output: int
    nbytes: int


@dataclass(frozen=True)
class Mean:
    """``ef_mean_s8``."""

    params: MeanParams
    input: Operand
    output: int


@dataclass(frozen=True)
class Pad:
    """``ef_pad_s8`` (PAD and PADV2)."""

    params: PadParams
    input: Operand
    output: int


@dataclass(frozen=True)
class Piece:
    """One input of a CONCATENATION: ``outer`` chunks of ``chunk`` bytes at ``offset`` of each output row."""

    source: Operand
    offset: int
    outer: int
    chunk: int
    pitch: int


@dataclass(frozen=True)
class Concat:
    """``ef_copy_strided`` once per non-empty input."""

    output: int
    pieces: tuple[Piece, ...]


@dataclass(frozen=True)
class Quantize:
    """``ef_quantize_f32_s8``."""

    input: Operand
    output: int
    size: int
    scale: float
    zero_point: int


@dataclass(frozen=True)
class Requantize:
    """``ef_requantize_s8`` (QUANTIZE int8 -> int8)."""

    input: Operand
    output: int
    size: int
    in_zp: int
    out_zp: int
    mult: int
    shift: int


@dataclass(frozen=True)
class Dequantize:
    """``ef_dequantize_s8_f32``."""

    input: Operand
    output: int
    size: int
    scale: float
    zero_point: int


@dataclass(frozen=True)
class ConvAdd:
    """A CONV_2D whose output only feeds a residual ADD (``edgeforge.native.fuse``): the convolution runs one
    output row at a time into the call's scratch row, and the ADD adds that row and the skip tensor's row into
    ``output``. ``conv.output`` is the convolution's tensor of the unfused graph, which never exists in full;
    ``add`` covers one row; ``conv_first`` says the convolution is the ADD's first input."""

    conv: Conv
    add: BinaryParams
    skip: int
    output: int
    conv_first: bool

    @property
    def row_bytes(self) -> int:
        return self.conv.params.out_w * self.conv.params.out_c


Kernel = Union[Conv, FullyConnected, Pool, Binary, Softmax, Logistic, Copy, Mean, Pad, Concat, Quantize, Requantize,
               Dequantize, ConvAdd]


@dataclass(frozen=True)
class KernelCall:
    """One op (or a fused group of ops) as a kernel call.

    The planner reads ``inputs``/``outputs``/``scratch_bytes``/``inplace``/``alias_only``; the emitter renders
    ``kernel``. ``inputs`` and ``outputs`` are exactly the tensor operands of ``kernel``."""

    op_index: int
    op: str
    kernel: Kernel
    inputs: tuple[int, ...]  # non-constant tensors read
    outputs: tuple[int, ...]  # tensors written
    consts: tuple[ConstArray, ...] = field(default=())
    scratch_bytes: int = 0
    #: the output may share storage with inputs[0] (element-wise ops that read each element before
    #: writing it, and RESHAPE, which then needs no code at all)
    inplace: bool = False
    alias_only: bool = False  # RESHAPE-like: output is the input reinterpreted; a plain copy otherwise
    filters: tuple[FilterStorage, ...] = field(default=())  # CONV_2D / DEPTHWISE_CONV_2D / FC weights


def _weight_consts(w: Weights) -> list[ConstArray]:
    return [w.filter, *([w.bias] if w.bias is not None else []), w.mult, w.shift]


def operands(kernel: Kernel) -> tuple[list[Operand], list[int], list[ConstArray]]:
    """(data read, tensors written, every constant array) of a kernel, in argument order."""
    if isinstance(kernel, ConvAdd):
        reads: list[Operand] = [kernel.conv.input, kernel.skip]
        return reads, [kernel.output], [*(r for r in reads if isinstance(r, ConstArray)),
                                         *_weight_consts(kernel.conv.weights)]
    if isinstance(kernel, Concat):
        reads = [p.source for p in kernel.pieces]
    elif isinstance(kernel, Binary):
        reads = [kernel.in1, kernel.in2]
    else:
        reads = [kernel.input]
    consts = [r for r in reads if isinstance(r, ConstArray)]
    if isinstance(kernel, (Conv, FullyConnected)):
        consts += _weight_consts(kernel.weights)
    return reads, [kernel.output], consts
