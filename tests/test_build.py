"""`edgeforge build` end to end on small models made here: formats, data, budgets, manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_clean_error


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# --- budgets -------------------------------------------------------------------------------------

def test_budget_gate_exits_3_names_the_budget_and_keeps_the_build(cli, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    r = cli("build", tiny, "--target", "esp32", "--out", out, "--ram-budget", "1K")
    assert r.code == 3
    assert "budget missed: model_ram_bytes by" in r.err
    assert "closest result" in r.err
    m = _manifest(out)
    ram = next(v for v in m["budgets"] if v["budget"] == "model_ram_bytes")
    assert ram["limit"] == 1024 and ram["fits"] is False and ram["value"] == m["arena"]["emitted_bytes"]
    assert m["fits"] is False


def test_flags_override_each_budget(cli, tiny: Path, tmp_path: Path) -> None:
    r = cli("build", tiny, "--target", "cortex-m4", "--out", tmp_path / "a", "--flash-budget", "2K",
            "--latency-budget-ms", "0.001", "--json")
    assert r.code == 3
    doc = json.loads(r.out)
    missed = {v["budget"] for v in doc["budgets"] if v["fits"] is False}
    assert missed == {"model_flash_bytes", "latency_ms"}
    assert doc["exit_code"] == 3
    r = cli("build", tiny, "--target", "cortex-m4", "--out", tmp_path / "b", "--flash-budget", "1M")
    assert r.code == 0 and "fits every budget" in r.out


def test_manifest_records_everything_a_deployment_needs(cli, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert cli("build", tiny, "--target", "esp32", "--out", out).code == 0
    m = _manifest(out)
    import hashlib

    assert m["input_model"]["sha256"] == hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert len(m["target"]["profile_sha256"]) == 64 and m["target"]["runtime"] == "tflm"
    assert m["edgeforge_version"] and m["compression"]["scheme"] == "int8"
    for rel, info in m["artifacts"].items():
        data = (out / rel).read_bytes()
        assert len(data) == info["bytes"] and hashlib.sha256(data).hexdigest() == info["sha256"]
    assert "model.tflite" in m["artifacts"] and "espidf/CMakeLists.txt" in m["artifacts"]
    assert m["espidf"]["images"][0] == {"offset": "0x1000", "path": "build/bootloader/bootloader.bin"}
    assert m["arena"]["emitted_bytes"] >= m["arena"]["measured_bytes"] * 1.1
    assert {v["budget"] for v in m["budgets"]} == {"model_flash_bytes", "model_ram_bytes", "latency_ms",
                                                   "max_accuracy_drop"}


# --- data formats --------------------------------------------------------------------------------

def _digits_like(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, n)


def test_npz_npy_and_bin_folder_give_the_same_accuracy(cli, tiny: Path, tmp_path: Path) -> None:
    x, y = _digits_like()
    np.savez(tmp_path / "v.npz", x=x, y=y)
    r = cli("build", tiny, "--target", "esp32", "--val", tmp_path / "v.npz", "--out", tmp_path / "a", "--json")
    acc = json.loads(r.out)["accuracy"]
    assert acc["samples"] == 40 and acc["top1"] is not None
    assert acc["float_top1"] is None  # an int8 source has no float reference

    # the same inputs, quantized with the model's input parameters, as MLPerf-style .bin files
    inp = json.loads(r.out)["model"]["inputs"][0]
    q = np.clip(np.round(x / inp["scale"]) + inp["zero_point"], -128, 127).astype(np.int8)
    folder = tmp_path / "bins"
    folder.mkdir()
    rows = []
    for i, sample in enumerate(q):
        (folder / f"s{i:03d}.bin").write_bytes(sample.tobytes())
        rows.append(f"s{i:03d}.bin,10,{y[i]}\n")
    (folder / "y_labels.csv").write_text("".join(rows))
    r2 = cli("build", tiny, "--target", "esp32", "--val", folder, "--out", tmp_path / "b", "--json")
    assert json.loads(r2.out)["accuracy"]["top1"] == acc["top1"]

    np.save(tmp_path / "v.npy", x)
    r3 = cli("build", tiny, "--target", "esp32", "--val", tmp_path / "v.npy", "--out", tmp_path / "c", "--json")
    acc3 = json.loads(r3.out)["accuracy"]
    assert acc3["top1"] is None and acc3["samples"] == 40  # no labels in a .npy


# --- TensorFlow sources --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    path = tmp_path_factory.mktemp("keras") / "small.keras"
    model.save(path)
    return path


def test_keras_source_int8_with_labels_reports_top1_against_float(cli, keras_model: Path, tmp_path: Path) -> None:
    x, y = _digits_like(60)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "o"
    r = cli("build", keras_model, "--target", "cortex-m4", "--data", tmp_path / "d.npz", "--calib-samples", "30",
            "--out", out, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["input_model"]["format"] == "keras"
    assert doc["compression"]["calibration"].endswith("(30 samples)")
    acc = doc["accuracy"]
    assert acc["float_top1"] is not None and acc["top1"] is not None and acc["sqnr_db"] > 10
    assert doc["model"]["inputs"][0]["dtype"] == "int8" and doc["model"]["outputs"][0]["dtype"] == "int8"
    assert "no --val data" in r.err  # says so when accuracy comes from calibration data


def test_without_data_a_loud_warning_and_the_manifest_says_synthetic(cli, keras_model: Path,
                                                                    tmp_path: Path) -> None:
    r = cli("build", keras_model, "--target", "esp32", "--out", tmp_path / "o")
    assert r.code in (0, 3)
    assert "NO CALIBRATION DATA" in r.err
    m = _manifest(tmp_path / "o")
    assert m["compression"]["synthetic_calibration"] is True
    assert any("NO CALIBRATION DATA" in w for w in m["warnings"])


@pytest.mark.parametrize("scheme, weight_dtype", [("float16", "float16"), ("dynamic-int8", "int8"),
                                                  ("float32", "float32")])
def test_phone_targets_offer_float16_and_dynamic_range(cli, keras_model: Path, tmp_path: Path, scheme: str,
                                                       weight_dtype: str) -> None:
    out = tmp_path / scheme
    r = cli("build", keras_model, "--target", "android-arm64", "--quantization", scheme, "--out", out,
            "--labels", _labels(tmp_path))
    assert r.code == 0, r.err
    bundle = json.loads((out / "bundle" / "manifest.json").read_text())
    assert bundle["inputs"][0]["dtype"] == "float32"
    assert (out / "bundle" / "labels.txt").read_text().splitlines()[3] == "three"
    from edgeforge.model.tflite import read_tflite

    info = read_tflite((out / "bundle" / "model.tflite").read_bytes())
    assert weight_dtype in {t.dtype for t in info.tensors if t.is_constant}


def _labels(tmp: Path) -> Path:
    p = tmp / "labels.txt"
    p.write_text("zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n")
    return p


def test_legacy_keras2_h5_loads_through_tf_keras(cli, tmp_path: Path) -> None:
    import tf_keras

    model = tf_keras.Sequential([tf_keras.layers.InputLayer((6,)), tf_keras.layers.Dense(3)])
    path = tmp_path / "legacy.h5"
    model.save(path)
    r = cli("analyze", path, "--target", "rpi4", "--json")
    assert r.code == 0, r.err
    assert [row["op"] for row in json.loads(r.out)["layers"]] == ["FULLY_CONNECTED"]


def _saved_model(tmp_path: Path, shape: list[int | None]) -> Path:
    import tensorflow as tf

    class M(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(tf.ones([3, 2]))

        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            return tf.matmul(tf.reshape(x, [-1, 3]), self.w)

    m = M()
    path = tmp_path / "sm"
    tf.saved_model.save(m, str(path), signatures=m.__call__)
    return path


def test_savedmodel_with_dynamic_batch_is_fixed_to_one(cli, tmp_path: Path) -> None:
    r = cli("build", _saved_model(tmp_path, [None, 3]), "--target", "rpi5", "--quantization", "float32",
            "--out", tmp_path / "o", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["model"]["inputs"][0]["shape"] == [1, 3]


def test_savedmodel_with_dynamic_feature_dims_exits_65(cli, tmp_path: Path) -> None:
    r = cli("build", _saved_model(tmp_path, [None, None]), "--target", "rpi5", "--out", tmp_path / "o")
    assert_clean_error(r, 65)
    assert "dynamic shape" in r.err
