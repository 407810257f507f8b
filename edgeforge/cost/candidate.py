"""What a candidate costs on the target: model flash (exact, from the runtime's storage rules), RAM
and latency (the target's cost model)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeforge.compress.apply import Compressed
from edgeforge.compress.layers import WeightLayer
from edgeforge.model.tflite import ModelInfo
from edgeforge.native.sparse import dense_bytes
from edgeforge.runtimes import Runtime


@dataclass(frozen=True)
class Storage:
    stored_bytes: int
    dense_bytes: int  # at the layer's bit width
    int8_bytes: int
    format: str


class FlashModel:
    """Model flash of a candidate for one runtime.

    native: the generated C's constants; filters stored dense or sparse, whichever the emitter picks
    (``edgeforge.native.sparse.weight_storage``, the same function the emitter uses).
    tflm / litert: the .tflite flatbuffer; interpreters store filters dense (int4 packed), so pruning
    saves nothing there, which the report says.
    """

    def __init__(self, runtime: str, layers: list[WeightLayer], base_total: int) -> None:
        self.runtime = runtime
        self.layers = {layer.op_index: layer for layer in layers}
        base_filters = sum(self.storage(layer.op_index, None).stored_bytes for layer in layers)
        self.fixed = base_total - base_filters  # biases, requantization tables, graph: unchanged by recipes

    @property
    def basis(self) -> str:
        if Runtime(self.runtime).generates_c:
            return ("exact: weights as the native emitter stores them (filters dense or sparse, whichever is "
                    "smaller) plus biases; requantization tables and kernel code are in the linked image")
        return "exact: filters as stored in the .tflite (int4 packed, pruned weights stored dense) plus the rest of the flatbuffer"

    def storage(self, op_index: int, comp: Compressed | None) -> Storage:
        layer = self.layers[op_index]
        values, bits = (layer.values, 8) if comp is None else (comp.values, comp.bits)
        int8 = dense_bytes(values.size, 8)
        if Runtime(self.runtime).generates_c:
            from edgeforge.native.sparse import weight_storage  # the emitter's own rule

            ws = weight_storage(values, bits, layer.op)
            return Storage(ws.stored_bytes, ws.dense_bytes, int8, ws.format)
        dense = dense_bytes(values.size, bits)
        return Storage(dense, dense, int8, "dense")

    def measure(self, model: bytes) -> int:
        """Exact model flash of an actual model (e.g. a fine-tuned one) with the same weight layers."""
        from edgeforge.compress.layers import weight_layers
        from edgeforge.model.tflite import read_tflite

        info = read_tflite(model)
        total = self.fixed
        for la in weight_layers(model, info):
            bits = 4 if info.tensors[la.filter_tensor].dtype == "int4" else 8
            total += self.storage(la.op_index, Compressed(la.values, la.scales, bits)).stored_bytes
        return total

    def total(self, stored: Mapping[int, Storage]) -> int:
        return self.fixed + sum(s.stored_bytes for s in stored.values())


def native_weight_bytes(info: ModelInfo, model: bytes) -> int:
    """Exactly the weights the native emitter stores for ``model``: filters dense or sparse, whichever
    ``edgeforge.native.sparse`` picks (zeros already in a source count as saved), plus biases and the
    other constant tensors as they are."""
    from edgeforge.compress.layers import WEIGHT_OPS, weight_layers
    from edgeforge.native.sparse import weight_storage

    filters = {op.inputs[1] for op in info.ops if op.op in WEIGHT_OPS and len(op.inputs) > 1 and op.inputs[1] >= 0}
    other = sum(t.nbytes for t in info.tensors if t.is_constant and t.index not in filters)
    stored = {la.filter_tensor: weight_storage(la.values, 4 if info.tensors[la.filter_tensor].dtype == "int4" else 8,
                                               la.op).stored_bytes for la in weight_layers(model, info)}
    return other + sum(stored.get(i, info.tensors[i].nbytes) for i in filters if info.tensors[i].is_constant)


@dataclass(frozen=True)
class CandidateCost:
    flash_bytes: int
    ram_bytes: int
    latency_ms: float | None
    int4_saved_bytes: int
    sparsity_saved_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
                "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
                "saved": {"int4_bytes": self.int4_saved_bytes, "sparsity_bytes": self.sparsity_saved_bytes}}


#: what building a latency model raises for a target profile without the data it needs (a profile given as a
#: dict without ``perf`` / ``hardware.clock_mhz``, or with a value that is not a number); anything else is a bug
NO_COST_MODEL = (KeyError, ValueError)


class LatencyEstimator:
    """The target's latency cost model for one model, with a fallback when the target has none."""

    def __init__(self, target: Any, runtime: str, info: ModelInfo) -> None:
        from edgeforge.cost.latency import LatencyModel

        self.model = LatencyModel.for_target(target, runtime)
        self.prepared = self.model.prepare(info)
        self.basis = self.model.basis

    def ms(self, choices: Mapping[int, tuple[int, float, float]]) -> float:
        """Latency with op index -> (bits, weight density, output-channel density)."""
        from edgeforge.cost.latency import LayerCost

        return float(self.prepared.ms({op: LayerCost(b, d, ch) for op, (b, d, ch) in choices.items()}))
