"""A TCP proxy that damages a serial conversation on purpose: dropped, flipped and duplicated bytes,
noise, stalls, and board resets mid-command. Seeded, bounded, loopback only."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Faults:
    drop: float = 0.0  # per byte
    flip: float = 0.0  # per byte: one random bit
    duplicate: float = 0.0  # per byte
    noise: float = 0.0  # per chunk: a burst of random bytes
    stall: float = 0.0  # per chunk: pause up to stall_s
    stall_s: float = 0.3
    reset: float = 0.0  # per device->host chunk: call on_reset (restart the board)


class FaultProxy:
    def __init__(self, upstream: Callable[[], tuple[str, int]], faults: Faults, seed: int = 0,
                 on_reset: Callable[[], None] | None = None, max_resets: int = 3,
                 rewrite: Callable[[bytes], bytes] | None = None) -> None:
        """``rewrite``: applied to every complete device->host line (``\n`` included) before the random
        faults, for targeted damage (flip one digit of one figure, drop one line, hold one back)."""
        self.upstream = upstream
        self.rewrite = rewrite
        self.faults = faults
        self.rng = random.Random(seed)
        self.on_reset = on_reset
        self.resets_left = max_resets
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stats = {"dropped": 0, "flipped": 0, "duplicated": 0, "noise": 0, "stalls": 0, "resets": 0}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self.server.close()

    def _damage(self, data: bytes, to_host: bool) -> bytes:
        f, rng = self.faults, self.rng
        out = bytearray()
        with self._lock:
            for b in data:
                if rng.random() < f.drop:
                    self.stats["dropped"] += 1
                    continue
                if rng.random() < f.flip:
                    b ^= 1 << rng.randrange(8)
                    self.stats["flipped"] += 1
                out.append(b)
                if rng.random() < f.duplicate:
                    out.append(b)
                    self.stats["duplicated"] += 1
            if rng.random() < f.noise:
                out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
                self.stats["noise"] += 1
            if rng.random() < f.stall:
                self.stats["stalls"] += 1
                time.sleep(rng.random() * f.stall_s)
            if to_host and self.resets_left > 0 and rng.random() < f.reset:
                self.resets_left -= 1
                self.stats["resets"] += 1
                if self.on_reset is not None:
                    self.on_reset()
                else:  # what the host sees when the board reboots: the boot banner, mid-answer
                    out += b"\r\nm-timestamp-mode-performance\r\nm-lap-us-12\r\nm-init-done\r\nm-ready\r\n"
        return bytes(out)

    def _serve(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            host, port = self.upstream()
            up = socket.create_connection((host, port))
            for a, b, to_host in ((client, up, False), (up, client, True)):
                threading.Thread(target=self._pump, args=(a, b, to_host), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_host: bool) -> None:
        src.settimeout(0.1)
        pending = b""
        while not self._stop.is_set():
            try:
                data = src.recv(256)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if to_host and self.rewrite is not None:
                pending += data
                *lines, pending = pending.split(b"\n")
                data = b"".join(self.rewrite(ln + b"\n") for ln in lines)
            try:
                dst.sendall(self._damage(data, to_host))
            except OSError:
                break
