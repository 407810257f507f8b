"""TensorFlow conversion and quantization in a child process.

TensorFlow's converter and ai-edge-quantizer are native code that trusts its input: infinite
calibration values kill the process with SIGSEGV. Like the TFLite Micro arena measurement
(``edgeforge.arena``), they run in a fresh interpreter, so a crash there becomes a ModelError
(exit 65) naming the input. One worker serves one model for as long as the pipeline holds it
(open, then each scheme); a worker that ends a session cleanly goes back to a small idle pool and
serves the next model, so a process that converts many models (the search, the test suite) imports
TensorFlow once, as before, not once per model. A worker that crashed is never reused. The parent
itself never needs TensorFlow for a build.

Protocol, over the child's stdin/stdout: length-prefixed frames. Requests are pickles (from the
parent, trusted); replies are a JSON header plus raw byte blobs (the child handled hostile
input, so nothing it sends back is unpickled).
"""

from __future__ import annotations

import atexit
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from edgeforge.errors import (DataError, EdgeforgeError, ModelError, ToolMissingError, UnsupportedOpError,
                              UsageError)

#: A conversion that takes longer is treated as hung. MLPerf Tiny models convert in well under a minute.
TIMEOUT_S = 1800.0
_HEADER = struct.Struct("<Q")
_ERRORS: dict[str, type[EdgeforgeError]] = {cls.__name__: cls for cls in (
    ModelError, UnsupportedOpError, DataError, ToolMissingError, UsageError)}


def _write_frame(f: IO[bytes], payload: bytes) -> None:
    f.write(_HEADER.pack(len(payload)))
    f.write(payload)


def _read_exact(f: IO[bytes], n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = f.read(left)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(f: IO[bytes]) -> bytes:
    (n,) = _HEADER.unpack(_read_exact(f, _HEADER.size))
    return _read_exact(f, n)


class ConversionWorker:
    """The parent's handle on one worker process; ``name`` (the user's input) goes into crash messages."""

    def __init__(self, name: str = "the model", timeout_s: float = TIMEOUT_S) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self._busy = False  # a request is out without its reply read (an interrupted call): not reusable
        package_root = str(Path(__file__).resolve().parent.parent.parent)  # importable from a plain checkout
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                          os.environ.get("PYTHONPATH")]))}
        for key, value in (("TF_CPP_MIN_LOG_LEVEL", "3"), ("TF_ENABLE_ONEDNN_OPTS", "0"),
                           ("ABSL_MIN_LOG_LEVEL", "3")):
            env.setdefault(key, value)
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", "from edgeforge.model.worker_serve import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)

    def call(self, request: tuple[Any, ...]) -> tuple[dict[str, Any], list[bytes]]:
        """Send ``request``; the reply's header and blobs, or the worker's error raised here."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None, "worker closed"
        self._busy = True
        try:
            _write_frame(proc.stdin, pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
            proc.stdin.flush()
            self._wait_readable(proc.stdout)
            header = json.loads(_read_frame(proc.stdout))
            blobs = [_read_frame(proc.stdout) for _ in range(int(header.get("blobs", 0)))]
        except (EOFError, BrokenPipeError, OSError):
            raise self._crashed() from None
        self._busy = False
        if "error" in header:
            cls = _ERRORS.get(header["error"], ModelError)
            raise cls(header["message"], header.get("hint", ""))
        if "bug" in header:
            raise RuntimeError(f"the conversion worker failed: {header['bug']}")
        return header, blobs

    def _wait_readable(self, f: IO[bytes]) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not select.select([f], [], [], max(0.0, min(1.0, deadline - time.monotonic())))[0]:
            if time.monotonic() >= deadline:
                self.close()
                raise ModelError(f"TensorFlow did not finish converting {self.name} in {self.timeout_s:.0f} s",
                                 "the model is malformed or far too large for an edge target")

    def _crashed(self) -> ModelError:
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        self.close()
        if code is not None and code < 0:
            try:
                how = signal.Signals(-code).name
            except ValueError:
                how = f"signal {-code}"
        else:
            how = f"exit {code}"
        return ModelError(f"TensorFlow crashed ({how}) while converting {self.name}",
                          "the model or its calibration data makes TensorFlow's converter fail: check the data "
                          "for inf/nan or extreme values, or re-export the model")

    @property
    def alive(self) -> bool:
        """Running and in step with the protocol (no interrupted request)."""
        return self._proc is not None and not self._busy and self._proc.poll() is None

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)  # EOF on stdin ends a healthy worker
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __del__(self) -> None:
        if getattr(self, "_proc", None) is not None:
            self._proc.kill()  # type: ignore[union-attr]


#: Idle workers kept for the next model: one is enough for the pipeline's one-model-at-a-time use.
MAX_IDLE = 1
_idle: list[ConversionWorker] = []


def acquire(name: str) -> ConversionWorker:
    """A worker for converting ``name``: an idle one when there is one, else a new process."""
    while _idle:
        worker = _idle.pop()
        if worker.alive:
            worker.name = name
            return worker
        worker.close()
    return ConversionWorker(name)


def release(worker: ConversionWorker) -> None:
    """End ``worker``'s session: back to the idle pool when it is healthy, else ended."""
    if worker.alive and len(_idle) < MAX_IDLE:
        try:
            worker.call(("reset",))
        except (EdgeforgeError, RuntimeError):
            worker.close()
            return
        _idle.append(worker)
    else:
        worker.close()


@atexit.register
def _end_idle() -> None:
    while _idle:
        _idle.pop().close()
