"""Analysis before anything is flashed: per-layer cost, runtime support, flash/RAM/latency estimates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeforge import ops
from edgeforge.arena import ArenaMeasurement
from edgeforge.model.tflite import ModelInfo, OpInfo
from edgeforge.runtimes import Runtime, runtime_support
from edgeforge.target.schema import Target


@dataclass(frozen=True)
class LayerRow:
    index: int
    op: str
    dtype: str  # dtype of the op's first output
    params: int  # elements of the op's constant inputs (weights, biases)
    macs: int
    activation_bytes: int  # bytes of the op's outputs
    output_shape: tuple[int, ...]
    supported: bool

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "op": self.op, "dtype": self.dtype, "params": self.params, "macs": self.macs,
                "activation_bytes": self.activation_bytes, "output_shape": list(self.output_shape),
                "supported": self.supported}


def op_macs(op: OpInfo, info: ModelInfo) -> int:
    """Multiply-accumulates of one op (pools and element-wise ops count one per accumulated value)."""
    return ops.op_macs(op, info)


def activation_peak(info: ModelInfo) -> int:
    """Largest total size of tensors alive at once (no arena can be smaller, alignment aside)."""
    n = len(info.ops)
    first: dict[int, int] = {i: -1 for i in info.inputs}
    last: dict[int, int] = {i: n for i in info.outputs}
    for op in info.ops:
        for o in op.outputs:
            first.setdefault(o, op.index)
        for i in op.inputs:
            if i >= 0 and not info.tensors[i].is_constant:
                last[i] = max(last.get(i, -1), op.index)
    peak = 0
    for step in range(n):
        live = sum(info.tensors[i].nbytes for i, s in first.items() if s <= step <= last.get(i, s))
        peak = max(peak, live)
    return peak


@dataclass(frozen=True)
class Estimates:
    flash_bytes: int
    flash_basis: str
    ram_bytes: int
    ram_basis: str
    latency_ms: float
    latency_basis: str


@dataclass(frozen=True)
class Analysis:
    layers: tuple[LayerRow, ...]
    runtime: str
    unsupported_ops: tuple[str, ...]
    total_params: int
    total_macs: int
    weight_bytes: int
    model_bytes: int
    activation_peak_bytes: int
    estimates: Estimates | None
    arena: ArenaMeasurement | None
    notes: tuple[str, ...] = field(default=())
    #: the native runtime's plan next to TFLM's measured arena: arena_bytes, lower_bound_bytes,
    #: tflm_like_head_bytes, const_bytes; or {"unavailable": reason}
    native: dict[str, Any] | None = None


def estimate(info: ModelInfo, target: Target, runtime: str, arena: ArenaMeasurement | None,
             total_macs: int, peak: int) -> Estimates:
    if runtime == Runtime.TFLM and arena is not None:
        ram, ram_basis = arena.emitted, "measured TFLM arena (tflite-micro interpreter) + margin"
    elif runtime == Runtime.TFLM:
        ram, ram_basis = peak, "activation lower bound (arena not measurable)"
    else:
        ram, ram_basis = peak, "estimated: peak live activations (LiteRT plans its arena at run time)"
    from edgeforge.cost.latency import LatencyModel

    perf = target.data["perf"]
    model = LatencyModel.for_target(target, runtime)
    latency = model.estimate_ms(info)
    flash_basis = "measured: the .tflite flatbuffer stored in flash (interpreter code not included)" \
        if runtime == Runtime.TFLM else "measured: the .tflite file"
    if not model.table_from_profile:
        latency_basis = (f"estimated: {total_macs} MACs x {perf['cycles_per_mac']} cycles/MAC at "
                         f"{target.hardware['clock_mhz']} MHz ({perf['source']})")
    else:
        kernels = ((perf.get("ops") or {}).get(runtime) or {}).get("kernels")
        table_name = f"{runtime} table, {kernels} kernels" if kernels else f"{runtime} table"
        latency_basis = (f"{'calibrated' if model.calibrated else 'estimated'}: {total_macs} MACs, {len(info.ops)} ops "
                         f"costed per op kind ({table_name}) at {target.hardware['clock_mhz']} MHz "
                         f"({model.table.source})")
    return Estimates(info.size, flash_basis, ram, ram_basis, latency, latency_basis)


def analyze_model(info: ModelInfo, target: Target | None, runtime: str | None,
                  arena: ArenaMeasurement | None) -> Analysis:
    rt = runtime or (target.runtime if target else "litert")
    support = runtime_support(rt)
    rows = []
    for op in info.ops:
        params = sum(info.tensors[i].elements for i in op.inputs if i >= 0 and info.tensors[i].is_constant)
        outs = [info.tensors[o] for o in op.outputs]
        rows.append(LayerRow(op.index, op.op, outs[0].dtype if outs else "-", params, op_macs(op, info),
                             sum(o.nbytes for o in outs), outs[0].shape if outs else (), support.supports(op.op)))
    total_macs = sum(r.macs for r in rows)
    unsupported = tuple(support.unsupported(info.op_names))
    peak = activation_peak(info)
    est = estimate(info, target, rt, arena, total_macs, peak) if target else None
    notes = []
    if info.subgraphs > 1:
        notes.append(f"the model has {info.subgraphs} subgraphs; only the first is analysed")
    return Analysis(tuple(rows), rt, unsupported, sum(r.params for r in rows), total_macs, info.weight_bytes,
                    info.size, peak, est, arena, tuple(notes))
