"""Physical channel removal: output channels that structured pruning zeroed (filter row and bias both 0)
leave the graph, with the input channels that read them downstream, so weights, MACs and activation
RAM shrink with every runtime (the native lowering and TFLite Micro read the reshaped .tflite as is).

Why removal is exact: a channel with zero weights and zero bias outputs real 0, i.e. exactly its tensor's
zero point, for every input; every consumer subtracts that zero point (or, for pools and means, passes it
through), so the channel contributes nothing to any later value. Removing it, and the matching input
channels of its consumers, leaves every other value bit-identical.

Followed through: CONV_2D / FULLY_CONNECTED producers; consumers CONV_2D (input channels), DEPTHWISE_CONV_2D
with multiplier 1 (its channels go too, and removal continues after it), channel-wise MAX_POOL_2D,
AVERAGE_POOL_2D, RELU, RELU6, MEAN over spatial axes (continue), RESHAPE to [1, N] and FULLY_CONNECTED (the
flattened columns of removed channels). Anything else (ADD, CONCATENATION, graph outputs, shared tensors)
stops removal for that producer: its zeroed channels stay in place (stored sparse by the native runtime).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeforge.model.rewrite import pack, pack_int4, unpack, unpack_int4
from edgeforge.model.tflite import ModelInfo, OpInfo, constant_data, read_tflite

PASS_THROUGH = ("MAX_POOL_2D", "AVERAGE_POOL_2D", "RELU", "RELU6")


@dataclass
class _Plan:
    """Edits for one producer, applied only when every consumer path could be followed."""

    shapes: dict[int, int] = field(default_factory=dict)  # tensor -> axis-last length after removal
    slices: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # (op, filter axis, keep mask)
    biases: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (op, keep mask) per-channel bias/scales
    reshapes: list[tuple[int, int]] = field(default_factory=list)  # (op, new flat length)


def _filter(model: bytes, info: ModelInfo, t: int) -> np.ndarray:
    ten = info.tensors[t]
    raw = constant_data(model, t)
    values = unpack_int4(raw.view(np.uint8), ten.elements) if ten.dtype == "int4" else raw.view(np.int8)
    return values.reshape(ten.shape)


def _dead_channels(model: bytes, info: ModelInfo, op: OpInfo) -> np.ndarray | None:
    """Output channels of ``op`` with an all-zero filter row and a zero bias (None: not a candidate)."""
    if op.op not in ("CONV_2D", "FULLY_CONNECTED") or len(op.inputs) < 2 or op.inputs[1] < 0:
        return None
    f = info.tensors[op.inputs[1]]
    if not f.is_constant or f.dtype not in ("int8", "int4") or len(f.shape) not in (2, 4):
        return None
    w = _filter(model, info, f.index)
    dead = ~np.any(w.reshape(w.shape[0], -1) != 0, axis=1)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = info.tensors[op.inputs[2]]
        if not b.is_constant:
            return None
        dead &= constant_data(model, b.index).view(np.int32).reshape(-1) == 0
    if not dead.any() or dead.all():  # keep at least one channel: empty tensors are not a thing
        return None
    return dead


def _follow(model: bytes, info: ModelInfo, consumers: dict[int, list[OpInfo]], outputs: set[int], t: int, keep: np.ndarray,
            plan: _Plan) -> bool:
    """Plan the removal of channels ``~keep`` of tensor ``t`` (last axis) in everything that reads it."""
    if t in outputs or not consumers.get(t):
        return False
    tensor = info.tensors[t]
    if not tensor.shape or tensor.shape[-1] != keep.size:
        return False
    plan.shapes[t] = int(keep.sum())
    for op in consumers[t]:
        if op.inputs[0] != t or any(i == t for i in op.inputs[1:]):
            return False
        out = op.outputs[0]
        if op.op == "CONV_2D":
            if info.tensors[op.inputs[1]].shape[3] != keep.size:  # grouped convolution
                return False
            plan.slices.append((op.index, 3, keep))
        elif op.op == "DEPTHWISE_CONV_2D":
            if info.tensors[op.inputs[1]].shape[3] != keep.size:  # depth multiplier > 1
                return False
            plan.slices.append((op.index, 3, keep))
            plan.biases.append((op.index, keep))
            if not _follow(model, info, consumers, outputs, out, keep, plan):
                return False
        elif op.op in PASS_THROUGH:
            if not _follow(model, info, consumers, outputs, out, keep, plan):
                return False
        elif op.op == "MEAN":
            axes = info.tensors[op.inputs[1]]
            rank = len(tensor.shape)
            if not axes.is_constant or rank - 1 in [int(a) % rank for a in constant_data(model, axes.index).view(np.int32)]:
                return False
            if not _follow(model, info, consumers, outputs, out, keep, plan):
                return False
        elif op.op in ("RESHAPE", "FULLY_CONNECTED"):
            flat = np.broadcast_to(keep, tensor.shape).reshape(-1) if len(tensor.shape) > 2 else keep
            if op.op == "RESHAPE":
                o = info.tensors[out]
                if len(o.shape) != 2 or o.shape[1] != flat.size or out in outputs:
                    return False
                plan.reshapes.append((op.index, int(flat.sum())))
                plan.shapes[out] = int(flat.sum())
                for fc in consumers.get(out, []):
                    if fc.op != "FULLY_CONNECTED" or fc.inputs[0] != out:
                        return False
                    plan.slices.append((fc.index, 1, flat))
                if not consumers.get(out):
                    return False
            else:
                if info.tensors[op.inputs[1]].shape[1] != flat.size:
                    return False
                plan.slices.append((op.index, 1, flat))
        else:
            return False
    return True


def remove_dead_channels(model: bytes) -> bytes:
    """``model`` with every removable zeroed output channel taken out of the graph (see the module
    docstring); returned unchanged (same bytes) when there is nothing to remove."""
    for _ in range(64):  # a pass edits each op once; chains (conv -> conv -> ...) take a pass per link
        new = _one_pass(model)
        if new == model:
            break
        model = new
    return model


def _one_pass(model: bytes) -> bytes:
    info = read_tflite(model)
    consumers: dict[int, list[OpInfo]] = {}
    for op in info.ops:
        for i in op.inputs:
            if i >= 0:
                consumers.setdefault(i, []).append(op)
    outputs = {t.index for t in info.output_tensors()}
    plans: list[tuple[OpInfo, np.ndarray, _Plan]] = []
    touched: set[int] = set()
    for op in info.ops:
        dead = _dead_channels(model, info, op)
        if dead is None:
            continue
        plan = _Plan()
        if not _follow(model, info, consumers, outputs, op.outputs[0], ~dead, plan):
            continue
        ops = {op.index} | {o for o, _, _ in plan.slices} | {o for o, _ in plan.biases}
        if ops & touched:  # one edit per op per pass: keeps every slice against the original shapes
            continue
        touched |= ops
        plans.append((op, ~dead, plan))
    if not plans:
        return model
    tree = unpack(model)
    sg = tree.subgraphs[0]
    for op, keep, plan in plans:
        _slice_filter(tree, sg, info, model, op.inputs[1], 0, keep)
        _slice_channel_params(tree, sg, op, keep)
        for o, axis, mask in plan.slices:
            _slice_filter(tree, sg, info, model, info.ops[o].inputs[1], axis, mask)
        for o, mask in plan.biases:
            _slice_channel_params(tree, sg, info.ops[o], mask)
        for t, n in plan.shapes.items():
            _set_last_dim(sg.tensors[t], n)
        for o, n in plan.reshapes:
            _reshape_to(tree, sg, info.ops[o], n)
    return pack(tree)


def _own_buffer(tree: Any, sg: Any, t: int) -> Any:
    """Tensor ``t``'s buffer, copied first when another tensor shares it."""
    tensor = sg.tensors[t]
    if sum(1 for x in sg.tensors if x.buffer == tensor.buffer) > 1:
        tree.buffers.append(type(tree.buffers[tensor.buffer])())
        tensor.buffer = len(tree.buffers) - 1
    return tree.buffers[tensor.buffer]


def _slice_filter(tree: Any, sg: Any, info: ModelInfo, model: bytes, t: int, axis: int, keep: np.ndarray) -> None:
    ten = info.tensors[t]
    new = np.compress(keep, _filter(model, info, t), axis=axis)
    buf = _own_buffer(tree, sg, t)
    buf.data = pack_int4(new) if ten.dtype == "int4" else new.reshape(-1).view(np.uint8).copy()
    sg.tensors[t].shape = np.array(new.shape, dtype=np.int32)
    if sg.tensors[t].shapeSignature is not None and len(sg.tensors[t].shapeSignature):
        sg.tensors[t].shapeSignature = np.array(new.shape, dtype=np.int32)
    q = sg.tensors[t].quantization
    if q is not None and q.scale is not None and len(q.scale) > 1 and q.quantizedDimension == axis:
        q.scale = [float(s) for s, k in zip(q.scale, keep) if k]
        q.zeroPoint = [int(z) for z, k in zip(q.zeroPoint, keep) if k]


def _slice_channel_params(tree: Any, sg: Any, op: Any, keep: np.ndarray) -> None:
    """The per-output-channel bias (and its per-channel scales) of ``op``."""
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return
    t = op.inputs[2]
    data = np.asarray(tree.buffers[sg.tensors[t].buffer].data, dtype=np.uint8).view(np.int32)
    if data.size != keep.size:
        return
    buf = _own_buffer(tree, sg, t)
    buf.data = data[keep].copy().view(np.uint8)
    _set_last_dim(sg.tensors[t], int(keep.sum()))
    q = sg.tensors[t].quantization
    if q is not None and q.scale is not None and len(q.scale) == keep.size:
        q.scale = [float(s) for s, k in zip(q.scale, keep) if k]
        q.zeroPoint = [int(z) for z, k in zip(q.zeroPoint, keep) if k]


def _set_last_dim(tensor: Any, n: int) -> None:
    shape = np.array(tensor.shape, dtype=np.int32)
    shape[-1] = n
    tensor.shape = shape
    if tensor.shapeSignature is not None and len(tensor.shapeSignature):
        sig = np.array(tensor.shapeSignature, dtype=np.int32)
        sig[-1] = n if sig[-1] >= 0 else sig[-1]
        tensor.shapeSignature = sig


def _reshape_to(tree: Any, sg: Any, op: OpInfo, n: int) -> None:
    """A RESHAPE to [1, N]: its new-shape input and options say N after removal."""
    raw = sg.operators[op.index]
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        t = op.inputs[1]
        data = np.asarray(tree.buffers[sg.tensors[t].buffer].data, dtype=np.uint8)
        if data.size:
            shape = data.view(np.int32).copy()
            if shape.size == 2 and shape[1] != -1:
                shape[1] = n
                _own_buffer(tree, sg, t).data = shape.view(np.uint8)
    opts = raw.builtinOptions
    if opts is not None and getattr(opts, "newShape", None) is not None and len(opts.newShape) == 2:
        if opts.newShape[1] != -1:
            opts.newShape = [int(opts.newShape[0]), n]
