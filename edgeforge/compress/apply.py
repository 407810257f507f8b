"""Applying a recipe to a full-integer model: magnitude pruning and int4 requantization, written
back into the .tflite so that every runtime (TFLite Micro, LiteRT, the native C) runs the same model."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgeforge.compress.layers import WeightLayer, output_error
from edgeforge.compress.recipe import LayerChoice, Recipe
from edgeforge.model.rewrite import pack, pack_int4, tensor_type, unpack
from edgeforge.ops import FULLY_CONNECTED

INT4_MAX = 7  # symmetric [-7, 7], as TFLite's int4 weight quantization does


@dataclass(frozen=True)
class Compressed:
    """A layer's filter under one choice: integer values, per-channel scales, bit width."""

    values: np.ndarray  # int8 array holding int8 or int4 values, same shape as the layer's
    scales: np.ndarray
    bits: int
    bias_shift: np.ndarray | None = None  # real-valued correction subtracted from each output's bias
    per_tensor: bool = False  # one scale for the whole filter (written as a single quantization scale)
    dead: np.ndarray | None = None  # structured pruning: output channels removed (their bias is zeroed too)

    @property
    def density(self) -> float:
        return float(np.count_nonzero(self.values)) / max(self.values.size, 1)


def _channel_shape(layer: WeightLayer) -> list[int]:
    shape = [1] * layer.values.ndim
    shape[layer.channel_axis] = -1
    return shape


def prune_mask(layer: WeightLayer, choice: LayerChoice) -> np.ndarray:
    """Which weights survive: unstructured keeps the largest |w| of the layer; structured keeps the
    output channels of largest L2 norm. Ties are broken by position so the result is deterministic."""
    real = np.abs(layer.real())
    if choice.sparsity <= 0:
        return np.ones(real.shape, dtype=bool)
    if choice.structured:
        axes = tuple(i for i in range(real.ndim) if i != layer.channel_axis)
        norms = np.sqrt(np.sum(real**2, axis=axes))
        drop = int(round(choice.sparsity * norms.size))
        keep_ch = np.ones(norms.size, dtype=bool)
        keep_ch[np.argsort(norms, kind="stable")[:drop]] = False
        return np.broadcast_to(keep_ch.reshape(_channel_shape(layer)), real.shape).copy()
    flat = real.reshape(-1)
    drop = int(round(choice.sparsity * flat.size))
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[:drop]] = False
    return keep.reshape(real.shape)


def compress_layer(layer: WeightLayer, choice: LayerChoice, mean_in: np.ndarray | None = None) -> Compressed:
    """``layer`` under ``choice``; with the mean of the layer's input (``mean_in``), the mean output
    error the change introduces is folded into the bias (bias correction)."""
    comp = _compress(layer, choice)
    if mean_in is None or layer.bias_tensor is None:
        return comp
    shape = _channel_shape(layer)
    delta = comp.values.astype(np.float64) * comp.scales.reshape(shape) - layer.real()
    return replace(comp, bias_shift=output_error(layer, delta, mean_in))


def _dead(layer: WeightLayer, choice: LayerChoice, keep: np.ndarray) -> np.ndarray | None:
    if not choice.structured or choice.sparsity <= 0:
        return None
    return ~np.moveaxis(keep, layer.channel_axis, 0).reshape(layer.channels, -1).any(axis=1)


def _compress(layer: WeightLayer, choice: LayerChoice) -> Compressed:
    keep = prune_mask(layer, choice)
    dead = _dead(layer, choice, keep)
    if choice.bits == 8:
        return Compressed(np.where(keep, layer.values, 0).astype(np.int8), layer.scales, 8, dead=dead)
    real = np.where(keep, layer.real(), 0.0)
    axes = tuple(i for i in range(real.ndim) if i != layer.channel_axis)
    # keep the source's granularity, except for FULLY_CONNECTED: TFLite Micro (which the native runtime
    # matches) has int4 FULLY_CONNECTED with one scale per tensor only
    per_tensor = bool(np.all(layer.scales == layer.scales[0])) or layer.op == FULLY_CONNECTED
    scales = _int4_scales(real, axes, per_tensor, layer)
    q = np.clip(np.round(real / scales.reshape(_channel_shape(layer))), -INT4_MAX, INT4_MAX)
    return Compressed(np.where(keep, q, 0).astype(np.int8), scales, 4, per_tensor=per_tensor, dead=dead)


#: clipping ratios tried for int4 scales: with 15 levels, clipping the largest weights a little
#: lowers the rounding error of all the others (least squared error wins)
_CLIP_RATIOS = np.linspace(0.5, 1.0, 26)


def _int4_scales(real: np.ndarray, axes: tuple[int, ...], per_tensor: bool, layer: WeightLayer) -> np.ndarray:
    red = tuple(range(real.ndim)) if per_tensor else axes
    peak = np.max(np.abs(real), axis=red, keepdims=True)
    best_err = np.full(peak.shape, np.inf)
    best = peak / INT4_MAX
    for ratio in _CLIP_RATIOS:
        s = np.where(peak > 0, peak * ratio / INT4_MAX, 1.0)
        err = np.sum((real - s * np.clip(np.round(real / s), -INT4_MAX, INT4_MAX)) ** 2, axis=red, keepdims=True)
        better = err < best_err
        best = np.where(better, s, best)
        best_err = np.where(better, err, best_err)
    flat = best.reshape(-1)
    flat = np.where(flat > 0, flat, np.resize(layer.scales, flat.size))  # an all-zero channel keeps its scale
    return np.broadcast_to(flat, layer.scales.shape).astype(np.float64).copy()


def apply_recipe(model: bytes, layers: list[WeightLayer], recipe: Recipe,
                 cache: dict[tuple[int, LayerChoice], Compressed] | None = None,
                 means: dict[int, np.ndarray] | None = None) -> bytes:
    """``model`` with every layer of ``recipe`` compressed; layers the recipe does not name are untouched.
    Output channels that structured pruning zeroed leave the graph (``edgeforge.compress.channels``)."""
    if not recipe.layers:
        return model
    tree = unpack(model)
    sg = tree.subgraphs[0]
    by_op = {layer.op_index: layer for layer in layers}
    for op_index, choice in recipe.layers:
        layer = by_op[op_index]
        key = (op_index, choice)
        comp = cache.get(key) if cache is not None else None
        if comp is None:
            comp = compress_layer(layer, choice, (means or {}).get(op_index))
            if cache is not None:
                cache[key] = comp
        _write_layer(tree, sg, layer, comp)
    out = pack(tree)
    if any(c.structured and c.sparsity > 0 for _, c in recipe.layers):
        from edgeforge.compress.channels import remove_dead_channels

        out = remove_dead_channels(out)
    return out


def prune_all(model: bytes, sparsity: float) -> bytes:
    """Every weight layer of ``model`` magnitude-pruned to ``sparsity`` (unstructured, int8 kept): the
    uniform recipe benchmarks and tests use."""
    from edgeforge.compress.layers import weight_layers
    from edgeforge.model.tflite import read_tflite

    layers = weight_layers(model, read_tflite(model))
    return apply_recipe(model, layers, Recipe.of("pruned", {la.op_index: LayerChoice(8, sparsity) for la in layers}))


def _fresh_buffer(tree: Any, tensor: Any) -> Any:
    """The tensor's buffer, copied first when another tensor shares it (so only this layer changes)."""
    users = sum(1 for t in tree.subgraphs[0].tensors if t.buffer == tensor.buffer)
    if users > 1:
        buf = type(tree.buffers[tensor.buffer])()
        tree.buffers.append(buf)
        tensor.buffer = len(tree.buffers) - 1
    return tree.buffers[tensor.buffer]


def _write_layer(tree: Any, sg: Any, layer: WeightLayer, comp: Compressed) -> None:
    f = sg.tensors[layer.filter_tensor]
    buf = _fresh_buffer(tree, f)
    if comp.bits == 4:
        f.type = tensor_type("INT4")
        buf.data = pack_int4(comp.values)
    else:
        f.type = tensor_type("INT8")
        buf.data = comp.values.reshape(-1).view(np.uint8).copy()
    q = f.quantization
    if comp.per_tensor:
        q.scale, q.zeroPoint, q.quantizedDimension = [float(comp.scales[0])], [0], 0
    elif not np.array_equal(comp.scales, layer.scales):
        q.scale = [float(s) for s in comp.scales]
    if layer.bias_tensor is None or (comp.bias_shift is None and comp.dead is None
                                     and np.array_equal(comp.scales, layer.scales)):
        return
    # the int32 bias is stored at input_scale * filter_scale: move it to the new filter scale and
    # subtract the mean output error (both in real units)
    b = sg.tensors[layer.bias_tensor]
    bbuf = _fresh_buffer(tree, b)
    old = np.frombuffer(np.asarray(bbuf.data, dtype=np.uint8).tobytes(), dtype=np.int32).astype(np.float64)
    in_scale = layer.input_scale
    real = old * in_scale * np.resize(layer.scales, old.size)
    if comp.bias_shift is not None:
        real = real - comp.bias_shift
    new = np.clip(np.round(real / (in_scale * np.resize(comp.scales, old.size))), -(2**31), 2**31 - 1)
    if comp.dead is not None and comp.dead.size == new.size:
        new[comp.dead] = 0  # a removed channel outputs exactly its zero point: removable without a trace
    bbuf.data = new.astype(np.int32).view(np.uint8).copy()
    bq = b.quantization
    if bq is not None and bq.scale is not None and len(bq.scale):
        if comp.per_tensor:
            bq.scale, bq.zeroPoint, bq.quantizedDimension = [float(in_scale * comp.scales[0])], [0], 0
        else:
            bq.scale = [float(in_scale * s) for s in np.resize(comp.scales, len(bq.scale))]
