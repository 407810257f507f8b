"""``edgeforge flash``: puts a build on a board with the tool its target profile names."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgeforge.bench.firmware import build_image
from edgeforge.device.boards import BOARDS, ssh_command, ssh_destination
from edgeforge.device.transport import DeviceError
from edgeforge.errors import ToolMissingError, UsageError
from edgeforge.run import read_build
from edgeforge.target import load_registry

FLASH_TIMEOUT_S = 900

INSTALL = {
    "pio": "pip install platformio",
    "esptool.py": "pip install esptool",
    "adb": "apt-get install -y adb",
    "scp": "apt-get install -y openssh-client",
}


def _commands(build_dir: Path, tool: str, port: str | None, target: Any) -> list[list[str]]:
    """argv lists, never shell text. Local paths are absolute (a folder named "-x" or "a:b" is neither an option
    nor, for scp, a remote host); ports and hosts that start with "-" are refused; "--" ends each tool's options
    where the tool accepts it. remote_dir follows the profile schema's path grammar."""
    remote = target.data["flash"].get("remote_dir", "edgeforge")
    build_dir = build_dir.resolve()
    if tool in ("platformio", "esptool", "picotool", "openocd"):
        # PlatformIO drives each board's own uploader (esptool, picotool, ST-LINK/OpenOCD) from platformio.ini
        project = build_dir / "platformio"
        if not (project / "platformio.ini").is_file():
            runtime = "native" if (build_dir / "native").is_dir() else "tflm"
            raise UsageError(f"{build_dir} has no PlatformIO project (platformio/platformio.ini) to upload",
                             f"rebuild it with this edgeforge (a {runtime} build for {target.id} emits one), "
                             "or use --board for an emulated board")
        cmd = ["pio", "run", "-d", str(project), "-t", "upload"]
        _check_serial_port(port)
        return [cmd + ([f"--upload-port={port}"] if port else [])]
    if tool == "adb":
        return [["adb", "push", str(build_dir / "bundle"), remote]]
    if tool == "scp":
        if not port:
            raise UsageError("flashing a Raspberry Pi needs --port user@host", "e.g. --port ssh://pi@raspberrypi.local")
        host = ssh_destination(port)
        files = [str(p) for p in sorted((build_dir / "bundle").iterdir())]
        return [ssh_command(port, "mkdir", "-p", "--", remote),
                ["scp", "-o", "BatchMode=yes", "--", *files, f"{host}:{remote}/"]]
    raise UsageError(f"target {target.id} names no flash tool", "copy the artifacts by hand")


def _check_serial_port(port: str | None) -> None:
    """A port reaches an uploader's argv: one that starts with "-" would be read as an option."""
    if port is not None and (not port or port.startswith("-") or any(ord(ch) < 32 for ch in port)):
        raise UsageError(f"--port {port!r} is not a serial port", "e.g. --port /dev/ttyACM0")


def _tool(name: str) -> str | None:
    """On PATH, or beside this Python (PlatformIO installed into edgeforge's own virtualenv)."""
    found = shutil.which(name)
    sibling = Path(sys.executable).with_name(name)
    return found or (str(sibling) if sibling.exists() else None)


def flash_build(build_dir: Path, board: str | None, port: str | None, dry_run: bool = False,
                tflm_src: Path | None = None, tflm_kernels: str | None = None) -> dict[str, Any]:
    manifest, _, info = read_build(build_dir)
    target = load_registry().get(manifest.target.id)
    if board is None and manifest.espidf is not None:  # an ESP-IDF project: idf.py builds it, esptool writes it
        _check_serial_port(port)
        from edgeforge.bench.esptool_flash import flash_espidf

        return flash_espidf(build_dir, manifest, port, dry_run)
    if board is not None:
        if board == "pi-local":
            return {"commands": [], "board": board,
                    "summary": "pi-local runs the bundle's run_model.py in place: nothing to load"}
        if board not in BOARDS:
            raise UsageError(f"unknown board {board!r}", f"emulated boards: {', '.join(BOARDS)}; use --port otherwise")
        if dry_run:
            return {"commands": [], "summary": f"would build the bench firmware for {board}"}
        image = build_image(build_dir, board, manifest, target.hardware, info, tflm_src, tflm_kernels)
        record = {"board": board, "image": str(image.relative_to(build_dir)), "commands": []}
        (build_dir / "flash.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        return {**record, "summary": f"{board}: firmware image {image} (started by `edgeforge bench --board {board}`)"}
    cmds = _commands(build_dir, target.data["flash"]["tool"], port, target)
    if not dry_run:
        for cmd in cmds:
            found = _tool(cmd[0])
            if found is None:
                raise ToolMissingError(f"{cmd[0]} is not installed", INSTALL.get(cmd[0], f"install {cmd[0]}"))
            cmd[0] = found
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FLASH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise DeviceError(f"`{' '.join(cmd[:3])}` did not finish in {FLASH_TIMEOUT_S} s",
                                  "PlatformIO may be downloading a platform (it needs the internet the first "
                                  "time); run the command by hand to see its output") from None
            if proc.returncode != 0:
                raise DeviceError(f"`{' '.join(cmd[:3])}` failed: {(proc.stderr or proc.stdout).strip()[-300:]}",
                                  "check the port and that the board is in its bootloader if it needs one")
        (build_dir / "flash.json").write_text(json.dumps({"port": port, "commands": cmds}, indent=2) + "\n")
    return {"commands": cmds, "summary": f"{target.id}: {'dry run' if dry_run else 'flashed'}"}
