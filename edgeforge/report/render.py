"""The compression-search report: canonical JSON, and one self-contained HTML page with a Pareto plot.

Both are byte-deterministic: the same search document gives the same bytes (fixed float formatting, sorted
keys, no timestamps), so reports can be diffed and cached like every other build output.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from markupsafe import escape

from edgeforge.emit.render import render

TEMPLATE = "report/report.html.j2"

#: Human names of the budgets, in display order; unknown budget keys follow, sorted, under their own name.
BUDGET_LABELS = {
    "model_flash_bytes": "flash",
    "model_ram_bytes": "RAM",
    "latency_ms": "latency",
    "max_accuracy_drop": "accuracy drop",
}
#: The candidate field each budget is checked against (accuracy drop is derived from the baseline).
_BUDGET_FIELD = {"model_flash_bytes": "flash_bytes", "model_ram_bytes": "ram_bytes", "latency_ms": "latency_ms"}

DASH = "\u2014"  # shown for unknown values


# ---------------------------------------------------------------------------------------------- JSON

def canonical(value: Any) -> Any:
    """A JSON-safe copy: non-finite floats become None, tuples lists, keys strings, numpy values plain ones."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, without importing numpy
    if callable(tolist):
        return canonical(tolist())
    return value  # json.dumps rejects it: better than silently stringifying


def render_json(doc: Mapping[str, Any]) -> bytes:
    """Canonical JSON of the search document: sorted keys, 2-space indent, trailing newline, no NaN."""
    text = json.dumps(canonical(doc), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


# ---------------------------------------------------------------------------------------- formatting

def _num(value: Any) -> float | None:
    """A finite number as float, else None (bools are not numbers here)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _bytes(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{int(v):,} B ({v / 1024:.1f} KiB)"


def _ms(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:.2f} ms"


def _pct(fraction: Any) -> str:
    v = _num(fraction)
    return DASH if v is None else f"{v * 100:.2f}%"


def _pts(fraction: Any) -> str:
    v = _num(fraction)
    return DASH if v is None else f"{v * 100:.2f} pts"


def _db(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:.1f} dB"


def _budget_value(key: str, value: Any) -> str:
    """A budget (or an excess over one) in its own unit."""
    if key.endswith("_bytes"):
        return _bytes(value)
    if key.endswith("_ms"):
        return _ms(value)
    if key == "max_accuracy_drop":
        return _pts(value)
    v = _num(value)
    return DASH if v is None else f"{v:g}"


def _budget_label(key: str) -> str:
    return BUDGET_LABELS.get(key, key)


def _ordered(keys: Iterable[Any]) -> list[str]:
    """Budget keys in display order: the known ones as in BUDGET_LABELS, then any others sorted."""
    names = {str(k) for k in keys}
    return [k for k in BUDGET_LABELS if k in names] + sorted(names - BUDGET_LABELS.keys())


def _sort_key(value: Any) -> str:
    """The value a table cell sorts by (the page's small script compares numbers numerically)."""
    v = _num(value)
    return "" if v is None else f"{v:.10g}"


# -------------------------------------------------------------------------------------------- ticks

def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, nearest to ``raw``."""
    exp = math.floor(math.log10(raw))
    frac = raw / 10**exp
    nice = 1.0 if frac < 1.5 else 2.0 if frac < 3.0 else 5.0 if frac < 7.0 else 10.0
    return nice * 10.0**exp


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values whose first and last enclose [lo, hi]; a zero-width range is widened first,
    so there are always at least two distinct ticks (no division by zero when scaling)."""
    lo, hi = min(lo, hi), max(lo, hi)
    if hi - lo <= 1e-9 * max(1.0, abs(lo), abs(hi)):
        pad = max(abs(lo) * 0.05, 1.0)
        lo, hi = lo - pad, hi + pad
    step = _nice_step((hi - lo) / max(count - 1, 1))
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [i * step for i in range(first, max(last, first + 1) + 1)]


def _tick_text(value: float, ticks: Sequence[float]) -> str:
    """A tick label with just the decimals its step needs (and never '-0')."""
    step = ticks[1] - ticks[0]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{round(value, decimals) + 0.0:.{decimals}f}"


def _padded(values: Iterable[float], lower: float | None = None, upper: float | None = None) -> tuple[float, float]:
    """[min, max] of ``values`` widened by 4% so markers do not sit on the frame, but not past the bounds
    the quantity has (no negative flash, no top-1 over 100%) unless the data itself is out there."""
    vals = list(values)
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.04
    lo, hi = lo - pad, hi + pad
    if lower is not None and min(vals) >= lower:
        lo = max(lo, lower)
    if upper is not None and max(vals) <= upper:
        hi = min(hi, upper)
    return lo, hi


@dataclass(frozen=True)
class _Scale:
    """Maps data values onto pixels along one axis; ticks[0] and ticks[-1] are the ends."""

    ticks: list[float]
    px0: float
    px1: float

    def __call__(self, value: float) -> float:
        lo, hi = self.ticks[0], self.ticks[-1]
        return self.px0 + (value - lo) / (hi - lo) * (self.px1 - self.px0)


# -------------------------------------------------------------------------------------------- colour

#: Viridis at five stops: perceptually ordered and legible to colour-blind readers.
_VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
_UNKNOWN = "#9e9e9e"  # latency not known
_HIGHLIGHT = "#d62728"


def _colour(t: float) -> str:
    t = min(1.0, max(0.0, t))
    pos = t * (len(_VIRIDIS) - 1)
    i = min(int(pos), len(_VIRIDIS) - 2)
    f = pos - i
    r, g, b = (round(a + (b_ - a) * f) for a, b_ in zip(_VIRIDIS[i], _VIRIDIS[i + 1], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


# ---------------------------------------------------------------------------------------- the plot

def _metric_value(cand: Mapping[str, Any], metric: str) -> float | None:
    """The y value: top-1 in percent, or output SQNR in dB."""
    if metric == "top1":
        acc = _num(cand.get("accuracy"))
        return None if acc is None else acc * 100
    return _num(cand.get("sqnr_db"))


def _metric_axis_label(metric: str) -> str:
    return "top-1 accuracy (%)" if metric == "top1" else "output SQNR vs float (dB)"


def _by_id(doc: Mapping[str, Any], cid: Any) -> Mapping[str, Any] | None:
    return next((c for c in doc.get("candidates") or [] if c.get("id") == cid), None) if cid else None


def accuracy_floor(doc: Mapping[str, Any]) -> float | None:
    """Baseline top-1 minus the allowed drop, in percent; None unless both are known and the metric is top-1."""
    base = _by_id(doc, doc.get("baseline"))
    drop = _num((doc.get("budgets") or {}).get("max_accuracy_drop"))
    acc = _num(base.get("accuracy")) if base else None
    if doc.get("metric") != "top1" or acc is None or drop is None:
        return None
    return (acc - drop) * 100


def _f(v: float) -> str:
    return f"{v:.1f}"


def _text(x: float, y: float, body: str, anchor: str = "start", size: int = 11, extra: str = "") -> str:
    return (f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}" font-size="{size}"{extra}>'
            f"{escape(body)}</text>")


W, H = 760, 425
LEFT, RIGHT, TOP, BOTTOM = 72.0, 600.0, 28.0, 340.0
BAR_X, BAR_W = 652.0, 14.0


def pareto_svg(doc: Mapping[str, Any]) -> str:
    """The Pareto plot as standalone SVG: flash (KiB) against accuracy, latency as marker colour."""
    metric = str(doc.get("metric") or "top1")
    cands = list(doc.get("candidates") or [])
    chosen = doc.get("chosen")
    flash_budget = _num((doc.get("budgets") or {}).get("model_flash_bytes"))
    floor = accuracy_floor(doc)

    points = []  # (candidate, x KiB, y) for every candidate that can be placed
    for c in cands:
        x, y = _num(c.get("flash_bytes")), _metric_value(c, metric)
        if x is not None and y is not None:
            points.append((c, x / 1024, y))

    # Axis ranges cover the points and the reference lines, so both lines are always on the plot.
    xs = [p[1] for p in points] + ([flash_budget / 1024] if flash_budget is not None else [])
    ys = [p[2] for p in points] + ([floor] if floor is not None else [])
    xs = xs or [v / 1024 for c in cands if (v := _num(c.get("flash_bytes"))) is not None]
    sx = _Scale(nice_ticks(*_padded(xs or [0.0, 1.0], lower=0.0)), LEFT, RIGHT)
    top1 = metric == "top1"
    sy = _Scale(nice_ticks(*_padded(ys or ([0.0, 100.0] if top1 else [0.0, 1.0]),
                                    0.0 if top1 else None, 100.0 if top1 else None)), BOTTOM, TOP)

    lats = [v for c, _, _ in points if (v := _num(c.get("latency_ms"))) is not None]
    lat_ticks = nice_ticks(min(lats), max(lats), 5) if lats else []

    def colour(c: Mapping[str, Any]) -> str:
        lat = _num(c.get("latency_ms"))
        if lat is None or not lat_ticks:
            return _UNKNOWN
        return _colour((lat - lat_ticks[0]) / (lat_ticks[-1] - lat_ticks[0]))

    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            'font-family="Helvetica, Arial, sans-serif" fill="#222">'),
           f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>']

    # Grid and tick labels.
    for t in sx.ticks:
        px = sx(t)
        out.append(f'<line x1="{_f(px)}" y1="{_f(TOP)}" x2="{_f(px)}" y2="{_f(BOTTOM)}" stroke="#e6e6e6"/>')
        out.append(_text(px, BOTTOM + 16, _tick_text(t, sx.ticks), "middle"))
    for t in sy.ticks:
        py = sy(t)
        out.append(f'<line x1="{_f(LEFT)}" y1="{_f(py)}" x2="{_f(RIGHT)}" y2="{_f(py)}" stroke="#e6e6e6"/>')
        out.append(_text(LEFT - 6, py + 4, _tick_text(t, sy.ticks), "end"))
    out.append(f'<rect x="{_f(LEFT)}" y="{_f(TOP)}" width="{_f(RIGHT - LEFT)}" height="{_f(BOTTOM - TOP)}" '
               'fill="none" stroke="#444"/>')
    out.append(_text((LEFT + RIGHT) / 2, BOTTOM + 38, "model flash (KiB)", "middle", 12))
    mid_y = (TOP + BOTTOM) / 2
    out.append(_text(18, mid_y, _metric_axis_label(metric), "middle", 12,
                     f' transform="rotate(-90 18 {_f(mid_y)})"'))

    # Reference lines: the flash budget (vertical) and the accuracy floor (horizontal).
    dashed = 'stroke="#555" stroke-width="1.2" stroke-dasharray="6 4"'
    if flash_budget is not None:
        bx = sx(flash_budget / 1024)
        out.append(f'<line class="budget" x1="{_f(bx)}" y1="{_f(TOP)}" x2="{_f(bx)}" y2="{_f(BOTTOM)}" {dashed}/>')
        near_right = bx > RIGHT - 140
        out.append(_text(bx - 4 if near_right else bx + 4, TOP + 12,
                         f"flash budget {flash_budget / 1024:.1f} KiB", "end" if near_right else "start", 10))
    if floor is not None:
        fy = sy(floor)
        out.append(f'<line class="floor" x1="{_f(LEFT)}" y1="{_f(fy)}" x2="{_f(RIGHT)}" y2="{_f(fy)}" {dashed}/>')
        out.append(_text(RIGHT - 4, fy - 4, f"accuracy floor {floor:.2f}%", "end", 10))

    # The Pareto front as a staircase through the flagged points, in flash order: from each point, right
    # to the next point's flash, then to its accuracy (what is attainable at that flash).
    front = sorted((p for p in points if p[0].get("pareto")), key=lambda p: (p[1], p[2], str(p[0].get("id"))))
    if len(front) > 1:
        path = [f"{_f(sx(front[0][1]))},{_f(sy(front[0][2]))}"]
        for (_, _, y0), (_, x1, y1) in pairwise(front):
            path += [f"{_f(sx(x1))},{_f(sy(y0))}", f"{_f(sx(x1))},{_f(sy(y1))}"]
        out.append(f'<polyline class="front" points="{" ".join(path)}" fill="none" stroke="#333" '
                   'stroke-width="1.5"/>')

    # Markers: hollow when a budget is missed; the chosen one drawn last (on top) and ringed.
    for c, x, y in sorted(points, key=lambda p: p[0].get("id") == chosen):
        px, py, col = sx(x), sy(y), colour(c)
        cls = "marker" + (" chosen" if c.get("id") == chosen else "") + ("" if c.get("fits") else " hollow")
        style = (f'fill="{col}" stroke="#222" stroke-width="0.8"' if c.get("fits")
                 else f'fill="#ffffff" stroke="{col}" stroke-width="2"')
        out.append(f'<circle class="{cls}" data-id="{escape(c.get("id"))}" cx="{_f(px)}" cy="{_f(py)}" r="5" '
                   f"{style}/>")
        if c.get("id") == chosen:
            out.append(f'<circle class="chosen-ring" cx="{_f(px)}" cy="{_f(py)}" r="10" fill="none" '
                       f'stroke="{_HIGHLIGHT}" stroke-width="2"/>')
            right = px > RIGHT - 110  # keep the label inside the frame, off the colour bar
            out.append(_text(px - 13 if right else px + 13, py - 10, f"chosen {c.get('id')}",
                             "end" if right else "start", 11, f' fill="{_HIGHLIGHT}" font-weight="bold"'))
        elif c.get("pareto"):
            out.append(_text(px + 7, py - 7, str(c.get("id")), size=10))
    if not points:
        out.append(_text((LEFT + RIGHT) / 2, mid_y, f"no candidate has a {'top-1' if metric == 'top1' else 'SQNR'}"
                         " figure to plot", "middle", 13))

    out += _colour_bar(lat_ticks, any(_num(c.get("latency_ms")) is None for c, _, _ in points))
    out += _legend()
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _colour_bar(ticks: Sequence[float], any_unknown: bool) -> list[str]:
    """The latency colour bar: the gradient spans exactly the tick range that the colours are mapped to."""
    out = [_text(BAR_X + BAR_W / 2, TOP - 10, "latency (ms)", "middle", 11)]
    if ticks:
        stops = "".join(f'<stop offset="{i / (len(_VIRIDIS) - 1):.2f}" stop-color="{_colour(i / (len(_VIRIDIS) - 1))}"/>'
                        for i in range(len(_VIRIDIS)))
        out.append(f'<defs><linearGradient id="latency" x1="0" y1="1" x2="0" y2="0">{stops}</linearGradient></defs>')
        out.append(f'<rect x="{_f(BAR_X)}" y="{_f(TOP)}" width="{_f(BAR_W)}" height="{_f(BOTTOM - TOP)}" '
                   'fill="url(#latency)" stroke="#444"/>')
        bar = _Scale(list(ticks), BOTTOM, TOP)
        for t in ticks:
            py = bar(t)
            out.append(f'<line x1="{_f(BAR_X + BAR_W)}" y1="{_f(py)}" x2="{_f(BAR_X + BAR_W + 4)}" y2="{_f(py)}" '
                       'stroke="#444"/>')
            out.append(_text(BAR_X + BAR_W + 7, py + 4, _tick_text(t, ticks), size=10))
    if any_unknown or not ticks:
        y = BOTTOM + 16 if ticks else (TOP + BOTTOM) / 2
        out.append(f'<circle cx="{_f(BAR_X + 4)}" cy="{_f(y - 4)}" r="5" fill="{_UNKNOWN}" stroke="#222" '
                   'stroke-width="0.8"/>')
        out.append(_text(BAR_X + 13, y, "unknown", size=10))
    return out


def _legend() -> list[str]:
    """One row under the x axis explaining the marks."""
    y = H - 14.0
    out = []
    x = LEFT
    out.append(f'<circle cx="{_f(x + 5)}" cy="{_f(y - 4)}" r="5" fill="{_colour(0.5)}" stroke="#222" '
               'stroke-width="0.8"/>')
    out.append(_text(x + 14, y, "fits every budget", size=11))
    x += 120
    out.append(f'<circle cx="{_f(x + 5)}" cy="{_f(y - 4)}" r="5" fill="#ffffff" stroke="{_colour(0.5)}" '
               'stroke-width="2"/>')
    out.append(_text(x + 14, y, "misses a budget", size=11))
    x += 115
    out.append(f'<circle cx="{_f(x + 8)}" cy="{_f(y - 4)}" r="8" fill="none" stroke="{_HIGHLIGHT}" '
               'stroke-width="2"/>')
    out.append(_text(x + 20, y, "chosen", size=11))
    x += 75
    out.append(f'<polyline points="{_f(x)},{_f(y)} {_f(x + 10)},{_f(y)} {_f(x + 10)},{_f(y - 8)} '
               f'{_f(x + 20)},{_f(y - 8)}" fill="none" stroke="#333" stroke-width="1.5"/>')
    out.append(_text(x + 26, y, "Pareto front", size=11))
    x += 105
    out.append(f'<line x1="{_f(x)}" y1="{_f(y - 4)}" x2="{_f(x + 24)}" y2="{_f(y - 4)}" stroke="#555" '
               'stroke-width="1.2" stroke-dasharray="6 4"/>')
    out.append(_text(x + 30, y, "flash budget / accuracy floor", size=11))
    return out


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


# ---------------------------------------------------------------------------------------------- HTML

def _recipe(cand: Mapping[str, Any], names: Mapping[int, str]) -> str:
    """Per-layer recipe, one 'name: int4, 50% pruned (structured)' item per weight layer, by layer index; for a
    distilled student, how it was made."""
    if cand.get("kind") == "distilled":
        return str(cand.get("how") or "")
    parts = []
    layers = cand.get("layers") or {}
    for key in sorted(layers, key=lambda k: (int(k) if str(k).isdigit() else math.inf, str(k))):
        spec = layers[key] or {}
        idx = int(key) if str(key).isdigit() else -1
        text = f"{names.get(idx, f'layer {key}')}: int{spec.get('bits') or '?'}"
        sparsity = _num(spec.get("sparsity"))
        if sparsity:
            text += f", {sparsity * 100:.0f}% pruned" + (" (structured)" if spec.get("structured") else "")
        parts.append(text)
    return "; ".join(parts)


def _budgets_text(fits: Any, misses: Any) -> str:
    """'fits', 'misses flash, RAM', or 'does not fit' when the search gave no reason (e.g. not evaluated)."""
    if misses:
        return "misses " + ", ".join(_budget_label(k) for k in _ordered(misses))
    return "fits" if fits else "does not fit" if fits is False else DASH


def _cell(text: str, sort: str | None = None, cls: str = "", detail: str = "") -> dict[str, str]:
    return {"text": text, "sort": text if sort is None else sort, "cls": cls, "detail": detail}


def _num_cell(value: Any, fmt: str) -> dict[str, str]:
    """A right-aligned number (``fmt`` a format spec; ',d' groups thousands), sorting by its exact value."""
    v = _num(value)
    return _cell(DASH if v is None else format(int(v) if fmt.endswith("d") else v, fmt), _sort_key(v), "num")


def _rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = {int(layer["index"]): str(layer.get("name") or layer.get("op") or f"layer {layer['index']}")
             for layer in doc.get("layers") or [] if _num(layer.get("index")) is not None}
    rows = []
    for c in doc.get("candidates") or []:
        saved = c.get("saved") or {}
        fits = c.get("fits")
        tags = [t for t, on in (("chosen", c.get("id") == doc.get("chosen")),
                                ("baseline", c.get("id") == doc.get("baseline"))) if on]
        acc = _num(c.get("accuracy"))
        rows.append({
            "classes": " ".join(tags),
            "tags": tags,
            "cells": [
                _cell(str(c.get("id")), cls="id"),
                _cell(str(c.get("name") or "")),
                _cell(str(c.get("summary") or c.get("kind") or ""), detail=_recipe(c, names)),
                _num_cell(c.get("flash_bytes"), ",d"),
                _num_cell(c.get("ram_bytes"), ",d"),
                _num_cell(c.get("latency_ms"), ".2f"),
                _num_cell(None if acc is None else acc * 100, ".2f"),
                _num_cell(c.get("sqnr_db"), ".1f"),
                _cell(str(c.get("evaluated") or "not evaluated")),
                _cell(_budgets_text(fits, c.get("misses")), cls="ok" if fits else "" if fits is None else "miss"),
                _cell("yes" if c.get("pareto") else "", cls="pareto"),
                _num_cell(saved.get("int4_bytes"), ",d"),
                _num_cell(saved.get("sparsity_bytes"), ",d"),
            ],
        })
    return rows


COLUMNS = ["id", "name", "recipe", "flash (B)", "RAM (B)", "latency (ms)", "top-1 (%)", "SQNR (dB)",
           "evaluated", "budgets", "Pareto", "int4 saved (B)", "sparsity saved (B)"]


def _budget_use(doc: Mapping[str, Any], key: str, cand: Mapping[str, Any]) -> str:
    """'13,420 B (13.1 KiB) of 13,600 B (13.3 KiB), 98.7%': how close the chosen point is to the binding budget."""
    limit = (doc.get("budgets") or {}).get(key)
    if key == "max_accuracy_drop":
        base = _by_id(doc, doc.get("baseline"))
        b, a = (_num(base.get("accuracy")) if base else None), _num(cand.get("accuracy"))
        used: Any = None if a is None or b is None else b - a
    else:
        used = cand.get(_BUDGET_FIELD.get(key, key))
    u, lim = _num(used), _num(limit)
    share = f", {u / lim * 100:.1f}%" if u is not None and lim else ""
    return f"{_budget_value(key, used)} of {_budget_value(key, limit)}{share}"


def _verdict(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What the header says about the outcome: the chosen point, or the closest miss."""
    chosen = _by_id(doc, doc.get("chosen"))
    if chosen is not None:
        binding = doc.get("binding")
        return {"fits": True, "id": str(chosen.get("id")), "name": str(chosen.get("name") or ""),
                "summary": str(chosen.get("summary") or ""),
                "binding": _budget_label(binding) if binding else None,
                "binding_use": _budget_use(doc, binding, chosen) if binding else "",
                "figures": _figures(doc, chosen)}
    closest = doc.get("closest") or {}
    cand = _by_id(doc, closest.get("id"))
    misses = closest.get("misses") or {}
    excess = misses if isinstance(misses, Mapping) else {}  # a bare list names budgets without amounts
    items = [(k, excess.get(k)) for k in _ordered(misses)]
    return {"fits": False, "id": str(closest.get("id")) if closest.get("id") else None,
            "name": str(cand.get("name") or "") if cand else "",
            "misses": [{"label": _budget_label(k), "key": k,
                        "by": _budget_value(k, v) if _num(v) is not None else ""} for k, v in items],
            "figures": _figures(doc, cand) if cand else ""}


def _figures(doc: Mapping[str, Any], c: Mapping[str, Any]) -> str:
    acc = f"top-1 {_pct(c.get('accuracy'))}" if doc.get("metric") == "top1" else f"SQNR {_db(c.get('sqnr_db'))}"
    return (f"flash {_bytes(c.get('flash_bytes'))}, RAM {_bytes(c.get('ram_bytes'))}, "
            f"latency {_ms(c.get('latency_ms'))}, {acc}")


def _held_out_notes(doc: Mapping[str, Any]) -> list[str]:
    """The reported figure: top-1 on the held-out report part with its 95 % interval, next to int8's."""
    h = doc.get("held_out")
    if not isinstance(h, Mapping) or not isinstance(h.get("candidate"), Mapping):
        return []

    def fig(part: Any) -> str:
        if not isinstance(part, Mapping) or _num(part.get("top1")) is None:
            return DASH
        ci = part.get("top1_ci95") or [None, None]
        return f"{_pct(part.get('top1'))} (95 % interval {_pct(ci[0])}–{_pct(ci[1])})"

    return [f"held out: {h.get('id')} scores top-1 {fig(h.get('candidate'))} on {h.get('samples')} inputs the search "
            f"never chose on; the unchanged int8 model {fig(h.get('int8'))}: {h.get('verdict') or DASH}"]


def context(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template shows, already formatted (the template only escapes and lays out)."""
    doc = canonical(doc)  # NaN/inf become None, so every formatter sees one kind of "unknown"
    model, target = doc.get("model") or {}, doc.get("target") or {}
    budgets = doc.get("budgets") or {}
    keys = _ordered(budgets)
    metric = str(doc.get("metric") or "top1")
    evaluation = doc.get("evaluation") or {}
    cands = doc.get("candidates") or []
    plotted = sum(1 for c in cands if _num(c.get("flash_bytes")) is not None
                  and _metric_value(c, metric) is not None)
    svg = pareto_svg(doc)
    model_name = str(model.get("name") or "model")
    return {
        "format": str(doc.get("format") or ""),
        "model": model_name,
        "sha256": str(model.get("sha256") or ""),
        "target": " \u2014 ".join(str(v) for v in (target.get("id"), target.get("name")) if v),
        "runtime": str(target.get("runtime") or DASH),
        "budgets": [{"label": _budget_label(k), "key": k,
                     "value": _budget_value(k, budgets[k]) if budgets[k] is not None else "none"} for k in keys],
        "metric": "top-1 accuracy" if metric == "top1" else "output SQNR vs the float model (no labels)",
        "training": str(doc.get("training") or ""),
        "evaluation": [{"stage": str(k), "how": str(v)} for k, v in sorted(evaluation.items())],
        "verdict": _verdict(doc),
        "notes": _held_out_notes(doc) + [str(n) for n in doc.get("notes") or []],
        "plot": {
            "src": svg_data_uri(svg),
            "alt": f"Pareto plot for {model_name}: model flash (KiB) against {_metric_axis_label(metric)}, "
                   "colour is latency (ms)",
            "caption": f"{plotted} of {len(cands)} candidates plotted"
                       + ("" if plotted == len(cands) else f"; {len(cands) - plotted} without a "
                          f"{'top-1' if metric == 'top1' else 'SQNR'} figure are in the table only"),
        },
        "columns": COLUMNS,
        "rows": _rows(doc),
    }


def render_html(doc: Mapping[str, Any], template_dirs: Iterable[Path] = ()) -> bytes:
    """One self-contained HTML page (inline style, the plot as an embedded SVG image, no URLs)."""
    return render(TEMPLATE, context(doc), template_dirs)
