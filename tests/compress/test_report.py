"""The compression-search report: deterministic JSON and a self-contained HTML page with an embedded SVG plot."""

from __future__ import annotations

import base64
import copy
import json
import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from edgeforge.report.render import nice_ticks, pareto_svg, render_html, render_json

SVG_NS = "http://www.w3.org/2000/svg"
IMG = re.compile(r'<img alt="[^"]*" src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)">')


def _cand(cid: str, name: str, flash: int, acc: float | None, lat: float | None, *, fits: bool,
          misses: list[str], pareto: bool, bits: tuple[int, int, int] = (8, 8, 8), sparsity: float = 0.0,
          evaluated: str = "verified") -> dict[str, Any]:
    return {
        "id": cid, "name": name, "kind": "mixed",
        "layers": {str(i): {"bits": b, "sparsity": sparsity if i == 1 else 0.0, "structured": i == 1}
                   for i, b in enumerate(bits)},
        "flash_bytes": flash, "ram_bytes": 30000, "latency_ms": lat,
        "accuracy": acc, "sqnr_db": None if acc is None else 20.0 + acc * 5,
        "evaluated": evaluated, "fits": fits, "misses": misses, "pareto": pareto,
        "saved": {"int4_bytes": 22600 - flash if 4 in bits else 0, "sparsity_bytes": int(sparsity * 4000)},
        "summary": "all int8" if bits == (8, 8, 8) else "int4 " + "/".join(str(b) for b in bits),
    }


def make_doc() -> dict[str, Any]:
    """A realistic search document: the int8 baseline misses flash, int4 mixes fit, one is unevaluated."""
    return {
        "format": "edgeforge-search/1",
        "model": {"name": "kws_ref_model", "sha256": "ab" * 32},
        "target": {"id": "cortex-m4", "name": "ST NUCLEO-L4R5ZI", "runtime": "native"},
        "budgets": {"model_flash_bytes": 13600, "model_ram_bytes": 262144, "latency_ms": 1000.0,
                    "max_accuracy_drop": 0.02},
        "metric": "top1",
        "training": "post-training only (no --train data given)",
        "evaluation": {"screen": "LiteRT on 200 samples",
                       "verify": "TFLite Micro (bit-exact with the native runtime) on 500 samples"},
        "notes": ["post-training only", "TFLM does not exploit sparsity"],
        "layers": [{"index": 0, "op": "CONV_2D", "name": "conv1", "params": 640, "macs": 320000},
                   {"index": 1, "op": "DEPTHWISE_CONV_2D", "name": "dw1", "params": 640, "macs": 160000},
                   {"index": 2, "op": "FULLY_CONNECTED", "name": "fc", "params": 12000, "macs": 12000}],
        "candidates": [
            _cand("c00", "int8", 22600, 0.898, 181.9, fits=False, misses=["model_flash_bytes"], pareto=True),
            _cand("c01", "fc int4", 16600, 0.893, 175.0, fits=False, misses=["model_flash_bytes"], pareto=True,
                  bits=(8, 8, 4)),
            _cand("c02", "all int4", 12100, 0.861, 170.2, fits=False, misses=["max_accuracy_drop"], pareto=True,
                  bits=(4, 4, 4)),
            _cand("c03", "fc int4 + dw prune", 13420, 0.885, 160.4, fits=True, misses=[], pareto=True,
                  bits=(8, 8, 4), sparsity=0.5),
            _cand("c04", "conv int4", 21000, 0.880, 185.0, fits=False, misses=["model_flash_bytes"], pareto=False,
                  bits=(4, 8, 8)),
            _cand("c05", "not evaluated", 12000, None, None, fits=False, misses=[], pareto=False,
                  bits=(4, 4, 4), evaluated="estimated"),
        ],
        "baseline": "c00",
        "chosen": "c03",
        "binding": "model_flash_bytes",
        "closest": None,
    }


def _svg(html: bytes) -> ET.Element:
    m = IMG.search(html.decode("utf-8"))
    assert m, "no embedded SVG image"
    return ET.fromstring(base64.b64decode(m.group(1)))


def _markers(svg: ET.Element) -> list[ET.Element]:
    return [c for c in svg.iter(f"{{{SVG_NS}}}circle") if "marker" in (c.get("class") or "").split()]


def _header(html: bytes) -> str:
    text = html.decode("utf-8")
    return text[text.index("<header"):text.index("</header>")]


def test_deterministic() -> None:
    doc = make_doc()
    assert render_html(doc) == render_html(copy.deepcopy(doc))
    assert render_json(doc) == render_json(copy.deepcopy(doc))
    # Key order of the input does not matter for the JSON.
    shuffled = dict(reversed(list(doc.items())))
    assert render_json(shuffled) == render_json(doc)


def test_json_canonical_and_finite() -> None:
    doc = make_doc()
    doc["candidates"][1]["sqnr_db"] = math.nan
    doc["candidates"][2]["latency_ms"] = math.inf
    data = render_json(doc)
    assert data.endswith(b"}\n")
    assert b"NaN" not in data and b"Infinity" not in data
    parsed = json.loads(data)  # the strict reading: allow no NaN constants at all
    json.loads(data, parse_constant=lambda c: pytest.fail(f"non-finite constant {c}"))
    assert parsed["candidates"][1]["sqnr_db"] is None and parsed["candidates"][2]["latency_ms"] is None
    assert data.decode() == json.dumps(parsed, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_table_lists_every_candidate() -> None:
    html = render_html(make_doc()).decode()
    table = html[html.index('<table'):html.index("</table>")]
    for c in make_doc()["candidates"]:
        assert f'data-sort="{c["id"]}"' in table
    assert table.count("<tr") == 1 + len(make_doc()["candidates"])
    assert "conv1: int8; dw1: int8, 50% pruned (structured); fc: int4" in table


def test_svg_markers_and_chosen() -> None:
    doc = make_doc()
    svg = _svg(render_html(doc))
    assert svg.tag == f"{{{SVG_NS}}}svg"
    markers = _markers(svg)
    with_acc = [c["id"] for c in doc["candidates"] if c["accuracy"] is not None]
    assert sorted(m.get("data-id") for m in markers) == sorted(with_acc)
    chosen = [m for m in markers if "chosen" in m.get("class", "").split()]
    assert [m.get("data-id") for m in chosen] == ["c03"]
    assert len([c for c in svg.iter(f"{{{SVG_NS}}}circle") if c.get("class") == "chosen-ring"]) == 1
    hollow = {m.get("data-id") for m in markers if "hollow" in m.get("class", "").split()}
    assert hollow == {"c00", "c01", "c02", "c04"}
    # Flash budget and accuracy floor (89.8% - 2 pts) are drawn; the front is a staircase.
    assert svg.find(f"{{{SVG_NS}}}line[@class='budget']") is not None
    assert svg.find(f"{{{SVG_NS}}}line[@class='floor']") is not None
    front = svg.find(f"{{{SVG_NS}}}polyline[@class='front']")
    assert front is not None and len(front.get("points", "").split()) == 1 + 2 * 3
    assert "accuracy floor 87.80%" in ET.tostring(svg, encoding="unicode")


def test_self_contained() -> None:
    html = render_html(make_doc()).decode()
    svg = base64.b64decode(IMG.search(html).group(1)).decode()  # type: ignore[union-attr]
    for text in (html, svg.replace(f'xmlns="{SVG_NS}"', "")):
        assert "http://" not in text and "https://" not in text
        assert not re.search(r'<(link|script)[^>]+src=|@import|url\((?!#)', text)


def test_escapes_user_strings() -> None:
    doc = make_doc()
    doc["model"]["name"] = "<script>alert(1)</script>"
    doc["notes"].append('a "quoted" & <b>bold</b> note')
    doc["candidates"][0]["name"] = "<img src=x>"
    doc["candidates"][0]["id"] = "c<0>"
    doc["baseline"] = "c<0>"
    html = render_html(doc)
    text = html.decode()
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<img src=x>" not in text and "<b>bold</b>" not in text
    assert len(_markers(_svg(html))) == 5  # the SVG still parses with the odd id in it


def test_nothing_fits_header() -> None:
    doc = make_doc()
    doc["budgets"]["model_flash_bytes"] = 12000
    for c in doc["candidates"]:
        c["fits"] = False
    doc["chosen"] = None
    doc["binding"] = None
    doc["closest"] = {"id": "c03", "misses": {"model_flash_bytes": 1420}}
    html = render_html(doc)
    header = _header(html)
    assert "Nothing fits" in header and "c03" in header
    assert "the <strong>flash</strong> budget by 1,420 B (1.4 KiB)" in header
    assert not [m for m in _markers(_svg(html)) if "chosen" in m.get("class", "")]


def test_chosen_header_names_binding_budget() -> None:
    header = _header(render_html(make_doc()))
    assert "Chosen: <strong>c03</strong>" in header
    assert "Binding budget: <strong>flash</strong>: 13,420 B (13.1 KiB) of 13,600 B (13.3 KiB), 98.7%" in header


@pytest.mark.parametrize("variant", ["single", "all_equal", "none_evaluated", "no_latency", "sqnr", "empty"])
def test_degenerate_docs(variant: str) -> None:
    doc = make_doc()
    cands = doc["candidates"]
    if variant == "single":
        doc["candidates"] = cands[:1]
        doc["chosen"], doc["binding"] = None, None
        doc["budgets"] = {k: None for k in doc["budgets"]}
    elif variant == "all_equal":
        for c in cands:
            c.update(flash_bytes=10000, accuracy=0.9, latency_ms=5.0)
        doc["budgets"]["model_flash_bytes"] = 10000
        doc["budgets"]["max_accuracy_drop"] = 0.0
    elif variant == "none_evaluated":
        for c in cands:
            c.update(accuracy=None, sqnr_db=None)
    elif variant == "no_latency":
        for c in cands:
            c["latency_ms"] = None
    elif variant == "sqnr":
        doc["metric"] = "sqnr_db"
        for c in cands:
            c["accuracy"] = None
    elif variant == "empty":
        doc.update(candidates=[], chosen=None, binding=None, baseline=None, closest=None, layers=[])
    html = render_html(doc)
    assert html == render_html(copy.deepcopy(doc))
    expected = sum(1 for c in doc["candidates"]
                   if (c["accuracy"] if doc["metric"] == "top1" else c["sqnr_db"]) is not None)
    assert len(_markers(_svg(html))) == expected
    svg = ET.tostring(_svg(html), encoding="unicode")
    for text in (html.decode(), svg):  # no float formatting leaked 'nan' or 'inf' (the page script's isNaN aside)
        assert not re.search(r"(?i)(?<![a-z])(nan|inf)(?![a-z])", text)
    assert b"NaN" not in render_json(doc)


def test_nice_ticks() -> None:
    assert nice_ticks(0.0, 10.0) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    ticks = nice_ticks(5.0, 5.0)
    assert len(ticks) >= 2 and ticks[0] < 5.0 < ticks[-1]
    ticks = nice_ticks(11.7, 22.1)
    assert ticks[0] <= 11.7 and ticks[-1] >= 22.1 and 3 <= len(ticks) <= 8


def test_svg_parses_standalone() -> None:
    root = ET.fromstring(pareto_svg(make_doc()))
    assert root.get("viewBox") == "0 0 760 425"
