"""The serial transport's pacing: an exchange waits for its line, not for a fixed timeout, and uploads go in
the chunk size the firmware announces. Time here is a virtual clock (no timed assertions): a fake port
behaves like pyserial's, where ``read(n)`` waits the port timeout whenever fewer than ``n`` bytes come."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import pytest

from edgeforge.bench.protocol import CHUNK, DutClient
from edgeforge.device.transport import DeviceTimeout, SerialTransport


class VirtualPort:
    """pyserial semantics on a virtual clock: ``read(n)`` returns what is there; if that is less than ``n`` it
    first waits the whole timeout (``socket://`` and device ports alike). Replies come from ``answer``."""

    def __init__(self, answer) -> None:
        self.timeout = 0.05
        self.clock = 0.0
        self.rx = bytearray()
        self.answer = answer
        self.commands: list[str] = []
        self._pending = b""

    def write(self, data: bytes) -> None:
        self._pending += data
        while b"%" in self._pending:
            cmd, self._pending = self._pending.split(b"%", 1)
            self.commands.append(cmd.decode())
            self.rx += self.answer(cmd.decode())

    def flush(self) -> None:
        pass

    def read(self, size: int = 1) -> bytes:
        if len(self.rx) < size:
            self.clock += self.timeout
        out = bytes(self.rx[:size])
        del self.rx[:size]
        return out

    @property
    def in_waiting(self) -> int:
        return len(self.rx)

    def reset_input_buffer(self) -> None:
        self.rx.clear()

    def close(self) -> None:
        pass


def _checked(body: str, seq: int) -> bytes:
    head = f"{body}|{seq}"
    return f"{head}|{zlib.crc32(head.encode()) & 0xFFFFFFFF:08x}\r\n".encode()


class Board:
    """Enough of the bench firmware (protocol 2) for uploads: db load, db <hex>, ef-crc, request numbers."""

    def __init__(self, chunk: int | None) -> None:
        self.chunk = chunk
        self.buf = bytearray()

    def __call__(self, cmd: str) -> bytes:
        tok = cmd.split()
        seq = int(tok.pop()[1:]) if tok and tok[-1].startswith("#") else 0
        out = b""
        if tok[:1] == ["ef-info"]:
            extra = f",db_chunk={self.chunk}" if self.chunk else ""
            out += _checked(f"m-ef-info-[proto=2,model_sha256=ab{extra},ext=ef-info;ef-out;ef-crc;ef-lap]", seq)
        elif tok[:2] == ["db", "load"]:
            self.buf = bytearray()
            out += f"m-[Expecting {tok[2]} bytes]\r\n".encode()
        elif tok[:1] == ["db"]:
            assert len(tok[1]) // 2 <= (self.chunk or CHUNK), "a db line longer than the board takes"
            self.buf += bytes.fromhex(tok[1])
        elif tok[:1] == ["ef-crc"]:
            out += _checked(f"m-ef-in-crc32-[bytes={len(self.buf)},crc32={zlib.crc32(self.buf):08x}]", seq)
        return out + _checked("m-ef-done-[status=ok]", seq) + b"m-ready\r\n"


@pytest.fixture()
def port(monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualPort]:
    import serial

    box: dict[str, VirtualPort] = {}
    monkeypatch.setattr(serial, "serial_for_url", lambda url, **kw: box["port"])
    box["port"] = VirtualPort(Board(256))
    yield box["port"]


def test_an_exchange_waits_for_its_line_not_for_the_timeout(port: VirtualPort) -> None:
    """The old transport read 4096 bytes at a time: every exchange waited the full 50 ms port timeout (on
    socket:// too), whatever the device's speed; now a line is taken as soon as its newline is there."""
    client = DutClient(SerialTransport("virtual://"))
    for _ in range(20):
        client.identify()
    assert port.clock == 0.0, f"{port.clock:.2f} s of virtual time spent waiting on bytes that were there"


def test_a_silent_device_still_times_out(port: VirtualPort) -> None:
    port.answer = lambda cmd: b""
    t = SerialTransport("virtual://")
    t.write(b"ef-info%")
    with pytest.raises(DeviceTimeout):
        t.read_line(0.01)


@pytest.mark.parametrize("announced, lines", [(256, 108), (None, 892)])
def test_uploads_use_the_chunk_the_firmware_announces(monkeypatch: pytest.MonkeyPatch, announced: int | None,
                                                      lines: int) -> None:
    """VWW's 27,648-byte input: 108 `db` lines where the firmware announces db_chunk=256 (892 at MLPerf's
    31 bytes, the default for a firmware that announces nothing)."""
    import serial

    board = VirtualPort(Board(announced))
    monkeypatch.setattr(serial, "serial_for_url", lambda url, **kw: board)
    client = DutClient(SerialTransport("virtual://"))
    client.identify()
    data = bytes(range(256)) * 108
    client.upload(data)
    assert sum(c.startswith("db ") and not c.startswith("db load") for c in board.commands) == lines
    assert board.answer.buf == data
    assert board.clock == 0.0
