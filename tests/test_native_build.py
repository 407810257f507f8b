"""`build --runtime native` and `edgeforge run`: generated C, planned arena, exact sizes, bit-exact runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, assert_clean_error
from edgeforge.native.toolchain import arm_available

needs_arm = pytest.mark.skipif(not arm_available(), reason="arm-none-eabi-gcc not installed (make toolchain)")


def _run(cli, build: Path, x: np.ndarray, tmp: Path, name: str) -> np.ndarray:
    np.save(tmp / f"{name}-in.npy", x)
    r = cli("run", build, "--input", tmp / f"{name}-in.npy", "--output", tmp / f"{name}-out.npy", "--json")
    assert r.code == 0, r.err
    return np.load(tmp / f"{name}-out.npy")


def _native_and_tflm(cli, model: Path, tmp: Path, target: str = "cortex-m4") -> tuple[Path, Path, dict]:
    native, tflm = tmp / "native", tmp / "tflm"
    r = cli("build", model, "--target", target, "--runtime", "native", "--out", native, "--json")
    assert r.code == 0, r.err
    assert cli("build", model, "--target", target, "--out", tflm).code == 0
    return native, tflm, json.loads(r.out)


def test_native_build_runs_bit_exact_with_tflm(cli, tmp_path: Path) -> None:
    native, tflm, m = _native_and_tflm(cli, FIXTURES / "tiny_int8.tflite", tmp_path)
    for name in ("ef_model.c", "ef_model.h", "Makefile", "host_main.c", "runtime/ef_kernels.h"):
        assert (native / "native" / name).is_file(), name
    assert "malloc" not in (native / "native" / "ef_model.c").read_text()
    x = np.random.default_rng(5).integers(-128, 128, (64, 8, 8, 1)).astype(np.int8)
    assert np.array_equal(_run(cli, native, x, tmp_path, "n"), _run(cli, tflm, x, tmp_path, "t"))
    n = m["native"]
    assert n["lower_bound_bytes"] <= n["arena_bytes"] <= n["tflm_like_head_bytes"]
    assert n["arena_bytes"] < n["tflm_measured_arena_bytes"]


@needs_arm
def test_native_sizes_come_from_the_linked_cortex_m_image(cli, tmp_path: Path) -> None:
    r = cli("build", FIXTURES / "tiny_int8.tflite", "--target", "cortex-m4", "--runtime", "native", "--out",
            tmp_path / "o", "--json")
    m = json.loads(r.out)
    arm = m["native"]["arm"]
    assert arm["link_error"] is None and arm["stack"] > 0
    assert arm["flash_bytes"] == arm["text"] + arm["rodata"] + arm["data"]
    assert arm["ram_bytes"] >= m["native"]["arena_bytes"] + arm["stack"]
    # the model flash budget counts the model's weights as the generated C stores them (as for TFLM, whose
    # budget counts the .tflite and not the interpreter); the linker checks the whole image against the board
    flash = next(v for v in m["budgets"] if v["budget"] == "model_flash_bytes")
    assert flash["value"] == m["model"]["weight_bytes"] and flash["basis"].startswith("measured: model weights")
    assert f"linked image {arm['flash_bytes']} B" in flash["basis"]


@needs_arm
def test_an_image_that_does_not_fit_the_board_fails_to_link_and_exits_3(cli, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tiny-m4.toml").write_text('id = "tiny-m4"\nname = "M4 with 512 B RAM"\nextends = "cortex-m4"\n'
                                           "aliases = []\n[hardware]\nram_bytes = 512\n[budget]\n"
                                           "model_ram_bytes = 512\n")
    r = cli("build", FIXTURES / "tiny_int8.tflite", "--target", "tiny-m4", "--runtime", "native", "--out",
            tmp_path / "o", "--targets-dir", profiles)
    assert r.code == 3
    assert "fails to link" in r.err and "RAM" in r.err


def test_op_without_native_kernel_suggests_tflm(cli, tmp_path: Path) -> None:
    r = cli("build", FIXTURES / "topk_float.tflite", "--target", "cortex-m4", "--runtime", "native", "--out",
            tmp_path / "o")
    assert_clean_error(r, 65)
    assert "--runtime tflm" in r.err


def test_run_on_a_tflm_build_and_a_bundle(cli, tmp_path: Path) -> None:
    tiny = FIXTURES / "tiny_int8.tflite"
    assert cli("build", tiny, "--target", "rpi4", "--out", tmp_path / "pi").code == 0
    x = np.random.default_rng(1).integers(-128, 128, (3, 8, 8, 1)).astype(np.int8)
    y = _run(cli, tmp_path / "pi", x, tmp_path, "pi")
    assert y.shape == (3, 10) and y.dtype == np.int8


def test_run_rejects_a_folder_that_is_not_a_build(cli, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8, 1), np.int8))
    assert_clean_error(cli("run", tmp_path, "--input", tmp_path / "x.npy"), 2)


@pytest.mark.mlperf
@pytest.mark.parametrize("rel", ["kws/kws_ref_model_int8.tflite", "ic/pretrainedResnet_quant.tflite",
                                 "ad/ad01_int8.tflite"])
def test_mlperf_models_native_bit_exact_and_smaller_arena(cli, mlperf: Path, tmp_path: Path, rel: str) -> None:
    native, tflm, m = _native_and_tflm(cli, mlperf / rel, tmp_path)
    shape = m["model"]["inputs"][0]["shape"]
    x = np.random.default_rng(7).integers(-128, 128, (8, *shape[1:])).astype(np.int8)
    if rel.startswith("kws"):
        files = sorted((mlperf / "samples" / "kws01").glob("*.bin"))[:24]
        x = np.concatenate([x, np.stack([np.frombuffer(f.read_bytes(), np.int8).reshape(shape[1:]) for f in files])])
    assert np.array_equal(_run(cli, native, x, tmp_path, "n"), _run(cli, tflm, x, tmp_path, "t"))
    n = m["native"]
    assert n["arena_bytes"] <= n["tflm_measured_arena_bytes"]
    assert n["lower_bound_bytes"] <= n["arena_bytes"]
    if rel.startswith("ic"):
        # residual blocks: each second conv is fused with its skip ADD, so the arena drops below what any
        # plan of the unfused graph (TFLM's included) can reach, and stays bit-exact (checked above)
        assert "CONV_2D+ADD" in (native / "native" / "ef_model.c").read_text()
        assert n["arena_bytes"] < n["tflm_like_head_bytes"] and n["arena_bytes"] <= 0.8 * n["tflm_measured_arena_bytes"]


@pytest.mark.mlperf
def test_single_rounding_is_one_switch_recorded_in_the_build(cli, mlperf: Path, tmp_path: Path) -> None:
    """--rounding single: parameters, kernels (via the build's ef_config.h) and the manifest agree; outputs move
    by an LSB here and there against TFLM's default double rounding (a few LSB after ten stacked layers)."""
    model = mlperf / "ad" / "ad01_int8.tflite"
    single, double = tmp_path / "single", tmp_path / "double"
    r = cli("build", model, "--target", "cortex-m4", "--runtime", "native", "--rounding", "single", "--out", single,
            "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["native"]["rounding"] == "single"
    assert "#define EF_SINGLE_ROUNDING 1 " in (single / "native" / "runtime" / "ef_config.h").read_text()
    assert cli("build", model, "--target", "cortex-m4", "--runtime", "native", "--out", double).code == 0
    frames = np.fromfile(mlperf / "samples" / "ad01_normal_id_01_00000000_hist_librosa.bin", np.float32)
    x = np.stack([frames.reshape(200, 128)[i : i + 5].reshape(-1) for i in range(0, 190, 10)])
    a = _run(cli, single, x, tmp_path, "s").astype(int)
    b = _run(cli, double, x, tmp_path, "d").astype(int)
    assert 0 < np.count_nonzero(a != b) and np.abs(a - b).max() <= 4 and np.abs(a - b).mean() < 1
    assert_clean_error(cli("build", model, "--target", "cortex-m4", "--rounding", "single"), 2)
