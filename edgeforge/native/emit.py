"""Renders the native runtime's C sources: the model (constants, arena offsets, straight-line kernel
calls), its header, a host runner, a Makefile, the Cortex-M start-up and linker script, and a copy of
the kernel library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeforge.emit.render import render
from edgeforge.model.tflite import ModelInfo
from edgeforge.native.csource import render_call
from edgeforge.native.ir import ConstArray, FilterStorage, KernelCall
from edgeforge.native.planner import Plan, plan, tflm_like
from edgeforge.resources import data_dir

Files = dict[str, bytes]

_CTYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float",
           "bool": "uint8_t", "int64": "int64_t"}


@dataclass(frozen=True)
class WeightAccount:
    """The filters of a native model in flash: what sparse storage and int4 packing saved."""

    filters: tuple[FilterStorage, ...]

    @property
    def stored_bytes(self) -> int:
        return sum(f.storage.stored_bytes for f in self.filters)

    @property
    def dense_bytes(self) -> int:  # dense, at each filter's own bit width
        return sum(f.storage.dense_bytes for f in self.filters)

    @property
    def int8_dense_bytes(self) -> int:  # as if every filter were dense int8
        return sum(f.int8_dense_bytes for f in self.filters)

    @property
    def sparse_tensors(self) -> int:
        return sum(f.storage.format != "dense" for f in self.filters)

    def to_json(self) -> dict[str, int]:
        return {"stored_bytes": self.stored_bytes, "dense_bytes": self.dense_bytes,
                "int8_dense_bytes": self.int8_dense_bytes,
                "sparse_saved_bytes": self.dense_bytes - self.stored_bytes,
                "int4_saved_bytes": self.int8_dense_bytes - self.dense_bytes,
                "sparse_tensors": self.sparse_tensors}


@dataclass(frozen=True)
class NativeModel:
    """The lowered, planned model: what the emitter renders and what reports quote."""

    calls: tuple[KernelCall, ...]
    plan: Plan
    tflm_like_head: int  # what TFLM's greedy planner would need for the same tensors (no aliasing)
    const_bytes: int  # every constant array in flash (filters as stored: sparse where that is smaller)
    single_rounding: bool
    weights: WeightAccount = WeightAccount(())
    fusion_declined: tuple[str, ...] = ()  # why candidate CONV_2D -> ADD pairs stayed unfused (shown at -v)


def prepare_native(info: ModelInfo, model: bytes, single_rounding: bool = False) -> NativeModel:
    """Lower every op (UnsupportedOpError for one the native runtime lacks) and plan the arena."""
    from edgeforge.native.fuse import fuse_residual_adds
    from edgeforge.native.lower import lower
    from edgeforge.native.verify import verify_plan

    unfused = lower(info, model, single_rounding)
    fusion = fuse_residual_adds(unfused, info)
    calls = fusion.calls
    arena = plan(calls, info)
    verify_plan(arena, calls, info)  # a wrong plan stops the build here (InternalError), never ships
    consts = {c.name: c for call in calls for c in call.consts}
    filters = {f.name: f for call in calls for f in call.filters}
    # TFLM's figure is for the model as it is: one buffer per op output, no fusion
    return NativeModel(tuple(calls), arena, tflm_like(unfused, info),
                       sum(c.nbytes for c in consts.values()), single_rounding, WeightAccount(tuple(filters.values())),
                       tuple(str(d) for d in fusion.declined))


def _rows(values: np.ndarray, ctype: str, per_row: int = 16) -> list[str]:
    if ctype == "float":
        items = [f"{float(v)!r}f" if np.isfinite(v) else "0.0f" for v in values.astype(np.float32)]
    else:
        items = [str(int(v)) for v in values]
    if ctype == "int32_t":  # INT32_MIN is not a valid literal on its own
        items = ["(-2147483647 - 1)" if v == "-2147483648" else v for v in items]
    return [", ".join(items[i : i + per_row]) + "," for i in range(0, len(items), per_row)] or ["0,"]


def _const_ctx(c: ConstArray, f: FilterStorage | None = None) -> dict[str, Any]:
    note = ""
    if f is not None and f.storage.format != "dense":  # dense filters: no comment, the C is as it always was
        note = (f"{f.op} filter, int{f.bits}, {f.storage.format} (edgeforge/native/sparse.py): "
                f"{f.storage.stored_bytes} B instead of {f.storage.dense_bytes} B dense")
    return {"name": c.name, "ctype": c.ctype, "count": max(len(c.values), 1), "rows": _rows(c.values, c.ctype),
            "note": note}


def _io(info: ModelInfo, index: int, offset: int) -> dict[str, Any]:
    t = info.tensors[index]
    return {"dtype": t.dtype, "shape": list(t.shape), "bytes": t.nbytes, "offset": offset,
            "scale": repr(t.scale[0]) if t.scale else "1.0", "zero_point": t.zero_point[0] if t.zero_point else 0}


def _code(call: KernelCall, info: ModelInfo, p: Plan, step: int) -> str:
    """The call's C with every tensor at its planned arena offset."""

    def pointer(t: int) -> str:
        ctype = _CTYPES.get(info.tensors[t].dtype, "uint8_t")
        return f"(({ctype}*)(ef_arena + {p.offsets[t]}))"

    scratch = f"(ef_arena + {p.scratch_offsets[step]})" if step in p.scratch_offsets else None
    return render_call(call, pointer, scratch)


def model_context(native: NativeModel, info: ModelInfo, base: dict[str, Any]) -> dict[str, Any]:
    p = native.plan
    calls = []
    for step, ci in enumerate(p.order):
        call = native.calls[ci]
        aliased = call.alias_only and call.inputs and p.offsets.get(call.inputs[0]) == p.offsets.get(call.outputs[0])
        out = call.outputs[0] if call.outputs else None
        calls.append({"op_index": call.op_index, "op": call.op,
                      "out_offset": p.offsets.get(out, 0) if out is not None else 0,
                      "out_bytes": info.tensors[out].nbytes if out is not None else 0,
                      "note": " (aliased: no code)" if aliased else (" (in place)" if call.inplace and
                      call.inputs and p.offsets.get(call.inputs[0]) == p.offsets.get(call.outputs[0]) else ""),
                      "code": "" if aliased else _code(call, info, p, step)})
    seen: dict[str, ConstArray] = {}
    for call in native.calls:
        for c in call.consts:
            seen.setdefault(c.name, c)
    filters = {f.name: f for f in native.weights.filters}
    return {
        **base,
        "calls": calls,
        "consts": [_const_ctx(c, filters.get(c.name)) for c in seen.values()],
        "const_bytes": native.const_bytes,
        "arena_bytes": p.arena_bytes,
        "lower_bound": p.lower_bound,
        "single_rounding": native.single_rounding,
        "inputs": [_io(info, i, p.offsets[i]) for i in info.inputs],
        "outputs": [_io(info, o, p.offsets[o]) for o in info.outputs],
    }


def native_files(native: NativeModel, info: ModelInfo, base: dict[str, Any],
                 arm: dict[str, Any] | None) -> Files:
    """Every file of a native build, relative to its ``native/`` folder."""
    ctx = model_context(native, info, {**base, "arm": arm})
    files: Files = {
        "ef_model.h": render("native/ef_model.h.j2", ctx),
        "ef_model.c": render("native/ef_model.c.j2", ctx),
        "host_main.c": render("native/host_main.c.j2", ctx),
        "Makefile": render("native/Makefile.j2", ctx),
        "ef_model.mk": render("native/ef_model.mk.j2", ctx),  # output 0's facts for the bench firmware
    }
    if arm is not None:
        actx = {**ctx, **arm}
        files["arm/startup.c"] = render("native/arm/startup.c.j2", actx)
        files["arm/link.ld"] = render("native/arm/link.ld.j2", actx)
    runtime = data_dir("firmware") / "runtime"
    for path in sorted(runtime.iterdir()):
        if path.suffix in (".c", ".h"):
            files[f"runtime/{path.name}"] = path.read_bytes()
    # rendered from data: the kernels must round as the parameters were generated (firmware/runtime/ holds the
    # same file for the default, for projects that compile the library directly)
    files["runtime/ef_config.h"] = render("native/ef_config.h.j2", ctx)
    return files
