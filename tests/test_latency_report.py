"""Latency in verdicts: meaningful precision, LiteRT's measured per-invoke overhead, and a missed budget
naming what would meet it."""

from __future__ import annotations

import json
from pathlib import Path

from edgeforge.cli.render import ms_text
from edgeforge.cost.latency import LatencyModel
from edgeforge.model.tflite import read_tflite
from edgeforge.target import load_registry


def test_ms_text_keeps_sub_millisecond_figures() -> None:
    assert ms_text(0.0103) == "0.0103 ms" and ms_text(0.834) == "0.834 ms"
    assert ms_text(5.935) == "5.93 ms" and ms_text(181.94) == "181.9 ms" and ms_text(0) == "0.0 ms"


def test_litert_estimates_carry_the_measured_per_invoke_overhead(cli, tiny: Path, tmp_path: Path) -> None:
    info = read_tflite(tiny.read_bytes())
    for tid in ("rpi4", "rpi5", "android-arm64"):
        t = load_registry().get(tid)
        table = t.data["perf"]["ops"]["litert"]
        assert table["per_invoke_us"] > 0 and "pi-local" in table["source"]
        assert LatencyModel.for_target(t, "litert").estimate_ms(info) >= table["per_invoke_us"] / 1e3
    r = cli("build", tiny, "--target", "rpi4", "--out", tmp_path / "p")
    assert r.code == 0, r.err
    m = json.loads((tmp_path / "p" / "manifest.json").read_text())
    value = next(v["value"] for v in m["budgets"] if v["budget"] == "latency_ms")
    assert value >= 0.01  # not rounded away, and at least the dispatch overhead
    line = next(ln for ln in r.out.splitlines() if ln.startswith("Latency:"))
    assert f"({ms_text(value)} of" in line and "(0.0 ms of" not in line


def test_a_tflm_build_missing_latency_names_the_native_runtime_that_meets_it(cli, tiny: Path, tmp_path: Path) -> None:
    native = cli("build", tiny, "--target", "esp32", "--runtime", "native", "--out", tmp_path / "n", "--json")
    native_ms = json.loads(native.out)["estimates"]["latency_ms"]
    tflm_ms = json.loads(cli("build", tiny, "--target", "esp32", "--out", tmp_path / "t", "--json").out)[
        "estimates"]["latency_ms"]
    assert native_ms < tflm_ms
    budget = (native_ms + tflm_ms) / 2
    r = cli("build", tiny, "--target", "esp32", "--latency-budget-ms", budget, "--out", tmp_path / "t")
    assert r.code != 0
    hint = next(ln for ln in r.err.splitlines() if ln.startswith("hint:"))
    assert "--runtime native" in hint and ms_text(native_ms) in hint
    alt = json.loads((tmp_path / "t" / "manifest.json").read_text())["latency_alternatives"]
    assert alt[0] == {"target": "esp32", "runtime": "native", "latency_ms": native_ms}
