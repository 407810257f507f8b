"""The compression search on the tiny fixture (no shared data needed): recipes, application, the
build's search stage, its report, replay, determinism and the nothing-fits exit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeforge.compress.apply import apply_recipe, compress_layer, prune_mask
from edgeforge.compress.layers import output_error, weight_layers
from edgeforge.compress.recipe import LayerChoice, Recipe, load_space, read_recipe
from edgeforge.errors import UsageError
from edgeforge.hostrun import run_batch
from edgeforge.model.tflite import read_tflite
from tests.conftest import assert_clean_error


def _layers(path: Path):  # noqa: ANN202
    model = path.read_bytes()
    info = read_tflite(model)
    return model, info, weight_layers(model, info)


def test_int4_and_pruning_are_written_into_a_model_tflm_runs(tiny: Path) -> None:
    model, info, layers = _layers(tiny)
    recipe = Recipe.of("t", {la.op_index: LayerChoice(4, 0.5) for la in layers})
    out = apply_recipe(model, layers, recipe)
    new = read_tflite(out)
    for la in weight_layers(out, new):
        if recipe.choice(la.op_index).bits == 4:
            assert new.tensors[la.filter_tensor].dtype == "int4"
            if la.op == "FULLY_CONNECTED":  # TFLM's int4 FULLY_CONNECTED takes one scale per tensor
                assert len(new.tensors[la.filter_tensor].scale) == 1
            assert la.values.min() >= -7 and la.values.max() <= 7
            assert np.count_nonzero(la.values == 0) >= la.values.size // 2
    x = np.random.default_rng(0).integers(-128, 128, size=(4, 1, 8, 8, 1)).astype(np.int8)
    assert run_batch(out, "tflm", x).shape == run_batch(model, "tflm", x).shape


def test_unstructured_pruning_keeps_the_largest_weights(tiny: Path) -> None:
    _, _, layers = _layers(tiny)
    la = layers[0]
    keep = prune_mask(la, LayerChoice(8, 0.5))
    real = np.abs(la.real())
    assert keep.sum() == la.values.size - round(0.5 * la.values.size)
    assert real[keep].min() >= real[~keep].max()


def test_structured_pruning_zeroes_whole_output_channels(tiny: Path) -> None:
    _, _, layers = _layers(tiny)
    la = layers[0]  # CONV_2D [O, H, W, I]: output channels on axis 0
    comp = compress_layer(la, LayerChoice(8, 0.5, structured=True))
    per_channel = np.count_nonzero(comp.values.reshape(la.channels, -1), axis=1)
    assert sorted(per_channel == 0) == [False, False, True, True]


def test_bias_correction_is_the_mean_output_error() -> None:
    from edgeforge.compress.layers import WeightLayer

    delta = np.zeros((2, 1, 1, 3))
    delta[0, 0, 0, :] = [1.0, -1.0, 0.5]
    layer = WeightLayer(0, "CONV_2D", "c", 0, 1, np.zeros((2, 1, 1, 3), np.int8), np.ones(2), 0, 6, 1.0)
    assert output_error(layer, delta, np.array([2.0, 1.0, 4.0])).tolist() == [3.0, 0.0]


def test_search_space_is_data_and_is_validated() -> None:
    space = load_space()
    assert 4 in space.bits and space.options()[0] == LayerChoice()
    with pytest.raises(UsageError):
        load_space({"sparsities": [1.5]})


def test_a_recipe_file_names_only_weight_layers(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(Recipe.of("x", {3: LayerChoice(4, 0.25)}).to_toml())
    assert read_recipe(path, [0, 3]).choice(3) == LayerChoice(4, 0.25)
    with pytest.raises(UsageError, match="not a weight layer"):
        read_recipe(path, [0, 1])


def _labelled(tiny: Path, path: Path, n: int = 120, seed: int = 1) -> Path:
    """Real-valued inputs labelled by the int8 model itself (so top-1 measures fidelity to it)."""
    model, info, _ = _layers(tiny)
    inp = info.input_tensors()[0]
    x = np.random.default_rng(seed).standard_normal((n, *inp.shape[1:])).astype(np.float32)
    q = np.clip(np.round(x / inp.scale[0]) + inp.zero_point[0], -128, 127).astype(np.int8)
    y = run_batch(model, "tflm", q.reshape(n, *inp.shape)).reshape(n, -1).argmax(axis=1)
    np.savez(path, x=q, y=y)
    return path


def _search(cli, tiny: Path, out: Path, *extra: object):  # noqa: ANN001, ANN202
    return cli("build", tiny, "--target", "cortex-m4", "--runtime", "native", "--search", "always", "--out", out,
               "--json", *extra)


def test_build_searches_and_writes_a_deterministic_report(cli, tiny: Path, tmp_path: Path) -> None:
    r = _search(cli, tiny, tmp_path / "a")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["search"]["chosen"] is not None and doc["fits"]
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    chosen = next(c for c in report["candidates"] if c["id"] == report["chosen"])
    assert chosen["fits"] and chosen["evaluated"] == "verified"
    assert report["metric"] == "sqnr_db"  # no labels (and no float model): ranked by output fidelity
    # the build's flash verdict is the search's exact number for the chosen candidate
    assert doc["estimates"]["flash_bytes"] == chosen["flash_bytes"]
    html = (tmp_path / "a" / "report.html").read_text()
    assert "data:image/svg+xml;base64," in html and report["chosen"] in html
    again = _search(cli, tiny, tmp_path / "b")
    assert again.code == 0
    for name in ("report.json", "report.html", "model.tflite", "recipe.toml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_recipe_replays_the_searched_model(cli, tiny: Path, tmp_path: Path) -> None:
    assert _search(cli, tiny, tmp_path / "a").code == 0
    r = cli("build", tiny, "--target", "cortex-m4", "--runtime", "native", "--recipe", tmp_path / "a" / "recipe.toml",
            "--out", tmp_path / "b", "--json")
    assert r.code == 0, r.err
    assert (tmp_path / "a" / "model.tflite").read_bytes() == (tmp_path / "b" / "model.tflite").read_bytes()
    assert json.loads(r.out)["search"]["replayed"].endswith("recipe.toml")


def test_an_impossible_budget_exits_3_naming_the_closest_candidate(cli, tiny: Path, tmp_path: Path) -> None:
    r = cli("build", tiny, "--target", "cortex-m4", "--runtime", "native", "--flash-budget", "16",
            "--out", tmp_path / "o")
    assert r.code == 3, r.err
    assert "nothing fits: closest candidate c" in r.err and "model_flash_bytes by" in r.err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["chosen"] is None and report["closest"]["misses"]["model_flash_bytes"] > 0
    assert "Traceback" not in r.err


def test_per_layer_recipes_are_refused_on_litert_targets_clearly(cli, tiny: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(Recipe.of("x", {0: LayerChoice(4)}).to_toml())
    r = cli("build", tiny, "--target", "rpi4", "--recipe", recipe, "--out", tmp_path / "o")
    assert_clean_error(r, 2)
    assert "microcontroller runtimes" in r.err


def test_measure_decides_latency_on_the_board(cli, tiny: Path, tmp_path: Path) -> None:
    """build --measure --board: the verified candidates are flashed to (emulated) hardware and the
    build's latency verdict is the board's number."""
    import shutil

    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (make toolchain)")
    val = _labelled(tiny, tmp_path / "val.npz")
    r = _search(cli, tiny, tmp_path / "o", "--measure", "--board", "qemu-cortex-m4", "--val", val,
                "--max-accuracy-drop", "0.5")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    measured = [c for c in report["candidates"] if c["evaluated"] == "measured"]
    assert len(measured) >= 2 and report["chosen"] in {c["id"] for c in measured}
    chosen = next(c for c in measured if c["id"] == report["chosen"])
    latency = next(b for b in doc["budgets"] if b["budget"] == "latency_ms")
    assert latency["basis"].startswith("measured") and latency["value"] == pytest.approx(chosen["latency_ms"], abs=1e-3)


@pytest.mark.parametrize("extra, words", [
    (["--measure"], "--measure needs --board"),
    (["--train", "TRAIN"], "fine-tunes Keras models"),
    (["--recipe", "MISSING"], "cannot read recipe"),
])
def test_search_options_misused_are_clean_usage_errors(cli, tiny: Path, tmp_path: Path, extra: list[str],
                                                       words: str) -> None:
    np.savez(tmp_path / "train.npz", x=np.zeros((4, 8, 8, 1), np.float32), y=np.zeros(4, np.int64))
    args = [{"TRAIN": tmp_path / "train.npz", "MISSING": tmp_path / "none.toml"}.get(a, a) for a in extra]
    r = cli("build", tiny, "--target", "cortex-m4", "--runtime", "native", "--search", "always", *args,
            "--out", tmp_path / "o")
    assert_clean_error(r, 2)
    assert words in r.err and not (tmp_path / "o").exists()


def test_an_unpinned_runtime_switches_to_native_when_no_tflm_candidate_fits(cli, tiny: Path, tmp_path: Path) -> None:
    """The .tflite alone (graph, float scales, int64 zero points) exceeds 1 KiB; the native weights do not."""
    r = cli("build", tiny, "--target", "cortex-m4", "--flash-budget", "1K", "--out", tmp_path / "o", "--json")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["target"]["runtime"] == "native" and m["fits"]
    assert any("switched to the native runtime" in w for w in m["warnings"])
    pinned = cli("build", tiny, "--target", "cortex-m4", "--runtime", "tflm", "--flash-budget", "1K",
                 "--out", tmp_path / "p")
    assert pinned.code == 3 and "nothing fits" in pinned.err
