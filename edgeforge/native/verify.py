"""Checks a native memory plan before anything is emitted: a wrong plan must stop the build, never ship.

Lifetimes are recomputed from the kernel calls and the schedule (not taken from the planner), with TFLM's
inclusive rule: a tensor lives from the step that writes it (step 0 for a model input) to the last step that
reads it (the last step for a model output). Then:

* the schedule runs every call once, each after the producers of what it reads;
* every planned tensor and scratch buffer has an offset that is a multiple of ``ALIGN`` and lies inside the
  arena;
* no two tensors live at the same step share a byte, unless a call declares the pair in place (its output
  over its first input, ``KernelCall.inplace`` / ``alias_only``), they start at the same offset, and the input
  is last read by that call;
* each call's scratch buffer is large enough and shares no byte with a tensor live at its step.
"""

from __future__ import annotations

from edgeforge.errors import InternalError
from edgeforge.model.tflite import ModelInfo
from edgeforge.native.ir import KernelCall
from edgeforge.native.planner import ALIGN, Plan

HINT = "this is a bug in edgeforge: please report it with the model; --runtime tflm builds it meanwhile"


def _fail(why: str) -> InternalError:
    return InternalError(f"the native runtime's memory plan is wrong: {why}", HINT)


def verify_plan(plan: Plan, calls: list[KernelCall] | tuple[KernelCall, ...], info: ModelInfo) -> None:
    """Raise InternalError naming the tensors when ``plan`` is not a valid plan for ``calls``."""
    order = list(plan.order)
    if sorted(order) != list(range(len(calls))):
        raise _fail(f"the schedule {order} does not run each of the {len(calls)} calls once")
    step_of = {ci: s for s, ci in enumerate(order)}
    producer = {t: ci for ci, c in enumerate(calls) for t in c.outputs}
    for ci, c in enumerate(calls):
        for t in c.inputs:
            if t in producer and step_of[producer[t]] >= step_of[ci]:
                raise _fail(f"op {c.op_index} ({c.op}) reads tensor {t} before op "
                            f"{calls[producer[t]].op_index} writes it")
    last_step = max(len(order) - 1, 0)
    first: dict[int, int] = {t: 0 for t in info.inputs}
    last: dict[int, int] = {t: 0 for t in info.inputs}
    for s, ci in enumerate(order):
        for t in calls[ci].outputs:
            first.setdefault(t, s)
            last[t] = max(last.get(t, s), s)
        for t in calls[ci].inputs:
            first.setdefault(t, s)  # read but written by nobody: a constant the lowering missed
            last[t] = max(last.get(t, s), s)
    for t in info.outputs:
        first.setdefault(t, 0)
        last[t] = last_step
    size = {t: info.tensors[t].nbytes for t in first}
    live = [t for t in sorted(first) if size[t] > 0]

    # in-place pairs: (input, output) -> the step of the call that declares them
    inplace: dict[tuple[int, int], int] = {}
    for s, ci in enumerate(order):
        c = calls[ci]
        if (c.inplace or c.alias_only) and c.inputs and c.outputs:
            inplace[(c.inputs[0], c.outputs[0])] = s

    for t in live:
        name = info.tensors[t].name
        if t not in plan.offsets:
            raise _fail(f"tensor {t} ({name}) has no place in the arena")
        off = plan.offsets[t]
        if off % ALIGN:
            raise _fail(f"tensor {t} ({name}) at offset {off} is not {ALIGN}-byte aligned")
        if off < 0 or off + size[t] > plan.arena_bytes:
            raise _fail(f"tensor {t} ({name}) at [{off}, {off + size[t]}) lies outside the {plan.arena_bytes}-byte "
                        f"arena")

    by_offset = sorted(live, key=lambda t: plan.offsets[t])
    for i, a in enumerate(by_offset):
        end_a = plan.offsets[a] + size[a]
        for b in by_offset[i + 1 :]:
            if plan.offsets[b] >= end_a:
                break
            if first[a] > last[b] or first[b] > last[a]:
                continue  # never live together
            if _inplace_ok(a, b, plan, inplace, last, first) or _inplace_ok(b, a, plan, inplace, last, first):
                continue
            raise _fail(f"tensors {a} ({info.tensors[a].name}, steps {first[a]}-{last[a]}, bytes "
                        f"[{plan.offsets[a]}, {end_a})) and {b} ({info.tensors[b].name}, steps {first[b]}-{last[b]}, "
                        f"bytes [{plan.offsets[b]}, {plan.offsets[b] + size[b]})) are live at the same time and "
                        f"overlap")

    for s, ci in enumerate(order):
        c = calls[ci]
        if not c.scratch_bytes:
            continue
        where = f"op {c.op_index} ({c.op})'s {c.scratch_bytes}-byte scratch"
        if s not in plan.scratch_offsets:
            raise _fail(f"{where} has no place in the arena")
        off = plan.scratch_offsets[s]
        if off % ALIGN:
            raise _fail(f"{where} at offset {off} is not {ALIGN}-byte aligned")
        if off < 0 or off + c.scratch_bytes > plan.arena_bytes:
            raise _fail(f"{where} at [{off}, {off + c.scratch_bytes}) lies outside the {plan.arena_bytes}-byte arena")
        for t in live:
            if first[t] <= s <= last[t] and plan.offsets[t] < off + c.scratch_bytes and \
                    off < plan.offsets[t] + size[t]:
                raise _fail(f"{where} at [{off}, {off + c.scratch_bytes}) overlaps tensor {t} "
                            f"({info.tensors[t].name}), live at that step")


def _inplace_ok(src: int, dst: int, plan: Plan, inplace: dict[tuple[int, int], int], last: dict[int, int],
                first: dict[int, int]) -> bool:
    """``dst`` may overlay ``src``: declared in place by the call at step s, same offset, and ``src`` is read
    for the last time (and ``dst`` written for the first time) at s."""
    s = inplace.get((src, dst))
    return s is not None and plan.offsets[src] == plan.offsets[dst] and last[src] == s and first[dst] == s
