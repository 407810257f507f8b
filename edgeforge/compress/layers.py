"""The weight layers of a full-integer model: the units the search compresses."""

from __future__ import annotations

import warnings

from dataclasses import dataclass

import numpy as np

from edgeforge.analyze import op_macs
from edgeforge.model.rewrite import unpack_int4
from edgeforge.model.tflite import ModelInfo, constant_data
from edgeforge.ops import DEPTHWISE_CONV_2D, FULLY_CONNECTED, WEIGHT_OPS  # noqa: F401 (WEIGHT_OPS: re-exported)



@dataclass(frozen=True)
class WeightLayer:
    op_index: int
    op: str
    name: str  # the op's output tensor name, as the report shows it
    filter_tensor: int
    bias_tensor: int | None
    values: np.ndarray  # int8 filter values (int4 sources unpacked), TFLite layout
    scales: np.ndarray  # per-channel filter scales (float64), one per entry of ``channel_axis``
    channel_axis: int
    macs: int
    input_scale: float  # scale of the layer's (int8) input: the bias is stored at input_scale * filter scale

    @property
    def params(self) -> int:
        return int(self.values.size)

    @property
    def channels(self) -> int:
        return int(self.values.shape[self.channel_axis])

    def allows(self, bits: int) -> bool:
        """Every weight layer takes int8 and int4 (FULLY_CONNECTED int4 with one scale per tensor)."""
        return bits in (8, 4)

    def real(self) -> np.ndarray:
        """The weights in real units (what magnitude pruning ranks)."""
        shape = [1] * self.values.ndim
        shape[self.channel_axis] = -1
        return self.values.astype(np.float64) * self.scales.reshape(shape)


def weight_layers(model: bytes, info: ModelInfo) -> list[WeightLayer]:
    """Every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED whose filter is a constant int8/int4 tensor
    with symmetric (zero point 0) scales."""
    out = []
    for op in info.ops:
        if op.op not in WEIGHT_OPS or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        f = info.tensors[op.inputs[1]]
        if not f.is_constant or f.dtype not in ("int8", "int4") or not f.scale or any(f.zero_point):
            continue
        raw = constant_data(model, f.index)
        values = unpack_int4(raw.view(np.uint8), f.elements) if f.dtype == "int4" else raw.view(np.int8)
        values = values.reshape(f.shape)
        axis = f.quantized_dimension if len(f.scale) > 1 else (3 if op.op == DEPTHWISE_CONV_2D else 0)
        scales = np.asarray(f.scale, dtype=np.float64)
        if scales.size == 1:
            scales = np.full(f.shape[axis], scales[0])
        bias = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        x = info.tensors[op.inputs[0]]
        if not x.scale:
            continue
        out.append(WeightLayer(op.index, op.op, info.tensors[op.outputs[0]].name, f.index, bias, values, scales,
                               axis, op_macs(op, info), float(x.scale[0])))
    return out


def input_means(model: bytes, info: ModelInfo, layers: list[WeightLayer], x: np.ndarray) -> dict[int, np.ndarray]:
    """Mean real value of every weight layer's input, per input channel, over the samples ``x``
    (model-typed, batch dim 1 each): what bias correction needs to cancel the mean error that
    pruning and int4 rounding add to each output channel."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeforge.quiet import captured_output

    # LiteRT warns that keeping every tensor is for debugging: keeping them is the point here
    with captured_output(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ip = Interpreter(model_content=model, num_threads=1, experimental_preserve_all_tensors=True)
        ip.allocate_tensors()
    inp = ip.get_input_details()[0]["index"]
    ops = {op.index: op for op in info.ops}
    sums: dict[int, np.ndarray] = {}
    for sample in x:
        ip.set_tensor(inp, sample)
        ip.invoke()
        for layer in layers:
            t = info.tensors[ops[layer.op_index].inputs[0]]
            raw = ip.get_tensor(t.index).astype(np.float64)
            real = (raw - (t.zero_point[0] if t.zero_point else 0)) * (t.scale[0] if t.scale else 1.0)
            per_channel = real.reshape(-1, real.shape[-1]).mean(axis=0)
            sums[layer.op_index] = sums.get(layer.op_index, 0) + per_channel
    return {op: s / max(len(x), 1) for op, s in sums.items()}


def output_error(layer: WeightLayer, delta: np.ndarray, mean_in: np.ndarray) -> np.ndarray:
    """Expected change of each output channel (real units) when the filter changes by ``delta``
    (real units) and the layer's input has per-channel mean ``mean_in``."""
    if layer.op == DEPTHWISE_CONV_2D:  # [1, H, W, C*M]: output channel c reads input channel c // M
        mult = delta.shape[3] // mean_in.size
        return delta.sum(axis=(0, 1, 2)) * np.repeat(mean_in, mult)
    if layer.op == FULLY_CONNECTED:  # [out, in]
        return delta.reshape(delta.shape[0], -1) @ np.resize(mean_in, delta.shape[-1])
    return np.einsum("ohwi,i->o", delta, mean_in)  # CONV_2D [O, H, W, I]
