"""Host side of the MLPerf Tiny device-under-test protocol (BENCH_PROTOCOL.md) plus edgeforge's extensions.

Every command is ASCII text ending in ``%``; the device answers lines and ends every command with exactly one
``m-ready``. Nothing reported here comes from data that failed its check: raw outputs and uploads are
verified with CRC-32, and a reboot seen mid-command (a new boot banner) is an error.
"""

from __future__ import annotations

import contextlib
import re
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from edgeforge.device.transport import DeviceError, DeviceTimeout, SerialTransport

CHUNK = 31  # bytes per `db` line: the official runner's size, keeps each command within 80 characters
_ERR = re.compile(r"^e-\[(.*)\]$")
_LAP = re.compile(r"^m-lap-us-(\d+)$")


#: The extensions through which the host verifies what it reports (upload CRC, CRC-checked timings): every
#: edgeforge firmware and the Pi runner list them in ``ef-info``.
INTEGRITY_EXTENSIONS = ("ef-info", "ef-out", "ef-crc", "ef-lap")


class ProtocolError(DeviceError):
    """The device answered something the protocol does not allow, or a check failed."""


@dataclass(frozen=True)
class InferResult:
    runs: int
    warmup: int
    elapsed_us: int  # t1 - t0 (32-bit wrap handled)
    results: tuple[float, ...]

    @property
    def latency_us(self) -> float:
        return self.elapsed_us / self.runs


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


@contextlib.contextmanager
def _damaged(what: str) -> Iterator[None]:
    """A line that does not parse was damaged on the wire: a protocol error (retried), never a crash."""
    try:
        yield
    except (KeyError, ValueError, IndexError) as exc:
        raise ProtocolError(f"damaged answer to `{what}` ({type(exc).__name__})", "retrying") from None


def _fields(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _checked_info(line: str) -> dict[str, str] | None:
    """The fields of an ``m-ef-info-[...]`` line, or None when its extension list lacks the integrity
    extensions every edgeforge firmware and runner has: such a line was damaged on the wire, and believing
    it would switch the upload and timing checks off for the whole session."""
    info = _fields(line[len("m-ef-info-[") : -1])
    return info if set(INTEGRITY_EXTENSIONS) <= set(info.get("ext", "").split(";")) else None


class DutClient:
    def __init__(self, transport: SerialTransport, line_timeout: float = 5.0) -> None:
        self.t = transport
        self.line_timeout = line_timeout
        self.info: dict[str, str] = {}

    # -- framing ------------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 10.0) -> list[str]:
        """Skip boot noise until ``m-ready``; remembers the identity line when the boot prints one."""
        lines = []
        while True:
            line = self.t.read_line(timeout)
            lines.append(line)
            if line.startswith("m-ef-info-[") and (info := _checked_info(line)) is not None:
                self.info = info  # a damaged banner is skipped: `ef-info` is asked again before any use
            if line == "m-ready":
                return lines

    def resync(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Back to a known state after a failed exchange: end whatever partial line the device holds with a
        bare ``%`` (a no-op answered by ``m-ready``) and read until the line has been quiet for ``quiet`` s."""
        self.t.drain()
        self.t.write(b"%")
        deadline = time.monotonic() + timeout
        ready = False
        while time.monotonic() < deadline:
            try:
                line = self.t.read_line(quiet)
            except DeviceTimeout:
                if ready:
                    return
                self.t.write(b"%")
                continue
            ready = ready or line == "m-ready"
        raise DeviceError("the device did not come back to m-ready", "check the link; reset the board")

    def command(self, cmd: str, timeout: float | None = None) -> list[str]:
        """Send ``cmd%``; the lines up to ``m-ready``. DeviceError on an ``e-`` line or a reboot."""
        if len(cmd) > 79:
            raise ValueError(f"command too long for the DUT buffer: {cmd[:20]}...")
        self.t.write(cmd.encode("ascii") + b"%")
        lines: list[str] = []
        while True:
            line = self.t.read_line(timeout or self.line_timeout)
            if line == "m-ready":
                break
            if line.startswith("m-timestamp-mode-"):
                raise ProtocolError(f"the device rebooted during `{cmd.split()[0]}`",
                                    "check its power supply and watchdog; the run is discarded")
            lines.append(line)
        errors = [m.group(1) for ln in lines if (m := _ERR.match(ln))]
        if errors:
            raise ProtocolError(f"the device refused `{cmd[:30]}`: {errors[0]}", "see the firmware README")
        return lines

    # -- MLPerf commands ----------------------------------------------------------------------
    def name(self) -> str:
        for ln in self.command("name"):
            if m := re.match(r"^m-name-dut-\[(.+)\]$", ln):
                return m.group(1)
        raise ProtocolError("no m-name-dut line in the answer to `name`", "is this an MLPerf Tiny DUT?")

    def identify(self) -> dict[str, str]:
        """edgeforge's identity line (model sha256, target, arena...); {} for a plain MLPerf DUT."""
        try:
            lines = self.command("ef-info")
        except ProtocolError:
            return {}
        for ln in lines:
            if ln.startswith("m-ef-info-["):
                info = _checked_info(ln)
                if info is None:
                    raise ProtocolError("the identity line arrived damaged (incomplete extension list)", "retrying")
                self.info = info
        return self.info

    def upload(self, data: bytes) -> None:
        self.command(f"db load {len(data)}")
        done = False
        for i in range(0, len(data), CHUNK):
            lines = self.command("db " + data[i : i + CHUNK].hex())
            done = done or "m-load-done" in lines
        if not done:
            raise ProtocolError("the device did not confirm the upload (no m-load-done)", "retrying may help")
        if "ef-crc" in self.info.get("ext", ""):
            got = self.in_crc()
            if got != (len(data), crc32(data)):
                raise ProtocolError(f"upload corrupted on the wire (device CRC {got[1]:08x} over {got[0]} bytes, "
                                    f"expected {crc32(data):08x})", "retrying")

    def in_crc(self) -> tuple[int, int]:
        for ln in self.command("ef-crc"):
            if ln.startswith("m-ef-in-crc32-["):
                with _damaged("ef-crc"):
                    f = _fields(ln[len("m-ef-in-crc32-[") : -1])
                    return int(f["bytes"]), int(f["crc32"], 16)
        raise ProtocolError("no m-ef-in-crc32 line", "firmware mismatch?")

    def infer(self, runs: int, warmup: int, timeout: float) -> InferResult:
        lines = self.command(f"infer {runs} {warmup}", timeout=timeout)
        laps = [int(m.group(1)) for ln in lines if (m := _LAP.match(ln))]
        results = [ln for ln in lines if ln.startswith("m-results-[")]
        if len(laps) != 2 or not results or "m-infer-done" not in lines:
            raise ProtocolError(f"incomplete answer to `infer`: {lines[-3:]}", "retrying")
        if "ef-lap" in self.info.get("ext", ""):
            checked = [_fields(ln[len("m-ef-lap-[") : -1]) for ln in lines if ln.startswith("m-ef-lap-[")]
            try:
                f = checked[-1]
                n, t0, t1 = int(f["n"]), int(f["t0"]), int(f["t1"])
                ok = crc32(struct.pack("<III", n, t0, t1)) == int(f["crc32"], 16)
            except (IndexError, KeyError, ValueError, struct.error):
                ok = False
            if not ok or (n, t0, t1) != (runs, laps[0], laps[1]):
                raise ProtocolError("the timing lines failed their CRC-32 check", "retrying")
        elapsed = (laps[1] - laps[0]) & 0xFFFFFFFF  # the µs counter is 32-bit and may wrap
        with _damaged("infer"):
            values = tuple(float(v) for v in results[-1][len("m-results-[") : -1].split(",") if v.strip())
        return InferResult(runs, warmup, elapsed, values)

    # -- extensions ---------------------------------------------------------------------------
    def _hex_dump(self, cmd: str, line: str, end: str) -> tuple[bytes, dict[str, str]]:
        lines = self.command(cmd)
        with _damaged(cmd):
            return self._check_dump(cmd, lines, line, end)

    def _check_dump(self, cmd: str, lines: list[str], line: str, end: str) -> tuple[bytes, dict[str, str]]:
        data = bytes.fromhex("".join(ln[len(line) : -1] for ln in lines if ln.startswith(line)))
        tail = [ln for ln in lines if ln.startswith(end)]
        if not tail:
            raise ProtocolError(f"no {end.rstrip('[')} line in the answer to `{cmd}`", "retrying")
        f = _fields(tail[-1][len(end) : -1])
        if int(f["bytes"]) != len(data) or int(f["crc32"], 16) != crc32(data):
            raise ProtocolError(f"`{cmd}` data failed its CRC-32 check", "retrying")
        return data, f

    def raw_output(self) -> bytes:
        return self._hex_dump("ef-out", "m-ef-out-[", "m-ef-out-end-[")[0]

    def dump(self, op: int) -> bytes:
        return self._hex_dump(f"ef-dump {op}", "m-ef-dump-[", "m-ef-dump-end-[")[0]

    def memory(self) -> dict[str, int]:
        for ln in self.command("ef-mem"):
            if ln.startswith("m-ef-mem-["):
                with _damaged("ef-mem"):
                    mem = {k: int(v) for k, v in _fields(ln[len("m-ef-mem-[") : -1]).items()}
                    if not {"arena", "stack_hwm"} <= set(mem):
                        raise ValueError("fields missing")
                    return mem
        raise ProtocolError("no m-ef-mem line in the answer to `ef-mem`", "retrying")

    def op_times(self, timeout: float) -> list[tuple[int, str, int, int]]:
        rows = []
        for ln in self.command("ef-ops", timeout=timeout):
            if ln.startswith("m-ef-op-["):
                with _damaged("ef-ops"):
                    i, name, us, cycles = ln[len("m-ef-op-[") : -1].split(",")
                    rows.append((int(i), name, int(us), int(cycles)))
        if [r[0] for r in rows] != list(range(len(rows))) or not all(re.fullmatch(r"[A-Z0-9_+]+", r[1]) for r in rows):
            raise ProtocolError("the per-op timing lines are damaged", "retrying")
        return rows
