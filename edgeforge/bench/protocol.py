"""Host side of the MLPerf Tiny device-under-test protocol (BENCH_PROTOCOL.md) plus edgeforge's extensions.

Every command is ASCII text ending in ``%``; the device answers lines and ends every command with exactly one
``m-ready``. Nothing reported here comes from a line that failed its check:

* every ``m-ef-`` line the device prints ends with ``|<seq>|<crc32>`` (CRC-32 over everything before the last
  ``|``): a damaged figure, op name or extension list is a protocol error (retried), never a value;
* every command carries a request number (``cmd #<seq>``, random start per session) that the device echoes in
  its checked lines and in a closing ``m-ef-done-[status=...]`` line, so a stale or desynchronised reply (a
  late ``m-ready``, an earlier command's lines) is never taken for the answer to this request;
* uploads are verified with the device's CRC-32 of the buffer, timings with the CRC-checked ``m-ef-lap`` line,
  raw outputs with a CRC-32 over their bytes; a reboot seen mid-command (a new boot banner) is an error.

``plain=True`` speaks plain MLPerf Tiny (no request numbers, no checked lines) for a DUT that has no edgeforge
extensions: only when the user asks for it explicitly, since nothing it reports is checked.
"""

from __future__ import annotations

import contextlib
import random
import re
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from edgeforge.device.transport import DeviceError, DeviceTimeout, SerialTransport

CHUNK = 31  # bytes per `db` line when the firmware announces no db_chunk: the official runner's size (80 chars)
PROTO = 2  # the bench protocol version this host speaks (checked lines, request numbers)
_ERR = re.compile(r"^e-\[(.*)\]$")
_LAP = re.compile(r"^m-lap-us-(\d+)$")
_HEX8 = re.compile(r"[0-9a-f]{8}")

#: The extensions through which the host verifies what it reports (upload CRC, CRC-checked timings and
#: outputs): every edgeforge firmware and the Pi runner list them in ``ef-info``.
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


@dataclass
class Reply:
    """One command's answer: ``checked`` holds the verified ``m-ef-`` lines of this request (suffix removed);
    ``lines`` every other line, unchecked (plain MLPerf parsing only)."""

    lines: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def first(self, prefix: str) -> str | None:
        return next((ln for ln in self.checked if ln.startswith(prefix)), None)


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def find_checked(line: str) -> tuple[str, int] | None:
    """The checked ``m-ef-`` line inside ``line``: noise before it (a burst that landed after the previous
    newline) or a line merged into it by a lost newline is skipped; None when no part passes its CRC."""
    start = line.find("m-ef-")
    while start >= 0:
        if (checked := check_line(line[start:])) is not None:
            return checked
        start = line.find("m-ef-", start + 1)
    return None


def check_line(line: str) -> tuple[str, int] | None:
    """``(body, seq)`` of a checked line ``<body>|<seq>|<crc32>``, or None when it fails its CRC."""
    head, sep, crc = line.rpartition("|")
    if not sep or not _HEX8.fullmatch(crc) or crc32(head.encode("ascii", "replace")) != int(crc, 16):
        return None
    body, sep, seq = head.rpartition("|")
    if not sep or not seq.isascii() or not seq.isdigit():
        return None
    return body, int(seq)


@contextlib.contextmanager
def _damaged(what: str) -> Iterator[None]:
    """A checked line whose content does not parse (a firmware bug, not the wire): a protocol error."""
    try:
        yield
    except (KeyError, ValueError, IndexError) as exc:
        raise ProtocolError(f"malformed answer to `{what}` ({type(exc).__name__})", "retrying") from None


def _fields(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _inside(line: str, prefix: str) -> str:
    if not line.endswith("]"):
        raise ValueError("no closing bracket")
    return line[len(prefix) : -1]


class DutClient:
    def __init__(self, transport: SerialTransport, line_timeout: float = 5.0, plain: bool = False) -> None:
        self.t = transport
        self.line_timeout = line_timeout
        self.plain = plain
        self.info: dict[str, str] = {}
        # a random start: a reply left over from another session (another host process) cannot match either
        self._seq = random.SystemRandom().randrange(1, 1 << 30)

    @property
    def chunk(self) -> int:
        """Bytes per ``db`` line: what the firmware announces (``db_chunk=``), else the MLPerf runner's 31."""
        announced = self.info.get("db_chunk", "")
        return int(announced) if announced.isdigit() and int(announced) >= CHUNK else CHUNK

    # -- framing ------------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 10.0) -> list[str]:
        """Skip boot noise until ``m-ready`` (the banner's identity line is not used: ``ef-info`` is asked)."""
        lines = []
        while True:
            line = self.t.read_line(timeout)
            lines.append(line)
            if line == "m-ready":
                return lines

    def resync(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Back to a known state after a failed exchange: end whatever partial line the device holds with a
        bare ``%`` (a no-op answered by ``m-ready``) and read until the line has been quiet for ``quiet`` s.
        Leftovers it misses cannot do harm: replies are matched to requests by number."""
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
            ready = ready or line.endswith("m-ready")
        raise DeviceError("the device did not come back to m-ready", "check the link; reset the board")

    def command(self, cmd: str, timeout: float | None = None) -> Reply:
        """Send ``cmd%`` (with a request number unless plain) and collect its answer up to ``m-ready``.

        ProtocolError on a damaged checked line, an error status, a reboot, or (plain mode) an ``e-`` line."""
        limit = 3 + 2 * self.chunk + 12 if cmd.startswith("db ") else 79
        if self.plain:
            return self._plain_command(cmd, timeout)
        self._seq = self._seq % 999_999_999 + 1
        seq = self._seq
        text = f"{cmd} #{seq}"
        if len(text) > limit:
            raise ValueError(f"command too long for the DUT buffer: {cmd[:20]}...")
        self.t.write(text.encode("ascii") + b"%")
        reply, status, errors = Reply(), None, False
        name = cmd.split()[0] if cmd.split() else cmd
        while True:
            if status is not None:  # our checked closing line came: the answer is complete, only m-ready is left
                try:
                    if self.t.read_line(min(timeout or self.line_timeout, 1.0)).endswith("m-ready"):
                        break
                except DeviceTimeout:
                    break  # a damaged m-ready: nothing of the answer is missing (stale bytes are filtered later)
                continue
            line = self.t.read_line(timeout or self.line_timeout)
            if "m-timestamp-mode-" in line:
                raise ProtocolError(f"the device rebooted during `{name}`",
                                    "check its power supply and watchdog; the run is discarded")
            if "m-ef-" in line:
                checked = find_checked(line)
                if checked is None:
                    raise ProtocolError(f"a damaged line in the answer to `{name}` (CRC mismatch)", "retrying")
                text_, got = checked
                if got != seq:
                    continue  # an earlier request's line, late: not this answer
                if text_.startswith("m-ef-done-[status="):
                    status = text_[len("m-ef-done-[status=") : -1]
                else:
                    reply.checked.append(text_)
                continue
            if line == "m-ready" and errors:
                # an e- line then m-ready without our closing line: this request failed unconfirmed (or the
                # device does not know request numbers: old or plain MLPerf firmware)
                raise ProtocolError(f"`{name}` got an error and no checked end line: {reply.lines[-1:]}",
                                    "retrying; a device without edgeforge's bench firmware needs --plain-dut")
            errors = errors or bool(_ERR.match(line))
            reply.lines.append(line)
        if status != "ok":
            why = next((m.group(1) for ln in reply.lines if (m := _ERR.match(ln)) and ln[3:].startswith(status)),
                       status)
            raise ProtocolError(f"the device refused `{cmd[:30]}`: {why}", "see the firmware README")
        return reply

    def _plain_command(self, cmd: str, timeout: float | None) -> Reply:
        if len(cmd) > 79:
            raise ValueError(f"command too long for the DUT buffer: {cmd[:20]}...")
        self.t.write(cmd.encode("ascii") + b"%")
        reply = Reply()
        while True:
            line = self.t.read_line(timeout or self.line_timeout)
            if line == "m-ready":
                break
            if line.startswith("m-timestamp-mode-"):
                raise ProtocolError(f"the device rebooted during `{cmd.split()[0]}`",
                                    "check its power supply and watchdog; the run is discarded")
            reply.lines.append(line)
        errors = [m.group(1) for ln in reply.lines if (m := _ERR.match(ln))]
        if errors:
            raise ProtocolError(f"the device refused `{cmd[:30]}`: {errors[0]}", "see the firmware README")
        return reply

    # -- MLPerf commands ----------------------------------------------------------------------
    def name(self) -> str:
        for ln in self.command("name").lines:
            if m := re.match(r"^m-name-dut-\[(.+)\]$", ln):
                return m.group(1)
        raise ProtocolError("no m-name-dut line in the answer to `name`", "is this an MLPerf Tiny DUT?")

    def identify(self) -> dict[str, str]:
        """edgeforge's identity line (model sha256, target, arena, extensions...), checked and matched to this
        request. ProtocolError when the device gives none (it then proves nothing)."""
        line = self.command("ef-info").first("m-ef-info-[")
        if line is None:
            raise ProtocolError("no identity line in the answer to `ef-info`", "retrying")
        with _damaged("ef-info"):
            self.info = _fields(_inside(line, "m-ef-info-["))
        return self.info

    def upload(self, data: bytes) -> None:
        self.command(f"db load {len(data)}")
        done = False
        for i in range(0, len(data), self.chunk):
            done = "m-load-done" in self.command("db " + data[i : i + self.chunk].hex()).lines or done
        if self.plain:
            if not done:
                raise ProtocolError("the device did not confirm the upload (no m-load-done)", "retrying may help")
            return
        got = self.in_crc()  # checked mode: the device's CRC of its buffer is the proof, not m-load-done
        if got != (len(data), crc32(data)):
            raise ProtocolError(f"upload corrupted on the wire (device CRC {got[1]:08x} over {got[0]} bytes, "
                                f"expected {crc32(data):08x})", "retrying")

    def in_crc(self) -> tuple[int, int]:
        line = self.command("ef-crc").first("m-ef-in-crc32-[")
        if line is None:
            raise ProtocolError("no m-ef-in-crc32 line", "retrying")
        with _damaged("ef-crc"):
            f = _fields(_inside(line, "m-ef-in-crc32-["))
            return int(f["bytes"]), int(f["crc32"], 16)

    def infer(self, runs: int, warmup: int, timeout: float) -> InferResult:
        reply = self.command(f"infer {runs} {warmup}", timeout=timeout)
        if self.plain:
            laps = [int(m.group(1)) for ln in reply.lines if (m := _LAP.match(ln))]
            results = [ln for ln in reply.lines if ln.startswith("m-results-[")]
            if len(laps) != 2 or not results or "m-infer-done" not in reply.lines:
                raise ProtocolError(f"incomplete answer to `infer`: {reply.lines[-3:]}", "retrying")
            with contextlib.suppress(ValueError):
                values = tuple(float(v) for v in results[-1][len("m-results-[") : -1].split(",") if v.strip())
                return InferResult(runs, warmup, (laps[1] - laps[0]) & 0xFFFFFFFF, values)
            raise ProtocolError("damaged m-results line", "retrying")
        # checked mode: the timing comes from the checked m-ef-lap line only (the m-lap-us lines are unchecked)
        line = reply.first("m-ef-lap-[")
        if line is None:
            raise ProtocolError("no m-ef-lap line in the answer to `infer`", "retrying")
        with _damaged("infer"):
            f = _fields(_inside(line, "m-ef-lap-["))
            n, t0, t1 = int(f["n"]), int(f["t0"]), int(f["t1"])
            if crc32(struct.pack("<III", n, t0, t1)) != int(f["crc32"], 16) or n != runs:
                raise ProtocolError("the timing line failed its check", "retrying")
        return InferResult(runs, warmup, (t1 - t0) & 0xFFFFFFFF, ())  # the µs counter is 32-bit and may wrap

    # -- extensions ---------------------------------------------------------------------------
    def _hex_dump(self, cmd: str, line: str, end: str) -> tuple[bytes, dict[str, str]]:
        reply = self.command(cmd)
        with _damaged(cmd):
            data = bytes.fromhex("".join(_inside(ln, line) for ln in reply.checked if ln.startswith(line)))
            tail = reply.first(end)
            if tail is None:
                raise ProtocolError(f"no {end.rstrip('[')} line in the answer to `{cmd}`", "retrying")
            f = _fields(_inside(tail, end))
            if int(f["bytes"]) != len(data) or int(f["crc32"], 16) != crc32(data):
                raise ProtocolError(f"`{cmd}` data failed its CRC-32 check", "retrying")
        return data, f

    def raw_output(self) -> bytes:
        return self._hex_dump("ef-out", "m-ef-out-[", "m-ef-out-end-[")[0]

    def dump(self, op: int) -> bytes:
        return self._hex_dump(f"ef-dump {op}", "m-ef-dump-[", "m-ef-dump-end-[")[0]

    def memory(self) -> dict[str, int]:
        line = self.command("ef-mem").first("m-ef-mem-[")
        if line is None:
            raise ProtocolError("no m-ef-mem line in the answer to `ef-mem`", "retrying")
        with _damaged("ef-mem"):
            mem = {k: int(v) for k, v in _fields(_inside(line, "m-ef-mem-[")).items()}
            if not {"arena", "stack_hwm"} <= set(mem):
                raise ValueError("fields missing")
        return mem

    def op_times(self, timeout: float) -> list[tuple[int, str, int, int]]:
        reply = self.command("ef-ops", timeout=timeout)
        rows = []
        with _damaged("ef-ops"):
            for ln in reply.checked:
                if ln.startswith("m-ef-op-["):
                    i, name, us, cycles = _inside(ln, "m-ef-op-[").split(",")
                    rows.append((int(i), name, int(us), int(cycles)))
            total = _fields(_inside(reply.first("m-ef-ops-total-[") or "", "m-ef-ops-total-["))
            complete = (int(total["us"]) == sum(r[2] for r in rows) % (1 << 32) and  # the firmware sums uint32
                        int(total["cycles"]) == sum(r[3] for r in rows) % (1 << 32))
        ops = self.info.get("ops", "")
        if (not complete or [r[0] for r in rows] != list(range(len(rows)))
                or (ops.isdigit() and len(rows) != int(ops))):
            raise ProtocolError("the per-op timing lines are incomplete", "retrying")
        return rows

