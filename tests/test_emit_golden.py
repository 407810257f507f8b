"""Emitted files: golden copies per target, valid C, PlatformIO's own acceptance, determinism.

Refresh the goldens after an intended template change with `make golden`, then review the diff.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GOLDEN
from edgeforge.target import load_registry

UPDATE = os.environ.get("EDGEFORGE_UPDATE_GOLDEN") == "1"
TARGETS = [t.id for t in load_registry().all()]
#: model_data.cc is the model's bytes as hex: golden for one target, checked by parsing elsewhere.
BULKY = re.compile(r"(^|/)model_data\.cc$|(^|/)model\.tflite$")


def _build(cli, model: Path, target: str, out: Path, *extra: object) -> dict:
    r = cli("build", model, "--target", target, "--out", out, *extra)
    assert r.code in (0, 3), r.err
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize("target", TARGETS)
def test_emitted_files_match_golden(cli, tiny: Path, tmp_path: Path, target: str) -> None:
    out = tmp_path / target
    _build(cli, tiny, target, out)
    produced = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    keep = {k: v for k, v in produced.items() if not BULKY.search(k) or (target == "esp32" and k == "tflm/model_data.cc")}
    golden = GOLDEN / target
    if UPDATE:
        shutil.rmtree(golden, ignore_errors=True)
        for rel, data in keep.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_bytes(data)
    expected = {p.relative_to(golden).as_posix(): p.read_bytes() for p in sorted(golden.rglob("*")) if p.is_file()}
    assert sorted(keep) == sorted(expected), "emitted file set changed: run `make golden` and review"
    for rel in expected:
        assert keep[rel] == expected[rel], f"{target}/{rel} differs from tests/golden (run `make golden`)"


def test_builds_are_byte_for_byte_deterministic(cli, tiny: Path, tmp_path: Path) -> None:
    for target in ("esp32", "android-arm64"):
        a, b = tmp_path / f"{target}-a", tmp_path / f"{target}-b"
        _build(cli, tiny, target, a)
        _build(cli, tiny, target, b)
        files_a = {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()}
        files_b = {p.relative_to(b): p.read_bytes() for p in b.rglob("*") if p.is_file()}
        assert files_a == files_b


def _hex_bytes(cc: str) -> bytes:
    body = cc[cc.index("{") + 1: cc.index("};")]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def test_c_array_is_the_model_aligned_const_and_compiles(cli, tiny: Path, tmp_path: Path) -> None:
    weird = tmp_path / "3d model (v2) *-.tflite"
    shutil.copy(tiny, weird)
    out = tmp_path / "o"
    manifest = _build(cli, weird, "cortex-m4", out, "--symbol", "3d-model.v2")
    cc = (out / "tflm" / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char _3d_model_v2[] = {" in cc
    assert f"const unsigned int _3d_model_v2_len = {tiny.stat().st_size};" in cc
    assert _hex_bytes(cc) == tiny.read_bytes() == (out / "model.tflite").read_bytes()
    settings = (out / "tflm" / "model_settings.h").read_text()
    assert f"kTensorArenaSize = {manifest['arena']['emitted_bytes']};" in settings
    resolver = (out / "tflm" / "op_resolver.h").read_text()
    methods = re.findall(r"resolver\.(Add\w+)\((.*?)\) != kTfLiteOk", resolver)
    # int8-only kernels where TFLM has them and the model's ops are int8 (MEAN has no int8-only registration)
    assert methods == [("AddConv2D", "tflite::Register_CONV_2D_INT8()"),
                       ("AddDepthwiseConv2D", "tflite::Register_DEPTHWISE_CONV_2D_INT8()"),
                       ("AddFullyConnected", "tflite::Register_FULLY_CONNECTED_INT8()"), ("AddMean", ""),
                       ("AddSoftmax", "tflite::Register_SOFTMAX_INT8()")]
    assert "MicroMutableOpResolver<kEdgeforgeNumOps>" in resolver and "kEdgeforgeNumOps = 5;" in resolver
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    main = tmp_path / "check.cc"
    main.write_text('#include "model_data.h"\n#include "model_settings.h"\n'
                    "int main() { return (_3d_model_v2_len > 0 && kTensorArenaSize % 16 == 0) ? 0 : 1; }\n")
    exe = tmp_path / "check"
    subprocess.run([cxx, "-std=c++11", "-Wall", "-Werror", "-I", str(out / "tflm"), str(main),
                    str(out / "tflm" / "model_data.cc"), "-o", str(exe)], check=True)
    subprocess.run([str(exe)], check=True)


@pytest.mark.parametrize("target", [t.id for t in load_registry().all() if t.platformio])
def test_platformio_accepts_the_generated_project(cli, tiny: Path, tmp_path: Path, target: str) -> None:
    """PlatformIO's own `pio project config` parses the project; every option is one it knows."""
    from platformio.project.options import ProjectOptions

    out = tmp_path / "o"
    _build(cli, tiny, target, out, "--emitter", "platformio")  # ESP32 chips default to espidf
    pio_dir = out / "platformio"
    pio = Path(sys.executable).with_name("pio")
    proc = subprocess.run([str(pio), "project", "config", "--json-output"], cwd=pio_dir, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PLATFORMIO_CORE_DIR": str(tmp_path / "pio")})
    assert proc.returncode == 0, proc.stderr
    sections = dict(json.loads(proc.stdout))
    profile = load_registry().get(target).platformio
    env = dict(sections[f"env:{profile['env']}"])
    assert env["board"] == profile["board"] and env["platform"] == profile["platform"]
    assert env["framework"] == [profile["framework"]]
    assert env["lib_deps"] == profile["lib_deps"]
    for key in env:
        assert f"env.{key}" in ProjectOptions or key.startswith("board_"), f"unknown PlatformIO option {key}"
    assert dict(sections["platformio"])["default_envs"] == [profile["env"]]
