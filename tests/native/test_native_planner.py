"""The native memory planner (edgeforge/native/planner.py) and the plan verifier run on every native build
(edgeforge/native/verify.py), on small synthetic graphs and on deliberately corrupted plans."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import assert_clean_error
from opgen import make_model

from edgeforge.errors import ExitCode, InternalError
from edgeforge.model.tflite import ModelInfo, read_tflite
from edgeforge.native import planner
from edgeforge.native.emit import model_context, prepare_native
from edgeforge.native.ir import KernelCall
from edgeforge.native.lower import lower
from edgeforge.native.planner import ALIGN, Plan, _place, plan, schedule, tflm_like
from edgeforge.native.verify import verify_plan

BASE = {"version": "t", "target_id": "t", "model_name": "m", "model_sha256": "0"}
KINDS = ("residual", "branch", "reshape_chain")


def _native(kind: str) -> tuple[ModelInfo, list[KernelCall], Plan]:
    data = make_model(kind, 0)
    info = read_tflite(data)
    nm = prepare_native(info, data)
    return info, list(nm.calls), nm.plan


# ---- placement ------------------------------------------------------------------------------------------------


def test_greedy_placement_is_tflms() -> None:
    """Largest first, equal sizes in reverse insertion order, first fit among buffers live at the same time."""
    # (size, first, last)
    items = [(64, 0, 1), (64, 1, 2), (32, 2, 3), (128, 3, 4)]
    offsets, total = _place(items)
    # 128 at 0; the two 64s: item 1 (later) first at 0 (no overlap with [3, 4]), item 0 overlaps item 1 -> 64;
    # the 32 overlaps item 1 (0..64) and the 128 (0..128) -> 128
    assert offsets == [64, 0, 128, 0] and total == 160
    assert _place([]) == ([], 0)
    # disjoint lifetimes share offset 0
    assert _place([(48, 0, 0), (48, 1, 1), (48, 2, 2)]) == ([0, 0, 0], 48)


def test_reshape_chain_aliases_every_reshape() -> None:
    info, calls, p = _native("reshape_chain")
    reshapes = [c for c in calls if c.op == "RESHAPE"]
    assert len(reshapes) == 3
    for c in reshapes[:2]:  # the last one writes the model output: a buffer of its own
        assert p.offsets[c.inputs[0]] == p.offsets[c.outputs[0]]
    assert p.offsets[reshapes[2].inputs[0]] != p.offsets[reshapes[2].outputs[0]]
    rendered = {c["op_index"]: c for c in model_context(prepare_native(info, make_model("reshape_chain", 0)), info,
                                                            BASE)["calls"]}
    assert [rendered[c.op_index]["code"] == "" for c in reshapes] == [True, True, False]
    # conv output 4x4x4 = 64 B and FC output 12 B (16 aligned) + softmax in place: 64 + 16 + 16 (model output)
    assert p.arena_bytes == 112 == p.lower_bound


@pytest.mark.parametrize("kind", KINDS)
def test_plans_are_consistent(kind: str) -> None:
    data = make_model(kind, 0)
    info = read_tflite(data)
    calls = lower(info, data)
    p = plan(calls, info)
    verify_plan(p, calls, info)
    assert p.lower_bound <= p.arena_bytes <= tflm_like(calls, info)
    assert all(off % ALIGN == 0 for off in p.offsets.values())
    # no aliasing, no reordering: TFLM's own rules give exactly tflm_like
    assert plan(calls, info, reorder=False, alias=False).arena_bytes == tflm_like(calls, info)
    order = schedule(calls, info)
    assert sorted(order) == list(range(len(calls)))
    done: set[int] = set()
    for ci in order:  # topological
        assert all(t in info.inputs or any(t in calls[d].outputs for d in done) for t in calls[ci].inputs)
        done.add(ci)


def test_branch_keeps_the_input_alive_for_both_branches() -> None:
    info, calls, p = _native("branch")
    x = info.inputs[0]
    readers = [s for s, ci in enumerate(p.order) if x in calls[ci].inputs]
    assert len(readers) == 2
    b = next(b for b in p.buffers if x in b.tensors)
    assert (b.first, b.last) == (0, max(readers))
    # 6x6 images: input 8 ch, wide 32 ch, narrow 4 + 4 ch, concat 36 ch: the concat step holds wide + narrow + out
    assert p.arena_bytes == 36 * 32 + 36 * 4 + 36 * 36 + 0 == 2592


# ---- the verifier ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_verifier_accepts_every_real_plan(kind: str) -> None:
    info, calls, p = _native(kind)
    verify_plan(p, calls, info)


def _corrupt(p: Plan, **changes: object) -> Plan:
    return dataclasses.replace(p, **changes)  # type: ignore[arg-type]


def test_verifier_catches_overlapping_live_tensors() -> None:
    info, calls, p = _native("residual")
    # op 0 reads the model input (tensor 0) and writes tensor 10: both live at step 0
    offsets = dict(p.offsets)
    offsets[10] = offsets[0]
    with pytest.raises(InternalError) as exc:
        verify_plan(_corrupt(p, offsets=offsets), calls, info)
    msg = exc.value.message
    assert "tensors 0 (" in msg and "and 10 (" in msg and "overlap" in msg
    assert exc.value.exit_code == ExitCode.INTERNAL


def test_verifier_allows_declared_in_place_pairs_only_at_the_same_offset() -> None:
    info, calls, p = _native("residual")
    fused = next(c for c in calls if c.op == "CONV_2D+ADD")
    skip, out = fused.inputs[0], fused.outputs[0]
    assert p.offsets[skip] == p.offsets[out]  # the planner used the in-place declaration
    offsets = dict(p.offsets)
    offsets[out] = p.offsets[skip] + ALIGN  # partly overlapping: never valid
    with pytest.raises(InternalError, match=rf"tensors {skip} .* and {out} .*overlap"):
        verify_plan(_corrupt(p, offsets=offsets, arena_bytes=p.arena_bytes + ALIGN), calls, info)
    # the same overlay without the declaration is refused
    undeclared = [dataclasses.replace(c, inplace=False) if c is fused else c for c in calls]
    with pytest.raises(InternalError, match="overlap"):
        verify_plan(p, undeclared, info)


def test_verifier_catches_misalignment_and_a_short_arena() -> None:
    info, calls, p = _native("reshape_chain")
    t = calls[0].outputs[0]
    offsets = dict(p.offsets)
    offsets[t] += 4
    with pytest.raises(InternalError, match=f"tensor {t} .* not {ALIGN}-byte aligned"):
        verify_plan(_corrupt(p, offsets=offsets), calls, info)
    with pytest.raises(InternalError, match="outside the .*-byte arena"):
        verify_plan(_corrupt(p, arena_bytes=p.arena_bytes - ALIGN), calls, info)
    del offsets[t]
    with pytest.raises(InternalError, match=f"tensor {t} .* no place"):
        verify_plan(_corrupt(p, offsets=offsets), calls, info)


def test_verifier_checks_scratch() -> None:
    info, calls, p = _native("residual")
    step = next(s for s, ci in enumerate(p.order) if calls[ci].scratch_bytes)
    live_tensor = calls[p.order[step]].inputs[1]  # the conv's input, read at that step
    with pytest.raises(InternalError, match="scratch at .* overlaps tensor"):
        verify_plan(_corrupt(p, scratch_offsets={step: p.offsets[live_tensor]}), calls, info)
    with pytest.raises(InternalError, match="scratch has no place"):
        verify_plan(_corrupt(p, scratch_offsets={}), calls, info)
    with pytest.raises(InternalError, match="scratch at .* outside"):
        verify_plan(_corrupt(p, scratch_offsets={step: p.arena_bytes - ALIGN}), calls, info)


def test_verifier_checks_the_schedule() -> None:
    info, calls, p = _native("reshape_chain")
    with pytest.raises(InternalError, match="reads tensor .* before op"):
        verify_plan(_corrupt(p, order=tuple(reversed(p.order))), calls, info)
    with pytest.raises(InternalError, match="does not run each"):
        verify_plan(_corrupt(p, order=p.order[:-1]), calls, info)


def test_a_wrong_plan_fails_the_build_with_exit_70(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A planner bug (every tensor at offset 0) stops the build with an internal error naming tensors; nothing
    is written."""
    real = planner.plan

    def broken(calls, info, reorder=True, alias=True):  # type: ignore[no-untyped-def]
        p = real(calls, info, reorder, alias)
        return dataclasses.replace(p, offsets={t: 0 for t in p.offsets})

    monkeypatch.setattr("edgeforge.native.emit.plan", broken)
    src = tmp_path / "residual.tflite"
    src.write_bytes(make_model("residual", 0))
    out = tmp_path / "o"
    r = cli("build", src, "--target", "cortex-m4", "--runtime", "native", "--out", out)
    assert_clean_error(r, 70)
    assert "memory plan is wrong: tensors" in r.err
    assert not (out / "native" / "ef_model.c").exists()
