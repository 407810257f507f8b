"""Op lowering for the native runtime: each TFLite op becomes one typed ``KernelCall`` (``ir``) of the kernel
library in ``firmware/runtime`` (``ef_kernels.h``), with every parameter TFLM computes at Prepare time
precomputed here (``qparams``), so that the generated code reproduces TFLM's reference kernels bit for bit.

Constants become arrays named ``op<k>_<what>``; ``csource`` renders the calls as C.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from edgeforge import ops
from edgeforge.errors import ModelError, UnsupportedOpError
from edgeforge.model.tflite import ModelInfo, OpInfo, TensorInfo, constant_data
from edgeforge.native import qparams as qp
from edgeforge.native import sparse
from edgeforge.native.ir import (BinaryParams, ConstArray, Concat, Conv, ConvParams, Copy, Dequantize, FcParams,
                                 FilterStorage, FullyConnected, KernelCall, Logistic, Mean, MeanParams, Operand,
                                 Pad, PadParams, Piece, Pool, PoolParams, Quantize, Requantize, Softmax, Weights,
                                 Binary, Kernel)
from edgeforge.model.rewrite import unpack_int4

HINT = "build with --runtime tflm"

_CTYPE = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float"}
_PADDING_SAME, _PADDING_VALID = 0, 1


def _unsupported(op: str, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"native runtime has no kernel for {op} {why}", HINT)


class _Ctx:
    """What one op's lowering needs: the model, the op, and the constants it creates."""

    def __init__(self, info: ModelInfo, model: bytes, op: OpInfo, single_rounding: bool) -> None:
        self.info = info
        self.model = model
        self.op = op
        self.sr = single_rounding
        self.consts: list[ConstArray] = []
        self.reads: list[int] = []
        self.filters: list[FilterStorage] = []

    # -- tensors -----------------------------------------------------------------------------------
    def t(self, k: int) -> TensorInfo:
        idx = self.op.inputs[k] if k < len(self.op.inputs) else -1
        if idx < 0:
            raise self.err(f"(input {k} is missing)")
        return self.info.tensors[idx]

    def has_input(self, k: int) -> bool:
        return k < len(self.op.inputs) and self.op.inputs[k] >= 0

    def out(self, k: int = 0) -> TensorInfo:
        return self.info.tensors[self.op.outputs[k]]

    def err(self, why: str) -> UnsupportedOpError:
        return _unsupported(self.op.op, why)

    def data(self, t: TensorInfo) -> np.ndarray:
        return constant_data(self.model, t.index)

    # -- operands --------------------------------------------------------------------------------
    def const(self, what: str, ctype: str, values: np.ndarray | Sequence[int]) -> ConstArray:
        name = f"op{self.op.index}_{what}"
        dtype = {"int8_t": np.int8, "uint8_t": np.uint8, "int16_t": np.int16, "int32_t": np.int32,
                 "float": np.float32}[ctype]
        arr = np.ascontiguousarray(np.asarray(values).astype(dtype).reshape(-1))
        a = ConstArray(name, ctype, arr)
        self.consts.append(a)
        return a

    def ptr(self, k: int, what: str | None = None) -> Operand:
        """Input k as an operand: its tensor index or, for a constant input, a constant array."""
        t = self.t(k)
        if t.is_constant:
            ctype = _CTYPE.get(t.dtype)
            if ctype is None:
                raise self.err(f"with a constant {t.dtype} input")
            return self.const(what or f"in{k}", ctype, self.data(t))
        if t.index not in self.reads:
            self.reads.append(t.index)
        return t.index

    def optr(self, k: int = 0) -> int:
        return self.op.outputs[k]

    def call(self, kernel: Kernel, *, inplace: bool = False, alias_only: bool = False) -> KernelCall:
        return KernelCall(self.op.index, self.op.op, kernel, tuple(self.reads), tuple(self.op.outputs),
                          tuple(self.consts), 0, inplace, alias_only, tuple(self.filters))


# --------------------------------------------------------------------------------------------------
# helpers


def _scale(v: float) -> float:
    """A quantization scale as the kernels will see it (float32)."""
    f = float(np.float32(v))
    if not math.isfinite(f):
        raise ModelError(f"non-finite quantization scale {v!r}", "re-export the model")
    return f


def _four(v: Sequence[int]) -> tuple[int, int, int, int]:
    a, b, c, d = (int(x) for x in v)
    return a, b, c, d


def _qparams(ctx: _Ctx, t: TensorInfo, role: str) -> tuple[float, int]:
    if t.dtype != "int8":
        raise ctx.err(f"with a {t.dtype} {role} (int8 only)")
    if len(t.scale) != 1:
        raise ctx.err(f"with a {role} that is not per-tensor quantized")
    return t.scale[0], (t.zero_point[0] if t.zero_point else 0)


def _activation(ctx: _Ctx, scale: float, zp: int) -> tuple[int, int]:
    act = int(ctx.op.options.get("fusedActivationFunction", 0))
    if act not in (0, 1, 2, 3):
        raise ctx.err(f"with fused activation {act}")
    return qp.activation_range(act, scale, zp)


def _out_size(padding: int, size: int, k: int, stride: int, dil: int) -> int:
    eff = (k - 1) * dil + 1
    if stride == 0:
        return 0
    if padding == _PADDING_SAME:
        return (size + stride - 1) // stride
    return (size + stride - eff) // stride


def _pad_before(padding: int, size: int, k: int, stride: int, dil: int) -> int:
    """ComputePaddingWithOffset with TFLM's own output size (ComputeOutSize)."""
    out = _out_size(padding, size, k, stride, dil)
    eff = (k - 1) * dil + 1
    total = max(0, (out - 1) * stride + eff - size)
    return total // 2


def _filter(ctx: _Ctx, k: int) -> tuple[TensorInfo, np.ndarray, ConstArray, int, bool]:
    """Constant filter: (tensor, int values (unpacked, flat), its array, bits, sparse).

    Bits and sparse pick the kernel variant that reads the array: int8, packed int4, and either of them
    stored sparse when ``sparse.encode`` makes it strictly smaller than dense."""
    f = ctx.t(k)
    if not f.is_constant:
        raise ctx.err("with a non-constant filter")
    if f.dtype not in ("int8", "int4"):
        raise ctx.err(f"with a {f.dtype} filter (int8 and int4 only)")
    if any(z != 0 for z in f.zero_point):
        raise ctx.err("with a filter zero point other than 0")
    raw = ctx.data(f)
    is4 = f.dtype == "int4"
    values = unpack_int4(raw, f.elements) if is4 else raw.astype(np.int8).reshape(-1)
    bits = 4 if is4 else 8
    if len(f.shape) == (2 if ctx.op.op == ops.FULLY_CONNECTED else 4):
        storage, blob = sparse.encode(values.reshape(f.shape), bits, ctx.op.op)
    else:  # the op's lowering rejects the shape
        storage, blob = sparse.WeightStorage(sparse.DENSE, sparse.dense_bytes(f.elements, bits),
                                             sparse.dense_bytes(f.elements, bits)), None
    if blob is not None:
        arr = ctx.const("filter", "uint8_t", blob)
    elif is4:
        arr = ctx.const("filter", "uint8_t", raw[: (f.elements + 1) // 2])
    else:
        arr = ctx.const("filter", "int8_t", raw)
    ctx.filters.append(FilterStorage(arr.name, ctx.op.index, ctx.op.op, bits, f.elements, storage))
    return f, values, arr, bits, blob is not None


def _bias(ctx: _Ctx, k: int, channels: int) -> np.ndarray | None:
    if not ctx.has_input(k):
        return None
    b = ctx.t(k)
    if not b.is_constant:
        raise ctx.err("with a non-constant bias")
    if b.dtype != "int32":
        raise ctx.err(f"with a {b.dtype} bias (int32 only)")
    data = ctx.data(b).astype(np.int64)
    if data.size != channels:
        raise ctx.err(f"with a bias of {data.size} values for {channels} channels")
    return data


def _bias_arg(ctx: _Ctx, bias: np.ndarray | None) -> ConstArray | None:
    if bias is None:
        return None
    if bias.min() < -(1 << 31) or bias.max() >= 1 << 31:
        raise ctx.err("with a folded bias outside int32")
    return ctx.const("bias", "int32_t", bias)


# --------------------------------------------------------------------------------------------------
# ops


def _conv(ctx: _Ctx, depthwise: bool) -> KernelCall:
    x = ctx.t(0)
    y = ctx.out()
    s_in, z_in = _qparams(ctx, x, "input")
    s_out, z_out = _qparams(ctx, y, "output")
    if len(x.shape) != 4 or len(y.shape) != 4:
        raise ctx.err("with a non-4-D input or output")
    f, w, farr, bits, is_sparse = _filter(ctx, 1)
    if len(f.shape) != 4:
        raise ctx.err("with a non-4-D filter")
    o = ctx.op.options
    sh, sw = int(o.get("strideH", 1)), int(o.get("strideW", 1))
    dh, dw = int(o.get("dilationHFactor", 1)), int(o.get("dilationWFactor", 1))
    padding = int(o.get("padding", _PADDING_SAME))
    n, ih, iw, ic = x.shape
    _, oh, ow, oc = y.shape
    if depthwise:
        _, kh, kw, fc = f.shape
        if fc != oc or ic == 0 or oc % ic != 0:
            raise ctx.err(f"with filter channels {fc} for input depth {ic} and output depth {oc}")
        fic = oc // ic
        quant_dim_ok = len(f.scale) == 1 or (f.quantized_dimension == 3 and len(f.scale) == oc)
    else:
        fo, kh, kw, fic = f.shape
        if fo != oc or fic == 0 or ic % fic != 0 or oc % (ic // fic) != 0:
            raise ctx.err(f"with filter {list(f.shape)} for input depth {ic} and output depth {oc}")
        quant_dim_ok = len(f.scale) == 1 or (f.quantized_dimension == 0 and len(f.scale) == oc)
    if not quant_dim_ok:
        raise ctx.err("with a filter quantized on an unexpected axis")
    if not f.scale:
        raise ctx.err("with an unquantized filter")
    mults, shifts = qp.conv_multipliers(s_in, f.scale, s_out, oc, ctx.sr)
    act_min, act_max = _activation(ctx, s_out, z_out)
    pad_h = _pad_before(padding, ih, kh, sh, dh)
    pad_w = _pad_before(padding, iw, kw, sw, dw)
    bias = _bias(ctx, 2, oc)
    # Fold -z_in * sum(w) into the bias when no tap of any output falls outside the image (exact).
    in_offset = -z_in
    inside = (pad_h == 0 and pad_w == 0 and (oh - 1) * sh + (kh - 1) * dh + 1 <= ih
              and (ow - 1) * sw + (kw - 1) * dw + 1 <= iw)
    if inside and z_in != 0:
        if depthwise:
            wsum = w.reshape(kh * kw, oc).astype(np.int64).sum(axis=0)
        else:
            wsum = w.reshape(oc, -1).astype(np.int64).sum(axis=1)
        folded = (bias if bias is not None else np.zeros(oc, np.int64)) - z_in * wsum
        if folded.min() >= -(1 << 31) and folded.max() < 1 << 31:
            bias, in_offset = folded, 0
    barr = _bias_arg(ctx, bias)
    weights = Weights(farr, bits, is_sparse, barr, ctx.const("mult", "int32_t", mults),
                      ctx.const("shift", "int32_t", shifts))
    params = ConvParams(
        batches=n, in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=kh, k_w=kw, filter_in_c=fic,
        stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_h=pad_h, pad_w=pad_w, in_offset=in_offset,
        out_offset=z_out, act_min=act_min, act_max=act_max)
    return ctx.call(Conv(params, depthwise, ctx.ptr(0), weights, ctx.optr()))


def _fully_connected(ctx: _Ctx) -> KernelCall:
    x = ctx.t(0)
    y = ctx.out()
    s_in, z_in = _qparams(ctx, x, "input")
    s_out, z_out = _qparams(ctx, y, "output")
    if int(ctx.op.options.get("weightsFormat", 0)) != 0:
        raise ctx.err("with shuffled weights")
    f, w, farr, bits, is_sparse = _filter(ctx, 1)
    is4 = bits == 4
    if len(f.shape) != 2:
        raise ctx.err("with a non-2-D filter")
    out_depth, depth = f.shape
    if y.shape and y.shape[-1] != out_depth or depth == 0:
        raise ctx.err(f"with filter {list(f.shape)} for output {list(y.shape)}")
    batches = y.elements // out_depth
    if batches * depth != x.elements:
        raise ctx.err(f"with input {list(x.shape)} for filter {list(f.shape)}")
    per_channel = len(f.scale) > 1
    if per_channel:
        if is4:
            raise ctx.err("with a per-channel int4 filter (TFLM: int4 FULLY_CONNECTED is per-tensor only)")
        if len(f.scale) != out_depth:
            raise ctx.err("with a filter quantized on an unexpected axis")
        mults, shifts = qp.conv_multipliers(s_in, f.scale, s_out, out_depth, ctx.sr)
    else:
        m, e = qp.fc_per_tensor_multiplier(s_in, f.scale[0], s_out, ctx.sr)
        mults, shifts = [m], [e]
    act_min, act_max = _activation(ctx, s_out, z_out)
    bias = _bias(ctx, 2, out_depth)
    in_offset = -z_in
    if z_in != 0:
        wsum = w.reshape(out_depth, depth).astype(np.int64).sum(axis=1)
        folded = (bias if bias is not None else np.zeros(out_depth, np.int64)) - z_in * wsum
        if folded.min() >= -(1 << 31) and folded.max() < 1 << 31:
            bias, in_offset = folded, 0
    barr = _bias_arg(ctx, bias)
    weights = Weights(farr, bits, is_sparse, barr, ctx.const("mult", "int32_t", mults),
                      ctx.const("shift", "int32_t", shifts))
    params = FcParams(batches=batches, in_depth=depth, out_depth=out_depth, per_channel=int(per_channel),
                      in_offset=in_offset, out_offset=z_out, act_min=act_min, act_max=act_max)
    return ctx.call(FullyConnected(params, ctx.ptr(0), weights, ctx.optr()))


def _pool(ctx: _Ctx, kind: Literal["avg", "max"]) -> KernelCall:
    x = ctx.t(0)
    y = ctx.out()
    s_in, z_in = _qparams(ctx, x, "input")
    s_out, z_out = _qparams(ctx, y, "output")
    if len(x.shape) != 4 or len(y.shape) != 4:
        raise ctx.err("with a non-4-D input or output")
    if abs(s_in - s_out) > 1e-6 or z_in != z_out:
        raise ctx.err("with different input and output quantization (TFLM requires equal)")
    o = ctx.op.options
    sh, sw = int(o.get("strideH", 1)), int(o.get("strideW", 1))
    kh, kw = int(o.get("filterHeight", 1)), int(o.get("filterWidth", 1))
    padding = int(o.get("padding", _PADDING_SAME))
    n, ih, iw, c = x.shape
    _, oh, ow, oc = y.shape
    if oc != c:
        raise ctx.err("with different input and output depth")
    act_min, act_max = _activation(ctx, s_out, z_out)
    params = PoolParams(
        batches=n, in_h=ih, in_w=iw, channels=c, out_h=oh, out_w=ow, k_h=kh, k_w=kw, stride_h=sh, stride_w=sw,
        pad_h=_pad_before(padding, ih, kh, sh, 1), pad_w=_pad_before(padding, iw, kw, sw, 1), act_min=act_min,
        act_max=act_max)
    return ctx.call(Pool(params, kind, ctx.ptr(0), ctx.optr()))


def _broadcast_4d(ctx: _Ctx, a: tuple[int, ...], b: tuple[int, ...],
                  out: tuple[int, ...]) -> tuple[list[int], list[int], list[int]]:
    """NumPy broadcasting of a and b to ``out``, collapsed to at most 4 dims: (shape, strides a, strides b)."""
    rank = max(len(a), len(b), len(out))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    o = (1,) * (rank - len(out)) + tuple(out)
    for i in range(rank):
        if a[i] not in (1, o[i]) or b[i] not in (1, o[i]) or o[i] != max(a[i], b[i]):
            raise ctx.err(f"with shapes {list(a)} and {list(b)} that do not broadcast to {list(o)}")
    # keep non-trivial dims, merging neighbours with the same broadcast pattern
    dims: list[list[int]] = []  # [size, a_full, b_full]
    for i in range(rank):
        if o[i] == 1:
            continue
        pat = [o[i], int(a[i] == o[i]), int(b[i] == o[i])]
        if dims and dims[-1][1:] == pat[1:]:
            dims[-1][0] *= o[i]
        else:
            dims.append(pat)
    if len(dims) > 4:
        raise ctx.err(f"with a broadcast that needs {len(dims)} dimensions (4 at most)")
    dims = [[1, 1, 1]] * (4 - len(dims)) + dims
    shape = [d[0] for d in dims]
    sa, sb = [0] * 4, [0] * 4
    ra = rb = 1
    for i in range(3, -1, -1):
        size, fa, fb = dims[i]
        sa[i] = ra if fa and size > 1 else 0
        sb[i] = rb if fb and size > 1 else 0
        if fa:
            ra *= size
        if fb:
            rb *= size
    return shape, sa, sb


def _binary(ctx: _Ctx, kind: Literal["add", "mul"]) -> KernelCall:
    a, b, y = ctx.t(0), ctx.t(1), ctx.out()
    s1, z1 = _qparams(ctx, a, "input")
    s2, z2 = _qparams(ctx, b, "input")
    s_out, z_out = _qparams(ctx, y, "output")
    shape, st1, st2 = _broadcast_4d(ctx, a.shape, b.shape, y.shape)
    act_min, act_max = _activation(ctx, s_out, z_out)
    if kind == "add":
        try:
            ap = qp.add_params(s1, s2, s_out, ctx.sr)
        except ValueError as exc:
            raise ctx.err(f"with these scales ({exc})") from None
        mults = (ap.left_shift, ap.in1_mult, ap.in1_shift, ap.in2_mult, ap.in2_shift, ap.out_mult, ap.out_shift)
    else:
        m, e = qp.mul_multiplier(s1, s2, s_out, ctx.sr)
        mults = (0, 0, 0, 0, 0, m, e)
    params = BinaryParams(_four(shape), _four(st1), _four(st2), -z1, -z2, z_out, *mults, act_min, act_max)
    p1, p2 = ctx.ptr(0), ctx.ptr(1)
    inplace = not a.is_constant and tuple(a.shape) == tuple(y.shape)
    return ctx.call(Binary(params, kind, p1, p2, ctx.optr()), inplace=inplace)


def _softmax(ctx: _Ctx) -> KernelCall:
    x, y = ctx.t(0), ctx.out()
    s_in, _ = _qparams(ctx, x, "input")
    s_out, z_out = _qparams(ctx, y, "output")
    if float(np.float32(s_out)) != 1.0 / 256 or z_out != -128:
        raise ctx.err("with an output that is not (1/256, -128) (TFLM requires it for int8)")
    beta = float(np.float32(ctx.op.options.get("beta", 1.0)))
    try:
        sp = qp.softmax_params(beta, s_in, ctx.sr)
    except ValueError as exc:
        raise ctx.err(f"with this input scale ({exc})") from None
    depth = x.shape[-1] if x.shape else 1
    rows = x.elements // max(depth, 1)
    return ctx.call(Softmax(ctx.ptr(0), ctx.optr(), rows, depth, sp.mult, sp.left_shift, sp.diff_min),
                    inplace=True)


def _logistic(ctx: _Ctx, kind: Literal["logistic", "tanh"]) -> KernelCall:
    x, y = ctx.t(0), ctx.out()
    s_in, z_in = _qparams(ctx, x, "input")
    _, z_out = _qparams(ctx, y, "output")
    if kind == "logistic" and z_out != -128:
        raise ctx.err("with an output zero point other than -128 (TFLM requires it)")
    lp = qp.logistic_params(s_in)
    return ctx.call(Logistic(kind, ctx.ptr(0), ctx.optr(), x.elements, z_in, lp.mult, lp.left_shift, lp.radius),
                    inplace=True)


def _reshape(ctx: _Ctx) -> KernelCall:
    x, y = ctx.t(0), ctx.out()
    if x.nbytes != y.nbytes or x.dtype != y.dtype:
        raise ctx.err(f"from {x.dtype}{list(x.shape)} to {y.dtype}{list(y.shape)}")
    return ctx.call(Copy(ctx.ptr(0), ctx.optr(), y.nbytes), alias_only=True)


def _mean(ctx: _Ctx) -> KernelCall:
    x, y = ctx.t(0), ctx.out()
    s_in, z_in = _qparams(ctx, x, "input")
    s_out, z_out = _qparams(ctx, y, "output")
    rank = len(x.shape)
    if rank > 4:
        raise ctx.err(f"on a {rank}-D input (4-D at most)")
    axis_t = ctx.t(1)
    if not axis_t.is_constant:
        raise ctx.err("with non-constant axes")
    axes: list[int] = []
    for a in ctx.data(axis_t).astype(np.int64).tolist():
        a = int(a)
        if not -rank <= a < max(rank, 1):
            raise ctx.err(f"with axis {a} of a {rank}-D input")
        a = a + rank if a < 0 else a
        if a not in axes:
            axes.append(a)
    shape = [1] * (4 - rank) + list(x.shape)
    reduce = [0] * 4
    for a in axes:
        reduce[a + 4 - rank] = 1
    n = math.prod(shape[i] for i in range(4) if reduce[i])
    if n == 0 or x.elements == 0:
        raise ctx.err("over an empty axis")
    m, e = qp.mean_multiplier(s_in, s_out, n, ctx.sr)
    zn = z_in * n
    if not -(1 << 31) <= zn < 1 << 31:
        raise ctx.err("over too many elements")
    params = MeanParams(_four(shape), _four(reduce), zn, m, e, z_out)
    return ctx.call(Mean(params, ctx.ptr(0), ctx.optr()))


def _pad(ctx: _Ctx) -> KernelCall:
    x, y = ctx.t(0), ctx.out()
    _qparams(ctx, x, "input")
    _, z_out = _qparams(ctx, y, "output")
    rank = len(x.shape)
    if rank > 4 or len(y.shape) != rank:
        raise ctx.err(f"on a {rank}-D input (4-D at most)")
    pt = ctx.t(1)
    if not pt.is_constant:
        raise ctx.err("with non-constant paddings")
    pads = ctx.data(pt).astype(np.int64).reshape(-1, 2)
    if pads.shape[0] != rank or (pads < 0).any():
        raise ctx.err("with invalid paddings")
    value = z_out
    if ctx.has_input(2):
        ct = ctx.t(2)
        if not ct.is_constant or ct.dtype != "int8":
            raise ctx.err("with a non-constant or non-int8 pad value")
        value = int(ctx.data(ct).astype(np.int8)[0])
    ins = [1] * (4 - rank) + list(x.shape)
    outs = [1] * (4 - rank) + list(y.shape)
    before = [0] * (4 - rank) + [int(p) for p in pads[:, 0]]
    for i in range(4):
        if outs[i] != ins[i] + before[i] + (int(pads[i - 4 + rank, 1]) if i >= 4 - rank else 0):
            raise ctx.err(f"with output {list(y.shape)} not matching input {list(x.shape)} and paddings")
    params = PadParams(_four(ins), _four(outs), _four(before), value)
    return ctx.call(Pad(params, ctx.ptr(0), ctx.optr()))


def _concat(ctx: _Ctx) -> KernelCall:
    y = ctx.out()
    if int(ctx.op.options.get("fusedActivationFunction", 0)) != 0:
        raise ctx.err("with a fused activation")
    rank = len(y.shape)
    axis = int(ctx.op.options.get("axis", 0))
    if axis < 0:
        axis += rank
    if not 0 <= axis < max(rank, 1):
        raise ctx.err(f"on axis {axis} of a {rank}-D output")
    if y.dtype in ("int8",):
        s_out, z_out = _qparams(ctx, y, "output")
    elif y.dtype not in _CTYPE:
        raise ctx.err(f"on {y.dtype} tensors")
    item = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "float32": 4}[y.dtype]
    outer = math.prod(y.shape[:axis])
    inner = math.prod(y.shape[axis + 1 :]) * item
    pitch = y.shape[axis] * inner
    pieces = []
    off = 0
    for k in range(len(ctx.op.inputs)):
        t = ctx.t(k)
        if t.dtype != y.dtype or len(t.shape) != rank:
            raise ctx.err(f"with input {k} of type {t.dtype}{list(t.shape)}")
        if y.dtype == "int8":
            s, z = _qparams(ctx, t, "input")
            if s != s_out or z != z_out:
                raise ctx.err("with inputs whose quantization differs from the output's (needs requantization)")
        chunk = t.shape[axis] * inner
        src = ctx.ptr(k)
        if chunk > 0 and outer > 0:
            pieces.append(Piece(src, off, outer, chunk, pitch))
        off += chunk
    if off != pitch:
        raise ctx.err("with input shapes that do not add up to the output shape")
    return ctx.call(Concat(ctx.optr(), tuple(pieces)))


def _quantize(ctx: _Ctx) -> KernelCall:
    x, y = ctx.t(0), ctx.out()
    s_out, z_out = _qparams(ctx, y, "output")
    xin = ctx.ptr(0)
    if x.dtype == "float32":
        return ctx.call(Quantize(xin, ctx.optr(), y.elements, _scale(s_out), z_out))
    if x.dtype == "int8":
        s_in, z_in = _qparams(ctx, x, "input")
        m, e = qp.requantize_multiplier(s_in, s_out, ctx.sr)
        return ctx.call(Requantize(xin, ctx.optr(), y.elements, z_in, z_out, m, e), inplace=True)
    raise ctx.err(f"from {x.dtype} (float32 and int8 only)")


def _dequantize(ctx: _Ctx) -> KernelCall:
    x, y = ctx.t(0), ctx.out()
    s_in, z_in = _qparams(ctx, x, "input")
    if y.dtype != "float32":
        raise ctx.err(f"to {y.dtype} (float32 only)")
    return ctx.call(Dequantize(ctx.ptr(0), ctx.optr(), x.elements, _scale(s_in), z_in))


_LOWER: dict[str, Callable[[_Ctx], KernelCall]] = {
    ops.CONV_2D: lambda c: _conv(c, depthwise=False),
    ops.DEPTHWISE_CONV_2D: lambda c: _conv(c, depthwise=True),
    ops.FULLY_CONNECTED: _fully_connected,
    ops.AVERAGE_POOL_2D: lambda c: _pool(c, "avg"),
    ops.MAX_POOL_2D: lambda c: _pool(c, "max"),
    ops.ADD: lambda c: _binary(c, "add"),
    ops.MUL: lambda c: _binary(c, "mul"),
    ops.SOFTMAX: _softmax,
    ops.LOGISTIC: lambda c: _logistic(c, "logistic"),
    ops.TANH: lambda c: _logistic(c, "tanh"),
    ops.RESHAPE: _reshape,
    ops.SQUEEZE: _reshape,
    ops.EXPAND_DIMS: _reshape,
    ops.MEAN: _mean,
    ops.PAD: _pad,
    ops.PADV2: _pad,
    ops.CONCATENATION: _concat,
    ops.QUANTIZE: _quantize,
    ops.DEQUANTIZE: _dequantize,
}
assert set(_LOWER) == set(ops.NATIVE_OPS), "the op registry (edgeforge/ops.py) and the lowering disagree"

SUPPORTED_OPS = ops.NATIVE_OPS


def lower(info: ModelInfo, model: bytes, single_rounding: bool = False) -> list[KernelCall]:
    """One KernelCall per op, in model order; UnsupportedOpError for an op or configuration the
    native kernels cannot run bit-exactly."""
    if info.subgraphs != 1:
        raise UnsupportedOpError(f"native runtime has no kernel for control flow ({info.subgraphs} subgraphs)",
                                 HINT)
    calls: list[KernelCall] = []
    for op in info.ops:
        fn = _LOWER.get(op.op)
        if fn is None:
            raise _unsupported(op.op, f"(op {op.index}; supported: {', '.join(SUPPORTED_OPS)})")
        if len(op.outputs) != 1:
            raise _unsupported(op.op, f"with {len(op.outputs)} outputs")
        calls.append(fn(_Ctx(info, model, op, single_rounding)))
    return calls
