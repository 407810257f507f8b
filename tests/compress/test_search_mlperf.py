"""The compression search on the MLPerf Tiny models (../shared; skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeforge.data import InputQuant, load_dataset
from tests.conftest import FULL

pytestmark = pytest.mark.mlperf

KWS_QUANT = "0.584703,83"  # the kws01 .bin inputs are int8: real = 0.584703 * (q - 83) (README)


def _kws_args(mlperf: Path) -> list[object]:
    kws01 = mlperf / "samples" / "kws01"
    return [mlperf / "kws" / "saved_model", "--target", "cortex-m4", "--runtime", "native", "--data", kws01,
            "--calib-samples", 100, "--val", kws01, "--data-quant", KWS_QUANT]


def test_kws_fits_60_percent_of_its_int8_weight_bytes_and_keeps_accuracy(cli, mlperf: Path, tmp_path: Path) -> None:
    """Budget: 60% of edgeforge's own int8 build's weight bytes. The search fits, keeps >= 87% top-1 on
    the 500 kws01 inputs, and the emitted C compiled on this machine scores exactly what it reports."""
    plain = cli("build", *_kws_args(mlperf), "--search", "never", "--out", tmp_path / "int8", "--json")
    assert plain.code == 0, plain.err
    budget = int(0.6 * json.loads(plain.out)["model"]["weight_bytes"])

    r = cli("build", *_kws_args(mlperf), "--flash-budget", budget, "--out", tmp_path / "o")
    assert r.code == 0, r.err
    assert "compression search:" in r.out and "report.html" in r.out  # the report is printed
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    chosen = next(c for c in report["candidates"] if c["id"] == report["chosen"])
    assert chosen["flash_bytes"] <= budget and m["estimates"]["flash_bytes"] == chosen["flash_bytes"]
    held = report["held_out"]  # selection on one part of kws01, the reported figure from the other
    assert chosen["verified"]["samples"] + held["samples"] == 500 and held["samples"] >= 200
    assert chosen["accuracy"] >= 0.87 and held["candidate"]["top1"] >= 0.85
    assert m["accuracy"]["top1"] == held["candidate"]["top1"]
    assert chosen["saved"]["int4_bytes"] > 0
    assert m["native"]["weights"]["stored_bytes"] < m["native"]["weights"]["int8_dense_bytes"]

    # the generated C, compiled for this machine, reproduces the reported accuracy on the same inputs: the raw
    # kws01 folder goes to `run` as is (it converts from the data quantization the build recorded)
    ds = load_dataset(mlperf / "samples" / "kws01", (49, 10, 1), np.dtype("float32"), InputQuant(0.584703, 83))
    run = cli("run", tmp_path / "o", "--input", mlperf / "samples" / "kws01", "--output", tmp_path / "y.npy")
    assert run.code == 0, run.err
    assert "converted from their data quantization (0.584703, 83; recorded by the build)" in run.out
    y = np.load(tmp_path / "y.npy").reshape(len(ds), -1)
    right = round(chosen["accuracy"] * chosen["verified"]["samples"]) + round(held["candidate"]["top1"] * held["samples"])
    assert int(np.sum(y.argmax(axis=1) == ds.y)) == right


@pytest.mark.parametrize("runtime", ["tflm", "native"] if FULL else ["tflm"])
def test_ic_resnet8_fits_64k_ram_and_96k_flash(cli, mlperf: Path, tmp_path: Path, runtime: str) -> None:
    """Synthetic calibration (no images are shared): ranked and reported by output SQNR."""
    r = cli("build", mlperf / "ic" / "pretrainedResnet.h5", "--target", "cortex-m4", "--runtime", runtime,
            "--ram-budget", "64K", "--flash-budget", "96K", "--search", "always", "--out", tmp_path / "o", "--json")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["fits"] and m["estimates"]["ram_bytes"] <= 65536 and m["estimates"]["flash_bytes"] <= 98304
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["metric"] == "sqnr_db"
    chosen = next(c for c in report["candidates"] if c["id"] == report["chosen"])
    assert chosen["sqnr_db"] is not None and chosen["sqnr_db"] > 10
    assert m["accuracy"]["sqnr_db"] == pytest.approx(chosen["sqnr_db"])


def test_an_impossible_kws_budget_exits_3_with_the_closest_candidate(cli, mlperf: Path, tmp_path: Path) -> None:
    r = cli("build", mlperf / "kws" / "kws_ref_model_int8.tflite", "--target", "cortex-m4", "--runtime", "native",
            "--data", mlperf / "samples" / "kws01", "--flash-budget", "2K", "--out", tmp_path / "o")
    assert r.code == 3
    assert "nothing fits: closest candidate" in r.err and "model_flash_bytes" in r.err
    assert (tmp_path / "o" / "report.html").is_file()


def test_pi_search_compares_whole_model_schemes(cli, mlperf: Path, tmp_path: Path) -> None:
    """LiteRT targets: float16, dynamic-range int8 and int8 are the candidates; the flash budget decides."""
    r = cli("build", mlperf / "ic" / "pretrainedResnet.h5", "--target", "rpi4", "--flash-budget", "100K", "--search", "always",
            "--out", tmp_path / "o", "--json")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    names = {c["name"]: c for c in report["candidates"]}
    assert {"int8", "float16", "dynamic-int8"} <= set(names)
    assert names["float16"]["misses"] == ["model_flash_bytes"]
    chosen = next(c for c in report["candidates"] if c["id"] == report["chosen"])
    assert chosen["name"] in ("int8", "dynamic-int8") and m["compression"]["scheme"] == chosen["name"]
    assert m["model"]["bytes"] == chosen["flash_bytes"] <= 102400
