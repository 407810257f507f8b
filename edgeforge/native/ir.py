"""What op lowering hands to the planner and the emitter: kernel calls over tensor placeholders."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class KernelCall:
    """One op as C: ``code`` is a statement with placeholders the emitter fills in:

    * ``{T<i>}`` — pointer to tensor i's data, already cast to the tensor's C type
      (``int8_t*``/``float*``...); the emitter resolves it to an arena offset or an I/O buffer.
    * ``{S}`` — pointer (``uint8_t*``) to this call's scratch buffer when ``scratch_bytes > 0``.
    Constants are referenced by their ``ConstArray.name``.
    """

    op_index: int
    op: str
    code: str
    inputs: tuple[int, ...]  # non-constant tensors read
    outputs: tuple[int, ...]  # tensors written
    consts: tuple[ConstArray, ...] = field(default=())
    scratch_bytes: int = 0
    #: the output may share storage with inputs[0] (element-wise ops that read each element before
    #: writing it, and RESHAPE, which then needs no code at all: ``code`` may be "")
    inplace: bool = False
    alias_only: bool = False  # RESHAPE-like: output is the input reinterpreted; code is a plain copy
    filters: tuple[FilterStorage, ...] = field(default=())  # CONV_2D / DEPTHWISE_CONV_2D / FC weights
