"""The bundled example `make demo` runs: a CNN trained here on scikit-learn's digits (real data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_digits_example_trains_and_builds_for_mcu_and_pi(cli, tmp_path: Path) -> None:
    ex = tmp_path / "digits"
    subprocess.run([sys.executable, str(ROOT / "examples" / "digits" / "train.py"), "--out", str(ex)], check=True,
                   timeout=600, capture_output=True)
    r = cli("build", ex / "model.keras", "--target", "cortex-m4", "--data", ex / "calib.npz", "--val",
            ex / "val.npz", "--out", tmp_path / "m4", "--json")
    assert r.code == 0, r.err
    acc = json.loads(r.out)["accuracy"]
    assert acc["float_top1"] >= 0.95 and acc["top1_drop"] <= 0.02
    r = cli("build", ex / "model.keras", "--target", "rpi4", "--data", ex / "calib.npz", "--val", ex / "val.npz",
            "--labels", ex / "labels.txt", "--out", tmp_path / "pi")
    assert r.code == 0, r.err
    runner = tmp_path / "pi" / "bundle" / "run_model.py"
    np_input = tmp_path / "one.npy"
    import numpy as np

    np.save(np_input, np.load(ex / "val.npz")["x"][0])
    # the generated Raspberry Pi runner works with the ai_edge_litert this machine has
    proc = subprocess.run([sys.executable, str(runner), str(np_input), "--runs", "3", "--warmup", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["runtime"] == "ai_edge_litert"
    from edgeforge.evaluate import outputs
    from edgeforge.data import Dataset
    from edgeforge.model.tflite import read_tflite

    model = (tmp_path / "pi" / "bundle" / "model.tflite").read_bytes()
    expected = outputs(model, read_tflite(model), "litert", Dataset(np.load(np_input)[None], None, "x"))
    assert report["top1_label"] == str(int(expected.argmax()))
