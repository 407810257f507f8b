"""manifest.json as a typed, versioned contract: what build writes, readers get back typed and validated; a
missing, damaged or too-new manifest is one usage error (exit 2); one "fits" verdict."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import GOLDEN, assert_clean_error
from edgeforge.manifest import FORMAT_VERSION, Manifest, read_manifest

GOLDEN_MANIFESTS = sorted(GOLDEN.glob("*/manifest.json"))


@pytest.mark.parametrize("path", GOLDEN_MANIFESTS, ids=lambda p: p.parent.name)
def test_every_golden_manifest_reads_back_typed_and_writes_the_same_bytes(path: Path) -> None:
    m = Manifest.from_json(json.loads(path.read_text()))
    assert m.dumps() == path.read_bytes()
    assert m.format_version == FORMAT_VERSION and m.model.inputs[0].shape[0] == 1
    assert m.fits == all(v.fits is not False for v in m.budgets)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from conftest import FIXTURES
    from edgeforge.build import BuildOptions, build
    from edgeforge.target import load_registry

    out = tmp_path_factory.mktemp("manifest") / "b"
    result = build(FIXTURES / "tiny_int8.tflite", load_registry().get("cortex-m4"), BuildOptions(out_dir=out))
    return out, result


def test_build_writes_what_readers_read(built: tuple[Path, object]) -> None:
    out, result = built
    m = read_manifest(out)
    assert m == result.manifest  # type: ignore[attr-defined]
    assert m.target.id == "cortex-m4" and m.target.runtime == "tflm" and m.model.path == "model.tflite"
    assert m.compression.synthetic_calibration is False  # the tiny model is int8 already: no calibration


def _copy(built: tuple[Path, object], tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(built[0], dst)
    return dst


def _edit(build: Path, change) -> None:
    doc = json.loads((build / "manifest.json").read_text())
    change(doc)
    (build / "manifest.json").write_text(json.dumps(doc))


def test_a_folder_without_a_manifest_is_a_usage_error(cli, tmp_path: Path) -> None:
    r = cli("run", tmp_path, "--input", tmp_path / "x.npy")
    assert_clean_error(r, 2)
    assert "not an edgeforge build folder" in r.err


def test_a_corrupt_manifest_is_a_usage_error_not_a_traceback(cli, built, tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    (b / "manifest.json").write_text('{"format": "edgeforge-build/1", "target": ')
    r = cli("flash", b, "--board", "host-sim", "--dry-run")
    assert_clean_error(r, 2)
    assert "damaged" in r.err and "rebuild" in r.err


def test_a_manifest_missing_a_key_names_it(cli, built, tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    _edit(b, lambda d: d["target"].pop("runtime"))
    r = cli("run", b, "--input", tmp_path / "x.npy")
    assert_clean_error(r, 2)
    assert "at target" in r.err and "'runtime' is a required property" in r.err


def test_a_wrongly_typed_value_is_caught_on_read(built, tmp_path: Path) -> None:
    from edgeforge.errors import UsageError

    b = _copy(built, tmp_path)
    _edit(b, lambda d: d["model"].update(macs="many"))
    with pytest.raises(UsageError, match="at model/macs"):
        read_manifest(b)


def test_a_manifest_from_a_newer_edgeforge_asks_for_an_upgrade(cli, built, tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    _edit(b, lambda d: d.update(format=f"edgeforge-build/{FORMAT_VERSION + 1}"))
    r = cli("bench", b, "--board", "host-sim")
    assert_clean_error(r, 2)
    assert "newer edgeforge" in r.err and "upgrade edgeforge" in r.err


def test_another_tools_json_is_not_read_as_a_build(built, tmp_path: Path) -> None:
    from edgeforge.errors import UsageError

    b = _copy(built, tmp_path)
    _edit(b, lambda d: d.update(format="edgeforge-bundle/1"))
    with pytest.raises(UsageError, match="not an edgeforge build manifest"):
        read_manifest(b)


def test_one_fits_verdict_for_the_cli_and_the_manifest(cli, tiny: Path, tmp_path: Path) -> None:
    r = cli("build", tiny, "--target", "cortex-m4", "--out", tmp_path / "o", "--ram-budget", "64", "--search", "never", "--json")
    assert r.code == 3, r.err
    assert json.loads(r.out)["fits"] is False and read_manifest(tmp_path / "o").fits is False
    assert [v.budget for v in read_manifest(tmp_path / "o").missed] == ["model_ram_bytes"]


def test_a_link_error_or_a_failed_search_makes_the_build_not_fit() -> None:
    from edgeforge.budget import Verdict
    from edgeforge.manifest import verdict_fits

    ok = (Verdict("model_flash_bytes", 10, 5, "measured"), Verdict("max_accuracy_drop", 0.01, None, "n/a"))
    assert verdict_fits(ok, None, True)
    assert not verdict_fits(ok, "region FLASH overflowed", True)
    assert not verdict_fits(ok, None, False)
    assert not verdict_fits((*ok, Verdict("latency_ms", 1.0, 2.0, "estimated")), None, True)


def test_the_compression_label_comes_from_the_typed_recipe(tiny: Path) -> None:
    from edgeforge.stages import compression_label, prepare
    from edgeforge.compress.recipe import LayerChoice, Recipe
    from edgeforge.events import NullReporter
    from edgeforge.target import load_registry

    target = load_registry().get("cortex-m4")
    prepared, _ = prepare(tiny, target, "int8", "tflm", None, None, 10, NullReporter())
    assert compression_label(prepared) == "full-integer int8 (int8 I/O)"
    recipe = Recipe.of("r", {0: LayerChoice(4), 3: LayerChoice(8, 0.5), 1: LayerChoice()})
    assert compression_label(replace(prepared, recipe=recipe)) == (
        "int8 activations, per-layer weights: int4: conv0; int8 50% pruned: fc3")
