"""Per-target latency cost model: cycles per op from the op kind, its MACs and outputs, the weights' bit width
and sparsity, for one runtime.

A target profile may carry, per runtime, a table of coefficients (``[perf.ops.tflm]``, ``[perf.ops.native]``,
``[perf.ops.litert]``; see ``edgeforge/target/schema.py``)::

    cycles(op) = per_op
               + k[kind] * MACs'                  kind: conv_2d | depthwise_conv_2d | fully_connected
               + output * output elements         (conv/depthwise/FC: bias, requantisation, activation, store)
               + sparse_scan * MACs * kept channels   (native, sparse rows: weight positions of the bitmaps)
               + int4_unpack[_depthwise] * MACs'  (int4 weights decoded in the inner loop: native _s4 kernels)
               + int4_unpack_weight * weights     (int4 weights unpacked once per invoke: TFLM reference kernels)
               + elementwise * output elements    (ADD/SUB/MUL, softmax, logistic, quantize, pad, concat, ...)
               + pool * elements read             (AVERAGE/MAX_POOL_2D: output x window; MEAN/SUM: input)

``MACs'`` is ``MACs`` on TFLM and LiteRT (they multiply by zeros like any other weight). The native runtime
stores a pruned filter's rows as bitmaps of their nonzero weights when that is smaller
(``edgeforge/native/sparse.py``): whole zero output channels cost nothing, bitmap rows cost their nonzero MACs
plus the bitmap scan, and rows with too few zeros stay dense (``native_sparse_rows``). A target without a
table for the runtime falls back to ``[perf] cycles_per_mac`` applied to every op's MACs
(``edgeforge.ops.op_macs``) — exactly the estimate edgeforge always made.

Everything here is pure and fast: ``LatencyModel.prepare(info)`` computes the per-op features once, and
``ModelCost.ms(choices)`` costs one recipe in time proportional to the number of layers it changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeforge.model.rewrite import unpack_int4
from edgeforge.model.tflite import ModelInfo, OpInfo
from edgeforge import ops as o  # op names; checked against this module's kinds in tests/test_ops.py
from edgeforge.ops import op_macs

#: Coefficients of a ``[perf.ops.<runtime>]`` table, in the order of a feature vector.
FEATURES: tuple[str, ...] = ("conv_2d", "depthwise_conv_2d", "fully_connected", "output", "elementwise", "pool",
                             "per_op", "sparse_scan", "int4_unpack", "int4_unpack_depthwise", "int4_unpack_weight")
#: Optional coefficients that default to another one when a table leaves them out.
DEFAULTS_TO = {"pool": "elementwise", "int4_unpack_depthwise": "int4_unpack"}
MAC_KINDS: tuple[str, ...] = ("conv_2d", "depthwise_conv_2d", "fully_connected")
#: Keys a table must have (the others default to 0).
REQUIRED: tuple[str, ...] = ("conv_2d", "depthwise_conv_2d", "fully_connected", "elementwise", "per_op")

_KIND_OF = {o.CONV_2D: "conv_2d", o.CONV_3D: "conv_2d", o.TRANSPOSE_CONV: "conv_2d",
            o.DEPTHWISE_CONV_2D: "depthwise_conv_2d", o.FULLY_CONNECTED: "fully_connected",
            o.BATCH_MATMUL: "fully_connected"}
#: Ops that only reinterpret their input (no per-element work; RESHAPE is an alias in the native runtime).
VIEW_OPS = frozenset({o.RESHAPE, o.SQUEEZE, o.EXPAND_DIMS, o.SHAPE})
#: Ops that accumulate windows or reductions: work = elements read.
POOL_OPS = frozenset({o.AVERAGE_POOL_2D, o.MAX_POOL_2D, o.L2_POOL_2D, o.MEAN, o.SUM, o.REDUCE_MAX, o.REDUCE_MIN,
                      o.REDUCE_PROD})
#: Runtimes whose kernels skip zero weights (edgeforge's generated C).
SPARSE_RUNTIMES = frozenset({"native"})
_IDX = {name: i for i, name in enumerate(FEATURES)}


def op_kind(op: OpInfo) -> str:
    """``conv_2d``, ``depthwise_conv_2d``, ``fully_connected`` (ops with weights), ``view``, ``pool`` or
    ``elementwise``."""
    if op.op in _KIND_OF and len(op.inputs) > 1:
        return _KIND_OF[op.op]
    if op.op in VIEW_OPS:
        return "view"
    return "pool" if op.op in POOL_OPS else "elementwise"


def _row_rule() -> tuple[int, int]:
    try:  # the emitter's own rule, when this edgeforge has sparse storage
        from edgeforge.native.sparse import ROW_DEN, ROW_NUM

        return int(ROW_NUM), int(ROW_DEN)
    except ImportError:
        return 3, 4


def native_sparse_rows(kind: str, bits: int, row_density: float) -> bool:
    """Whether the native runtime stores rows of this density as bitmaps of their nonzero weights (and skips
    the zeros) rather than dense: the size rule of ``edgeforge/native/sparse.py`` for a row of K weights —
    bitmap (K/8 bytes) + nonzero values at most ROW_NUM/ROW_DEN of the dense row (CONV_2D, FC), or smaller
    than the dense row (DEPTHWISE_CONV_2D)."""
    if row_density >= 1.0:
        return False
    b = 4 if bits <= 4 else 8
    if kind == "depthwise_conv_2d":
        return 1 / 8 + row_density * b / 8 < b / 8
    num, den = _row_rule()
    return 1 / 8 + row_density * b / 8 <= num / den * b / 8


@dataclass(frozen=True)
class LayerCost:
    """How one weighted layer is stored: ``bits`` of its weights (8, or 4 for packed int4), ``density`` the
    fraction of nonzero weights, ``channel_density`` the fraction of output channels kept (not all zero;
    structured pruning lowers both). The native runtime skips zero weights and whole zero channels."""

    bits: int = 8
    density: float = 1.0
    channel_density: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 32:
            raise ValueError(f"LayerCost.bits must be 1..32, not {self.bits}")
        if not 0.0 <= self.density <= 1.0 or not 0.0 <= self.channel_density <= 1.0:
            raise ValueError(f"LayerCost densities must lie in [0, 1] ({self.density}, {self.channel_density})")

    @property
    def int4(self) -> bool:
        return self.bits <= 4


DENSE_INT8 = LayerCost()


@dataclass(frozen=True)
class OpTable:
    """One ``[perf.ops.<runtime>]`` table: cycles per feature unit, and where the figures come from."""

    coefficients: tuple[float, ...]  # in FEATURES order
    source: str
    # Fixed cost of one invoke whatever the model (interpreter dispatch, set/get tensor), in microseconds:
    # measured as time, not cycles, because it was measured on a host (``per_invoke_us``; default 0).
    per_invoke_us: float = 0.0

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> OpTable:
        def value(k: str) -> float:
            if k in data:
                return float(data[k])
            return value(DEFAULTS_TO[k]) if k in DEFAULTS_TO else 0.0

        return cls(tuple(value(k) for k in FEATURES), str(data.get("source", "")),
                   float(data.get("per_invoke_us", 0.0)))

    @classmethod
    def uniform(cls, cycles_per_mac: float, source: str) -> OpTable:
        """The fallback: one figure for every MAC and every element of an element-wise or pooling op."""
        c = float(cycles_per_mac)
        return cls(tuple(c if k in MAC_KINDS or k in ("elementwise", "pool") else 0.0 for k in FEATURES), source)

    def __getitem__(self, key: str) -> float:
        return self.coefficients[_IDX[key]]

    def to_data(self) -> dict[str, Any]:
        return {**{k: v for k, v in zip(FEATURES, self.coefficients)}, "source": self.source}


@dataclass(frozen=True)
class OpCost:
    """One op's share of an estimate."""

    index: int
    op: str
    kind: str
    macs: int
    bits: int
    density: float
    cycles: float
    ms: float

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "op": self.op, "kind": self.kind, "macs": self.macs, "bits": self.bits,
                "density": round(self.density, 4), "cycles": round(self.cycles, 1), "ms": round(self.ms, 6)}


@dataclass(frozen=True)
class _OpStatic:
    index: int
    op: str
    kind: str
    macs: int
    outputs: int  # output elements (MAC ops: requantised values)
    weights: int  # filter elements (MAC ops)
    elements: int  # element-wise work
    default: LayerCost  # as the model stores it (int4 filters are int4)


def _op_static(op: OpInfo, info: ModelInfo, plain_elements: bool) -> _OpStatic:
    kind = op_kind(op)
    macs = op_macs(op, info)
    outs = sum(info.tensors[o].elements for o in op.outputs)
    weights, elements, default = 0, 0, DENSE_INT8
    if kind in MAC_KINDS:
        w = info.tensors[op.inputs[1]]
        weights = w.elements
        if w.dtype == "int4":
            default = LayerCost(bits=4)
    elif kind == "pool":
        elements = macs if macs > 0 or not plain_elements else sum(
            info.tensors[i].elements for i in op.inputs[:1] if i >= 0)
    elif kind == "elementwise":
        elements = macs if macs > 0 or not plain_elements else outs
    return _OpStatic(op.index, op.op, kind, macs, outs, weights, elements, default)


def features(s: _OpStatic, choice: LayerCost | None, runtime: str) -> np.ndarray:
    """The feature vector (FEATURES order) of one op stored as ``choice`` (None: as the model stores it)."""
    f = np.zeros(len(FEATURES))
    f[_IDX["per_op"]] = 1.0
    if s.kind in ("elementwise", "pool"):
        f[_IDX[s.kind]] = s.elements
        return f
    if s.kind not in MAC_KINDS:
        return f
    c = choice or s.default
    macs = float(s.macs)
    if runtime in SPARSE_RUNTIMES and c.density < 1.0:
        kept = max(c.channel_density, c.density)  # output channels not all zero: their rows are stored
        if native_sparse_rows(s.kind, c.bits, c.density / kept if kept > 0 else 0.0):
            macs = s.macs * c.density
            f[_IDX["sparse_scan"]] = s.macs * kept
        else:
            macs = s.macs * kept  # dense rows (zeros multiplied), all-zero rows skipped
    f[_IDX[s.kind]] = macs
    f[_IDX["output"]] = s.outputs
    if c.int4:
        f[_IDX["int4_unpack_depthwise" if s.kind == "depthwise_conv_2d" else "int4_unpack"]] = macs
        if runtime not in SPARSE_RUNTIMES:  # TFLM's reference kernels unpack the whole filter on every invoke
            f[_IDX["int4_unpack_weight"]] = s.weights
    return f


class ModelCost:
    """A model's ops, featurised once; costs any per-layer recipe quickly."""

    def __init__(self, model: LatencyModel, info: ModelInfo) -> None:
        self.model = model
        self.ops = tuple(_op_static(op, info, model.table_from_profile) for op in info.ops)
        self._coef = np.asarray(model.table.coefficients)
        self._base = np.array([float(features(s, None, model.runtime) @ self._coef) for s in self.ops])
        self._base_total = float(self._base.sum())
        self._ms_per_cycle = 1e3 / model.clock_hz

    def op_cycles(self, index: int, choice: LayerCost | None = None) -> float:
        if choice is None:
            return float(self._base[index])
        return float(features(self.ops[index], choice, self.model.runtime) @ self._coef)

    def cycles(self, choices: Mapping[int, LayerCost] | None = None) -> float:
        total = self._base_total
        for index, choice in (choices or {}).items():
            if self.ops[index].kind in MAC_KINDS:
                total += self.op_cycles(index, choice) - self._base[index]
        return total

    def ms(self, choices: Mapping[int, LayerCost] | None = None) -> float:
        """Estimated latency in milliseconds; ``choices`` maps op index -> how its weights are stored (ops not
        named keep the model's own storage; an entry for an op without weights is ignored)."""
        return self.cycles(choices) * self._ms_per_cycle + self.model.table.per_invoke_us / 1e3

    def breakdown(self, choices: Mapping[int, LayerCost] | None = None) -> list[OpCost]:
        rows = []
        for s in self.ops:
            c = (choices or {}).get(s.index) if s.kind in MAC_KINDS else None
            cyc = self.op_cycles(s.index, c)
            eff = c or s.default
            rows.append(OpCost(s.index, s.op, s.kind, s.macs, eff.bits if s.kind in MAC_KINDS else 0,
                               eff.density if s.kind in MAC_KINDS else 1.0, cyc, cyc * self._ms_per_cycle))
        return rows

    def feature_matrix(self, choices: Mapping[int, LayerCost] | None = None) -> np.ndarray:
        """One row per op (FEATURES columns): what ``edgeforge calibrate`` fits the coefficients to."""
        return np.stack([features(s, (choices or {}).get(s.index), self.model.runtime) for s in self.ops]) \
            if self.ops else np.zeros((0, len(FEATURES)))


@dataclass(frozen=True)
class LatencyModel:
    """The cost model of one target and runtime."""

    target_id: str
    runtime: str
    clock_mhz: float
    table: OpTable
    table_from_profile: bool  # False: the cycles_per_mac fallback
    basis: str  # "calibrated on board X ..." or "profile estimate from ..."

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    @property
    def calibrated(self) -> bool:
        return self.table.source.startswith("calibrated")

    @property
    def exploits_sparsity(self) -> bool:
        return self.runtime in SPARSE_RUNTIMES

    @classmethod
    def for_target(cls, target: Any, runtime: str | None = None) -> LatencyModel:
        """The model of ``target`` (a ``Target``) for ``runtime`` (default: the target's default runtime)."""
        rt = runtime or target.runtime
        perf = target.data["perf"]
        clock = float(target.hardware["clock_mhz"])
        ops = (perf.get("ops") or {}).get(rt)
        if ops:
            table = OpTable.from_data(ops)
            basis = table.source if table.source.startswith("calibrated") else \
                f"profile estimate from {table.source}"
            return cls(target.id, rt, clock, table, True, basis)
        table = OpTable.uniform(perf["cycles_per_mac"], perf["source"])
        return cls(target.id, rt, clock, table, False,
                   f"profile estimate from {perf['cycles_per_mac']} cycles/MAC ({perf['source']})")

    def with_table(self, table: OpTable, basis: str) -> LatencyModel:
        return LatencyModel(self.target_id, self.runtime, self.clock_mhz, table, True, basis)

    def prepare(self, info: ModelInfo) -> ModelCost:
        return ModelCost(self, info)

    def estimate_ms(self, info: ModelInfo, choices: Mapping[int, LayerCost] | None = None) -> float:
        return self.prepare(info).ms(choices)

    def breakdown(self, info: ModelInfo, choices: Mapping[int, LayerCost] | None = None) -> list[OpCost]:
        return self.prepare(info).breakdown(choices)


# ------------------------------------------------------------------------------------------ observed storage


def observed_choices(info: ModelInfo, model: bytes) -> dict[int, LayerCost]:
    """How each weighted op of ``model`` actually stores its weights: bit width, nonzero fraction and the
    fraction of output channels that are not all zero."""
    from edgeforge.model.tflite import constant_data

    out: dict[int, LayerCost] = {}
    for op in info.ops:
        kind = op_kind(op)
        if kind not in MAC_KINDS:
            continue
        w = info.tensors[op.inputs[1]]
        if not w.is_constant or w.dtype not in ("int8", "int4"):
            continue
        raw = constant_data(model, w.index)
        values = unpack_int4(raw, w.elements) if w.dtype == "int4" else raw.astype(np.int8)
        if values.size != w.elements or w.elements == 0:
            continue
        axis = len(w.shape) - 1 if kind == "depthwise_conv_2d" else 0
        per_channel = np.moveaxis(values.reshape(w.shape), axis, 0).reshape(w.shape[axis], -1)
        density = float(np.count_nonzero(values)) / w.elements
        channels = float(np.count_nonzero(per_channel.any(axis=1))) / max(w.shape[axis], 1)
        out[op.index] = LayerCost(4 if w.dtype == "int4" else 8, density, channels)
    return out


def relative_error(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured if measured else math.inf
