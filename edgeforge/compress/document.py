"""The search's result as a JSON-able document: what report.json holds and report.html renders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from edgeforge.compress.holdout import wilson
from edgeforge.compress.layers import WeightLayer
from edgeforge.compress.recipe import LayerChoice, layer_name
from edgeforge.compress.search import Candidate, SearchResult
from edgeforge.evaluate import Accuracy
from edgeforge.target.schema import Budget


def _choice_key(c: LayerChoice) -> str:
    return f"int{c.bits}" + (f"/{'ch' if c.structured else ''}{c.sparsity:g}" if c.sparsity else "")


def _verified_json(c: Candidate, reference_top1: float | None) -> dict[str, Any] | None:
    """The verification on the selection part; ``identical_outputs`` is against the unchanged int8 model
    (every output of every selection sample equal), ``top1_drop`` from the float model, or from the
    unchanged int8 model when there is no float model."""
    from edgeforge.compress.search import accuracy_drop

    if c.accuracy is None:
        return None
    out = c.accuracy.to_json()
    out["identical_outputs"] = bool(c.identical)
    out["top1_drop"] = accuracy_drop(c.accuracy, reference_top1)
    return out


def held_out_json(acc: Accuracy | None) -> dict[str, Any] | None:
    """Top-1 (or SQNR) on the held-out report part with its Wilson 95 % interval."""
    if acc is None:
        return None
    out = {"samples": acc.samples, "data": acc.data, "top1": acc.top1, "sqnr_db": acc.to_json()["sqnr_db"],
           "float_top1": acc.float_top1, "top1_ci95": None}
    if acc.top1 is not None:
        lo, hi = wilson(round(acc.top1 * acc.samples), acc.samples)
        out["top1_ci95"] = [round(lo, 6), round(hi, 6)]
    return out


def candidate_json(c: Candidate, layers: list[WeightLayer], names: Mapping[int, str],
                   reference_top1: float | None = None) -> dict[str, Any]:
    acc = c.accuracy
    if acc is not None:
        accuracy, sqnr, evaluated = acc.top1, acc.sqnr_db, "verified"
    else:
        accuracy, sqnr, evaluated = c.score.top1, c.score.sqnr_db, "screened"
    if c.measured_ms is not None:
        evaluated = "measured"
    cost = c.cost.to_json()
    return {
        "id": c.id, "name": c.recipe.name, "kind": c.kind,
        "layers": {} if c.kind == "distilled" else c.recipe.to_json(la.op_index for la in layers),
        "flash_bytes": cost["flash_bytes"], "ram_bytes": cost["ram_bytes"],
        "latency_ms": c.measured_ms if c.measured_ms is not None else cost["latency_ms"],
        "latency_estimate_ms": cost["latency_ms"],
        "accuracy": accuracy, "sqnr_db": sqnr, "evaluated": evaluated,
        "screened": {"top1": c.score.top1, "sqnr_db": c.score.sqnr_db, "noise": round(c.score.noise, 8)},
        "verified": _verified_json(c, reference_top1),
        "held_out": held_out_json(c.held_out),
        "fits": not c.misses, "misses": sorted(c.misses), "excess": dict(sorted(c.misses.items())),
        "pareto": False, "saved": cost["saved"],
        "storage": {str(op): s.format for op, s in sorted(c.storage.items())},
        "summary": c.recipe.name if c.kind in ("scheme", "distilled") else c.recipe.summary(names),
        "how": c.how or None,
    }


def layer_names(layers: list[WeightLayer]) -> dict[int, str]:
    """Short, stable names: op kind and op index (tensor names of converted models are often opaque)."""
    return {la.op_index: layer_name(la.op, la.op_index) for la in layers}


def _mark_pareto(rows: list[dict[str, Any]]) -> None:
    """Pareto-optimal in flash (down) and accuracy (up; SQNR without labels) among scored candidates."""
    def acc(r: dict[str, Any]) -> float | None:
        return r["accuracy"] if r["accuracy"] is not None else r["sqnr_db"]

    scored = [r for r in rows if acc(r) is not None]
    for r in rows:
        a = acc(r)
        r["pareto"] = a is not None and not any(
            o["flash_bytes"] <= r["flash_bytes"] and acc(o) >= a and (o["flash_bytes"], acc(o)) != (r["flash_bytes"], a)
            for o in scored)


def search_document(result: SearchResult, layers: list[WeightLayer], budget: Budget, model: Mapping[str, Any],
                    target: Mapping[str, Any], verify_basis: str, training: str) -> dict[str, Any]:
    names = layer_names(layers)
    base = result.candidates[0] if result.candidates else None
    ref = None
    if base is not None and base.accuracy is not None:
        ref = base.accuracy.float_top1 if base.accuracy.float_top1 is not None else base.accuracy.top1
    rows = [candidate_json(c, layers, names, ref) for c in result.candidates]
    _mark_pareto(rows)
    has_labels = any(r["accuracy"] is not None for r in rows)
    sens = []
    for la in layers:
        row = result.sensitivity.get(la.op_index, {})
        sens.append({"index": la.op_index, "op": la.op, "name": names[la.op_index], "tensor": la.name,
                     "params": la.params,
                     "macs": la.macs,
                     "sensitivity": {_choice_key(c): {"noise": round(s.noise, 8), "top1": s.top1,
                                                      "sqnr_db": s.sqnr_db}
                                     for c, s in sorted(row.items()) if not c.is_default}})
    closest = None
    if result.chosen is None and result.closest is not None:
        closest = {"id": result.closest.id, "misses": dict(sorted(result.closest.misses.items()))}
    return {
        "format": "edgeforge-search/1",
        "model": dict(model),
        "target": dict(target),
        "budgets": asdict(budget),
        "metric": "top1" if has_labels else "sqnr_db",
        "training": training,
        "evaluation": {"screen": result.screen_basis, "verify": verify_basis, "latency": result.latency_basis,
                       "flash": result.flash_basis},
        "notes": list(result.notes),
        "layers": sens,
        "candidates": rows,
        "baseline": result.candidates[0].id if result.candidates else None,
        "chosen": result.chosen.id if result.chosen is not None else None,
        "binding": result.binding,
        "closest": closest,
        "drop_reference": result.reference,
        "held_out": _held_out_summary(result),
    }


def _held_out_summary(result: SearchResult) -> dict[str, Any] | None:
    """The chosen (or held) candidate against the unchanged int8 model on the report part: a difference
    inside the chosen one's Wilson interval is reported as no difference, never as a gain."""
    pick = result.chosen or result.closest
    base = result.candidates[0] if result.candidates else None
    if pick is None or base is None or pick.held_out is None or base.held_out is None:
        return None
    out: dict[str, Any] = {"samples": pick.held_out.samples, "data": pick.held_out.data, "id": pick.id,
                           "candidate": held_out_json(pick.held_out), "int8": held_out_json(base.held_out),
                           "difference": None, "verdict": None}
    a, b = pick.held_out.top1, base.held_out.top1
    if a is not None and b is not None:
        diff = a - b
        lo, hi = wilson(round(a * pick.held_out.samples), pick.held_out.samples)
        out["difference"] = round(diff, 6)
        if pick is base:
            out["verdict"] = "unchanged int8 model"
        elif lo <= b <= hi:
            out["verdict"] = "no significant difference from int8 (inside the 95 % interval)"
        else:
            out["verdict"] = "better than int8" if diff > 0 else "worse than int8"
    return out
