"""Board rigs: the boards wired to a machine, and a lock per serial port so that parallel jobs never share one.

A *rig file* (``edgeforge-rig.toml``) maps board names to how edgeforge reaches them. ``load_rig()`` finds it,
in order:

1. the path passed to it (``--ef-rig PATH`` in the pytest plugin; a folder means ``FOLDER/edgeforge-rig.toml``);
2. ``$EDGEFORGE_RIG``;
3. ``./edgeforge-rig.toml`` in the current directory.

Format (TOML)::

    version = 1                     # optional: the only format so far

    [boards.nucleo-f746]
    # Prefer /dev/serial/by-id/...: stable across re-plugging, unlike /dev/ttyACM0.
    port = "/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_066DFF545150898367163512-if02"
    target = "cortex-m7"            # an edgeforge target id (`edgeforge targets`)
    flasher = "platformio"
    reset = "none"                  # the ST-LINK virtual COM port has no DTR/RTS reset

    [boards.esp32-devkitc]
    port = "/dev/serial/by-id/usb-Silicon_Labs_CP2102N_USB_to_UART_Bridge_Controller_4a7c3f-if00-port0"
    target = "esp32"
    flasher = "esptool"
    baud = 115200
    reset = "dtr-rts"

    [boards.lab-pico]               # a board on a networked serial server
    port = "rfc2217://serial-server.lab:4001"
    target = "rp2040"
    flasher = "platformio"

    [boards.sim]                    # an emulated board edgeforge starts itself on each use
    target = "cortex-m4"
    flasher = "host-sim"

Fields of a ``[boards.NAME]`` table (NAME: letters, digits, ``.``, ``_``, ``-``; any other key is an error):

``port``
    A pyserial URL: an absolute device path (``/dev/serial/by-id/...``, ``/dev/ttyUSB0``; ``COM3`` on Windows),
    ``socket://HOST:PORT``, ``rfc2217://HOST:PORT``, ``loop://`` (a loopback, for tests), or any other
    ``SCHEME://`` pyserial has a handler for. Required, except for the emulated flashers ``host-sim`` and
    ``qemu``, whose boards edgeforge starts on a free local port each time (a port there names an emulator
    already running). Two boards may not name the same port (``loop://`` excepted).
``target``
    The edgeforge target id the board is (``cortex-m7``, ``esp32``, ...). Required.
``flasher``
    How a build gets onto the board: ``platformio``, ``esptool``, ``picotool``, ``openocd``, ``adb``, ``scp``,
    ``qemu``, ``host-sim`` or ``none`` (flashed by hand). Required.
``baud``
    Serial speed; optional (default: the target profile's ``[serial] baud``).
``reset``
    How to reset the board: ``none``, ``dtr-rts`` or ``1200bps-touch``; optional (default: the target's).

A file that breaks these rules raises :class:`~edgeforge.errors.UsageError` (exit 2) naming the file, the
board and the field.

Locks. ``with rig.lock(name, timeout=...) as board:`` holds an exclusive ``fcntl.flock`` lock on a file keyed
by the board's port (device paths resolved through symlinks, so ``/dev/serial/by-id/X`` and the
``/dev/ttyACM0`` it points at share a lock), waiting up to ``timeout`` seconds (``None``: for ever) before
raising :class:`~edgeforge.device.transport.DeviceError` (exit 4) ``board X is busy (locked by pid N on
HOST ...)``. The holder's pid, host, board and command line are written into the lock file while it is held,
for that message. The kernel drops the lock when the holder exits, however it exits (crash and ``kill -9``
included): there is no stale lock to clean up. Lock files are never deleted (deleting a flock file races).

The lock folder is ``$EDGEFORGE_LOCK_DIR``, else ``$XDG_RUNTIME_DIR/edgeforge-locks``, else
``/tmp/edgeforge-locks-<uid>`` (not ``$TMPDIR``, which CI runners often set per job). Only jobs that see the
same folder exclude each other: jobs under different users, or in containers, need an ``EDGEFORGE_LOCK_DIR``
they all share (writable by all of them) on a local file system (``flock`` over NFS is not reliable).
Ports of emulated boards started per use (no ``port``) are private to their process: locking one is a no-op.

Example::

    from edgeforge.bench.run import bench_build
    from edgeforge.device.rig import load_rig

    rig = load_rig()
    with rig.lock("esp32-devkitc", timeout=600) as board:
        bench_build(build_dir, runs=10, warmup=2, input_path=None, count=8, **board.bench_args())

The lock is per open file, not per process: a second ``rig.lock`` on the same port in the same process waits
like any other job (in the same thread it fails at once instead of dead-locking), and a child made by
``fork`` while the lock is held shares it until both have closed it.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edgeforge.device.transport import DeviceError
from edgeforge.errors import UsageError

try:
    import fcntl
except ImportError:  # Windows: rig files load, locks do not
    fcntl = None  # type: ignore[assignment]

RIG_FILENAME = "edgeforge-rig.toml"
ENV_RIG = "EDGEFORGE_RIG"
ENV_LOCK_DIR = "EDGEFORGE_LOCK_DIR"
FORMAT_VERSION = 1
DEFAULT_LOCK_TIMEOUT = 300.0

FLASHERS = ("platformio", "esptool", "picotool", "openocd", "adb", "scp", "qemu", "host-sim", "none")
EMULATED = {"host-sim": "host-sim", "qemu": "qemu-cortex-m4"}  # flasher -> `edgeforge bench --board` name
RESETS = ("none", "dtr-rts", "1200bps-touch")
BOARD_FIELDS = ("port", "target", "flasher", "baud", "reset")
BOARD_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# pyserial's URL handlers (serial/urlhandler/protocol_*.py) when pyserial cannot be asked.
_KNOWN_SCHEMES = ("socket", "rfc2217", "loop", "spy", "hwgrep", "alt", "cp2110")
_HOST_PORT_SCHEMES = ("socket", "rfc2217")

BOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["target", "flasher"],
    "properties": {
        "port": {"type": "string", "minLength": 1},
        "target": {"type": "string", "minLength": 1},
        "flasher": {"enum": list(FLASHERS)},
        "baud": {"type": "integer", "minimum": 50, "maximum": 20_000_000},
        "reset": {"enum": list(RESETS)},
    },
    # `port` is required unless edgeforge starts the (emulated) board itself.
    "if": {"properties": {"flasher": {"enum": list(EMULATED)}}, "required": ["flasher"]},
    "else": {"required": ["port"]},
}

RIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["boards"],
    "properties": {
        "version": {"const": FORMAT_VERSION},
        "boards": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": BOARD_NAME},
            "additionalProperties": BOARD_SCHEMA,
        },
    },
}

FORMAT_HINT = "the rig file format is described in `python -m pydoc edgeforge.device.rig`"


@dataclass(frozen=True)
class RigBoard:
    """One board of a rig file."""

    name: str
    port: str | None  # None: an emulated board edgeforge starts itself (flasher host-sim or qemu)
    target: str
    flasher: str
    baud: int | None = None  # None: the target profile's
    reset: str | None = None  # None: the target profile's

    @property
    def emulated(self) -> bool:
        return self.flasher in EMULATED

    @property
    def lock_key(self) -> str | None:
        """What the lock is keyed by; None for a board started per use (nothing shared to lock)."""
        return port_lock_key(self.port) if self.port else None

    def bench_args(self) -> dict[str, Any]:
        """``board``, ``port`` and ``baud`` keyword arguments for :func:`edgeforge.bench.run.bench_build`."""
        if self.port is None:
            return {"board": EMULATED[self.flasher], "port": None, "baud": self.baud}
        return {"board": None, "port": self.port, "baud": self.baud}


@dataclass(frozen=True)
class Rig:
    """A loaded rig file: boards by name, in file order."""

    path: Path
    boards: Mapping[str, RigBoard]

    @property
    def names(self) -> list[str]:
        return list(self.boards)

    def board(self, name: str) -> RigBoard:
        """The board called ``name``; UsageError (exit 2) naming the rig file if there is none."""
        try:
            return self.boards[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(f"board {name!r} is not in rig file {self.path}",
                             f"{hint}boards there: {', '.join(self.names)}") from None

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float | None = DEFAULT_LOCK_TIMEOUT) -> Iterator[RigBoard]:
        """Hold board ``name``'s port for the ``with`` block; DeviceError if another holder keeps it past
        ``timeout`` seconds (``None``: wait for ever; ``0``: try once)."""
        board = self.board(name)
        if board.port is None:
            yield board
            return
        with lock_port(board.port, board=board.name, timeout=timeout):
            yield board


# --------------------------------------------------------------------------------------------- loading


def find_rig(path: Path | str | None = None, cwd: Path | None = None) -> Path | None:
    """The rig file ``load_rig(path)`` would read, or None if there is none to read. A path that was asked
    for (explicitly or through ``$EDGEFORGE_RIG``) but does not exist raises UsageError."""
    if path is not None and str(path) != "":
        return _existing(Path(path), "")
    env = os.environ.get(ENV_RIG, "")
    if env:
        return _existing(Path(env), f" (from ${ENV_RIG})")
    candidate = (cwd or Path.cwd()) / RIG_FILENAME
    return candidate.absolute() if candidate.is_file() else None


def _existing(path: Path, origin: str) -> Path:
    if path.is_dir():
        path = path / RIG_FILENAME
    if not path.is_file():
        fix = f"fix or unset {ENV_RIG}" if origin else "check the path"
        raise UsageError(f"rig file {path}{origin} does not exist", f"{fix}; {FORMAT_HINT}")
    return path.absolute()


def load_rig(path: Path | str | None = None) -> Rig:
    """Read and validate the rig file: ``path``, else ``$EDGEFORGE_RIG``, else ``./edgeforge-rig.toml``."""
    found = find_rig(path)
    if found is None:
        raise UsageError(f"no rig file: none given, ${ENV_RIG} is not set and ./{RIG_FILENAME} does not exist",
                         f"create {RIG_FILENAME} or point {ENV_RIG} at one; {FORMAT_HINT}")
    try:
        data = tomllib.loads(found.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read rig file {found}: {exc}", "check the file's permissions") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"rig file {found} is not valid TOML: {exc}", "fix the syntax at that line") from None
    return rig_from_data(data, found)


def rig_from_data(data: Mapping[str, Any], path: Path) -> Rig:
    """Validate parsed rig data (from ``path``, named in errors) and build the Rig."""
    import jsonschema

    errors = list(jsonschema.Draft202012Validator(RIG_SCHEMA).iter_errors(data))
    if errors:
        order = list(data.get("boards", {})) if isinstance(data.get("boards"), Mapping) else []
        errors.sort(key=lambda e: _error_order(e, order))
        raise _schema_error(errors[0], path)
    boards: dict[str, RigBoard] = {}
    ports: dict[str, str] = {}
    for name, raw in data["boards"].items():
        port = raw.get("port")
        if port is not None:
            problem = _port_problem(port)
            if problem:
                raise UsageError(f"rig file {path}: board {name!r}: field 'port' {problem} (got {port!r})",
                                 "use a device path such as /dev/serial/by-id/..., or a pyserial URL: "
                                 "socket://HOST:PORT, rfc2217://HOST:PORT, loop://")
            key = port_lock_key(port)
            if key in ports and not key.startswith("loop://"):
                raise UsageError(f"rig file {path}: boards {ports[key]!r} and {name!r} name the same port "
                                 f"{port!r}", "each board needs its own port: fix the copied entry")
            ports[key] = name
        baud = raw.get("baud")
        boards[name] = RigBoard(name=name, port=port, target=raw["target"], flasher=raw["flasher"],
                                baud=None if baud is None else int(baud), reset=raw.get("reset"))
    return Rig(path=path, boards=MappingProxyType(boards))


def _error_order(error: Any, order: list[str]) -> tuple[int, str, str]:
    path = [str(p) for p in error.absolute_path]
    if len(path) >= 2 and path[0] == "boards":
        return (order.index(path[1]) + 1 if path[1] in order else 0, "/".join(path[2:]), error.validator)
    return (0, "/".join(path), error.validator)


_TYPE_NAMES = {"object": "a table", "string": "a string", "integer": "an integer"}


def _schema_error(error: Any, path: Path) -> UsageError:
    """One clear message for the first schema violation: file, board, field, what is wrong."""
    where = [str(p) for p in error.absolute_path]
    validator, instance, value = error.validator, error.instance, error.validator_value
    board = where[1] if len(where) >= 2 and where[0] == "boards" else None
    field = where[2] if len(where) >= 3 else (where[0] if len(where) == 1 and board is None else None)
    hint = FORMAT_HINT
    if validator == "required":
        field = next(f for f in value if f not in instance)
        text = "is missing"
        if field == "port":
            text += f" (only the emulated flashers {' and '.join(EMULATED)} need none)"
        elif field == "boards":
            text = "is missing: the file defines no [boards.NAME] table"
    elif validator == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        field = sorted(set(instance) - set(known))[0]
        close = difflib.get_close_matches(field, known, n=1)
        text = "is not a known field"
        hint = (f"did you mean {close[0]!r}? " if close else "") + f"known fields: {', '.join(known)}"
    elif validator == "enum":
        close = difflib.get_close_matches(str(instance), [str(v) for v in value], n=1)
        text = f"must be one of {', '.join(map(str, value))} (got {instance!r})"
        hint = f"did you mean {close[0]!r}?" if close else hint
    elif validator == "type":
        text = f"must be {_TYPE_NAMES.get(value, value)} (got {instance!r})"
    elif validator in ("minimum", "maximum"):
        text = f"must be between {BOARD_SCHEMA['properties']['baud']['minimum']} and " \
               f"{BOARD_SCHEMA['properties']['baud']['maximum']} (got {instance!r})"
    elif validator == "minLength":
        text = "must not be empty"
    elif validator == "pattern":  # propertyNames: a board name
        return UsageError(f"rig file {path}: board name {instance!r} is not allowed",
                          "board names use letters, digits, '.', '_' and '-', starting with a letter or digit")
    elif validator == "minProperties":
        field, text = None, "defines no board: [boards] is empty"
        hint = "add a [boards.NAME] table with port, target and flasher"
    elif validator == "const":
        text = f"must be {value} (got {instance!r}): this edgeforge reads rig format {value}"
    else:
        text = error.message
    parts = [f"rig file {path}"]
    if board is not None:
        parts.append(f"board {board!r}")
    if field is not None:
        parts.append(f"field {field!r} {text}")
    else:
        parts.append(text)
    return UsageError(": ".join(parts), hint)


def _port_problem(port: str) -> str | None:
    """Why ``port`` cannot be a pyserial URL, or None."""
    if port != port.strip():
        return "has leading or trailing spaces"
    if "://" in port:
        scheme, rest = port.split("://", 1)
        scheme = scheme.lower()
        if scheme not in _serial_schemes():
            return f"uses a URL scheme pyserial does not know ({scheme}://)"
        if scheme in _HOST_PORT_SCHEMES and not re.match(r"^(\[[0-9A-Fa-f:.]+\]|[^:/?\[\]]+):\d+(/|\?|$)", rest):
            return f"needs {scheme}://HOST:PORT"
        return None
    if re.fullmatch(r"COM\d+", port, re.IGNORECASE) or port.startswith("\\\\.\\"):
        return None
    if not os.path.isabs(port):
        return "is neither an absolute device path nor a pyserial URL"
    return None


def _serial_schemes() -> set[str]:
    schemes = set(_KNOWN_SCHEMES)
    with contextlib.suppress(Exception):
        import serial.urlhandler

        for folder in serial.urlhandler.__path__:
            schemes |= {p.stem[len("protocol_"):] for p in Path(folder).glob("protocol_*.py")}
    return schemes


# --------------------------------------------------------------------------------------------- locks


def port_lock_key(port: str) -> str:
    """The identity of a port for locking: device paths resolved through symlinks; URLs with a lower-case
    scheme and host and without their ``?options``."""
    if "://" in port:
        scheme, rest = port.split("://", 1)
        rest = rest.split("?", 1)[0]
        if scheme.lower() in _HOST_PORT_SCHEMES:
            rest = rest.lower().rstrip("/")
        return f"{scheme.lower()}://{rest}"
    if os.path.isabs(port):
        return os.path.realpath(port)
    return port.upper()  # COM3


def default_lock_dir() -> Path:
    """``$EDGEFORGE_LOCK_DIR``, else ``$XDG_RUNTIME_DIR/edgeforge-locks``, else ``/tmp/edgeforge-locks-<uid>``."""
    env = os.environ.get(ENV_LOCK_DIR, "")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "edgeforge-locks"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path("/tmp") / f"edgeforge-locks-{uid}"


def lock_path(port: str, lock_dir: Path | None = None) -> Path:
    """The lock file for ``port``: a readable, file-name-safe form of its key plus a hash of the key (two
    keys that sanitize alike still get two files)."""
    key = port_lock_key(port)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._-")[-80:] or "port"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return (lock_dir or default_lock_dir()) / f"{readable}-{digest}.lock"


def _ensure_lock_dir(folder: Path) -> None:
    private = not os.environ.get(ENV_LOCK_DIR)
    try:
        folder.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the board lock folder {folder}: {exc.strerror}",
                         f"set {ENV_LOCK_DIR} to a writable folder shared by the jobs that share boards") from None
    if private and hasattr(os, "getuid"):
        st = os.lstat(folder)
        if not os.path.isdir(folder) or os.path.islink(folder) or st.st_uid != os.getuid():
            raise UsageError(f"the board lock folder {folder} is not a folder owned by this user",
                             f"remove it, or set {ENV_LOCK_DIR} to a folder of your own")


# Locks held by this process: lock file -> (pid, thread). Only to fail fast on a nested lock in one thread.
_HELD: dict[str, tuple[int, int]] = {}
_HELD_GUARD = threading.Lock()


def read_holder(path: Path) -> dict[str, Any]:
    """What the holder of lock file ``path`` wrote about itself ({} if nothing readable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return {}
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, dict) else {}
    except ValueError:  # caught mid-write: salvage the pid
        m = re.search(r'"pid":\s*(\d+)', text)
        return {"pid": int(m.group(1))} if m else {}


def _describe_holder(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "locked by another process"
    text = f"locked by pid {holder['pid']}"
    if holder.get("host"):
        text += f" on {holder['host']}"
    if holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
        text += ", this process"
    if isinstance(holder.get("since"), (int, float)):
        text += f", for {max(time.time() - holder['since'], 0):.0f} s"
    return text


@contextlib.contextmanager
def lock_port(port: str, *, board: str | None = None, timeout: float | None = DEFAULT_LOCK_TIMEOUT,
              lock_dir: Path | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on ``port`` for the ``with`` block; yields the lock file. Waits up to
    ``timeout`` seconds (``None``: for ever), then raises DeviceError naming the holder."""
    if fcntl is None:
        raise UsageError("board locks need fcntl.flock (Linux or macOS)", "run hardware jobs on Linux or macOS")
    label = board or port
    folder = lock_dir or default_lock_dir()
    _ensure_lock_dir(folder)
    path = lock_path(port, folder)
    me = (os.getpid(), threading.get_ident())
    with _HELD_GUARD:
        if _HELD.get(str(path)) == me:
            raise DeviceError(f"board {label} is already locked by this thread (nested lock on {port})",
                              "use the board from the outer `with rig.lock(...)` block instead of locking it again")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise UsageError(f"cannot open the board lock file {path}: {exc.strerror}",
                         f"jobs sharing {ENV_LOCK_DIR} must all be able to write its files") from None
    try:
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                holder = read_holder(path)
                held_by = f"; it runs `{holder['cmd']}`" if holder.get("cmd") else ""
                raise DeviceError(f"board {label} is busy ({_describe_holder(holder)})",
                                  f"another job holds {port}{held_by}: wait for it or raise the lock timeout "
                                  f"(waited {timeout:g} s); lock file {path}")
            time.sleep(delay if deadline is None else min(delay, max(deadline - now, 0.001)))
            delay = min(delay * 2, 0.2)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "board": board, "port": port,
                "since": round(time.time(), 3), "cmd": " ".join(sys.argv)[:200]}
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        with _HELD_GUARD:
            _HELD[str(path)] = me
        try:
            yield path
        finally:
            with _HELD_GUARD:
                _HELD.pop(str(path), None)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # before unlocking: a waiter never reads a departed holder
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
