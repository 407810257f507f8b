"""TEST-ONLY helpers for the bench firmware (firmware/bench/): build it around a native build, start it as a
host process (stdin/stdout pipe) or on QEMU's mps2-an386 (UART on a TCP port, reached with pyserial's
``socket://``), and speak the MLPerf Tiny DUT protocol with strict checks (every command ends with exactly
one ``m-ready``; errors are ``e-[CODE:message]``)."""

from __future__ import annotations

import contextlib
import os
import queue
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "firmware" / "bench"
ERROR_RE = re.compile(r"^e-\[([A-Z][A-Z0-9_]*):([^\[\]]*)\]$")
RESULTS_RE = re.compile(r"^m-results-\[(-?\d+\.\d{6}(?:,-?\d+\.\d{6})*)\]$")
COMMANDS = {"name", "profile", "timestamp", "help", "db", "infer", "results", "ef-info", "ef-out", "ef-crc",
            "ef-mem", "ef-ops", "ef-dump"}
BOOT = ["m-timestamp-mode-performance", "m-lap-us-*", "m-ef-info-[*", "m-init-done", "m-ready"]


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def unchecked(line: str, seq: int = 0) -> str:
    """An ``m-ef-`` line without its ``|<seq>|<crc32>`` suffix, asserting both (bench protocol 2)."""
    head, _, crc = line.rpartition("|")
    assert re.fullmatch(r"[0-9a-f]{8}", crc) and crc32(head.encode("latin-1")) == int(crc, 16), f"bad CRC: {line}"
    body, _, got = head.rpartition("|")
    assert got == str(seq), f"request number {got}, expected {seq}: {line}"
    return body


def fields(line: str, prefix: str) -> dict[str, str]:
    assert line.startswith(prefix) and line.endswith("]"), line
    return dict(part.split("=", 1) for part in line[len(prefix) : -1].split(","))


# ---------------------------------------------------------------------------------------------- builds
def build_native(model: Path, out: Path, target: str = "cortex-m4") -> Path:
    """``edgeforge build MODEL --target T --runtime native --out OUT`` in-process (module-scoped fixtures cannot
    use the function-scoped ``cli`` fixture)."""
    from edgeforge.cli.main import main

    old = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        code = main(["build", str(model), "--target", target, "--runtime", "native", "--out", str(out), "-q"])
    finally:
        if old is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = old
    assert code == 0, f"edgeforge build failed ({code})"
    return out


def make_firmware(native: Path, out: Path, goal: str, **variables: object) -> subprocess.CompletedProcess[str]:
    cmd = ["make", "-s", "-C", str(BENCH), goal, f"NATIVE={native}", f"OUT={out}"]
    cmd += [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def firmware(native: Path, out: Path, goal: str, **variables: object) -> Path:
    """Builds the image; EF_BENCH_HOST_CFLAGS replaces the host flags (e.g. for a sanitizer run:
    "-std=c99 -O1 -g -Wall -Wextra -fsanitize=address,undefined -fno-sanitize-recover=all")."""
    if goal == "host" and os.environ.get("EF_BENCH_HOST_CFLAGS"):
        variables.setdefault("HOST_CFLAGS", os.environ["EF_BENCH_HOST_CFLAGS"])
    proc = make_firmware(native, out, goal, **variables)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in (proc.stdout + proc.stderr), proc.stdout + proc.stderr
    return out / ("ef_bench_host" if goal == "host" else "ef_bench_an386.elf")


def qemu_tools() -> str | None:
    """Why the QEMU board cannot run here, or None when it can."""
    if shutil.which("qemu-system-arm") is None:
        return "qemu-system-arm is not installed (apt-get install -y qemu-system-arm)"
    if shutil.which("arm-none-eabi-gcc") is None:
        return "arm-none-eabi-gcc is not installed"
    return None


# ---------------------------------------------------------------------------------------------- DUT link
class Dut:
    """Line-oriented link to a running bench firmware. A reader thread splits the byte stream on ``\\n`` and drops
    ``\\r``/NUL, like the MLPerf runner."""

    def __init__(self, write: Callable[[bytes], None], read: Callable[[], bytes | None], close: Callable[[], None],
                 name: str) -> None:
        self._write = write
        self._read = read
        self._close = close
        self.name = name
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                data = self._read()
            except Exception:
                data = None
            if data is None:  # end of stream
                self.lines.put(None)
                return
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                self.lines.put(raw.replace(b"\r", b"").replace(b"\0", b"").decode("latin-1"))

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self._close()
        self._thread.join(2)

    # -- framing --------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self._write(data)

    def read_line(self, timeout: float = 10.0) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.name}: no line within {timeout} s; last lines: {self.log[-5:]}") from None
        if line is None:
            raise EOFError(f"{self.name}: the firmware closed the link; last lines: {self.log[-5:]}")
        self.log.append(line)
        return line

    def reply(self, timeout: float = 10.0) -> list[str]:
        """Lines up to (not including) the next ``m-ready``; ``m-ef-`` lines checked (CRC, request number 0: these
        helpers send none) and returned without their suffix."""
        out = []
        while (line := self.read_line(timeout)) != "m-ready":
            out.append(unchecked(line) if line.startswith("m-ef-") else line)
        return out

    def boot(self, timeout: float = 10.0) -> list[str]:
        lines = self.reply(timeout)
        return [*lines, "m-ready"]

    def command(self, cmd: str, timeout: float = 10.0) -> list[str]:
        self.write(cmd.encode("latin-1") + b"%")
        return self.reply(timeout)

    def ok(self, cmd: str, timeout: float = 10.0) -> list[str]:
        lines = self.command(cmd, timeout)
        errors = [ln for ln in lines if ln.startswith("e-")]
        assert not errors, (cmd, errors)
        return lines

    def error(self, cmd: str | bytes, timeout: float = 10.0) -> tuple[str, str]:
        """Sends a command that must fail: exactly one line, an ``e-[CODE:message]``; returns (code, message)."""
        data = cmd if isinstance(cmd, bytes) else cmd.encode("latin-1")
        self.write(data + b"%")
        lines = self.reply(timeout)
        assert len(lines) == 1, (cmd, lines)
        m = ERROR_RE.match(lines[0])
        assert m, (cmd, lines)
        return m.group(1), m.group(2)

    def assert_quiet(self, seconds: float = 0.3) -> None:
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"{self.name}: unexpected output after m-ready: {line!r}")

    # -- protocol -------------------------------------------------------------------------------------
    def info(self) -> dict[str, str]:
        lines = self.ok("ef-info")
        assert len(lines) == 1
        return fields(lines[0], "m-ef-info-[")

    def upload(self, data: bytes, chunk: int = 31) -> None:
        assert self.ok(f"db load {len(data)}") == [f"m-[Expecting {len(data)} bytes]"]
        for i in range(0, len(data), chunk):
            lines = self.ok("db " + data[i : i + chunk].hex())
            last = i + chunk >= len(data)
            assert lines == (["m-load-done"] if last else []), (i, lines)

    def in_crc(self) -> tuple[int, int]:
        lines = self.ok("ef-crc")
        assert len(lines) == 1
        f = fields(lines[0], "m-ef-in-crc32-[")
        assert re.fullmatch(r"[0-9a-f]{8}", f["crc32"]), lines
        return int(f["bytes"]), int(f["crc32"], 16)

    def infer(self, n: int, w: int, timeout: float = 30.0) -> tuple[int, int, list[float]]:
        lines = self.ok(f"infer {n} {w}", timeout)
        assert len(lines) == 8, lines
        assert lines[:3] == [f"m-warmup-start-{w}", "m-warmup-done", f"m-infer-start-{n}"], lines
        laps = [re.fullmatch(r"m-lap-us-(\d+)", ln) for ln in lines[3:5]]
        assert all(laps), lines
        t0, t1 = (int(x.group(1)) for x in laps)  # type: ignore[union-attr]
        # edgeforge's extension: the timing again with a CRC-32 over (N, t0, t1) as little-endian uint32
        lap = re.fullmatch(r"m-ef-lap-\[n=(\d+),t0=(\d+),t1=(\d+),crc32=([0-9a-f]{8})\]", lines[5])
        assert lap and (int(lap.group(1)), int(lap.group(2)), int(lap.group(3))) == (n, t0, t1), lines
        import struct
        import zlib

        assert int(lap.group(4), 16) == zlib.crc32(struct.pack("<III", n, t0, t1)), lines
        assert lines[6] == "m-infer-done", lines
        m = RESULTS_RE.match(lines[7])
        assert m, lines[7]
        return t0, t1, [float(v) for v in m.group(1).split(",")]

    def _hex_dump(self, cmd: str, line: str, end: str, timeout: float = 30.0) -> tuple[bytes, dict[str, str]]:
        lines = self.ok(cmd, timeout)
        assert lines and lines[-1].startswith(end), lines
        body = lines[:-1]
        assert all(ln.startswith(line) and ln.endswith("]") for ln in body), lines
        chunks = [ln[len(line) : -1] for ln in body]
        assert all(re.fullmatch(r"(?:[0-9a-f]{2}){1,32}", c) for c in chunks), chunks
        assert all(len(c) == 64 for c in chunks[:-1]), "only the last line may hold fewer than 32 bytes"
        data = bytes.fromhex("".join(chunks))
        f = fields(lines[-1], end)
        assert int(f["bytes"]) == len(data), (f, len(data))
        assert re.fullmatch(r"[0-9a-f]{8}", f["crc32"]) and int(f["crc32"], 16) == crc32(data), f
        return data, f

    def raw_output(self) -> bytes:
        return self._hex_dump("ef-out", "m-ef-out-[", "m-ef-out-end-[")[0]

    def dump(self, op: int) -> bytes:
        data, f = self._hex_dump(f"ef-dump {op}", "m-ef-dump-[", "m-ef-dump-end-[")
        assert f["op"] == str(op), f
        return data

    def db_print(self) -> bytes:
        lines = self.ok("db print")
        assert all(re.fullmatch(r"m-buffer(?:-[0-9a-f]{2}){1,8}", ln) for ln in lines), lines
        assert all(ln.count("-") == 9 for ln in lines[:-1]), "8 bytes per line"
        return bytes.fromhex("".join(ln[len("m-buffer-") :].replace("-", "") for ln in lines))


@contextlib.contextmanager
def host_process(exe: Path) -> Iterator[tuple[Dut, subprocess.Popen[bytes]]]:
    proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None
    out = proc.stdout

    def read() -> bytes | None:
        data = out.read(4096)
        return data or None

    def write(data: bytes) -> None:
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.flush()

    def close() -> None:
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    dut = Dut(write, read, close, f"host-sim {exe.name}")
    try:
        yield dut, proc
    finally:
        dut.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """QEMU must not outlive the test process, even when pytest itself is killed (Linux prctl)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def qemu_board(elf: Path, connect_timeout: float = 10.0, wait: bool = True) -> Iterator[Dut]:
    """QEMU mps2-an386 running ``elf`` with -icount shift=0, its UART0 on a TCP server; the link is
    ``serial.serial_for_url("socket://...")``. wait=True: the guest starts when we connect, so the boot banner is
    seen; wait=False: it boots at once and the banner goes nowhere (what a host must resynchronise from).
    nodelay=on matters: without it the guest's byte-by-byte UART output meets Nagle's algorithm and the host's
    delayed ACKs, and every command takes ~45 ms instead of ~1.5 ms. QEMU is killed on exit, whatever happened."""
    import serial

    port = _free_port()
    log = tempfile.TemporaryFile()
    cmd = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-icount", "shift=0",
           "-kernel", str(elf), "-serial", f"tcp:127.0.0.1:{port},server=on,wait={'on' if wait else 'off'},nodelay=on"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent)
    ser = None
    dut = None
    try:
        if not wait:  # let it boot into the void first
            time.sleep(0.5)
        deadline = time.monotonic() + connect_timeout
        while ser is None:
            try:
                ser = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0)
            except serial.SerialException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"QEMU did not start: {log.read().decode(errors='replace')[-500:]}") from None
                time.sleep(0.05)
        link = ser

        def read() -> bytes | None:
            while True:
                if proc.poll() is not None:
                    return None
                ready, _, _ = select.select([link.fileno()], [], [], 0.1)
                if ready:
                    data = link.read(4096)
                    if data:
                        return bytes(data)

        dut = Dut(link.write, read, link.close, "qemu mps2-an386")
        yield dut
    finally:
        if dut is not None:
            dut.close()
        elif ser is not None:
            ser.close()
        proc.kill()
        proc.wait(5)
        log.close()


# ---------------------------------------------------------------------------------------------- garbage
@dataclass(frozen=True)
class Item:
    """One '%'-terminated chunk of bytes and the reply it must get: ``code`` = the one e- line's code, or
    ``lines`` = the exact m- lines (``None``: don't care about their content)."""

    data: bytes
    code: str | None = None
    lines: tuple[str, ...] | None = ()


def _random_line(rng: random.Random) -> Item:
    while True:
        n = rng.choice([1, 5, 20, 60, 79, 80, 81, 120, 300])
        data = bytes(rng.choice([rng.randrange(256), rng.randrange(0x20, 0x7F)]) for _ in range(n))
        data = data.replace(b"%", b"")
        text = bytes(b for b in data if 0x20 <= b <= 0x7E).decode()
        if len(text) > (3 + 2 * 256 + 12 if text.startswith("db ") else 80):
            return Item(data, code="E_LINE_TOO_LONG")
        tokens = text.split()
        if not tokens:
            return Item(data, lines=())
        if tokens[0] not in COMMANDS:
            return Item(data, code="E_UNKNOWN")


def garbage(rng: random.Random, in_bytes: int, n_random: int = 40) -> list[Item]:
    """Bad commands that must each give one stable e- line (or nothing) and change no state, given a complete
    upload of ``in_bytes`` bytes is in place, mixed with random byte runs."""
    name = ("m-name-dut-[edgeforge]",)
    crafted = [
        Item(b"", lines=()),  # bare %: resync no-op
        Item(b"   ", lines=()),
        Item(b"\r\n", lines=()),
        Item(b"\r\nname\r\n", lines=name),  # CR/LF ignored
        Item(b"na\x00m\xffe\x07", lines=name),  # non-printables ignored
        Item(b"db " + b"00" * 263, code="E_LINE_TOO_LONG"),  # valid hex, but 529 characters: discarded whole
        Item(b"name " + b"x" * 80, code="E_LINE_TOO_LONG"),  # only db lines may be longer than 80
        Item(b"x" * 5000, code="E_LINE_TOO_LONG"),
        Item(b"db load 1000000", code="E_DB_SIZE"),
        Item(f"db load {in_bytes + 1}".encode(), code="E_DB_SIZE"),
        Item(b"db load 99999999999999999999", code="E_ARG"),
        Item(b"db load 0", code="E_ARG"),
        Item(b"db load -5", code="E_ARG"),
        Item(b"db load abc", code="E_ARG"),
        Item(b"db load", code="E_ARG"),
        Item(b"db load 10 20", code="E_ARG"),
        Item(b"db", code="E_ARG"),
        Item(b"db 0", code="E_HEX_ODD"),
        Item(b"db 123", code="E_HEX_ODD"),
        Item(b"db zz", code="E_HEX_DIGIT"),
        Item(b"db 0g", code="E_HEX_DIGIT"),
        Item(b"db 00 11", code="E_ARG"),
        Item(b"db 00", code="E_DB_OVERFLOW"),  # the upload is complete: a write past N
        Item(b"db print x", code="E_ARG"),
        Item(b"infer abc", code="E_ARG"),
        Item(b"infer 0 1", code="E_ARG"),
        Item(b"infer 1 -1", code="E_ARG"),
        Item(b"infer 1 1 1", code="E_ARG"),
        Item(b"infer -3", code="E_ARG"),
        Item(b"ef-dump", code="E_ARG"),
        Item(b"ef-dump 99999", code="E_ARG"),
        Item(b"ef-dump x", code="E_ARG"),
        Item(b"name now", code="E_ARG"),
        Item(b"ef-out 1", code="E_ARG"),
        Item(b"foo", code="E_UNKNOWN"),
        Item(b"xm-ready", code="E_UNKNOWN"),
        Item(b"NAME", code="E_UNKNOWN"),
        Item(b"[]]]", code="E_UNKNOWN"),
    ]
    items = crafted + [_random_line(rng) for _ in range(n_random)]
    rng.shuffle(items)
    return items


def run_items(dut: Dut, items: list[Item], timeout: float = 30.0) -> None:
    """Sends every item in ONE write, then checks the replies one by one, then that nothing else follows."""
    dut.write(b"".join(it.data + b"%" for it in items))
    for k, it in enumerate(items):
        lines = dut.reply(timeout)
        where = f"item {k} {it.data[:40]!r}"
        assert all(ln.startswith(("m-", "e-")) for ln in lines), (where, lines)
        errors = [ERROR_RE.match(ln) for ln in lines if ln.startswith("e-")]
        if it.code is not None:
            assert len(lines) == 1 and errors and errors[0], (where, lines)
            assert errors[0].group(1) == it.code, (where, lines)
        else:
            assert not errors, (where, lines)
            if it.lines is not None:
                assert tuple(lines) == it.lines, (where, lines)
    dut.assert_quiet()
