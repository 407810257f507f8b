"""``edgeforge doctor``: which toolchains and SDKs are present, and what each target can do with them.

Each check is data (a name, how to find it, what installs it); each target needs the checks its profile implies
(its runtimes, project emitters, flash tool, architecture). Nothing here runs a build or touches a device."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeforge.bench.esptool_flash import idf_py
from edgeforge.target.schema import Target

#: The offline TFLite Micro tree (TFLM headers for syntax checks of emitted harnesses): EDGEFORGE_TFLM_DIR, else
#: the shared folder beside a checkout.
TFLM_ENV = "EDGEFORGE_TFLM_DIR"
_CHECKOUT_TFLM = Path(__file__).resolve().parent.parent.parent / "shared" / "third_party" / "tflite-micro"


@dataclass(frozen=True)
class Tool:
    name: str
    what: str  # what edgeforge uses it for
    install: str
    present: bool
    location: str | None = None
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "present": self.present, "location": self.location, "version": self.version,
                "install": self.install}


def _first_line(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0][:100] if text else None


def _program(name: str, what: str, install: str, names: tuple[str, ...] = (), flag: str = "--version") -> Tool:
    for candidate in (name, *names):
        found = shutil.which(candidate)
        if found:
            return Tool(name, what, install, True, found, _first_line([found, flag]))
    return Tool(name, what, install, False)


def tflm_dir() -> Path | None:
    env = os.environ.get(TFLM_ENV)
    for root in ([Path(env)] if env else []) + [_CHECKOUT_TFLM]:
        if (root / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
            return root
    return None


def tools() -> dict[str, Tool]:
    """Every check, by name."""
    found: dict[str, Tool] = {}
    for t in (
        _program("cc", "host C compiler: native runtime on this machine (host-sim board, accuracy)",
                 "apt-get install -y gcc", ("gcc", "clang")),
        _program("make", "bench firmware builds", "apt-get install -y make"),
        _program("cmake", "ESP-IDF projects (idf.py drives it); offline CMake checks", "apt-get install -y cmake"),
        _program("arm-none-eabi-gcc", "Cortex-M images: exact flash/RAM of native builds, QEMU firmware",
                 "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi"),
        _program("qemu-system-arm", "emulated Cortex-M4 board (qemu-cortex-m4)", "apt-get install -y qemu-system-arm"),
        _program("riscv-gcc", "RISC-V images for the emulated RISC-V board (ESP32-C3/C6 stand-in)",
                 "apt-get install -y gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf",
                 ("riscv64-unknown-elf-gcc", "riscv32-esp-elf-gcc", "riscv64-elf-gcc")),
        _program("qemu-system-riscv32", "emulated RISC-V board (qemu-system-riscv32 -M virt)",
                 "apt-get install -y qemu-system-misc"),
        _program("adb", "Android bundles (edgeforge flash/bench on a phone)", "apt-get install -y adb"),
        _program("ssh", "Raspberry Pi bundles over SSH", "apt-get install -y openssh-client", flag="-V"),
    ):
        found[t.name] = t
    idf = idf_py()
    idf_path = os.environ.get("IDF_PATH")
    found["esp-idf"] = Tool("esp-idf", "builds the emitted ESP-IDF projects (idf.py)",
                            "https://docs.espressif.com/projects/esp-idf/en/stable/get-started/ then "
                            "`. $IDF_PATH/export.sh`", idf is not None, idf,
                            f"IDF_PATH={idf_path}" if idf_path else "IDF_PATH unset")
    try:
        import esptool

        found["esptool"] = Tool("esptool", "writes ESP32-family images (edgeforge flash)", "pip install esptool",
                                True, str(Path(esptool.__file__).parent), str(esptool.__version__))
    except ImportError:
        found["esptool"] = Tool("esptool", "writes ESP32-family images (edgeforge flash)", "pip install esptool",
                                False)
    sibling = Path(sys.executable).with_name("pio")
    pio = str(sibling) if sibling.exists() else shutil.which("pio")
    found["platformio"] = Tool("platformio", "builds and uploads the emitted PlatformIO projects",
                               "pip install platformio", pio is not None, pio)
    tflm = tflm_dir()
    found["tflm-sources"] = Tool("tflm-sources", "TFLite Micro headers for offline checks of emitted harnesses",
                                 f"set {TFLM_ENV} to a tflite-micro checkout", tflm is not None,
                                 str(tflm) if tflm else None)
    return found


def needs(target: Target) -> list[str]:
    """The checks ``target``'s profile implies, in a stable order."""
    data = target.data
    want: list[str] = []
    if target.is_mcu:
        want += ["cc", "make"]
        if "espidf" in target.emit:
            want += ["esp-idf", "cmake"]
        if "platformio" in target.emit:
            want.append("platformio")
        if data["flash"]["tool"] == "esptool" or "espidf" in target.emit:
            want.append("esptool")
        cross = (data.get("toolchain") or {}).get("cross")
        if cross == "arm-none-eabi":
            want += ["arm-none-eabi-gcc", "qemu-system-arm"]
        if str(target.hardware.get("arch", "")).startswith("riscv"):
            want += ["riscv-gcc", "qemu-system-riscv32"]
        if "tflm" in target.runtimes:
            want.append("tflm-sources")
    elif data["flash"]["tool"] == "adb":
        want.append("adb")
    elif data["flash"]["tool"] == "scp":
        want.append("ssh")
    return list(dict.fromkeys(want))


def report(targets: list[Target]) -> dict[str, Any]:
    """Tools found, and per target what it needs and what of that is missing."""
    found = tools()
    per_target = {}
    for t in targets:
        need = needs(t)
        per_target[t.id] = {"needs": need, "missing": [n for n in need if not found[n].present]}
    return {"tools": {name: t.to_json() for name, t in found.items()}, "targets": per_target}
