"""The bench firmware (firmware/bench/) on the host-sim board: compiled for this machine around a native build,
driven through a stdin/stdout pipe with the MLPerf Tiny DUT protocol and edgeforge's extensions
(shared/docs/BENCH_PROTOCOL.md sections 3, 8, 14). Outputs must be byte-identical to ``edgeforge run``."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from benchdut import (
    BOOT,
    ERROR_RE,
    ROOT,
    Item,
    build_native,
    crc32,
    fields,
    firmware,
    garbage,
    host_process,
    make_firmware,
    run_items,
)

pytestmark = pytest.mark.skipif(shutil.which("cc") is None or shutil.which("make") is None,
                                reason="needs a host C compiler and make")


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``tiny`` fixture's model (tests/fixtures/tiny_int8.tflite), built once per module."""
    return build_native(ROOT / "tests" / "fixtures" / "tiny_int8.tflite", tmp_path_factory.mktemp("tiny") / "build")


@pytest.fixture(scope="module")
def host_fw(tiny_build: Path) -> Path:
    return firmware(tiny_build / "native", tiny_build / "bench", "host", MODEL_NAME="tiny01")


@pytest.fixture
def dut(host_fw: Path):
    with host_process(host_fw) as (d, _proc):
        boot = d.boot()
        assert len(boot) == len(BOOT)
        for got, want in zip(boot, BOOT):
            assert got == want or (want.endswith("*") and got.startswith(want[:-1])), boot
        yield d


def _manifest(build: Path) -> dict:
    return json.loads((build / "manifest.json").read_text())


def _inputs(build: Path, n: int, seed: int = 0) -> np.ndarray:
    spec = _manifest(build)["model"]["inputs"][0]
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, size=(n, *spec["shape"][1:]), dtype=np.int8)


def _edgeforge_run(cli, build: Path, x: np.ndarray, tmp: Path) -> np.ndarray:
    np.save(tmp / "x.npy", x)
    res = cli("run", build, "--input", tmp / "x.npy", "--output", tmp / "y.npy")
    assert res.code == 0, res.err
    return np.load(tmp / "y.npy")


def _dequant(raw: bytes, spec: dict) -> np.ndarray:
    q = np.frombuffer(raw, dtype=np.dtype(spec["dtype"])).astype(np.float64)
    return spec["scale"] * (q - spec["zero_point"])


def test_boot_identity_and_mlperf_commands(dut, tiny_build: Path) -> None:
    m = _manifest(tiny_build)
    info = dut.info()
    assert info == {
        "proto": "2",
        "edgeforge": m["edgeforge_version"],
        "model_sha256": m["model"]["sha256"],
        "target": "cortex-m4",
        "rounding": "double",
        "backend": "reference",
        "arena": str(m["native"]["arena_bytes"]),
        "in_bytes": "64",
        "out_bytes": "10",
        "ops": str(len(m["native"]["schedule"])),
        "db_chunk": "256",
        "ext": "ef-info;ef-out;ef-crc;ef-lap;ef-mem;ef-ops;ef-dump",
    }
    # the boot banner carried the same identity line
    infos = [ln for ln in dut.log if ln.startswith("m-ef-info-[")]
    assert len(infos) == 2 and infos[0] == infos[1]
    assert dut.ok("name") == ["m-name-dut-[edgeforge]"]
    assert re.fullmatch(r"m-name-dut-\[([^]]+)]", dut.ok("name")[0])  # the MLPerf runner's discovery regex
    assert dut.ok("profile") == ["m-profile-[ULPMark for tinyML Firmware V0.0.1]", "m-model-[tiny01]"]
    t = [int(re.fullmatch(r"m-lap-us-(\d+)", dut.ok("timestamp")[0]).group(1)) for _ in range(3)]
    assert t == sorted(t)
    help_lines = dut.ok("help")
    assert help_lines and all(ln.startswith("m-help-[") and ln.endswith("]") for ln in help_lines)
    assert dut.ok("ef-mem") == [f"m-ef-mem-[arena={m['native']['arena_bytes']},stack_hwm=-1,stack_size=-1]"]
    # nothing before an upload / an inference
    assert dut.error("results")[0] == "E_NO_RESULT"
    assert dut.error("ef-out")[0] == "E_NO_RESULT"
    assert dut.error("infer 1 0")[0] == "E_NO_INPUT"
    assert dut.error("ef-ops")[0] == "E_NO_INPUT"
    assert dut.error("ef-dump 0")[0] == "E_NO_INPUT"
    assert dut.ok("ef-crc") == ["m-ef-in-crc32-[bytes=0,crc32=00000000]"]
    dut.assert_quiet()


def test_upload_infer_results_match_edgeforge_run(dut, tiny_build: Path, cli, tmp_path: Path) -> None:
    x = _inputs(tiny_build, 6)
    y = _edgeforge_run(cli, tiny_build, x, tmp_path)
    spec = _manifest(tiny_build)["model"]["outputs"][0]
    for k in range(len(x)):
        data = x[k].tobytes()
        dut.upload(data)
        assert dut.in_crc() == (len(data), crc32(data))
        assert dut.db_print() == data
        t0, t1, values = dut.infer(3, 1)
        assert t1 >= t0
        raw = dut.raw_output()
        assert raw == y[k].tobytes(), f"input {k}: firmware output differs from edgeforge run"
        # dequantised with 6 decimals, correctly rounded (the 1/256 steps are exact: printf's %.6f agrees)
        want = "m-results-[" + ",".join(f"{v:.6f}" for v in _dequant(raw, spec)) + "]"
        # `results` re-prints the same line, ef-out stays the same
        assert dut.ok("results") == [want]
        assert [float(v) for v in want[len("m-results-[") : -1].split(",")] == values
        assert dut.raw_output() == raw
    dut.assert_quiet()


def test_upload_in_small_and_odd_chunks(dut, tiny_build: Path) -> None:
    data = _inputs(tiny_build, 1, seed=5)[0].tobytes()
    assert dut.ok(f"db load {len(data)}") == [f"m-[Expecting {len(data)} bytes]"]
    pos = 0
    for size in [1, 7, 26, 30]:
        lines = dut.ok("db " + data[pos : pos + size].hex().upper())  # case-insensitive hex
        pos += size
        assert lines == (["m-load-done"] if pos == len(data) else [])
    assert pos == len(data)
    assert dut.db_print() == data
    # db print [count] [offset]
    assert dut.ok("db print 3 9") == ["m-buffer-" + "-".join(f"{b:02x}" for b in data[9:12])]
    # a new db load restarts the upload; infer refuses the incomplete buffer
    dut.ok(f"db load {len(data)}")
    assert dut.in_crc() == (0, 0)
    assert dut.error("infer 1 0")[0] == "E_NO_INPUT"
    dut.ok("db " + data[:38].hex())
    assert dut.in_crc() == (38, crc32(data[:38]))
    code, msg = dut.error("db " + data[:30].hex())  # 38 + 30 > 64: nothing written
    assert (code, msg) == ("E_DB_OVERFLOW", "writing 30 bytes at 38 exceeds the 64 bytes loaded")
    assert dut.in_crc() == (38, crc32(data[:38]))
    assert dut.ok("db " + data[38:].hex()) == ["m-load-done"]
    assert dut.in_crc() == (len(data), crc32(data))
    # a complete upload of the wrong size
    dut.ok("db load 10")
    dut.ok("db " + data[:10].hex())
    code, msg = dut.error("infer 1 0")
    assert code == "E_INPUT_SIZE" and msg == "uploaded 10 bytes, the model takes 64"


def test_command_line_limit_is_80_characters(dut, tiny_build: Path) -> None:
    """MLPerf's 80 characters for every command; `db <hex>` lines (only) up to the 256 bytes ef-info announces."""
    dut.upload(bytes(64))
    dut.ok("db load 64")
    assert dut.error("help " + "x" * 76) == ("E_LINE_TOO_LONG", "line longer than 80 characters discarded")
    assert dut.error("db " + "ab" * 38 + "c")[0] == "E_HEX_ODD"  # 80 characters: parsed
    assert dut.error("db " + "ab" * 263) == ("E_LINE_TOO_LONG", "line longer than 527 characters discarded")
    assert dut.in_crc() == (0, 0)
    ok80 = "db " + "cd" * 38 + " "  # trailing space: still 80 characters
    assert dut.ok(ok80) == []
    assert dut.in_crc() == (38, crc32(b"\xcd" * 38))
    # a 64-byte db line (131 characters) is a bench-protocol-2 upload line
    dut.ok("db load 64")
    assert dut.ok("db " + bytes(range(64)).hex()) == ["m-load-done"]
    assert dut.in_crc() == (64, crc32(bytes(range(64))))
    # the MLPerf runner's 31-byte lines (65 characters) are well inside the limit
    dut.upload(bytes(range(64)))
    dut.assert_quiet()


def test_request_numbers_and_checked_lines(dut, tiny_build: Path) -> None:
    """Bench protocol 2: a command ending in `#<n>` gets every m-ef- line tagged n and CRC-checked, and a checked
    m-ef-done-[status=...] line just before m-ready (the code of its e- line when it failed); MLPerf lines are
    unchanged."""
    from benchdut import unchecked

    def raw(cmd: str) -> list[str]:
        dut.write(cmd.encode() + b"%")
        out = []
        while (line := dut.read_line()) != "m-ready":
            out.append(line)
        return out

    lines = raw("ef-mem #77")
    assert len(lines) == 2 and unchecked(lines[1], 77) == "m-ef-done-[status=ok]"
    assert unchecked(lines[0], 77).startswith("m-ef-mem-[arena=")
    lines = raw("bogus #78")
    assert lines[0] == "e-[E_UNKNOWN:unknown command 'bogus']" and unchecked(lines[1], 78) == "m-ef-done-[status=E_UNKNOWN]"
    lines = raw("db load 0 #4294967295")
    assert lines[0].startswith("e-[E_ARG:") and unchecked(lines[1], 4294967295) == "m-ef-done-[status=E_ARG]"
    lines = raw("name #5")
    assert lines[0] == "m-name-dut-[edgeforge]" and unchecked(lines[1], 5) == "m-ef-done-[status=ok]"
    assert [unchecked(ln, 6) for ln in raw("#6")] == ["m-ef-done-[status=ok]"]  # a numbered resync no-op
    assert raw("name #x")[0].startswith("e-[E_ARG:")  # not a request number: an argument, refused
    # one flipped bit anywhere in a checked line fails its CRC
    line = raw("ef-info #9")[0]
    for i in range(len(line) - 9):
        bad = line[:i] + chr(ord(line[i]) ^ 0x04) + line[i + 1:]
        with pytest.raises(AssertionError):
            unchecked(bad, 9)
    dut.assert_quiet()


def test_infer_sequence_and_defaults(dut, tiny_build: Path) -> None:
    dut.upload(_inputs(tiny_build, 1)[0].tobytes())
    lines = dut.ok("infer")  # MLPerf defaults: N = 1, W = 10
    assert lines[:3] == ["m-warmup-start-10", "m-warmup-done", "m-infer-start-1"]
    lines = dut.ok("infer   4")  # repeated spaces are one separator; W defaults to 10
    assert lines[:3] == ["m-warmup-start-10", "m-warmup-done", "m-infer-start-4"]
    t0, t1, values = dut.infer(200, 0)
    assert t1 >= t0 and len(values) == 10
    assert all(0.0 <= v <= 0.997 for v in values)  # softmax outputs, 1/256 steps


def test_ef_ops_per_op_lines(dut, tiny_build: Path) -> None:
    from edgeforge.model.tflite import read_tflite

    m = _manifest(tiny_build)
    info = read_tflite((tiny_build / "model.tflite").read_bytes())
    names = [info.ops[i].op for i in m["native"]["schedule"]]
    dut.upload(_inputs(tiny_build, 1)[0].tobytes())
    dut.infer(1, 0)
    before = dut.raw_output()
    lines = dut.ok("ef-ops")
    ops = [re.fullmatch(r"m-ef-op-\[(\d+),([A-Z0-9_]+),(\d+),(\d+)\]", ln) for ln in lines[: len(names)]]
    assert all(ops), lines
    assert [int(o.group(1)) for o in ops] == list(range(len(names)))
    assert [o.group(2) for o in ops] == names
    total = fields(lines[len(names)], "m-ef-ops-total-[")
    assert int(total["us"]) == sum(int(o.group(3)) for o in ops)
    assert int(total["cycles"]) == sum(int(o.group(4)) for o in ops) == 0  # the host port has no cycle counter
    timer = fields(lines[len(names) + 1], "m-ef-ops-timer-[")
    assert timer["us_source"] == "clock_gettime" and timer["cycles_source"] == "none"
    assert int(timer["invoke_us"]) >= int(total["us"])
    assert len(lines) == len(names) + 2
    assert dut.raw_output() == before  # ef-ops ran one inference on the same input


def test_ef_dump_matches_tflite_micro_intermediates(dut, tiny_build: Path) -> None:
    from edgeforge.model.tflite import read_tflite
    from tflite_micro.python.tflite_micro import runtime

    m = _manifest(tiny_build)
    model = (tiny_build / "model.tflite").read_bytes()
    info = read_tflite(model)
    schedule = m["native"]["schedule"]
    ip = runtime.Interpreter.from_bytes(model, arena_size=1 << 20,
                                        intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    for seed in range(3):
        x = _inputs(tiny_build, 1, seed=seed)
        ip.set_input(x, 0)
        ip.invoke()
        dut.upload(x[0].tobytes())
        for k, op_index in enumerate(schedule):
            want = np.asarray(ip.GetTensor(info.ops[op_index].outputs[0], 0)["tensor_data"]).tobytes()
            assert dut.dump(k) == want, f"seed {seed}: op {k} ({info.ops[op_index].op}) differs from tflite-micro"
        assert dut.dump(len(schedule) - 1) == dut.raw_output()  # the last op's output is the model output
    code, msg = dut.error(f"ef-dump {len(schedule)}")
    assert code == "E_ARG" and msg == f"ef-dump K needs an op index 0..{len(schedule) - 1}"


def test_garbage_keeps_state_and_framing(dut, tiny_build: Path, cli, tmp_path: Path) -> None:
    x = _inputs(tiny_build, 2, seed=11)
    y = _edgeforge_run(cli, tiny_build, x, tmp_path)
    first, second = x[0].tobytes(), x[1].tobytes()
    dut.upload(first)
    _, _, values = dut.infer(1, 0)
    raw = dut.raw_output()
    assert raw == y[0].tobytes()
    results_line = dut.ok("results")

    rng = random.Random(1234)
    run_items(dut, garbage(rng, len(first), n_random=60))
    # nothing changed: input buffer, its CRC, the last results, and the output the input gives
    assert dut.in_crc() == (len(first), crc32(first))
    assert dut.db_print() == first
    assert dut.ok("results") == results_line
    assert dut.raw_output() == raw
    assert dut.infer(1, 0)[2] == values
    assert dut.raw_output() == raw

    # an upload interleaved with garbage (write past N, bad hex, an over-long valid-looking line) still lands
    items = [Item(f"db load {len(second)}".encode(), lines=(f"m-[Expecting {len(second)} bytes]",)),
             Item(b"db " + second[:31].hex().encode())]
    items += garbage(rng, len(second), n_random=10)[:12]
    items = [it for it in items if it.data != b"db 00"]  # mid-upload, 1 byte would fit: not an error here
    items += [Item(b"db " + second[31:].hex().encode() + b"00", code="E_DB_OVERFLOW"),  # one byte past N
              Item(b"db " + (b"ab" * 40), code="E_DB_OVERFLOW"),  # 83 characters: a protocol-2 db line, too many bytes
              Item(b"db " + (b"ab" * 300), code="E_LINE_TOO_LONG"),
              Item(b"db " + second[31:62].hex().encode() + b"x", code="E_HEX_DIGIT"),
              Item(b"db " + second[31:62].hex().encode()[:-1], code="E_HEX_ODD"),
              Item(b"db " + second[31:].hex().encode(), lines=("m-load-done",))]
    run_items(dut, items)
    assert dut.in_crc() == (len(second), crc32(second))
    dut.infer(1, 0)
    assert dut.raw_output() == y[1].tobytes()


def test_errors_are_stable(dut, tiny_build: Path) -> None:
    """The same mistake gives the same line, every time."""
    dut.upload(bytes(64))
    for cmd in ["db load 100000", "db zz", "db 0", "foo bar", "infer x", "ef-dump 77", "db 00"]:
        first = dut.error(cmd)
        assert dut.error(cmd) == first
        assert ERROR_RE.match(f"e-[{first[0]}:{first[1]}]")
    assert dut.error("db load 100000") == ("E_DB_SIZE", "db load 100000 exceeds the maximum of 64 bytes")
    assert dut.error("db zz") == ("E_HEX_DIGIT", "invalid hex digit 0x7a at position 0")
    assert dut.error("foo bar") == ("E_UNKNOWN", "unknown command 'foo'")
    assert dut.error("m-ready")[1] == "unknown command 'm?ready'"  # echoes can never look like m-ready


def test_end_of_input_exits_zero_and_nothing_follows_m_ready(host_fw: Path) -> None:
    with host_process(host_fw) as (d, proc):
        d.boot()
        d.write(b"name%db load 64%%bogus%")
        d._close()  # end of stdin
        assert proc.wait(10) == 0
        assert d.reply() == ["m-name-dut-[edgeforge]"]
        assert d.reply() == ["m-[Expecting 64 bytes]"]
        assert d.reply() == []
        assert ERROR_RE.match(d.reply()[0])
        with pytest.raises(EOFError):
            d.read_line(2)


def test_build_without_op_hooks_refuses_ef_ops(tiny_build: Path, tmp_path: Path) -> None:
    exe = firmware(tiny_build / "native", tmp_path, "host", HOOKS=0)
    with host_process(exe) as (d, _):
        d.boot()
        d.upload(bytes(64))
        assert d.error("ef-ops")[0] == "E_UNSUPPORTED"
        assert d.error("ef-dump 0")[0] == "E_UNSUPPORTED"
        d.infer(1, 0)  # the plain path is unaffected


def test_makefile_requires_native(tmp_path: Path) -> None:
    proc = make_firmware(tmp_path / "nope", tmp_path, "host")
    assert proc.returncode != 0 and "ef_model.c not found" in proc.stderr


@pytest.mark.mlperf
def test_kws_host_sim_matches_edgeforge_run(mlperf: Path, tmp_path_factory: pytest.TempPathFactory, cli,
                                            tmp_path: Path) -> None:
    build = build_native(mlperf / "kws" / "kws_ref_model_int8.tflite", tmp_path_factory.mktemp("kws") / "build")
    exe = firmware(build / "native", build / "bench", "host", MODEL_NAME="kws01")
    files = sorted((mlperf / "samples" / "kws01").glob("*.bin"))[:24]
    assert len(files) >= 20
    x = np.stack([np.frombuffer(f.read_bytes(), np.int8).reshape(49, 10, 1) for f in files])
    y = _edgeforge_run(cli, build, x, tmp_path)
    with host_process(exe) as (d, _):
        d.boot()
        assert d.ok("profile")[1] == "m-model-[kws01]"
        for k, f in enumerate(files):
            d.upload(f.read_bytes())
            _, _, values = d.infer(1, 0)
            assert d.raw_output() == y[k].tobytes(), f.name
            if f.name.startswith("tst_000000"):
                assert int(np.argmax(values)) == 7 and values[7] == pytest.approx(0.996, abs=1e-3)  # Stop
