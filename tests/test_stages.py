"""The build's stages called on their own: the back half (plan -> emit -> compile -> manifest) for an int8
model in memory is what ``build --measure`` candidates and ``calibrate`` probes use instead of writing a
temporary .tflite and running the whole build."""

from __future__ import annotations

from pathlib import Path

from conftest import FIXTURES
from edgeforge.manifest import read_manifest
from edgeforge.target import load_registry


def test_build_int8_writes_the_same_native_build_as_the_whole_pipeline(tmp_path: Path) -> None:
    from edgeforge.build import BuildOptions, build
    from edgeforge.stages import build_int8

    target = load_registry().get("cortex-m4")
    model = (FIXTURES / "tiny_int8.tflite").read_bytes()
    whole = build(FIXTURES / "tiny_int8.tflite", target, BuildOptions(out_dir=tmp_path / "whole", runtime="native"))
    manifest = build_int8(model, "tiny_int8", target, "native", tmp_path / "part")
    assert manifest == read_manifest(tmp_path / "part")
    native = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole" / "native").rglob("*") if p.is_file())
    assert native and native == sorted(p.relative_to(tmp_path / "part") for p in (tmp_path / "part" / "native").rglob("*")
                                       if p.is_file())
    for rel in native:
        assert (tmp_path / "whole" / rel).read_bytes() == (tmp_path / "part" / rel).read_bytes(), rel
    assert manifest.model == whole.manifest.model and manifest.target == whole.manifest.target
    assert manifest.estimates == whole.manifest.estimates and manifest.fits == whole.fits
    # no conversion, search, evaluation or TFLM arena measurement: only what the bench reads
    assert manifest.accuracy is None and manifest.search is None and manifest.arena is None
    assert not (tmp_path / "part" / "tiny_int8.tflite").exists()


def test_build_int8_for_an_interpreter_runtime_checks_its_ops(tmp_path: Path) -> None:
    from edgeforge.stages import build_int8

    target = load_registry().get("cortex-m4")
    manifest = build_int8((FIXTURES / "tiny_int8.tflite").read_bytes(), "probe", target, "tflm", tmp_path / "b")
    assert manifest.target.runtime == "tflm" and manifest.arena is not None and manifest.native is None
    assert manifest.input_model.path == "probe.tflite"


def test_load_once_quantize_twice_and_the_graph_is_closed(tmp_path: Path) -> None:
    import keras

    from edgeforge.events import NullReporter
    from edgeforge.stages import load, quantize

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    model.save(tmp_path / "m.keras")
    with load(tmp_path / "m.keras", None, None, NullReporter()) as loaded:
        assert loaded.graph is not None and loaded.sample_shape == (8, 8, 1) and loaded.data is None
        int8, ds = quantize(loaded, "int8", "tflm", 10, NullReporter())
        f16, _ = quantize(loaded, "float16", "litert", 10, NullReporter())
    assert loaded.graph is None  # the SavedModel scratch folder is gone with the context
    assert int8.info.is_int8 and int8.synthetic_calibration and ds is not None and len(ds) == 100
    assert not f16.synthetic_calibration and f16.calibration == "not needed for float16"
    assert int8.float_model is not None and int8.float_model[0] == f16.float_model[0]


def test_the_litert_scheme_search_converts_one_loaded_model_to_every_scheme(cli, tmp_path: Path,
                                                                           monkeypatch) -> None:
    """rpi4 --search always: int8, float16 and dynamic-range int8 candidates from one load of the Keras model."""
    import json

    import keras

    from edgeforge import stages

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    model.save(tmp_path / "m.keras")
    loads = []
    real_load = stages.load
    monkeypatch.setattr(stages, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    r = cli("build", tmp_path / "m.keras", "--target", "rpi4", "--search", "always", "--out", tmp_path / "o", "--json")
    assert r.code == 0, r.err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert {"int8", "float16", "dynamic-int8"} <= {c["name"] for c in report["candidates"]}
    assert json.loads(r.out)["compression"]["scheme"] in {c["name"] for c in report["candidates"]}
    assert len(loads) == 2  # the build's own load, then one for all the other schemes
