"""Where the CLI writes and what it reports: `run` writes into the build, `flash --port` names a missing
PlatformIO project, native builds report one nested set of memory figures, and the test suite does not
read the checkout's own .edgeforge/targets/."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from conftest import ROOT, assert_clean_error
from edgeforge.target import load_registry


def test_run_writes_outputs_into_the_build_folder_by_default(cli, tiny: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "b"
    assert cli("build", tiny, "--target", "cortex-m4", "--out", out).code == 0
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8, 1), np.int8))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    r = cli("run", out, "--input", tmp_path / "x.npy", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["output"] == str(out / "outputs.npy")
    assert np.load(out / "outputs.npy").shape[0] == 2
    assert list(work.iterdir()) == []  # nothing lands in the working directory


def test_flash_port_on_a_native_build_uploads_its_platformio_project(cli, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "n"
    assert cli("build", tiny, "--target", "esp32", "--runtime", "native", "--emitter", "platformio",
               "--out", out).code == 0
    r = cli("flash", out, "--port", "/dev/ttyUSB0", "--dry-run", "--json")
    assert r.code == 0, r.err
    project = (out / "platformio").resolve()
    assert json.loads(r.out)["commands"][0][:4] == ["pio", "run", "-d", str(project)]
    assert (project / "platformio.ini").is_file() and (project / "src" / "main.cpp").is_file()
    shutil.rmtree(project)  # e.g. a build from an older edgeforge: say what is missing, not "check the port"
    r = cli("flash", out, "--port", "/dev/ttyUSB0")
    assert_clean_error(r, 2)
    assert "no PlatformIO project (platformio/platformio.ini)" in r.err and "check the port" not in r.err


def test_native_build_reports_one_nested_set_of_memory_figures(cli, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "n"
    r = cli("build", tiny, "--target", "cortex-m4", "--runtime", "native", "--out", out)
    assert r.code == 0, r.err
    m = json.loads((out / "manifest.json").read_text())
    assert "kTensorArenaSize" not in r.out  # a TFLM figure: the native runtime has no such arena
    n, flash = m["native"], next(v["value"] for v in m["budgets"] if v["budget"] == "model_flash_bytes")
    line = next(ln for ln in r.out.splitlines() if ln.startswith("flash:"))
    assert f"model weights {flash} B" in line and f"all model constants {n['const_bytes']} B" in line
    if n["arm"] and not n["arm"]["link_error"]:
        assert f"linked image {n['arm']['flash_bytes']} B" in line
        assert flash <= n["const_bytes"] <= n["arm"]["flash_bytes"]
    assert "kTensorArenaSize" in cli("build", tiny, "--target", "cortex-m4", "--out", tmp_path / "t").out


def test_the_checkouts_own_project_profiles_are_ignored_by_the_tests(tmp_path: Path, monkeypatch) -> None:
    assert os.environ["EDGEFORGE_IGNORE_PROJECT_DIR"] == str(ROOT)  # set by conftest for every test
    folder = tmp_path / ".edgeforge" / "targets"
    folder.mkdir(parents=True)
    (folder / "cortex-m4.toml").write_text('id = "cortex-m4"\nextends = "cortex-m4"\n[budget]\nlatency_ms = 7.0\n')
    assert load_registry(cwd=tmp_path).get("cortex-m4").budget.latency_ms == 7.0  # a project dir is read...
    monkeypatch.setenv("EDGEFORGE_IGNORE_PROJECT_DIR", str(tmp_path))
    assert load_registry(cwd=tmp_path).get("cortex-m4").budget.latency_ms == 1000.0  # ...unless it is ignored
