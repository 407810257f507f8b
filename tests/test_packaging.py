"""The wheel carries targets/ and templates/: build it, install it in a fresh virtualenv outside the
checkout, and run the console script there."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from conftest import ROOT


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
                   check=True, timeout=600)
    wheel = next(dist.glob("edgeforge-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "edgeforge/_data/targets/esp32.toml" in names
    assert "edgeforge/_data/targets/_runtimes/tflm.toml" in names
    assert "edgeforge/_data/templates/tflm/model_data.cc.j2" in names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # `edgeforge targets` needs only the light dependencies (heavy ones load lazily), so the test
    # installs just those beside the wheel instead of TensorFlow.
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=600)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "jsonschema", "jinja2", "numpy"], check=True, timeout=600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = subprocess.run([str(env_dir / "bin" / "edgeforge"), "targets", "--json"], cwd=work, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["targets"]) >= 9
    assert all(str(env_dir) in t["source"] for t in doc["targets"])  # from the installed wheel, not the checkout
