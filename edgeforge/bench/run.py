"""``edgeforge bench``: drives a board over serial and checks what it reports against the build."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeforge.bench.firmware import IMAGES, build_image
from edgeforge.bench.protocol import CHUNK, INTEGRITY_EXTENSIONS, PROTO, DutClient, check_line
from edgeforge.bench.session import BenchReport, run_session
from edgeforge.data import InputQuant
from edgeforge.device.boards import (BOARDS, RunningBoard, emulated_board, host_sim, process_board, qemu_board,
                                     ssh_command)
from edgeforge.device.transport import DeviceError, SerialTransport
from edgeforge.errors import UsageError
from edgeforge.events import NullReporter, Reporter
from edgeforge.manifest import Manifest
from edgeforge.run import read_build, read_inputs, run_native
from edgeforge.target import load_registry
from edgeforge.runtimes import Runtime


@dataclass(frozen=True)
class BenchOutcome:
    doc: dict[str, Any]  # what bench.json holds
    fits: bool
    outputs_match: bool


@contextlib.contextmanager
def open_board(build_dir: Path, board: str | None, port: str | None, manifest: Manifest,
               hw: dict, remote_dir: str = "edgeforge", info: Any = None,
               tflm_src: Path | None = None) -> Iterator[RunningBoard]:
    if port and not port.startswith("ssh://"):
        yield RunningBoard(port, False, f"board on {port}")
        return
    if port and port.startswith("ssh://"):
        cmd = ssh_command(port, "python3", f"{remote_dir}/run_model.py", "--serve")
        with process_board(cmd, f"{port} (bundle runner over ssh)") as running:
            yield running
        return
    if board not in BOARDS:
        raise UsageError(f"unknown board {board!r}", f"use --board {' or '.join(BOARDS)}, or --port URL for a real one")
    if board == "pi-local":
        runner = build_dir / "bundle" / "run_model.py"
        if not runner.is_file():
            raise UsageError(f"{build_dir} has no bundle runner", "pi-local benches Android/Raspberry Pi builds")
        with process_board([sys.executable, str(runner), "--serve"], "pi-local (the bundle's run_model.py on "
                           "this machine, LiteRT)") as running:
            yield running
        return
    image = build_dir / "firmware" / IMAGES[board]
    if not image.is_file():
        image = build_image(build_dir, board, manifest, hw, info, tflm_src)
    emulated = emulated_board(board)
    ctx = host_sim(image) if emulated is None else qemu_board(emulated, image)
    with ctx as running:
        yield running


def _connect(client: DutClient, attempts: int = 20) -> None:
    """Reach a ready device whatever it is doing: boot noise, a half-sent command, a missed banner."""
    for _ in range(attempts):
        try:
            client.resync(timeout=2.0)
            return
        except DeviceError:
            time.sleep(0.1)
    raise DeviceError("the device never answered m-ready", "is the bench firmware flashed (edgeforge flash)?")


def required_extensions(manifest: Manifest) -> tuple[str, ...]:
    """What the device must offer for this build: the integrity checks always; the memory and per-op reports
    too for a native build, whose bench firmware has them (their absence means damage or another firmware)."""
    native = manifest.target.runtime == Runtime.NATIVE
    return INTEGRITY_EXTENSIONS + (("ef-mem", "ef-ops") if native else ())


def _identify(client: DutClient, manifest: Manifest, in_bytes: int, build_dir: Path, reads: int = 4) -> dict[str, str]:
    """The device's identity, checked (CRC) and matched to the request; refuses (exit 4) a device that runs
    another model, lacks what the build's firmware has, or never proves anything."""
    want = manifest.model.sha256
    last: DeviceError | None = None
    for _ in range(reads):
        try:
            identity = client.identify()
        except DeviceError as exc:
            last = exc
            with contextlib.suppress(DeviceError):
                client.resync()
            continue
        if identity.get("model_sha256") != want:  # a checked line: one mismatch is the device's own word
            raise DeviceError(f"the device runs another model (sha256 {identity.get('model_sha256', '?')[:12]}…, "
                              f"this build {want[:12]}…)", f"flash this build first: edgeforge flash {build_dir}")
        _check_identity(identity, manifest, in_bytes, build_dir)
        return identity
    raise DeviceError(f"the device did not prove it runs this build's model (no checked answer to `ef-info`: "
                      f"{last.message if last else 'no answer'})",
                      f"flash this build (edgeforge flash {build_dir}); to bench a plain MLPerf Tiny DUT without "
                      "the identity and integrity checks, pass --plain-dut")


def _check_identity(identity: dict[str, str], manifest: Manifest, in_bytes: int, build_dir: Path) -> None:
    proto = identity.get("proto", "")
    if not proto.isdigit() or int(proto) < PROTO:
        raise DeviceError(f"the device speaks bench protocol {proto or '?'}, this edgeforge needs {PROTO} or later",
                          f"reflash the bench firmware: edgeforge flash {build_dir}")
    missing = [e for e in required_extensions(manifest) if e not in identity.get("ext", "").split(";")]
    if missing:
        raise DeviceError(f"the device lacks {', '.join(missing)}, which this build's bench firmware has",
                          f"reflash the bench firmware: edgeforge flash {build_dir}")
    wrong = [(k, identity.get(k), str(v)) for k, v in (("target", manifest.target.id), ("in_bytes", in_bytes))
             if identity.get(k) != str(v)]
    arena = (manifest.native or {}).get("arena_bytes")
    if manifest.target.runtime == Runtime.NATIVE and arena is not None and identity.get("arena") != str(arena):
        wrong.append(("arena", identity.get("arena"), str(arena)))
    if wrong:
        k, got, exp = wrong[0]
        raise DeviceError(f"the device's {k} is {got}, this build's is {exp}",
                          f"flash this build first: edgeforge flash {build_dir}")


def _results_to_bytes(out: Any) -> Any:
    """For a plain MLPerf DUT: its dequantised ``m-results`` values back to output bytes (unchecked)."""
    dtype = np.dtype(out.dtype)

    def decode(values: tuple[float, ...]) -> bytes:
        v = np.asarray(values, dtype=np.float64)
        if dtype.kind in "iu" and out.scale:
            info = np.iinfo(dtype)
            v = np.clip(np.rint(v / out.scale[0] + out.zero_point[0]), info.min, info.max)
        return v.astype(dtype).tobytes()

    return decode


def _inputs(path: Path | None, info: Any, count: int, manifest: Manifest,
            data_quant: InputQuant | None = None) -> np.ndarray:
    inp = info.input_tensors()[0]
    sample = inp.shape[1:] if len(inp.shape) > 1 and inp.shape[0] == 1 else inp.shape
    if path is None:
        if data_quant is not None:
            raise UsageError("--data-quant describes --input data", "add --input, or drop --data-quant")
        rng = np.random.default_rng(0)
        lo, hi = (-128, 128) if inp.dtype == "int8" else (0, 256)
        return rng.integers(lo, hi, (count, *sample)).astype(np.dtype(inp.dtype))
    x, _ = read_inputs(path, info, manifest, data_quant)  # the same input convention as `edgeforge run`
    return x[:count]


def bench_build(build_dir: Path, board: str | None, port: str | None, runs: int, warmup: int,
                input_path: Path | None, count: int, reporter: Reporter | None = None,
                baud: int | None = None, data_quant: InputQuant | None = None,
                plain_dut: bool = False, tflm_src: Path | None = None) -> BenchOutcome:
    """Bench a build on a board. ``plain_dut``: the user asked to bench a plain MLPerf Tiny DUT (no identity
    check, no checked figures); otherwise the device must prove it runs this build's model (exit 4)."""
    reporter = reporter or NullReporter()
    manifest, model, info = read_build(build_dir)
    target = load_registry().get(manifest.target.id)
    x = _inputs(input_path, info, count, manifest, data_quant)
    out = info.output_tensors()[0]
    out_sample = out.shape[1:] if len(out.shape) > 1 and out.shape[0] == 1 else out.shape
    if manifest.target.runtime == Runtime.NATIVE:
        expected = run_native(build_dir / "native", x.reshape((len(x), *info.input_tensors()[0].shape)),
                              tuple(out_sample), out.dtype)
    else:
        from edgeforge.hostrun import run_batch

        expected = run_batch(model, manifest.target.runtime, x.reshape((len(x), *info.input_tensors()[0].shape)))
    expected_latency = manifest.estimates.latency_ms / 1000
    reporter.stage(f"benchmarking {len(x)} input(s) on {board or port}")
    with open_board(build_dir, board, port, manifest, target.hardware,
                    target.data["flash"].get("remote_dir", "edgeforge"), info, tflm_src) as running:
        transport = SerialTransport(running.url, baud or int(target.data.get("serial", {}).get("baud", 115200)))
        try:
            client = DutClient(transport, plain=plain_dut)
            _connect(client)
            identity = {} if plain_dut else _identify(client, manifest, x[0].nbytes, build_dir)
            report = run_session(client, transport, identity, x, expected, runs, warmup, expected_latency,
                                 on_retry=reporter.warning, progress=reporter.progress,
                                 decode_results=_results_to_bytes(out))
            if not report.all_match and "ef-dump" in identity.get("ext", ""):
                if not (build_dir / "firmware" / IMAGES["host-sim"]).is_file():
                    with contextlib.suppress(DeviceError, UsageError):  # the host's reference dumps
                        build_image(build_dir, "host-sim", manifest, target.hardware)
                report.first_divergence = _first_divergence(client, build_dir, x[[s.index for s in report.samples
                                                                                  if not s.matches_host][0]])
        finally:
            transport.close()
    agreement = output_agreement(report, expected, out)
    # native: the same C as `edgeforge run`; tflm: TFLM's kernels against the tflite-micro interpreter on the host
    # (CMSIS-NN's int8 kernels are bit-exact to TFLM's reference ones)
    exact = manifest.target.runtime in (Runtime.NATIVE, Runtime.TFLM)
    return _outcome(build_dir, manifest, target, running, report, runs, warmup, agreement, exact, not plain_dut)


def output_agreement(report: BenchReport, expected: np.ndarray, out: Any) -> dict[str, float]:
    """Device vs host outputs, dequantized: max-abs error, RMSE, cosine similarity, top-1 agreement."""
    dtype = np.dtype(out.dtype)
    dev = np.stack([np.frombuffer(s.output, dtype=dtype) if len(s.output) == expected[0].nbytes
                    else np.full(expected[0].size, np.nan) for s in report.samples]).astype(np.float64)
    ref = expected.reshape(len(expected), -1).astype(np.float64)
    if dtype.kind in "iu" and out.scale:
        dev, ref = (dev - out.zero_point[0]) * out.scale[0], (ref - out.zero_point[0]) * out.scale[0]
    diff = dev - ref
    norms = np.linalg.norm(dev, axis=1) * np.linalg.norm(ref, axis=1)
    cos = np.where(norms > 0, np.sum(dev * ref, axis=1) / np.where(norms > 0, norms, 1), 1.0)
    return {"max_abs_error": float(np.nanmax(np.abs(diff))) if diff.size else 0.0,
            "rmse": float(np.sqrt(np.nanmean(diff**2))) if diff.size else 0.0,
            "cosine_min": float(np.nanmin(cos)) if cos.size else 1.0,
            "top1_agreement": float(np.mean(dev.argmax(axis=1) == ref.argmax(axis=1))) if ref.size else 1.0}


def _first_divergence(client: DutClient, build_dir: Path, x: np.ndarray) -> dict[str, Any] | None:
    """Walk the ops in execution order; name the first whose output differs from the host's (the same
    generated C compiled here, dumped op by op)."""
    from edgeforge.bench.protocol import ProtocolError

    client.upload(np.ascontiguousarray(x).tobytes())
    ops = client.identify().get("ops", "0")
    for k in range(int(ops)):
        try:
            device = client.dump(k)
        except ProtocolError:
            return None
        host = _host_dump(build_dir, x, k)
        if host is not None and device != host:
            diff = next(i for i, (a, b) in enumerate(zip(device, host)) if a != b) if len(device) == len(host) else 0
            return {"op": k, "first_differing_byte": diff}
    return None


def _host_dump(build_dir: Path, x: np.ndarray, k: int) -> bytes | None:
    """Op ``k``'s output from the same firmware built for this machine (the host-sim image), as reference."""
    image = build_dir / "firmware" / IMAGES["host-sim"]
    if not image.is_file():
        return None
    import subprocess

    data = np.ascontiguousarray(x).tobytes()
    script = f"db load {len(data)}%" + "".join(f"db {data[i:i + CHUNK].hex()}%" for i in range(0, len(data), CHUNK))
    script += f"ef-dump {k}%"
    out = subprocess.run([str(image)], input=script.encode(), capture_output=True, timeout=60).stdout.decode()
    lines = [check_line(ln.strip()) for ln in out.splitlines() if ln.startswith("m-ef-dump-[")]
    if any(c is None for c in lines):
        return None
    return bytes.fromhex("".join(c[0][len("m-ef-dump-["):-1] for c in lines if c is not None))


def _outcome(build_dir: Path, manifest: Manifest, target: Any, running: RunningBoard, report: BenchReport, runs: int,
             warmup: int, agreement: dict[str, float], exact: bool, checked: bool) -> BenchOutcome:
    budget = target.budget
    checks = []
    if running.emulated:
        instructions = report.median_ms * 1e6  # -icount shift=0: 1 instruction per virtual ns
        latency = {"median_ms": None, "p90_ms": None, "emulated": True,
                   "instructions_median": round(instructions),
                   "instructions_per_mac": round(instructions / max(manifest.model.macs, 1), 3)}
    else:
        latency = {"median_ms": round(report.median_ms, 4), "p90_ms": round(report.p90_ms, 4), "emulated": False}
        if not running.description.startswith("host-sim"):
            checks.append({"budget": "latency_ms", "limit": budget.latency_ms, "value": latency["median_ms"],
                           "fits": latency["median_ms"] <= budget.latency_ms})
    if report.memory.get("arena", -1) >= 0:
        ram = report.memory["arena"] + max(report.memory.get("stack_hwm", 0), 0)
        checks.append({"budget": "model_ram_bytes", "limit": budget.model_ram_bytes, "value": ram,
                       "fits": ram <= budget.model_ram_bytes})
    doc = {
        "format": "edgeforge-bench/1",
        "board": running.description,
        "url": running.url,
        "identity": report.identity,
        "checked": checked,  # False: a plain MLPerf DUT (--plain-dut): no identity, no CRC on any figure
        "runs": runs, "warmup": warmup, "inputs": len(report.samples), "retries": report.retries,
        "latency": latency,
        "latencies_us": [round(s.latency_us, 1) for s in report.samples],
        "memory": report.memory,
        "ops": [{"index": i, "op": n, "us": us, "cycles": cy} for i, n, us, cy in report.ops],
        "outputs": {"compared_with": "edgeforge run (host reference)", "byte_identical": report.all_match,
                    "required": f"byte-identical ({manifest.target.runtime} build)" if exact else
                    "top-1 agreement 1.0 and cosine >= 0.99 (interpreter builds may differ in the last bit)",
                    **agreement,
                    "mismatches": [s.index for s in report.samples if not s.matches_host],
                    "first_divergence": report.first_divergence},
        "budgets": checks,
        "model_sha256": manifest.model.sha256,
    }
    doc["outputs"]["accepted"] = report.all_match if exact else (
        agreement["top1_agreement"] == 1.0 and agreement["cosine_min"] >= 0.99)
    (build_dir / "bench.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    history = build_dir.parent / "bench-history" / f"{manifest.target.id}.jsonl"
    history.parent.mkdir(exist_ok=True)
    with history.open("a") as f:
        f.write(json.dumps({"build": str(build_dir), "model_sha256": doc["model_sha256"], "board": doc["board"],
                            "latency": latency, "memory": report.memory, "byte_identical": report.all_match},
                           sort_keys=True) + "\n")
    matches = report.all_match if exact else (agreement["top1_agreement"] == 1.0 and agreement["cosine_min"] >= 0.99)
    return BenchOutcome(doc, all(c["fits"] for c in checks), matches)
