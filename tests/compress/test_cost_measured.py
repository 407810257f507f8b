"""The bundled cortex-m4 profile's latency estimates against what the emulated board measures: KWS int8 on
qemu-cortex-m4 (-icount shift=0) runs in 15.82 M instructions with the native runtime and 7.701 M with TFLM +
CMSIS-NN (the shared TFLM tree's README verifies 7,701,442), and the profile converts instructions to cycles with
its stated CPI (1.3, targets/cortex-m4.toml). The estimate must be within 25 % of that for both runtimes, and must
rank them the way the device does (TFLM with CMSIS-NN faster than the native runtime)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

MEASURED_INSTRUCTIONS = {"native": 15_824_500, "tflm": 7_701_442}  # qemu-cortex-m4, KWS, tst_000000_Stop_7.bin
CPI = 1.3  # targets/cortex-m4.toml, [perf.ops.native] and [perf.ops.tflm]
CLOCK_HZ = 120e6


@pytest.mark.mlperf
def test_kws_cortex_m4_estimates_within_25_percent_of_measured(mlperf: Path, cli, tmp_path: Path) -> None:
    estimates = {}
    for runtime in ("native", "tflm"):
        out = tmp_path / runtime
        res = cli("build", mlperf / "kws" / "kws_ref_model_int8.tflite", "--target", "cortex-m4", "--runtime",
                  runtime, "--out", out, "-q")
        assert res.code == 0, res.err
        estimates[runtime] = json.loads((out / "manifest.json").read_text())["estimates"]["latency_ms"]
    for runtime, est in estimates.items():
        measured_ms = MEASURED_INSTRUCTIONS[runtime] * CPI / CLOCK_HZ * 1e3
        assert abs(est - measured_ms) / measured_ms <= 0.25, (runtime, est, measured_ms)
    assert estimates["tflm"] < estimates["native"], estimates
