"""Residual fusion: CONV_2D followed by the ADD of a skip connection becomes one call that computes the
convolution one output row at a time into a small scratch row and adds it into the skip tensor's storage.

The convolution's full output never exists, so a residual block holds two activations at its peak instead
of three (ResNet-8's arena drops by about a third). The arithmetic is the same kernels on the same values —
the convolution requantizes to int8, then the ADD requantizes — so outputs stay bit-exact with TFLM.

A typed rewrite of the kernel calls: every ADD whose input comes from a CONV_2D is a candidate, and each
candidate left alone gets a ``Declined`` note saying why (the build shows them at ``-v``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgeforge import ops
from edgeforge.model.tflite import ModelInfo
from edgeforge.native.ir import Binary, Conv, ConvAdd, KernelCall


#: the op label of a fused call (ef_model_ops[] names, bench per-op lines)
FUSED_OP = f"{ops.CONV_2D}+{ops.ADD}"


@dataclass(frozen=True)
class Declined:
    """A CONV_2D -> ADD pair that was not fused, and why."""

    conv_op: int  # op index of the CONV_2D
    add_op: int  # op index of the ADD
    reason: str

    def __str__(self) -> str:
        return f"residual fusion: op {self.conv_op} (CONV_2D) into op {self.add_op} (ADD) declined: {self.reason}"


@dataclass(frozen=True)
class Fusion:
    calls: list[KernelCall]
    declined: tuple[Declined, ...]

    @property
    def fused(self) -> int:
        return sum(isinstance(c.kernel, ConvAdd) for c in self.calls)


def _why_not(conv: KernelCall, add: KernelCall, c: int, skip: int, users: list[int], info: ModelInfo) -> str | None:
    """None when the CONV_2D call producing tensor ``c`` can be fused into ``add`` (skip = the other input)."""
    assert isinstance(add.kernel, Binary)
    if not isinstance(conv.kernel, Conv) or conv.kernel.depthwise:
        return "the producer is not a plain CONV_2D call"
    if len(users) != 1:
        return f"the convolution's output has {len(users)} readers (it must feed the ADD only)"
    if c in info.outputs:
        return "the convolution's output is a model output"
    y = add.outputs[0]
    shape_c, shape_s, shape_y = (info.tensors[t].shape for t in (c, skip, y))
    if not shape_c == shape_s == shape_y:
        return f"shapes differ ({list(shape_c)}, {list(shape_s)} -> {list(shape_y)})"
    if len(shape_y) != 4 or shape_y[0] != 1:
        return f"the output {list(shape_y)} is not one 4-D image"
    if not add.kernel.params.elementwise:
        return "the ADD broadcasts"
    return None


def fuse_residual_adds(calls: list[KernelCall], info: ModelInfo) -> Fusion:
    """Fuse every CONV_2D whose only reader is a residual ADD of the same shape into that ADD."""
    users: dict[int, list[int]] = {}
    for i, call in enumerate(calls):
        for t in call.inputs:
            users.setdefault(t, []).append(i)
    producer = {t: i for i, call in enumerate(calls) for t in call.outputs}
    fused: dict[int, KernelCall] = {}  # add index -> fused call
    dropped: set[int] = set()
    declined: list[Declined] = []
    for j, add in enumerate(calls):
        if not (isinstance(add.kernel, Binary) and add.kernel.kind == "add") or len(add.inputs) != 2:
            continue
        y = add.outputs[0]
        for k, c in enumerate(add.inputs):
            skip = add.inputs[1 - k]
            i = producer.get(c)
            if i is None or calls[i].op != ops.CONV_2D:
                continue
            if i in dropped:
                declined.append(Declined(calls[i].op_index, add.op_index, "the convolution is already fused"))
                continue
            why = _why_not(calls[i], add, c, skip, users.get(c, []), info)
            if why is not None:
                declined.append(Declined(calls[i].op_index, add.op_index, why))
                continue
            conv = calls[i].kernel
            assert isinstance(conv, Conv)
            row = conv.params.out_w * conv.params.out_c
            kernel = ConvAdd(conv, replace(add.kernel.params, shape=(1, 1, 1, row)), skip, y, conv_first=k == 0)
            fused[j] = KernelCall(add.op_index, FUSED_OP, kernel, (skip, *calls[i].inputs), (y,),
                                  calls[i].consts + add.consts, row, inplace=True,
                                  filters=calls[i].filters + add.filters)
            dropped.add(i)
            break
    return Fusion([fused.get(j, c) for j, c in enumerate(calls) if j not in dropped], tuple(declined))
