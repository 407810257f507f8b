"""Static memory plan for the native runtime: one arena, offsets fixed at generation time.

Three figures come out of a model, reported side by side:
* ``lower_bound`` — the largest set of simultaneously live tensors for the chosen schedule;
* ``tflm_like`` — TFLM's own rules (inclusive lifetimes, no aliasing, greedy largest-first first-fit,
  16-byte alignment) in the model's op order: what TFLM's arena *head* would hold;
* the native plan — in-place element-wise ops and aliased reshapes, an op order chosen to lower the
  peak where the graph branches, then the same greedy placement.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeforge.model.tflite import ModelInfo
from edgeforge.native.ir import KernelCall

ALIGN = 16


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class Buffer:
    """A storage slot: one or more tensors (aliases) sharing bytes over a lifetime of op steps."""

    tensors: tuple[int, ...]
    size: int  # bytes, 16-aligned
    first: int  # inclusive op step
    last: int  # inclusive op step


@dataclass(frozen=True)
class Plan:
    order: tuple[int, ...]  # indices into the calls list, in execution order
    offsets: dict[int, int]  # tensor index -> byte offset in the arena
    arena_bytes: int
    lower_bound: int  # live-set bound of this plan's schedule (after aliasing)
    scratch_offsets: dict[int, int]  # call position in ``order`` -> scratch offset
    buffers: tuple[Buffer, ...]


def _consumers(calls: list[KernelCall]) -> dict[int, list[int]]:
    users: dict[int, list[int]] = {}
    for i, c in enumerate(calls):
        for t in c.inputs:
            users.setdefault(t, []).append(i)
    return users


def schedule(calls: list[KernelCall], info: ModelInfo) -> list[int]:
    """A topological order that keeps the live bytes low: among ready ops, run the one that frees the
    most (or allocates the least) first. On a chain this is the model's order."""
    producer = {t: i for i, c in enumerate(calls) for t in c.outputs}
    users = _consumers(calls)
    remaining_users = {t: len(u) for t, u in users.items()}
    deps = {i: {producer[t] for t in c.inputs if t in producer} for i, c in enumerate(calls)}
    done: set[int] = set()
    order: list[int] = []
    size = {t.index: t.nbytes for t in info.tensors}
    outputs = set(info.outputs)
    while len(order) < len(calls):
        ready = [i for i in range(len(calls)) if i not in done and deps[i] <= done]

        def delta(i: int) -> tuple[int, int]:
            c = calls[i]
            grow = sum(size[t] for t in c.outputs)
            free = sum(size[t] for t in set(c.inputs) if remaining_users.get(t, 0) == 1 and t not in outputs)
            return (grow - free, i)

        best = min(ready, key=delta)
        done.add(best)
        order.append(best)
        for t in set(calls[best].inputs):
            remaining_users[t] = remaining_users.get(t, 0) - 1
    return order


def _lifetimes(calls: list[KernelCall], order: list[int], info: ModelInfo,
               alias: bool) -> tuple[list[Buffer], dict[int, int]]:
    """Buffers with TFLM's inclusive lifetimes; with ``alias``, in-place/aliased outputs join their input's
    buffer. Returns the buffers and a tensor -> buffer-position map."""
    step_of = {ci: s for s, ci in enumerate(order)}
    n = len(order)
    first: dict[int, int] = {t: 0 for t in info.inputs}
    last: dict[int, int] = {t: 0 for t in info.inputs}
    for ci in order:
        s = step_of[ci]
        c = calls[ci]
        for t in c.outputs:
            first.setdefault(t, s)
            last[t] = max(last.get(t, s), s)
        for t in c.inputs:
            last[t] = max(last.get(t, s), s)
    for t in info.outputs:
        last[t] = n - 1 if n else 0
    group: dict[int, int] = {t: t for t in first}
    if alias:
        users = _consumers(calls)
        for ci in order:
            c = calls[ci]
            if not (c.inplace or c.alias_only) or not c.inputs or len(c.outputs) != 1:
                continue
            src, dst = c.inputs[0], c.outputs[0]
            root = _root(group, src)
            same_size = info.tensors[src].nbytes == info.tensors[dst].nbytes
            # the input must die here (its last reader is this op) and must not be a model input
            # that the caller still owns, nor a model output
            readers = users.get(src, [])
            dies_here = all(step_of[r] <= step_of[ci] for r in readers) and src not in info.outputs
            if same_size and dies_here and src not in info.inputs and dst not in info.outputs:
                group[dst] = root
    members: dict[int, list[int]] = {}
    for t in first:
        members.setdefault(_root(group, t), []).append(t)
    buffers = []
    where: dict[int, int] = {}
    for root, ts in sorted(members.items()):
        size = max(info.tensors[t].nbytes for t in ts)
        if size == 0:
            continue
        b = Buffer(tuple(sorted(ts)), _align(size), min(first[t] for t in ts), max(last[t] for t in ts))
        for t in ts:
            where[t] = len(buffers)
        buffers.append(b)
    return buffers, where


def _root(group: dict[int, int], t: int) -> int:
    while group[t] != t:
        t = group[t]
    return t


def _place(items: list[tuple[int, int, int]]) -> tuple[list[int], int]:
    """TFLM's GreedyMemoryPlanner: largest first (equal sizes: later first), first fit by offset among
    lifetime-overlapping buffers. ``items`` are (size, first, last); returns offsets and the total."""
    order = sorted(range(len(items)), key=lambda i: (-items[i][0], -i))
    offsets = [0] * len(items)
    placed: list[int] = []
    for i in order:
        size, first, last = items[i]
        live = sorted((offsets[j], items[j][0]) for j in placed if not (items[j][1] > last or first > items[j][2]))
        candidate = 0
        for off, sz in live:
            if off >= candidate + size:
                break
            candidate = max(candidate, off + sz)
        offsets[i] = candidate
        placed.append(i)
    total = max((offsets[i] + items[i][0] for i in range(len(items))), default=0)
    return offsets, total


def _peak(items: list[tuple[int, int, int]], steps: int) -> int:
    return max((sum(sz for sz, f, la in items if f <= s <= la) for s in range(max(steps, 1))), default=0)


def _plan_order(calls: list[KernelCall], info: ModelInfo, order: list[int], alias: bool) -> Plan:
    buffers, where = _lifetimes(calls, order, info, alias=alias)
    items = [(b.size, b.first, b.last) for b in buffers]
    scratch_index: dict[int, int] = {}
    for s, ci in enumerate(order):
        if calls[ci].scratch_bytes:
            scratch_index[s] = len(items)
            items.append((_align(calls[ci].scratch_bytes), s, s))
    offs, total = _place(items)
    offsets = {t: offs[where[t]] for t in where}
    return Plan(tuple(order), offsets, total, _peak(items, len(order)),
                {s: offs[i] for s, i in scratch_index.items()}, tuple(buffers))


def plan(calls: list[KernelCall], info: ModelInfo, reorder: bool = True, alias: bool = True) -> Plan:
    """Place every non-constant tensor (and scratch) in one arena; see the module docstring.

    With ``reorder`` the model's order and a low-peak schedule are both planned and the smaller
    arena wins (ties keep the model's order)."""
    orders = [list(range(len(calls)))]
    if reorder:
        alternative = schedule(calls, info)
        if alternative != orders[0]:
            orders.append(alternative)
    best: Plan | None = None
    for order in orders:
        p = _plan_order(calls, info, order, alias)
        if best is None or p.arena_bytes < best.arena_bytes:
            best = p
    assert best is not None
    return best


def tflm_like(calls: list[KernelCall], info: ModelInfo) -> int:
    """The arena head TFLM's planner would reach: model order, no aliasing, same placement rules.
    (TFLM's kernels' own scratch buffers are not modelled: its head can be a little larger.)"""
    order = list(range(len(calls)))
    buffers, _ = _lifetimes(calls, order, info, alias=False)
    return _place([(b.size, b.first, b.last) for b in buffers])[1]
