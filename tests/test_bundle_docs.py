"""Bundle documents: ANDROID.md shows buffers, run() and the model's real quantization; a Raspberry Pi
bundle has no ANDROID.md but a README section with the same facts."""

from __future__ import annotations

import json
from pathlib import Path


def _build(cli, model: Path, target: str, out: Path) -> dict:
    assert cli("build", model, "--target", target, "--out", out).code in (0, 3)
    return json.loads((out / "bundle" / "manifest.json").read_text())


def test_android_md_runs_the_model_with_its_real_quantization(cli, tiny: Path, tmp_path: Path) -> None:
    m = _build(cli, tiny, "android-arm64", tmp_path / "a")
    doc = (tmp_path / "a" / "bundle" / "ANDROID.md").read_text()
    inp, out = m["inputs"][0], m["outputs"][0]
    n_in = 1
    for d in inp["shape"]:
        n_in *= d
    assert "interpreter.run(input, output)" in doc
    assert f"ByteBuffer.allocateDirect({n_in})" in doc and f"ByteBuffer.allocateDirect({out['shape'][-1]})" in doc
    assert f"Math.round(n / {inp['scale']!r}f) + ({inp['zero_point']})" in doc  # quantize with the real params
    assert f"{out['scale']!r}f * (output.get().toInt() - ({out['zero_point']}))" in doc  # dequantize
    assert "ANDROID.md" in (tmp_path / "a" / "bundle" / "README.md").read_text()


def test_raspberry_pi_bundle_has_no_android_md_but_its_own_readme_section(cli, tiny: Path, tmp_path: Path) -> None:
    m = _build(cli, tiny, "rpi4", tmp_path / "p")
    assert not (tmp_path / "p" / "bundle" / "ANDROID.md").exists()
    readme = (tmp_path / "p" / "bundle" / "README.md").read_text()
    assert "ANDROID" not in readme and "## On the Raspberry Pi" in readme
    inp = m["inputs"][0]
    assert f"round(x / {inp['scale']!r})" in readme
