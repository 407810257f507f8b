"""The output folder swap is atomic for SIGKILL and SIGINT (issue 14 item 8): whenever a build is killed, ``out`` is
the whole previous build or the whole new one, and the temporaries of killed runs are cleaned by the next one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeforge import output

ROOT = Path(__file__).resolve().parent.parent

# A child that writes build "version" VERSION into OUT with edgeforge.output.write_tree. With PAUSE set, every
# rename/exchange that touches OUT is followed by a pause (the point where a signal is most dangerous), announced by
# creating the file READY. With FALLBACK set, renameat2 is reported unavailable (the two-rename path).
CHILD = r"""
import os, sys, time
from pathlib import Path
import edgeforge.output as o

out, version, ready, pause, fallback = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
if fallback == "1":
    o._exchange = lambda a, b: False

def paused(fn):
    def wrapper(*args):
        result = fn(*args)
        if any(Path(a).resolve() == out.resolve() for a in args):
            Path(ready).write_text("1")
            time.sleep(pause)
        return result
    return wrapper

if pause > 0:
    os.rename = paused(os.rename)
    if hasattr(o, "_exchange") and fallback != "1":
        o._exchange = paused(o._exchange)
files = {f"part{i:03d}.txt": f"{version} {i}\n".encode() for i in range(200)}
files["manifest.json"] = ('{"version": "%s", "files": 200}\n' % version).encode()
o.write_tree(out, files)
"""


def _child(out: Path, version: str, ready: Path, pause: float = 0.0, fallback: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(out), version, str(ready), str(pause),
                             "1" if fallback else "0"], env=env)


def _version(out: Path) -> str | None:
    """The version ``out`` holds, checking that it is complete and consistent; None if ``out`` is missing."""
    if not out.exists():
        return None
    names = sorted(p.name for p in out.iterdir())
    version = (out / "manifest.json").read_text().split('"')[3]
    assert names == sorted([f"part{i:03d}.txt" for i in range(200)] + ["manifest.json"]), names[:5]
    assert all((out / f"part{i:03d}.txt").read_text() == f"{version} {i}\n" for i in range(200))
    return version


def _write(out: Path, version: str) -> None:
    proc = _child(out, version, out.parent / "unused")
    assert proc.wait(60) == 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
@pytest.mark.parametrize("fallback", [False, True])
def test_signal_right_after_the_swap_keeps_a_complete_build(tmp_path: Path, sig: int, fallback: bool) -> None:
    out = tmp_path / "out"
    _write(out, "old")
    ready = tmp_path / "ready"
    proc = _child(out, "new", ready, pause=1.5, fallback=fallback)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the child never reached the swap"
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.wait(60)
    version = _version(out)
    if fallback and sig == signal.SIGKILL:
        # without renameat2 a SIGKILL between the two renames leaves out missing; the next run puts it back
        assert version in (None, "old", "new")
        output.clean_stale(out.resolve())
        assert _version(out) in ("old", "new")
    else:
        assert version in ("old", "new")
        if sig == signal.SIGINT:
            assert version == "new"  # the interrupt waited for the swap
    _write(out, "third")  # the next run cleans what the killed one left
    assert _version(out) == "third"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")) == []


def test_signals_at_random_points_never_lose_the_build(tmp_path: Path) -> None:
    """Bounded loop: kill a child write at a random moment; out is always one complete version."""
    rng = random.Random(14)
    out = tmp_path / "out"
    _write(out, "v0")
    seen = set()
    for i in range(1, 13):
        proc = _child(out, f"v{i}", tmp_path / "unused")
        time.sleep(rng.uniform(0.02, 0.4))
        proc.send_signal(rng.choice([signal.SIGKILL, signal.SIGINT]))
        proc.wait(60)
        version = _version(out)
        assert version is not None and version.startswith("v")
        seen.add(version)
    _write(out, "last")
    assert _version(out) == "last"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_stale_scratch_folders_of_dead_processes_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"edgeforge-sm-{dead.pid}-abc"
    live = tmp_path / f"{output.scratch_prefix('sm')}xyz"
    other = tmp_path / "edgeforge-sm-abcdef"  # no pid: not ours to judge
    for d in (stale, live, other):
        d.mkdir()
    out = tmp_path / "build" / "out"
    out.parent.mkdir()
    (out.parent / f".out.tmp-{dead.pid}-q").mkdir()
    (out.parent / f".out.tmp-{os.getpid()}-q").mkdir()  # a run in progress (this one) is left alone
    output.write_tree(out, {"a.txt": b"1"})
    assert not stale.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [f".out.tmp-{os.getpid()}-q", "out"]
