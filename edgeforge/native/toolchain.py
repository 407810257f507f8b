"""Compiles native builds: for this machine (``edgeforge run``, tests, benchmarks) and for Cortex-M with
arm-none-eabi-gcc, reading exact flash/RAM sizes and the worst-case stack from the real toolchain."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeforge.errors import ModelError, ToolMissingError

HOST_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra"]
ARM_BASE_CFLAGS = ["-std=c99", "-Os", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra"]
INSTALL_ARM = "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi"


def host_compiler() -> str:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    raise ToolMissingError("no C compiler found to build the native model for this machine",
                           "apt-get install -y gcc (or set CC)")


def _sources(native_dir: Path) -> list[Path]:
    return [native_dir / "ef_model.c", *sorted((native_dir / "runtime").glob("*.c"))]


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeforge" / "native"
    try:
        base.mkdir(parents=True, exist_ok=True)
        return base
    except OSError:
        return Path(tempfile.mkdtemp(prefix="edgeforge-native-"))


def host_runner(native_dir: Path) -> Path:
    """``ef_run`` for ``native_dir`` compiled with the host compiler; cached by source content."""
    if not (native_dir / "ef_model.c").is_file():
        raise ModelError(f"{native_dir} holds no native model (ef_model.c is missing)",
                         "rebuild with --runtime native")
    files = _sources(native_dir) + [native_dir / "host_main.c", native_dir / "ef_model.h",
                                    *sorted((native_dir / "runtime").glob("*.h"))]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    cc = host_compiler()
    exe = _cache_dir() / f"ef_run-{h.hexdigest()[:24]}"
    if exe.exists():
        return exe
    tmp = exe.with_suffix(f".tmp{os.getpid()}")
    cmd = [cc, *HOST_CFLAGS, "-I", str(native_dir / "runtime"), "-I", str(native_dir), "-o", str(tmp),
           *map(str, _sources(native_dir)), str(native_dir / "host_main.c")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelError(f"the generated C does not compile: {proc.stderr.strip().splitlines()[-1][:300]}",
                         "this is a bug in edgeforge's native runtime; build with --runtime tflm meanwhile")
    tmp.replace(exe)
    return exe


@dataclass(frozen=True)
class ArmImage:
    """Section sizes of the linked Cortex-M image, in bytes."""

    text: int
    rodata: int
    data: int
    bss: int
    stack: int  # worst-case, from the call graph
    model_text: int  # code of ef_model.o (the generated part)
    model_rodata: int  # constants of ef_model.o
    link_error: str | None = None

    @property
    def flash(self) -> int:
        return self.text + self.rodata + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss + self.stack

    def to_json(self) -> dict[str, object]:
        return {"text": self.text, "rodata": self.rodata, "data": self.data, "bss": self.bss, "stack": self.stack,
                "flash_bytes": self.flash, "ram_bytes": self.ram, "model_text": self.model_text,
                "model_rodata": self.model_rodata, "link_error": self.link_error,
                "method": "arm-none-eabi-gcc -Os, sections from the linked ELF, stack from -fcallgraph-info=su"}


def arm_available(prefix: str = "arm-none-eabi") -> bool:
    return shutil.which(f"{prefix}-gcc") is not None and shutil.which(f"{prefix}-size") is not None


def _worst_stack(ci_files: list[Path], root: str) -> int:
    """Longest path of frame sizes from ``root`` through the call graph GCC wrote (-fcallgraph-info=su)."""
    frames: dict[str, int] = {}
    edges: dict[str, set[str]] = {}
    node = re.compile(r'node: \{ title: "([^"]+)" label: "[^"]*?\\n[^"]*?(\d+) bytes \((\w+)\)')
    edge = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
    for f in ci_files:
        text = f.read_text(errors="replace")
        for name, size, _kind in node.findall(text):
            frames[name] = max(frames.get(name, 0), int(size))
        for src, dst in edge.findall(text):
            edges.setdefault(src, set()).add(dst)

    def depth(fn: str, seen: frozenset[str]) -> int:
        if fn in seen:  # recursion: not bounded statically; count the frame once
            return 0
        below = [depth(d, seen | {fn}) for d in edges.get(fn, ())]
        return frames.get(fn, 0) + max(below, default=0)

    return depth(root, frozenset())


def _size_sections(size_tool: str, path: Path) -> dict[str, int]:
    out = subprocess.run([size_tool, "-A", str(path)], capture_output=True, text=True, check=True).stdout
    sections: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    return sections


#: the C library each supported cross-compiler links, as driver spec files. Chosen here by the compiler prefix,
#: never taken from a profile: a spec file can run commands, and profiles are untrusted input.
LIBC_SPECS: dict[str, tuple[str, ...]] = {
    "arm-none-eabi": ("-specs=nano.specs", "-specs=nosys.specs"),  # newlib-nano, no OS
    "riscv64-unknown-elf": ("--specs=picolibc.specs",),  # Debian's bare-metal RISC-V C library
}
#: the spec files compiles need too (picolibc's headers); newlib's are the Arm compiler's default
COMPILE_SPECS: dict[str, tuple[str, ...]] = {"riscv64-unknown-elf": LIBC_SPECS["riscv64-unknown-elf"]}


def arm_image(native_dir: Path, cflags: list[str], prefix: str = "arm-none-eabi") -> ArmImage:
    """Cross-compile and link ``native_dir`` (its arm/ start-up and linker script) and measure it."""
    if not arm_available(prefix):
        raise ToolMissingError(f"{prefix}-gcc is not installed", INSTALL_ARM)
    gcc, size = f"{prefix}-gcc", f"{prefix}-size"
    with tempfile.TemporaryDirectory(prefix="edgeforge-arm-") as tmp:
        work = Path(tmp)
        objs = []
        for src in [*_sources(native_dir), native_dir / "arm" / "startup.c"]:
            obj = work / (src.stem + ".o")
            cmd = [gcc, *ARM_BASE_CFLAGS, *cflags, *COMPILE_SPECS.get(prefix, ()), "-fcallgraph-info=su",
                   "-I", str(native_dir / "runtime"),
                   "-I", str(native_dir), "-c", str(src), "-o", str(obj)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
            if proc.returncode != 0:
                raise ModelError(f"the generated C does not cross-compile: {proc.stderr.strip()[-300:]}",
                                 "this is a bug in edgeforge's native runtime; build with --runtime tflm meanwhile")
            objs.append(obj)
        stack = (_worst_stack(sorted(work.glob("*.ci")), "Reset_Handler") + 7) // 8 * 8
        elf = work / "ef_model.elf"
        # picolibc's specs must see -T as a driver option to leave out their own linker script
        libc = list(LIBC_SPECS.get(prefix, ()))
        link = [gcc, *cflags, "-nostartfiles", *libc, "-Wl,--gc-sections",
                f"-Wl,--defsym=__ef_stack_size={stack}", "-T", str(native_dir / "arm" / "link.ld"),
                "-o", str(elf), *map(str, objs)]
        proc = subprocess.run(link, capture_output=True, text=True, cwd=work)
        model = _size_sections(size, work / "ef_model.o")
        model_text = sum(v for k, v in model.items() if k.startswith(".text"))
        model_rodata = sum(v for k, v in model.items() if k.startswith(".rodata"))
        if proc.returncode != 0:
            overflow = [ln.strip() for ln in proc.stderr.splitlines() if "overflowed" in ln or "will not fit" in ln]
            message = overflow[0] if overflow else proc.stderr.strip()[-300:]
            return ArmImage(0, 0, 0, 0, stack, model_text, model_rodata, link_error=message)
        s = _size_sections(size, elf)
        text = s.get(".isr_vector", 0) + s.get(".text", 0) + s.get(".ARM.exidx", 0)
        return ArmImage(text, s.get(".rodata", 0), s.get(".data", 0), s.get(".bss", 0), stack, model_text,
                        model_rodata)
