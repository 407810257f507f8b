"""The emulated boards (edgeforge/device/boards.py EMULATED): each one builds the bench firmware for its core with
the target profile's flash/RAM in its linker script, boots under QEMU with -icount shift=0, and benches a native
build with outputs byte-identical to `edgeforge run`. `edgeforge boards` lists them with the profiles each stands
in for. Boards whose emulator or compiler is missing skip (`make toolchain` installs them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchdut import ROOT
from conftest import FULL

from edgeforge.device.boards import BOARDS, EMULATED, EMULATED_BY_NAME
from edgeforge.target import load_registry

TINY = ROOT / "tests" / "fixtures" / "tiny_int8.tflite"


def _profile(board: str) -> str:
    ids = load_registry().ids
    return next((p for p in EMULATED_BY_NAME[board].stands_in_for if p in ids), "cortex-m4")


def test_boards_lists_every_emulated_board_with_its_profiles(cli) -> None:
    res = cli("boards", "--json")
    assert res.code == 0, res.err
    rows = {r["name"]: r for r in json.loads(res.out)}
    assert set(rows) == {b.name for b in EMULATED} and set(rows) <= set(BOARDS)
    assert rows["qemu-cortex-m4"]["stands_in_for"] == ["cortex-m4"]
    assert rows["qemu-cortex-m0plus"]["machine"] == "qemu-system-arm -M mps2-an385"
    assert rows["qemu-riscv32"]["tflm_kernels"] == ["none"]
    assert rows["qemu-cortex-m55"]["tflm_kernels"] == ["reference", "cmsis_nn"]
    # every profile a board stands in for is a bundled profile
    ids = set(load_registry().ids)
    assert all(set(r["stands_in_for"]) <= ids for r in rows.values()), rows
    text = cli("boards")
    assert text.code == 0 and "qemu-cortex-m33" in text.out and "mps3-an547" in text.out


@pytest.mark.parametrize("board", [b.name for b in EMULATED])
def test_native_build_benches_on_every_board(board: str, cli, tmp_path: Path) -> None:
    why = EMULATED_BY_NAME[board].missing_tools()
    if why:
        pytest.skip(why)
    build = tmp_path / "b"
    profile = _profile(board)
    assert cli("build", TINY, "--target", profile, "--runtime", "native", "--out", build, "-q").code == 0
    res = cli("flash", build, "--board", board)
    assert res.code == 0, res.err
    hw = load_registry().get(profile).hardware
    ld = (build / "firmware" / EMULATED_BY_NAME[board].image.replace(".elf", ".ld")).read_text()
    assert f"LENGTH = {hw['flash_bytes']}" in ld and f"LENGTH = {hw['ram_bytes']}" in ld  # the real part's sizes
    res = cli("bench", build, "--board", board, "--count", 4 if FULL else 2, "--runs", 1, "--json")
    assert res.code == 0, res.out + res.err
    doc = json.loads(res.out)
    assert doc["board"].startswith(board) and doc["latency"]["emulated"]
    assert doc["outputs"]["byte_identical"] and doc["identity"]["target"] == profile
    assert doc["latency"]["instructions_median"] > 1000
    assert [o["op"] for o in doc["ops"]] and doc["memory"]["stack_hwm"] > 0


def test_image_too_large_for_the_emulated_memory_is_refused(cli, tmp_path: Path) -> None:
    board = EMULATED_BY_NAME["qemu-cortex-m55"]
    if board.missing_tools():
        pytest.skip(str(board.missing_tools()))
    build = tmp_path / "b"
    # a cortex-m4 build wants 640 KiB of RAM: the M55 board's DTCM has 512 KiB
    assert cli("build", TINY, "--target", "cortex-m4", "--runtime", "native", "--out", build, "-q").code == 0
    res = cli("flash", build, "--board", "qemu-cortex-m55")
    assert res.code == 4, res.err
    assert "512 KiB for data" in res.err and "Traceback" not in res.err


def test_bench_makefile_needs_the_models_make_include(tmp_path: Path) -> None:
    """The output's dequantisation comes from native/ef_model.mk (data), not from a C comment: a native folder
    without it is refused with a message naming the file, instead of dequantising with made-up numbers."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make missing")
    from benchdut import BENCH, build_native

    build = build_native(TINY, tmp_path / "b")
    mk = build / "native" / "ef_model.mk"
    text = mk.read_text()
    assert "EF_OUT_TYPE := int8" in text and "EF_OUT_ZP := -128" in text and "EF_OUT_SCALE := 0.00390625" in text
    mk.unlink()
    proc = subprocess.run(["make", "-s", "-C", str(BENCH), "host", f"NATIVE={build / 'native'}",
                           f"OUT={tmp_path / 'o'}"], capture_output=True, text=True)
    assert proc.returncode != 0 and "ef_model.mk not found" in proc.stderr, proc.stderr


@pytest.mark.mlperf
def test_kws_built_for_esp32c3_benches_byte_identical_on_the_emulated_riscv_board(cli, tmp_path: Path) -> None:
    """ESP32-C3 (RISC-V rv32imc) stands in on qemu-riscv32: MLPerf KWS built natively for the esp32c3 profile, flashed
    and benched there on real kws01 inputs, outputs byte-identical to the host (TFLM cannot be built for this board:
    Debian has no bare-metal C++ library for riscv64-unknown-elf)."""
    why = EMULATED_BY_NAME["qemu-riscv32"].missing_tools()
    if why:
        pytest.skip(why)
    shared = ROOT.parent / "shared" / "models" / "mlperf_tiny"
    if not shared.is_dir():
        pytest.skip("../shared/models/mlperf_tiny is absent")
    build = tmp_path / "kws-c3"
    res = cli("build", shared / "kws" / "kws_ref_model_int8.tflite", "--target", "esp32c3", "--runtime", "native",
              "--out", build, "-q")
    assert res.code == 0, res.err
    assert cli("flash", build, "--board", "qemu-riscv32").code == 0
    res = cli("bench", build, "--board", "qemu-riscv32", "--input", shared / "samples" / "kws01", "--count", 2,
              "--runs", 1, "--json")
    assert res.code == 0, res.out + res.err
    doc = json.loads(res.out)
    assert doc["outputs"]["byte_identical"] and doc["identity"]["target"] == "esp32c3"
    assert doc["latency"]["emulated"] and doc["latency"]["instructions_median"] > 1_000_000
