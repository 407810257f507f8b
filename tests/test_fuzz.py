"""Damaged .tflite files never crash edgeforge: every one is either read or refused with exit 65.

`make test` runs a reduced number of mutants; `make test-all` (EDGEFORGE_FULL_TESTS=1) runs many more.
Each case runs in a forked child so that a crash in native code (a segfault in an interpreter fed
a malformed flatbuffer) fails the test instead of killing the suite.
"""

from __future__ import annotations

import io
import os
import random
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from conftest import FIXTURES, FULL

CASES = 1000 if FULL else 40


def _mutants(data: bytes, n: int) -> list[tuple[str, bytes]]:
    rng = random.Random(1234)
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            cut = rng.randrange(8, len(data))
            out.append((f"truncate@{cut}", data[:cut]))
        elif kind == 1:
            b = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(8, len(b))] = rng.randrange(256)
            out.append(("flip", bytes(b)))
        else:
            pos = rng.randrange(8, len(data) - 4)
            b = bytearray(data)
            b[pos : pos + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\x10\x00\x00\x00"])
            out.append((f"offset@{pos}", bytes(b)))
    return out


def _run_forked(args: list[str]) -> int:
    """Exit code of `edgeforge ARGS` in a forked child; -signal if it crashed."""
    pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            from edgeforge.cli.main import main

            with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
                code = main(args)
            if "Traceback" in err.getvalue():
                code = 99
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.slow
def test_mutated_models_are_read_or_refused_cleanly(tmp_path: Path) -> None:
    data = (FIXTURES / "tiny_int8.tflite").read_bytes()
    bad = []
    for i, (what, mutant) in enumerate(_mutants(data, CASES)):
        path = tmp_path / f"m{i}.tflite"
        path.write_bytes(mutant)
        code = _run_forked(["analyze", str(path), "--target", "cortex-m4", "--json"])
        if code not in (0, 65):
            bad.append((what, code))
    assert not bad, f"{len(bad)} of {CASES} mutants were not handled cleanly: {bad[:10]}"
