"""Small int8 probe models that separate the op kinds of the latency cost model, written straight into the
TFLite flatbuffer (no TensorFlow): convolutions, depthwise convolutions and fully connected layers of
different MACs-per-output ratios, int8 and packed int4 weights, dense and pruned (unstructured zeros and
whole zero output channels), plus the element-wise ops models use between them (ADD, pools, MEAN, RESHAPE,
SOFTMAX). ``edgeforge calibrate`` builds each one for the native runtime, times every op on a board and fits
``[perf.ops.<runtime>]`` to the timings.

Everything is deterministic: a probe's bytes depend only on its name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from edgeforge.model.rewrite import pack_int4

@dataclass(frozen=True)
class Layer:
    """One op of a probe chain. ``kind``: conv, dw, fc, add, avgpool, maxpool, mean, reshape, softmax."""

    kind: str
    out: int = 0  # conv/fc: output channels / units; dw: depth multiplier x input channels
    k: int = 1  # kernel size (square) for conv, dw, pools
    stride: int = 1
    padding: str = "SAME"
    bits: int = 8  # weights: 8 or 4 (packed int4)
    density: float = 1.0  # fraction of nonzero weights
    zero_channels: float = 0.0  # fraction of output channels set entirely to zero (structured pruning)


@dataclass(frozen=True)
class Probe:
    name: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...] = field(default=())


L = Layer
#: The probe set: each chain mixes op kinds at different MACs-per-output ratios; op timings come from the
#: bench firmware's per-op profiler, so one model yields one row per op. Inputs stay small (at most 1 KiB):
#: the bench uploads them over serial in 31-byte chunks.
PROBES: tuple[Probe, ...] = (
    Probe("dense-a", (1, 16, 16, 4), (
        L("conv", 16, 3), L("dw", 16, 3), L("conv", 32, 1), L("add"), L("avgpool", k=2, stride=2),
        L("dw", 32, 5), L("maxpool", k=2, stride=2), L("conv", 32, 3), L("mean"), L("reshape"), L("fc", 64),
        L("fc", 16), L("softmax"))),
    Probe("mixed-int4-sparse", (1, 12, 12, 4), (
        L("conv", 32, 3, bits=4), L("dw", 32, 3, bits=4), L("conv", 32, 1, density=0.5),
        L("dw", 32, 3, density=0.5), L("conv", 32, 3, zero_channels=0.5, density=0.25),
        L("conv", 48, 1, bits=4, density=0.3), L("avgpool", k=4, stride=4), L("reshape"), L("fc", 64, bits=4),
        L("fc", 64, density=0.25), L("fc", 16))),
    Probe("dense-b", (1, 12, 12, 4), (
        L("conv", 32, 3, stride=2), L("conv", 64, 1), L("dw", 64, 3, stride=2), L("conv", 16, 3, padding="VALID"),
        L("reshape"), L("fc", 64), L("fc", 16), L("softmax"))),
    Probe("wide-fc", (1, 4, 4, 32), (
        L("conv", 16, 1), L("dw", 16, 3), L("add"), L("reshape"), L("fc", 128), L("fc", 128, bits=4),
        L("fc", 128, density=0.5), L("fc", 256, zero_channels=0.25), L("fc", 16))),
    Probe("wide-conv", (1, 10, 10, 8), (
        L("conv", 64, 1), L("dw", 64, 3), L("conv", 64, 1), L("conv", 32, 3), L("add"), L("mean"), L("reshape"),
        L("fc", 128), L("fc", 64))),
    Probe("sparse-conv", (1, 10, 10, 4), (
        L("conv", 32, 3, density=0.25), L("conv", 32, 3, zero_channels=0.5), L("dw", 32, 3, density=0.25),
        L("conv", 32, 3, bits=4, density=0.4), L("dw", 32, 5, bits=4), L("conv", 32, 1, density=0.75),
        L("mean"), L("reshape"), L("fc", 32, bits=4, density=0.4))),
)
#: The subset ``edgeforge calibrate --quick`` (and the test suite) uses: every coefficient still appears.
QUICK = ("dense-a", "mixed-int4-sparse")


def probe_set(names: Sequence[str] | None = None) -> list[Probe]:
    by_name = {p.name: p for p in PROBES}
    return [by_name[n] for n in (names or [p.name for p in PROBES])]


# --------------------------------------------------------------------------------------------- flatbuffer


def _schema() -> Any:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


class _Builder:
    def __init__(self) -> None:
        s = _schema()
        self.s = s
        self.buffers = [s.BufferT()]
        self.tensors: list[Any] = []
        self.ops: list[Any] = []
        self.codes: list[int] = []
        self.versions: dict[int, int] = {}

    def tensor(self, shape: Sequence[int], ttype: int, scale: Sequence[float] = (), zp: Sequence[int] = (),
               data: np.ndarray | None = None, qdim: int = 0) -> int:
        s = self.s
        t = s.TensorT()
        t.shape = [int(d) for d in shape]
        t.type = ttype
        t.name = f"t{len(self.tensors)}"
        t.buffer = 0
        if data is not None:
            b = s.BufferT()
            b.data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        if len(scale):
            q = s.QuantizationParametersT()
            q.scale = [float(x) for x in scale]
            q.zeroPoint = [int(z) for z in (zp if len(zp) else [0] * len(scale))]
            q.quantizedDimension = qdim
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def act(self, shape: Sequence[int], scale: float, zp: int) -> int:
        return self.tensor(shape, self.s.TensorType.INT8, [scale], [zp])

    def op(self, code: int, version: int, inputs: Sequence[int], outputs: Sequence[int], opt_type: int = 0,
           options: Any = None) -> None:
        s = self.s
        if code not in self.codes:
            self.codes.append(code)
        self.versions[code] = max(self.versions.get(code, 1), version)
        o = s.OperatorT()
        o.opcodeIndex = self.codes.index(code)
        o.inputs, o.outputs = list(inputs), list(outputs)
        o.builtinOptionsType = opt_type
        o.builtinOptions = options
        self.ops.append(o)

    def finish(self, inputs: Sequence[int], outputs: Sequence[int], description: str) -> bytes:
        import flatbuffers

        s = self.s
        m = s.ModelT()
        m.version = 3
        m.description = description
        m.buffers = self.buffers
        codes = []
        for c in self.codes:
            oc = s.OperatorCodeT()
            oc.builtinCode = c
            oc.deprecatedBuiltinCode = min(c, 127)
            oc.version = self.versions[c]
            codes.append(oc)
        m.operatorCodes = codes
        sg = s.SubGraphT()
        sg.tensors, sg.operators = self.tensors, self.ops
        sg.inputs, sg.outputs = list(inputs), list(outputs)
        sg.name = "main"
        m.subgraphs = [sg]
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _weights(rng: np.random.Generator, shape: tuple[int, ...], axis: int, layer: Layer) -> np.ndarray:
    hi = 7 if layer.bits <= 4 else 127
    w = rng.integers(-hi, hi + 1, size=shape).astype(np.int8)
    w[w == 0] = 1  # zeros come only from pruning
    moved = np.moveaxis(w, axis, 0)  # a view: writes go to w
    channels = shape[axis]
    if layer.zero_channels > 0:
        dead = rng.permutation(channels)[: round(layer.zero_channels * channels)]
        moved[dead] = 0
    if layer.density < 1.0:
        flat = moved.reshape(channels, -1)  # a copy when the channel axis is not the first
        live = float(flat.any(axis=1).mean())
        # unstructured zeros over the channels still alive, down to the requested overall density
        keep = min(layer.density / max(live, 1e-9), 1.0)
        flat = np.where(rng.random(flat.shape) >= keep, 0, flat)
        moved[...] = flat.reshape(moved.shape)
    return w


def _out_scale(in_scale: float, w_scale: float, k: int, density: float) -> float:
    # accumulator std ~ sqrt(K * density) * std(x_q) * std(w_q); map 3 sigma to the int8 range
    return max(3.0 * math.sqrt(max(k * density, 1.0)) * 40.0 * 60.0 * in_scale * w_scale / 127.0, 1e-6)


@cache
def probe_model(name: str) -> bytes:
    """The probe called ``name`` as a .tflite flatbuffer (int8 I/O)."""
    probe = next(p for p in PROBES if p.name == name)
    s = _schema()
    op = s.BuiltinOperator
    tt = s.TensorType
    opt = s.BuiltinOptions
    b = _Builder()
    rng = np.random.default_rng(sum(map(ord, probe.name)))
    shape = tuple(probe.input_shape)
    scale, zp = 0.05, 0
    x = b.act(shape, scale, zp)
    inp = x
    for layer in probe.layers:
        if layer.kind in ("conv", "dw"):
            _, h, w, c = shape
            k, st = layer.k, layer.stride
            if layer.padding == "SAME":
                oh, ow = -(-h // st), -(-w // st)
            else:
                oh, ow = (h - k) // st + 1, (w - k) // st + 1
            cout = layer.out
            if layer.kind == "conv":
                wshape, axis, macs_per_out = (cout, k, k, c), 0, k * k * c
            else:
                assert cout % c == 0, (probe.name, layer)
                wshape, axis, macs_per_out = (1, k, k, cout), 3, k * k
            wq = _weights(rng, wshape, axis, layer)
            ws = np.exp(rng.uniform(-5.5, -4.0, size=cout)).astype(np.float32)
            wt = tt.INT4 if layer.bits <= 4 else tt.INT8
            wdata = pack_int4(wq) if layer.bits <= 4 else wq
            wi = b.tensor(wshape, wt, ws, [0] * cout, wdata, qdim=axis)
            bias = rng.integers(-2000, 2000, size=cout).astype(np.int32)
            bi = b.tensor((cout,), tt.INT32, [scale * float(s_) for s_ in ws], [0] * cout, bias)
            oscale = _out_scale(scale, float(ws.mean()), macs_per_out, layer.density)
            y = b.act((1, oh, ow, cout), oscale, 0)
            pad = s.Padding.SAME if layer.padding == "SAME" else s.Padding.VALID
            if layer.kind == "conv":
                o = s.Conv2DOptionsT()
                o.padding, o.strideW, o.strideH = pad, st, st
                o.dilationWFactor = o.dilationHFactor = 1
                b.op(op.CONV_2D, 7 if layer.bits <= 4 else 3, [x, wi, bi], [y], opt.Conv2DOptions, o)
            else:
                o = s.DepthwiseConv2DOptionsT()
                o.padding, o.strideW, o.strideH = pad, st, st
                o.depthMultiplier = cout // c
                o.dilationWFactor = o.dilationHFactor = 1
                b.op(op.DEPTHWISE_CONV_2D, 7 if layer.bits <= 4 else 3, [x, wi, bi], [y],
                     opt.DepthwiseConv2DOptions, o)
            x, shape, scale, zp = y, (1, oh, ow, cout), oscale, 0
        elif layer.kind == "fc":
            assert len(shape) == 2, (probe.name, layer)
            cin, cout = shape[1], layer.out
            wq = _weights(rng, (cout, cin), 0, layer)
            ws = float(np.exp(rng.uniform(-5.5, -4.0)))  # per-tensor: what TFLM's int4 FC supports
            wt = tt.INT4 if layer.bits <= 4 else tt.INT8
            wi = b.tensor((cout, cin), wt, [ws], [0], pack_int4(wq) if layer.bits <= 4 else wq)
            bias = rng.integers(-2000, 2000, size=cout).astype(np.int32)
            bi = b.tensor((cout,), tt.INT32, [scale * ws], [0], bias)
            oscale = _out_scale(scale, ws, cin, layer.density)
            y = b.act((1, cout), oscale, 0)
            o = s.FullyConnectedOptionsT()
            b.op(op.FULLY_CONNECTED, 13 if layer.bits <= 4 else 4, [x, wi, bi], [y], opt.FullyConnectedOptions, o)
            x, shape, scale, zp = y, (1, cout), oscale, 0
        elif layer.kind == "add":
            y = b.act(shape, scale * 2, zp)
            b.op(op.ADD, 2, [x, x], [y], opt.AddOptions, s.AddOptionsT())
            x, scale = y, scale * 2
        elif layer.kind in ("avgpool", "maxpool"):
            _, h, w, c = shape
            oh, ow = -(-h // layer.stride), -(-w // layer.stride)
            y = b.act((1, oh, ow, c), scale, zp)
            o = s.Pool2DOptionsT()
            o.padding, o.strideW, o.strideH = s.Padding.SAME, layer.stride, layer.stride
            o.filterWidth = o.filterHeight = layer.k
            code = op.AVERAGE_POOL_2D if layer.kind == "avgpool" else op.MAX_POOL_2D
            b.op(code, 2, [x], [y], opt.Pool2DOptions, o)
            x, shape = y, (1, oh, ow, c)
        elif layer.kind == "mean":
            axes = b.tensor((2,), tt.INT32, data=np.array([1, 2], np.int32))
            y = b.act((1, 1, 1, shape[3]), scale, zp)
            o = s.ReducerOptionsT()
            o.keepDims = True
            b.op(op.MEAN, 2, [x, axes], [y], opt.ReducerOptions, o)
            x, shape = y, (1, 1, 1, shape[3])
        elif layer.kind == "reshape":
            n = int(np.prod(shape))
            new = b.tensor((2,), tt.INT32, data=np.array([1, n], np.int32))
            y = b.act((1, n), scale, zp)
            o = s.ReshapeOptionsT()
            o.newShape = [1, n]
            b.op(op.RESHAPE, 1, [x, new], [y], opt.ReshapeOptions, o)
            x, shape = y, (1, n)
        elif layer.kind == "softmax":
            y = b.act(shape, 1.0 / 256, -128)
            o = s.SoftmaxOptionsT()
            o.beta = 1.0
            b.op(op.SOFTMAX, 2, [x], [y], opt.SoftmaxOptions, o)
            x, scale, zp = y, 1.0 / 256, -128
        else:
            raise ValueError(f"unknown probe layer kind {layer.kind!r}")
    return b.finish([inp], [x], f"edgeforge latency probe {probe.name}")
