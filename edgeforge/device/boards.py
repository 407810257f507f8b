"""Boards edgeforge starts itself, both reached as ``socket://`` serial ports so that the bench code path is
the one used for real boards:

* ``host-sim`` — the bench firmware compiled for this machine, its stdin/stdout bridged to a TCP port;
* ``pi-local`` — a Raspberry Pi / Android bundle's own runner (``run_model.py --serve``) on this machine,
  on LiteRT: the same program ``--port ssh://user@host`` starts on a real Pi;
* ``qemu-cortex-m4`` — the real firmware cross-compiled for Cortex-M4 and run on QEMU's ``mps2-an386``
  with ``-icount shift=0`` (one instruction = one virtual nanosecond: latencies are *emulated* and labelled so),
  its UART exposed as a TCP serial port.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeforge.device.transport import DeviceError
from edgeforge.errors import ToolMissingError, UsageError

BOARDS = ("host-sim", "qemu-cortex-m4", "pi-local")
INSTALL_QEMU = "apt-get install -y qemu-system-arm"


# [user@]host: a user name and a host name or IPv4/[IPv6] address; neither may start with "-", which ssh and scp
# would take as an option (ssh://-oProxyCommand=... runs a command on this machine)
_SSH_DESTINATION = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?(?:[A-Za-z0-9_][A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]+\])$")


def ssh_destination(port: str) -> str:
    """The ``[user@]host`` of ``ssh://[user@]host`` (or a bare ``[user@]host``); UsageError for anything else."""
    host = port[len("ssh://"):] if port.startswith("ssh://") else port
    if not _SSH_DESTINATION.match(host):
        raise UsageError(f"--port {port!r} is not ssh://[user@]host",
                         "user and host are names or addresses that do not start with '-', "
                         "e.g. ssh://pi@raspberrypi.local")
    return host


def ssh_command(port: str, *remote: str) -> list[str]:
    """argv running ``remote`` on the host of ``port``: ``--`` ends ssh's options before the destination."""
    return ["ssh", "-o", "BatchMode=yes", "--", ssh_destination(port), *remote]


@dataclass(frozen=True)
class RunningBoard:
    url: str
    emulated: bool  # latency comes from an emulator's instruction count, not a real clock
    description: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bridge(proc: subprocess.Popen[bytes], server: socket.socket, stop: threading.Event) -> None:
    """Accept one client at a time and copy bytes between it and the process."""
    assert proc.stdin is not None and proc.stdout is not None
    server.settimeout(0.2)
    while not stop.is_set() and proc.poll() is None:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        except OSError:  # the server socket was closed: the board is shutting down
            return
        conn.settimeout(0.05)

        def pump_out(c: socket.socket = conn) -> None:
            assert proc.stdout is not None
            while not stop.is_set():
                data = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(1)
                if not data:
                    break
                try:
                    c.sendall(data)
                except OSError:
                    break

        t = threading.Thread(target=pump_out, daemon=True)
        t.start()
        while not stop.is_set() and proc.poll() is None:
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                break
        conn.close()


@contextlib.contextmanager
def host_sim(executable: Path) -> Iterator[RunningBoard]:
    with process_board([str(executable)], f"host-sim ({executable.name} on this machine)") as board:
        yield board


@contextlib.contextmanager
def process_board(cmd: list[str], description: str) -> Iterator[RunningBoard]:
    """Any program speaking the bench protocol on stdin/stdout (host-sim firmware, a bundle's runner locally
    or over ssh), exposed as a TCP serial port."""
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))
    # stderr: the runner's own logs (e.g. LiteRT's delegate banner) stay off the user's terminal
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    stop = threading.Event()
    thread = threading.Thread(target=_bridge, args=(proc, server, stop), daemon=True)
    thread.start()
    try:
        yield RunningBoard(f"socket://127.0.0.1:{port}", False, description)
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            server.close()
        proc.kill()
        proc.wait(5)
        thread.join(2)


def qemu_available() -> bool:
    return shutil.which("qemu-system-arm") is not None


@contextlib.contextmanager
def qemu_cortex_m4(elf: Path, boot_timeout: float = 10.0) -> Iterator[RunningBoard]:
    if not qemu_available():
        raise ToolMissingError("qemu-system-arm is not installed", INSTALL_QEMU)
    port = free_port()
    cmd = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-icount", "shift=0",
           "-kernel", str(elf), "-serial", f"tcp:127.0.0.1:{port},server=on,wait=off,nodelay=on"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + boot_timeout
        while True:  # wait until QEMU listens
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise DeviceError(f"QEMU did not start: {out.strip()[-300:]}", "run the command by hand: "
                                  + " ".join(cmd))
            time.sleep(0.05)
        yield RunningBoard(f"socket://127.0.0.1:{port}", True,
                           "qemu-cortex-m4 (QEMU mps2-an386, -icount shift=0: emulated instruction counts)")
    finally:
        proc.kill()
        proc.wait(5)
