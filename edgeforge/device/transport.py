"""A line-oriented serial transport over any pyserial URL (device paths, socket://, rfc2217://, loop://)."""

from __future__ import annotations

import time
from typing import Any

from edgeforge.errors import EdgeforgeError, ExitCode, ToolMissingError


class DeviceError(EdgeforgeError):
    """The device, its transport or the bench protocol failed (exit 4)."""

    exit_code = ExitCode.DEVICE


class DeviceTimeout(DeviceError):
    pass


class SerialTransport:
    """Reads lines (``\\n``-terminated; ``\\r`` and NUL dropped) and writes bytes."""

    def __init__(self, url: str, baudrate: int = 115200) -> None:
        try:
            import serial
        except ImportError:
            raise ToolMissingError("pyserial is not installed", "pip install pyserial") from None
        try:
            # the timeout only bounds one wait for the *first* byte (so deadlines are checked); reads return as
            # soon as bytes are there (see read_line), never after a fixed delay
            self._port: Any = serial.serial_for_url(url, baudrate=baudrate, timeout=0.05)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise DeviceError(f"cannot open {url}: {exc}", "check --port / --board and that the device is "
                              "connected (and not used by another program)") from None
        self.url = url
        self._buffer = bytearray()
        self.log: list[str] = []  # every line received, for reports and -vvv

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except Exception as exc:  # serial.SerialException, OSError on a dropped socket
            raise DeviceError(f"write to {self.url} failed: {exc}", "the device disconnected?") from None

    def read_line(self, timeout: float) -> str:
        """Next line as soon as its newline arrives, or DeviceTimeout after ``timeout`` seconds without one."""
        deadline = time.monotonic() + timeout
        while True:
            nl = self._buffer.find(b"\n")
            if nl >= 0:
                raw = bytes(self._buffer[:nl])
                del self._buffer[: nl + 1]
                line = raw.replace(b"\r", b"").replace(b"\0", b"").decode("ascii", "replace")
                self.log.append(line)
                return line
            if time.monotonic() > deadline:
                raise DeviceTimeout(f"no answer from {self.url} within {timeout:.1f} s",
                                    "check the board is running edgeforge's bench firmware (edgeforge flash)")
            try:
                # read(1) returns at the first byte (or after the port timeout); then take what is already
                # waiting. A bigger read(n) would wait for n bytes or the whole timeout: 50 ms per exchange on
                # socket:// (pyserial's socket reads loop until `size` bytes), whatever the device's speed.
                chunk = self._port.read(1)
                waiting = self._port.in_waiting if chunk else 0
                if waiting:
                    chunk += self._port.read(waiting)
            except Exception as exc:
                raise DeviceError(f"read from {self.url} failed: {exc}", "the device disconnected?") from None
            if chunk:
                self._buffer.extend(chunk)

    def drain(self) -> None:
        """Drop whatever is buffered (after noise or a failed exchange)."""
        self._buffer.clear()
        try:
            self._port.reset_input_buffer()
        except Exception:
            pass

    def reset(self) -> bool:
        """Pulse DTR/RTS where the port has control lines; False where it has none (sockets)."""
        try:
            self._port.dtr = False
            self._port.rts = True
            time.sleep(0.1)
            self._port.rts = False
            self._port.dtr = True
            return True
        except Exception:
            return False

    def close(self) -> None:
        try:
            self._port.close()
        except Exception:
            pass
