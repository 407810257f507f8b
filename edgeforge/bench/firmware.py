"""Builds the bench firmware (firmware/bench/) around a native build, for the emulated boards."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from edgeforge.device.transport import DeviceError
from edgeforge.errors import ToolMissingError, UsageError
from edgeforge.manifest import Manifest
from edgeforge.native.toolchain import INSTALL_ARM, arm_available
from edgeforge.output import scratch_prefix
from edgeforge.resources import data_dir
from edgeforge.runtimes import Runtime

IMAGES = {"host-sim": "ef_bench_host", "qemu-cortex-m4": "ef_bench_an386.elf"}


def _mlperf_name(shape: Sequence[int]) -> str:
    """The `profile` model string MLPerf hosts pick their dataset by, for the reference models' input shapes."""
    known = {(1, 49, 10, 1): "kws01", (1, 32, 32, 3): "ic01", (1, 96, 96, 3): "vww01", (1, 640): "ad01"}
    return known.get(tuple(shape), "unknown")


_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./+-]+$")


def _plain_tmp() -> str:
    """A temporary folder whose path make can take as is ($TMPDIR unless it holds spaces or $)."""
    tmp = tempfile.gettempdir()
    return tmp if _PLAIN_PATH.match(tmp) else "/tmp"


def build_image(build_dir: Path, board: str, manifest: Manifest, target_hw: dict) -> Path:
    """Compile the bench firmware for ``board`` into ``build_dir/firmware/``; returns the image path."""
    native = build_dir / "native"
    if manifest.target.runtime != Runtime.NATIVE or not (native / "ef_model.c").is_file():
        raise UsageError(f"{build_dir} is not a native build: the emulated boards run edgeforge's native runtime",
                         "rebuild with --runtime native (or flash a real board with --port)")
    if board == "qemu-cortex-m4" and not arm_available():
        raise ToolMissingError("arm-none-eabi-gcc is not installed", INSTALL_ARM)
    if shutil.which("make") is None:
        raise ToolMissingError("make is not installed", "apt-get install -y make")
    out = build_dir / "firmware"
    out.mkdir(exist_ok=True)
    src = data_dir("firmware") / "bench"
    goal = "host" if board == "host-sim" else "qemu"
    # make has no quoting: a space splits a path, "$(shell ...)" in a variable's value runs (command-line and
    # environment variables alike). So make never sees the user's paths: it runs in a scratch folder whose own
    # path is plain, through symlinks to the firmware sources, the build's native/ and the output folder.
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("fw"), dir=_plain_tmp()) as tmp:
        stage = Path(tmp)
        for name, path in (("bench", src), ("native", native), ("out", out)):
            (stage / name).symlink_to(path.resolve(), target_is_directory=True)
        cmd = ["make", "-s", "-f", str(stage / "bench" / "Makefile"), goal, f"NATIVE={stage / 'native'}",
               f"OUT={stage / 'out'}", f"FLASH_BYTES={int(target_hw['flash_bytes'])}",
               f"RAM_BYTES={int(target_hw['ram_bytes'])}", f"MODEL_NAME={_mlperf_name(manifest.model.inputs[0].shape)}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=stage)
    image = out / IMAGES[board]
    if proc.returncode != 0 or not image.is_file():
        tail = (proc.stderr or proc.stdout).strip()[-400:]
        if "overflowed" in tail:
            raise DeviceError(f"the bench firmware does not fit the board's memory: {tail.splitlines()[-1]}",
                              "the model is too large for this part; see `edgeforge analyze`")
        raise DeviceError(f"building the bench firmware failed: {tail}", "run with -v; command: " + shlex.join(cmd))
    return image
