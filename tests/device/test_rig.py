"""Rig files (edgeforge-rig.toml): parsing and validation errors, per-port locks between processes, and the
pytest plugin (hil marker, ef_rig / ef_board fixtures) end to end."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeforge.device.rig import RigBoard, default_lock_dir, load_rig, lock_path, port_lock_key, read_holder
from edgeforge.device.transport import DeviceError
from edgeforge.errors import ExitCode, UsageError

pytest_plugins = ["pytester"]

RIG = """\
version = 1

[boards.bench1]
port = "loop://"
target = "cortex-m4"
flasher = "platformio"
baud = 921600
reset = "none"

[boards.esp]
port = "socket://127.0.0.1:4001?logging=debug"
target = "esp32"
flasher = "esptool"
reset = "dtr-rts"

[boards.sim]
target = "cortex-m4"
flasher = "host-sim"
"""

# Takes the lock on a board, says so, holds it until stdin closes.
HOLDER = """\
import sys
from edgeforge.device.rig import load_rig
rig = load_rig(sys.argv[1])
with rig.lock(sys.argv[2], timeout=10):
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""

# Tries to take the lock once; prints what happened.
PROBE = """\
import sys
from edgeforge.device.rig import load_rig
from edgeforge.device.transport import DeviceError
try:
    with load_rig(sys.argv[1]).lock(sys.argv[2], timeout=float(sys.argv[3])):
        print("acquired")
except DeviceError as exc:
    print("busy:", exc.message)
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private lock folder (inherited by child processes) and no rig from the environment."""
    monkeypatch.setenv("EDGEFORGE_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("EDGEFORGE_RIG", raising=False)
    return tmp_path


@pytest.fixture
def rig_file(tmp_path: Path) -> Path:
    path = tmp_path / "edgeforge-rig.toml"
    path.write_text(RIG)
    return path


@pytest.fixture
def holder(rig_file: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start processes holding a board's lock; every one is killed at teardown."""
    procs: list[subprocess.Popen[str]] = []

    def start(board: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(rig_file), board], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        assert _line(proc) == "locked", proc.stderr.read() if proc.poll() is not None else "no answer"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def _line(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else "<timeout>"


def _probe(rig_file: Path, board: str, timeout: float = 0.0) -> str:
    return subprocess.run([sys.executable, "-c", PROBE, str(rig_file), board, str(timeout)], capture_output=True,
                          text=True, timeout=30).stdout.strip()


# --------------------------------------------------------------------------------------------- parsing


def test_a_valid_rig_loads(rig_file: Path) -> None:
    rig = load_rig(rig_file)
    assert rig.path == rig_file and rig.names == ["bench1", "esp", "sim"]
    assert rig.board("bench1") == RigBoard("bench1", "loop://", "cortex-m4", "platformio", 921600, "none")
    esp = rig.board("esp")
    assert (esp.baud, esp.reset, esp.emulated) == (None, "dtr-rts", False)
    assert esp.bench_args() == {"board": None, "port": "socket://127.0.0.1:4001?logging=debug", "baud": None}
    sim = rig.board("sim")
    assert sim.port is None and sim.emulated and sim.lock_key is None
    assert sim.bench_args() == {"board": "host-sim", "port": None, "baud": None}
    with pytest.raises(AttributeError):
        sim.port = "loop://"  # type: ignore[misc]  # frozen


def test_the_rig_file_is_found_by_path_env_or_cwd(rig_file: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(UsageError, match="no rig file") as exc:
        load_rig()
    assert exc.value.exit_code == ExitCode.USAGE and "EDGEFORGE_RIG" in exc.value.hint
    assert load_rig(str(rig_file)).path == rig_file
    assert load_rig(tmp_path).path == rig_file  # a folder holding edgeforge-rig.toml
    monkeypatch.setenv("EDGEFORGE_RIG", str(rig_file))
    assert load_rig().path == rig_file
    monkeypatch.setenv("EDGEFORGE_RIG", str(tmp_path / "missing.toml"))
    with pytest.raises(UsageError, match=r"missing\.toml \(from \$EDGEFORGE_RIG\) does not exist"):
        load_rig()
    monkeypatch.delenv("EDGEFORGE_RIG")
    monkeypatch.chdir(tmp_path)
    assert load_rig().path == rig_file  # ./edgeforge-rig.toml
    with pytest.raises(UsageError, match="nope.toml does not exist"):
        load_rig(tmp_path / "nope.toml")


GOOD = '[boards.b1]\nport = "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"\ntarget = "esp32"\nflasher = "esptool"\n'


@pytest.mark.parametrize(("text", "expected", "hint"), [
    (GOOD.replace('flasher = "esptool"', 'flasher = "esptol"'),
     "board 'b1': field 'flasher' must be one of platformio, esptool", "did you mean 'esptool'?"),
    (GOOD.replace('port = "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"\n', ""),
     "board 'b1': field 'port' is missing (only the emulated flashers host-sim and qemu need none)", ""),
    (GOOD.replace('target = "esp32"\n', ""), "board 'b1': field 'target' is missing", ""),
    (GOOD + 'prot = "x"\n', "board 'b1': field 'prot' is not a known field", "did you mean 'port'?"),
    (GOOD + 'baud = "fast"\n', "board 'b1': field 'baud' must be an integer (got 'fast')", ""),
    (GOOD + 'baud = true\n', "board 'b1': field 'baud' must be an integer (got True)", ""),
    (GOOD + "baud = 0\n", "board 'b1': field 'baud' must be between 50 and 20000000 (got 0)", ""),
    (GOOD + 'reset = "dtr"\n', "board 'b1': field 'reset' must be one of none, dtr-rts, 1200bps-touch", ""),
    (GOOD.replace("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", "ttyUSB0"),
     "board 'b1': field 'port' is neither an absolute device path nor a pyserial URL", "/dev/serial/by-id"),
    (GOOD.replace("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", "tcp://host:1"),
     "board 'b1': field 'port' uses a URL scheme pyserial does not know (tcp://)", ""),
    (GOOD.replace("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", "socket://host"),
     "board 'b1': field 'port' needs socket://HOST:PORT", ""),
    (GOOD.replace("port = ", 'port = ""\n#'), "board 'b1': field 'port' must not be empty", ""),
    (GOOD + GOOD.replace("b1", "b2"), "boards 'b1' and 'b2' name the same port", ""),
    (GOOD.replace("[boards.b1]", '[boards."my board"]'), "board name 'my board' is not allowed", ""),
    (GOOD.replace("[boards.b1]", "[boards.b1.extra]"), "board 'b1': field 'extra' is not a known field", ""),
    ("[boards]\nb1 = 3\n", "board 'b1': must be a table (got 3)", ""),
    ("[boards]\n", "defines no board", ""),
    ("version = 1\n", "field 'boards' is missing", ""),
    ("version = 2\n" + GOOD, "field 'version' must be 1 (got 2)", ""),
    ("bords = 1\n" + GOOD, "field 'bords' is not a known field", "did you mean 'boards'?"),
    ('[boards.b1\nport = "x"\n', "is not valid TOML", ""),
])
def test_an_invalid_rig_names_the_file_board_and_field(tmp_path: Path, text: str, expected: str,
                                                       hint: str) -> None:
    path = tmp_path / "edgeforge-rig.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as exc:
        load_rig(path)
    assert exc.value.exit_code == ExitCode.USAGE
    assert exc.value.message.startswith(f"rig file {path}"), exc.value.message
    assert expected in exc.value.message, exc.value.message
    assert hint in exc.value.hint and exc.value.hint, exc.value.hint


def test_an_unknown_board_lists_the_rig_boards(rig_file: Path) -> None:
    with pytest.raises(UsageError, match=f"board 'esp3' is not in rig file {rig_file}") as exc:
        load_rig(rig_file).board("esp3")
    assert exc.value.hint == "did you mean 'esp'? boards there: bench1, esp, sim"


def test_two_names_of_one_device_are_one_port(tmp_path: Path) -> None:
    device = tmp_path / "ttyACM0"
    device.touch()
    (tmp_path / "by-id").mkdir()
    (tmp_path / "by-id" / "usb-STLink-if02").symlink_to(device)
    assert port_lock_key(str(tmp_path / "by-id" / "usb-STLink-if02")) == port_lock_key(str(device))
    rig = tmp_path / "edgeforge-rig.toml"
    rig.write_text(f'[boards.a]\nport = "{device}"\ntarget = "x"\nflasher = "none"\n'
                   f'[boards.b]\nport = "{tmp_path / "by-id" / "usb-STLink-if02"}"\ntarget = "x"\nflasher = "none"\n')
    with pytest.raises(UsageError, match="boards 'a' and 'b' name the same port"):
        load_rig(rig)


def test_lock_files_are_named_safely_and_distinctly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = lock_path("socket://Lab-Server:4001?logging=debug")
    assert a == lock_path("socket://lab-server:4001") and a.parent == tmp_path / "locks"
    assert a.name.startswith("socket_lab-server_4001-") and a.suffix == ".lock"
    assert lock_path("/dev/x/y") != lock_path("/dev/x_y")  # same readable part, different hash
    assert "/" not in lock_path("/dev/serial/by-id/usb-FTDI:1.0-if00").name
    monkeypatch.delenv("EDGEFORGE_LOCK_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_lock_dir() == tmp_path / "edgeforge-locks"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_lock_dir() == Path(f"/tmp/edgeforge-locks-{os.getuid()}")


# --------------------------------------------------------------------------------------------- locks


def test_a_second_process_waits_then_reports_the_holder(rig_file: Path, holder) -> None:
    proc = holder("bench1")
    rig = load_rig(rig_file)
    start = time.monotonic()
    with pytest.raises(DeviceError) as exc:
        with rig.lock("bench1", timeout=0.3):
            pass
    waited = time.monotonic() - start
    assert 0.3 <= waited < 3, waited
    assert exc.value.exit_code == ExitCode.DEVICE
    assert exc.value.message.startswith(f"board bench1 is busy (locked by pid {proc.pid} on ")
    assert "loop://" in exc.value.hint and "lock file" in exc.value.hint
    assert read_holder(lock_path("loop://"))["board"] == "bench1"
    with rig.lock("esp", timeout=0):  # another port: free
        pass
    with rig.lock("sim", timeout=0):  # started per use: nothing to lock
        pass


def test_a_waiting_process_gets_the_board_when_it_is_released(rig_file: Path, holder) -> None:
    proc = holder("bench1")
    assert proc.stdin is not None
    release = threading.Timer(0.3, proc.stdin.close)
    release.start()
    start = time.monotonic()
    try:
        with load_rig(rig_file).lock("bench1", timeout=5) as board:
            waited = time.monotonic() - start
            assert board.name == "bench1"
            assert read_holder(lock_path("loop://"))["pid"] == os.getpid()
    finally:
        release.cancel()
    assert 0.2 <= waited < 5, waited
    assert _line(proc) == "released"
    assert lock_path("loop://").read_text() == ""  # emptied on release


def test_a_killed_holder_leaves_no_stale_lock(rig_file: Path, holder) -> None:
    proc = holder("bench1")
    assert _probe(rig_file, "bench1").startswith(f"busy: board bench1 is busy (locked by pid {proc.pid}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    with load_rig(rig_file).lock("bench1", timeout=2):
        assert _probe(rig_file, "bench1").startswith(f"busy: board bench1 is busy (locked by pid {os.getpid()}")
    assert _probe(rig_file, "bench1") == "acquired"


def test_the_lock_is_released_when_the_block_raises(rig_file: Path) -> None:
    rig = load_rig(rig_file)
    with pytest.raises(RuntimeError), rig.lock("bench1", timeout=0):
        raise RuntimeError("test failed on the board")
    assert _probe(rig_file, "bench1") == "acquired"


def test_a_nested_lock_in_one_thread_fails_at_once(rig_file: Path) -> None:
    rig = load_rig(rig_file)
    with rig.lock("bench1", timeout=0):
        start = time.monotonic()
        with pytest.raises(DeviceError, match="already locked by this thread"), rig.lock("bench1", timeout=5):
            pass
        assert time.monotonic() - start < 1
    with rig.lock("bench1", timeout=0):
        pass


# --------------------------------------------------------------------------------------------- pytest plugin

PLUGIN = ("-p", "no:edgeforge", "-p", "edgeforge.pytest_plugin")  # works with or without the entry point

HIL_TESTS = f'''
import os, subprocess, sys
import pytest

PROBE = {PROBE!r}

def test_plain():
    pass

@pytest.mark.hil
def test_loopback(ef_rig, ef_board):
    from edgeforge.device.transport import SerialTransport

    assert (ef_board.name, ef_board.port, ef_board.baud) == ("bench1", "loop://", 921600)
    transport = SerialTransport(ef_board.port, ef_board.baud)
    try:
        transport.write(b"ping\\n")
        assert transport.read_line(2.0) == "ping"
    finally:
        transport.close()
    probe = subprocess.run([sys.executable, "-c", PROBE, str(ef_rig.path), ef_board.name, "0"],
                           capture_output=True, text=True, timeout=30).stdout
    assert f"busy: board bench1 is busy (locked by pid {{os.getpid()}}" in probe, probe

@pytest.mark.hil(targets=["esp32"])
def test_only_for_esp32(ef_board):
    pass
'''


def test_plugin_skips_hil_tests_without_a_rig(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(HIL_TESTS)
    result = pytester.runpytest(*PLUGIN, "-rs", "--strict-markers")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*hil test: no board rig (pass --ef-rig PATH or set $EDGEFORGE_RIG)*"])


def test_plugin_runs_hil_tests_on_the_rig_board_and_holds_its_lock(pytester: pytest.Pytester,
                                                                   rig_file: Path) -> None:
    pytester.makepyfile(HIL_TESTS)
    result = pytester.runpytest(*PLUGIN, "-rs", "--strict-markers", "--ef-rig", str(rig_file),
                                "--ef-board", "bench1", "--ef-lock-timeout", "1")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines([f"edgeforge rig: {rig_file} (boards: bench1, esp, sim); board: bench1",
                                 "*SKIPPED*hil test for target(s) esp32; board bench1 is cortex-m4*"])
    assert _probe(rig_file, "bench1") == "acquired"  # released after the test


def test_plugin_fails_a_test_whose_board_stays_busy(pytester: pytest.Pytester, rig_file: Path, holder,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    proc = holder("bench1")
    monkeypatch.setenv("EDGEFORGE_RIG", str(rig_file))  # the environment variable counts as a rig
    pytester.makepyfile("import pytest\n@pytest.mark.hil\ndef test_it(ef_board):\n    pass\n")
    result = pytester.runpytest(*PLUGIN, "--ef-board", "bench1", "--ef-lock-timeout", "0.2")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*board bench1 is busy (locked by pid {proc.pid} on *",
                                 "hint: another job holds loop://*"])
    assert "Traceback" not in result.stdout.str()


def test_plugin_rejects_a_bad_rig_or_board_as_a_usage_error(pytester: pytest.Pytester, rig_file: Path,
                                                            tmp_path: Path) -> None:
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest(*PLUGIN, "--ef-rig", str(rig_file), "--ef-board", "esp3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: board 'esp3' is not in rig file {rig_file}",
                                 "hint: did you mean 'esp'? boards there: bench1, esp, sim"])
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('"esptool"', '"esptol"'))
    result = pytester.runpytest(*PLUGIN, "--ef-rig", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: rig file {bad}: board 'b1': field 'flasher' must be one of *"])
    result = pytester.runpytest(*PLUGIN, "--ef-board", "bench1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --ef-board bench1 needs a rig: pass --ef-rig PATH or set $EDGEFORGE_RIG"])


def test_plugin_needs_a_board_choice_when_the_rig_has_several(pytester: pytest.Pytester, rig_file: Path) -> None:
    pytester.makepyfile("import pytest\n@pytest.mark.hil\ndef test_it(ef_board):\n    pass\n")
    result = pytester.runpytest(*PLUGIN, "--ef-rig", str(rig_file))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*has 3 boards (bench1, esp, sim): choose one with --ef-board NAME*"])
