"""The bench firmware on the qemu-cortex-m4 board: cross-compiled for Cortex-M4F (arm-none-eabi-gcc), run on
``qemu-system-arm -M mps2-an386 -icount shift=0`` with UART0 on a TCP port, driven over pyserial's
``socket://`` URL. Same protocol checks as the host-sim board; outputs byte-identical to ``edgeforge run``.
Skipped when QEMU or the cross-compiler is missing. Every QEMU process is killed by the ``qemu_board`` context
manager (and dies with the test process, via PR_SET_PDEATHSIG)."""

from __future__ import annotations

import json
import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from benchdut import (
    BOOT,
    ROOT,
    build_native,
    crc32,
    fields,
    firmware,
    garbage,
    make_firmware,
    qemu_board,
    qemu_tools,
    run_items,
)

pytestmark = pytest.mark.skipif(qemu_tools() is not None, reason=str(qemu_tools()))


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_native(ROOT / "tests" / "fixtures" / "tiny_int8.tflite", tmp_path_factory.mktemp("tiny") / "build")


@pytest.fixture(scope="module")
def tiny_elf(tiny_build: Path) -> Path:
    return firmware(tiny_build / "native", tiny_build / "bench", "qemu", MODEL_NAME="tiny01")


@pytest.fixture
def qemu(tiny_elf: Path):
    with qemu_board(tiny_elf) as d:
        boot = d.boot()
        assert len(boot) == len(BOOT), boot
        for got, want in zip(boot, BOOT):
            assert got == want or (want.endswith("*") and got.startswith(want[:-1])), boot
        yield d


def _run(cli, build: Path, x: np.ndarray, tmp: Path) -> np.ndarray:
    np.save(tmp / "x.npy", x)
    res = cli("run", build, "--input", tmp / "x.npy", "--output", tmp / "y.npy")
    assert res.code == 0, res.err
    return np.load(tmp / "y.npy")


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, size=(n, 8, 8, 1), dtype=np.int8)


def test_qemu_end_to_end_matches_edgeforge_run(qemu, tiny_build: Path, cli, tmp_path: Path) -> None:
    from edgeforge.model.tflite import read_tflite
    from tflite_micro.python.tflite_micro import runtime

    manifest = json.loads((tiny_build / "manifest.json").read_text())
    info = qemu.info()
    assert info["model_sha256"] == manifest["model"]["sha256"] and info["target"] == "cortex-m4"
    assert info["ext"] == "ef-info;ef-out;ef-crc;ef-lap;ef-mem;ef-ops;ef-dump"
    assert qemu.ok("name") == ["m-name-dut-[edgeforge]"]
    assert qemu.ok("profile") == ["m-profile-[ULPMark for tinyML Firmware V0.0.1]", "m-model-[tiny01]"]

    x = _inputs(4, seed=3)
    y = _run(cli, tiny_build, x, tmp_path)
    for k in range(len(x)):
        data = x[k].tobytes()
        qemu.upload(data)
        assert qemu.in_crc() == (len(data), crc32(data))
        assert qemu.db_print() == data
        t0, t1, values = qemu.infer(3, 1)
        assert t1 > t0
        assert qemu.raw_output() == y[k].tobytes(), f"input {k}"
        assert len(values) == 10

    # per-op timing from SysTick (25 MHz processor clock): cycles ~ 25 x microseconds
    model = (tiny_build / "model.tflite").read_bytes()
    tfl = read_tflite(model)
    schedule = manifest["native"]["schedule"]
    lines = qemu.ok("ef-ops")
    ops = [re.fullmatch(r"m-ef-op-\[(\d+),([A-Z0-9_]+),(\d+),(\d+)\]", ln) for ln in lines[: len(schedule)]]
    assert all(ops), lines
    assert [o.group(2) for o in ops] == [tfl.ops[i].op for i in schedule]
    total = fields(lines[len(schedule)], "m-ef-ops-total-[")
    timer = fields(lines[len(schedule) + 1], "m-ef-ops-timer-[")
    assert timer["us_source"] == "systick" and timer["cpu_hz"] == "25000000"
    cycles, us = int(total["cycles"]), int(total["us"])
    assert cycles == sum(int(o.group(4)) for o in ops) > 0
    assert abs(cycles - 25 * us) <= 25 * (len(schedule) + 1)
    assert int(timer["invoke_cycles"]) >= cycles

    # intermediate tensors vs tflite-micro with every tensor preserved
    ip = runtime.Interpreter.from_bytes(model, arena_size=1 << 20,
                                        intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    ip.set_input(x[-1:], 0)
    ip.invoke()
    for k, op_index in enumerate(schedule):
        want = np.asarray(ip.GetTensor(tfl.ops[op_index].outputs[0], 0)["tensor_data"]).tobytes()
        assert qemu.dump(k) == want, f"op {k}"
    assert qemu.error(f"ef-dump {len(schedule)}")[0] == "E_ARG"

    mem = fields(qemu.ok("ef-mem")[0], "m-ef-mem-[")
    assert mem["arena"] == str(manifest["native"]["arena_bytes"]) and mem["stack_size"] == "8192"
    assert 0 < int(mem["stack_hwm"]) < 8192
    qemu.assert_quiet()


def test_qemu_garbage_keeps_state_and_framing(qemu, tiny_build: Path) -> None:
    data = _inputs(1, seed=9)[0].tobytes()
    qemu.upload(data)
    _, _, values = qemu.infer(1, 0)
    raw = qemu.raw_output()
    results = qemu.ok("results")
    run_items(qemu, garbage(random.Random(99), len(data), n_random=40))
    assert qemu.in_crc() == (len(data), crc32(data))
    assert qemu.ok("results") == results
    assert qemu.infer(1, 0)[2] == values
    assert qemu.raw_output() == raw


def test_qemu_icount_timing_is_deterministic(qemu) -> None:
    """-icount shift=0: 1 instruction = 1 ns of virtual time, so the timed window is exactly reproducible."""
    qemu.upload(bytes(64))
    runs = []
    for _ in range(3):
        t0, t1, _ = qemu.infer(20, 0)
        runs.append(t1 - t0)
    assert runs[0] > 0 and max(runs) - min(runs) <= 1, runs


def test_qemu_resync_after_missed_boot_banner(tiny_elf: Path) -> None:
    """Connecting after boot (QEMU wait=off, or a host that opens the port late): a bare % answers m-ready."""
    with qemu_board(tiny_elf, wait=False) as d:
        d.write(b"%")
        assert d.reply() == []
        assert d.ok("name") == ["m-name-dut-[edgeforge]"]
        assert d.ok("ef-info")[0].startswith("m-ef-info-[proto=2,")
        d.assert_quiet()


def test_qemu_image_must_fit_the_target_part(tiny_build: Path, tmp_path: Path) -> None:
    native = tiny_build / "native"
    jobs = {
        "ram": dict(RAM_BYTES=4096),  # arena + 8 KiB stack > 4 KiB
        "flash": dict(FLASH_BYTES=4096),
        "too_big": dict(FLASH_BYTES=8 << 20),  # more than QEMU's 4 MiB SSRAM1
        "default": {},  # the build's arm/link.ld: the target profile's flash/RAM
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {k: pool.submit(make_firmware, native, tmp_path / k, "qemu", **v) for k, v in jobs.items()}
        res = {k: f.result() for k, f in futures.items()}
    assert res["ram"].returncode != 0 and "region `RAM' overflowed" in res["ram"].stderr, res["ram"].stderr
    assert res["flash"].returncode != 0 and "region `FLASH' overflowed" in res["flash"].stderr, res["flash"].stderr
    assert res["too_big"].returncode != 0 and "4 MiB" in res["too_big"].stderr
    assert res["default"].returncode == 0, res["default"].stderr
    ld = (tmp_path / "default" / "ef_bench_an386.ld").read_text()
    assert "ORIGIN = 0x00000000, LENGTH = 2097152" in ld and "ORIGIN = 0x20000000, LENGTH = 655360" in ld


@pytest.mark.mlperf
def test_qemu_kws01_20_inputs_match_edgeforge_run(mlperf: Path, tmp_path_factory: pytest.TempPathFactory, cli,
                                                  tmp_path: Path) -> None:
    build = build_native(mlperf / "kws" / "kws_ref_model_int8.tflite", tmp_path_factory.mktemp("kws") / "build")
    elf = firmware(build / "native", build / "bench", "qemu", MODEL_NAME="kws01")
    files = sorted((mlperf / "samples" / "kws01").glob("*.bin"))[:20]
    assert len(files) == 20 and all(f.stat().st_size == 490 for f in files)
    x = np.stack([np.frombuffer(f.read_bytes(), np.int8).reshape(49, 10, 1) for f in files])
    y = _run(cli, build, x, tmp_path)
    with qemu_board(elf) as d:
        d.boot()
        assert d.ok("profile")[1] == "m-model-[kws01]"
        for k, f in enumerate(files):
            d.upload(f.read_bytes())
            assert d.in_crc() == (490, crc32(f.read_bytes()))
            _, _, values = d.infer(1, 0)
            assert d.raw_output() == y[k].tobytes(), f.name
            if k == 0:
                assert f.name.startswith("tst_000000_Stop") and int(np.argmax(values)) == 7
        names = [m.group(1) for ln in d.ok("ef-ops") if (m := re.match(r"m-ef-op-\[\d+,([A-Z0-9_]+),", ln))]
        assert names[:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"] and names[-1] == "SOFTMAX" and len(names) == 13
