"""Silences native libraries (TensorFlow, the TFLite converter, tflite-micro) that print to fd 1/2.

The library must be silent and the CLI owns stdout; C++ code writes straight to the file
descriptors, so ``contextlib.redirect_*`` alone is not enough.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator


class Captured:
    """What the silenced code printed, available after the block ends."""

    text: str = ""


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    result = Captured()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(1), os.dup(2)]
        py_buffer = io.StringIO()
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with contextlib.redirect_stdout(py_buffer), contextlib.redirect_stderr(py_buffer):
                yield result
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            result.text = py_buffer.getvalue() + sink.read().decode("utf-8", "replace")


def quiet_tensorflow_env() -> None:
    """Set before TensorFlow is first imported: keeps its C++ logging off the terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
