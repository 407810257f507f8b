"""Writes a build folder atomically: everything goes to a temporary sibling folder that replaces ``out`` only once
complete, so a failed or interrupted build leaves the previous contents of ``out`` intact.

The swap is one system call on Linux: ``renameat2(RENAME_EXCHANGE)`` exchanges the complete new folder with the
old one, so at every instant ``out`` is either the whole previous build or the whole new one, whatever signal
(SIGKILL included) arrives. Where the kernel or file system lacks it, two renames are used with SIGINT/SIGTERM
deferred in between; only a SIGKILL in that window can leave ``out`` missing, and the next build puts the previous
build back before doing anything else. Temporary folders carry their creator's pid (``.out.tmp-<pid>-*``,
``.out.old-<pid>-*``, ``$TMPDIR/edgeforge-*-<pid>-*``) so that a later run removes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from edgeforge.errors import UsageError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_PID_SUFFIX = re.compile(r"^(\d+)-")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scratch_prefix(kind: str) -> str:
    """Prefix for a scratch folder under $TMPDIR that :func:`clean_stale_scratch` may remove once this process
    is gone (``tempfile.TemporaryDirectory(prefix=scratch_prefix("sm"))``)."""
    return f"edgeforge-{kind}-{os.getpid()}-"


def write_tree(out: Path, files: dict[str, bytes]) -> None:
    """Replace folder ``out`` with exactly ``files`` (relative path -> content)."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder", "choose another --out")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        clean_stale(out)
        clean_stale_scratch()
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {out}: {exc.strerror}", "check --out and permissions") from None
    try:
        for rel, data in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if rel.endswith(".py"):
                path.chmod(0o755)
        os.chmod(tmp, 0o755)
        _swap_in(tmp, out)
    finally:
        # after an exchange tmp holds the previous build; after a failure, the unfinished new one
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)


def _swap_in(tmp: Path, out: Path) -> None:
    """Make complete folder ``tmp`` the new ``out``."""
    if not out.exists():
        os.rename(tmp, out)  # one rename: atomic
        return
    if _exchange(tmp, out):
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
    old.rmdir()
    with _interrupts_deferred():
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except OSError:
            os.rename(old, out)  # put the previous build back
            raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths with Linux's renameat2(RENAME_EXCHANGE); False where that is unavailable
    (another OS, an old kernel or C library, a file system without it)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done, then deliver the first one that came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: pending.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pending:
            signal.raise_signal(pending[0])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or not a pid): not ours to judge
    return True


def _dead_owner(name: str, prefix: str) -> bool:
    """True if ``name`` is ``<prefix><pid>-...`` and that process no longer runs."""
    m = _PID_SUFFIX.match(name[len(prefix):]) if name.startswith(prefix) else None
    return bool(m) and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1)))


def clean_stale(out: Path) -> None:
    """Remove ``out``'s temporary siblings left by runs that were killed; if such a run was killed between the
    two renames of the fallback swap (``out`` missing), put its previous build back first."""
    parent = out.parent
    if not parent.is_dir():
        return
    olds = sorted((p for p in parent.iterdir() if _dead_owner(p.name, f".{out.name}.old-")),
                  key=lambda p: p.stat().st_mtime)
    if olds and not out.exists() and not out.is_symlink():
        with contextlib.suppress(OSError):
            os.rename(olds.pop(), out)
    for p in parent.iterdir():
        if p in olds or _dead_owner(p.name, f".{out.name}.tmp-"):
            shutil.rmtree(p, ignore_errors=True)


def clean_stale_scratch() -> None:
    """Remove ``$TMPDIR/edgeforge-<kind>-<pid>-*`` folders whose process is gone."""
    root = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for p in root.iterdir():
            m = re.match(r"^edgeforge-[a-z]+-(\d+)-", p.name)
            if m and p.is_dir() and not p.is_symlink() and int(m.group(1)) != os.getpid() \
                    and not _pid_alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)
