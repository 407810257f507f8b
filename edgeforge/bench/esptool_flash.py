"""``edgeforge flash`` for ESP-IDF builds: compiles the emitted project with ``idf.py`` when its images are not
built yet, then writes bootloader, partition table and app with esptool (the PyPI package) at the offsets the
build recorded in ``manifest.json`` (``espidf.images``), with the profile's chip and flash settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeforge.device.transport import DeviceError
from edgeforge.errors import ToolMissingError
from edgeforge.manifest import Manifest
from edgeforge.runtimes import Runtime

IDF_TIMEOUT_S = 1800  # a first ESP-IDF build fetches components and compiles all of IDF
ESPTOOL_TIMEOUT_S = 300
INSTALL_IDF = ("install ESP-IDF 5.x (https://docs.espressif.com/projects/esp-idf/en/stable/get-started/) and run "
               "`. $IDF_PATH/export.sh`, or build espidf/ with `idf.py build` elsewhere and copy espidf/build back")
INSTALL_ESPTOOL = "pip install esptool (edgeforge depends on it: reinstall edgeforge)"


def idf_py() -> str | None:
    """``idf.py`` on PATH, or under ``$IDF_PATH/tools``."""
    found = shutil.which("idf.py")
    if found:
        return found
    root = os.environ.get("IDF_PATH")
    candidate = Path(root) / "tools" / "idf.py" if root else None
    return str(candidate) if candidate is not None and candidate.is_file() else None


def idf_missing() -> str | None:
    """Why ESP-IDF cannot build here (None when it can)."""
    if idf_py() is not None:
        return None
    return "ESP-IDF is not installed (no idf.py on PATH" + ("" if os.environ.get("IDF_PATH") else ", IDF_PATH unset") + ")"


def esptool_available() -> bool:
    try:
        import esptool  # noqa: F401
    except ImportError:
        return False
    return True


def esptool_args(espidf: Mapping[str, Any], project: Path, port: str | None) -> list[str]:
    """esptool's arguments (after the program name) that write the build's images."""
    args = ["--chip", espidf["chip"]]
    if port:
        args += ["--port", port]
    args += ["--baud", str(espidf["baud"]), "--before", "default-reset", "--after", "hard-reset", "write-flash",
             "--flash-mode", espidf["flash_mode"], "--flash-freq", espidf["flash_freq"],
             "--flash-size", espidf["flash_size"]]
    for image in espidf["images"]:
        args += [image["offset"], str(project / image["path"])]
    return args


def esptool_program() -> list[str]:
    """How to run esptool: its console script beside this Python or on PATH, else ``python -m esptool``."""
    sibling = Path(sys.executable).with_name("esptool")
    if sibling.exists():
        return [str(sibling)]
    found = shutil.which("esptool")
    return [found] if found else [sys.executable, "-m", "esptool"]


def validate_with_esptool(args: list[str]) -> dict[str, Any]:
    """Parse ``args`` with esptool's own command-line parser (click) without connecting to anything; returns the
    parsed options of esptool and of its subcommand. Raises click's ``BadParameter``/``UsageError`` when esptool
    would reject the line. The image files must exist (esptool opens them while parsing)."""
    from esptool import cli

    cli._esp = None  # esptool's group reads an optional pre-connected loader here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = cli.make_context("esptool", list(args))
        rest = list(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])) + list(ctx.args)
        name, command, sub_args = cli.resolve_command(ctx, rest)
        assert command is not None and name is not None
        sub = command.make_context(name, sub_args, parent=ctx)
    files = sub.params.get("addr_filename") or []
    for _, handle in files:
        handle.close()
    return {"esptool": ctx.params, "command": name,
            "options": {k: v for k, v in sub.params.items() if k != "addr_filename"},
            "images": [(addr, handle.name) for addr, handle in files]}


def _run(cmd: list[str], timeout: int, what: str, hint: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"{what} did not finish in {timeout} s", hint) from None
    if proc.returncode != 0:
        raise DeviceError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[-400:]}", hint)


def flash_espidf(build_dir: Path, manifest: Manifest, port: str | None, dry_run: bool) -> dict[str, Any]:
    """Build (if needed) and write an ESP-IDF build; with ``dry_run`` only return the commands."""
    espidf = manifest.espidf
    assert espidf is not None, "flash_espidf is for builds whose manifest has an espidf section"
    project = build_dir / espidf["project"]
    missing = [i["path"] for i in espidf["images"] if not (project / i["path"]).is_file()]
    commands: list[list[str]] = []
    notes: list[str] = []
    if missing:
        idf = idf_py()
        if idf is None and not dry_run:
            raise ToolMissingError(f"{project} is not built and {idf_missing()}", INSTALL_IDF)
        if idf is None:
            notes.append(f"{idf_missing()}: the idf.py step needs it")
        # native builds are flashed to be benchmarked: the bench firmware (the project's EDGEFORGE_BENCH option)
        bench = ["-DEDGEFORGE_BENCH=1"] if manifest.target.runtime == Runtime.NATIVE else []
        commands.append([idf or "idf.py", "-C", str(project), *bench, "build"])
    commands.append([*esptool_program(), *esptool_args(espidf, project, port)])
    if not dry_run:
        if not esptool_available():
            raise ToolMissingError("esptool is not installed", INSTALL_ESPTOOL)
        if missing:
            _run(commands[0], IDF_TIMEOUT_S, "`idf.py build`",
                 f"run `idf.py -C {project} build` by hand to see the whole log")
        _run(commands[-1], ESPTOOL_TIMEOUT_S, "esptool write-flash",
             "check --port, that nothing else holds it (idf.py monitor, a serial terminal) and, if auto-reset "
             "fails, hold BOOT while pressing EN")
        record = {"port": port, "chip": espidf["chip"], "images": espidf["images"], "commands": commands}
        (build_dir / "flash.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    summary = (f"{manifest.target.id}: {'dry run' if dry_run else 'flashed'} with esptool ({espidf['chip']}, "
               f"{espidf['flash_mode']} {espidf['flash_freq']} {espidf['flash_size']}: "
               + ", ".join(f"{i['path'].rsplit('/', 1)[-1]} at {i['offset']}" for i in espidf["images"]) + ")")
    return {"commands": commands, "summary": "; ".join([summary, *notes]), "images": espidf["images"]}
