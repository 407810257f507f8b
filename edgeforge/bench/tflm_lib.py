"""A TensorFlow Lite Micro static library for one board and one model's op set, compiled from a TFLM source tree
(edgeforge.bench.tflm_src) with TFLM's own release flags, and cached.

Only what the model needs is compiled: the framework core plus the kernel sources of the ops the emitted
``op_resolver.h`` registers (TFLM's whole library is ~25 CPU-minutes per kernel set on a small machine). Objects
live in a user cache keyed by the tree's content hash and the compile flags, so a second model or a second
build reuses them; the core objects are shared between the reference and CMSIS-NN kernel sets (no core source
reads ``CMSIS_NN``). Flags, source sets and kernel variants follow the shared tree's README ("Source sets",
"Compiler invocations").
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from edgeforge.device.transport import DeviceError
from edgeforge.errors import ToolMissingError, UnsupportedOpError
from edgeforge.resources import data_dir

KERNELS = ("reference", "cmsis_nn")
JOBS = 2  # the CI machines (and the shared development machine) have two cores

# TFLM's BUILD_TYPE=release C++ flags (shared tree README, CXXCOMMON), warnings trimmed to -Wall.
CXXCOMMON = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", "-fno-unwind-tables",
             "-fno-asynchronous-unwind-tables", "-ffunction-sections", "-fdata-sections", "-fmessage-length=0",
             "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-DKERNELS_OPTIMIZED_FOR_SPEED",
             "-DNDEBUG", "-DTF_LITE_STRIP_ERROR_STRINGS", "-Wall", "-Wno-unused-parameter", "-Wno-type-limits")
CCOMMON = ("-std=c17", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-ffunction-sections",
           "-fdata-sections", "-fmessage-length=0", "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON",
           "-DKERNELS_OPTIMIZED_FOR_SPEED", "-DNDEBUG", "-DTF_LITE_STRIP_ERROR_STRINGS", "-Wno-type-limits")
CMSIS_NN_DEFS = ("-DCMSIS_NN", "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0")

# Framework sources never linked into a firmware (test support, recording allocators for the host tools).
_NOT_FIRMWARE = {"test_helpers.cc", "test_helper_custom_ops.cc", "mock_micro_graph.cc", "fake_micro_context.cc",
                 "recording_micro_allocator.cc", "recording_single_arena_buffer_allocator.cc"}
# Kernel sources some kernels call into beyond their own <stem>_common.cc.
_KERNEL_EXTRA = {"unidirectional_sequence_lstm": ("lstm_eval", "lstm_eval_common", "micro_tensor_utils"),
                 "svdf": ("svdf_common", "micro_tensor_utils")}
# CMSIS-NN source folders each CMSIS-NN kernel calls (NNSupportFunctions always).
_CMSIS_DIRS = {"conv": ("ConvolutionFunctions",), "depthwise_conv": ("ConvolutionFunctions", "TransposeFunctions"),
               "transpose_conv": ("ConvolutionFunctions",), "fully_connected": ("FullyConnectedFunctions",),
               "batch_matmul": ("FullyConnectedFunctions", "BasicMathFunctions"),
               "pooling": ("PoolingFunctions",), "softmax": ("SoftmaxFunctions",),
               "add": ("BasicMathFunctions",), "mul": ("BasicMathFunctions",),
               "maximum_minimum": ("BasicMathFunctions",), "pad": ("PadFunctions",),
               "transpose": ("TransposeFunctions",), "svdf": ("SVDFunctions",),
               "unidirectional_sequence_lstm": ("LSTMFunctions", "FullyConnectedFunctions")}
KERNEL_DIR = "tensorflow/lite/micro/kernels"


@dataclass(frozen=True)
class Toolchain:
    """How to compile for one core: compiler prefix, CPU flags, and for Arm the CMSIS device (ARMCM4...)."""

    cross: str  # "arm-none-eabi" / "riscv64-unknown-elf"
    cpu_flags: tuple[str, ...]
    cmsis_device: str | None = None  # None: not an Arm core (generic debug_log/micro_time sources)
    specs: tuple[str, ...] = ()  # e.g. picolibc's --specs, needed to find its headers

    @property
    def is_arm(self) -> bool:
        return self.cmsis_device is not None


@dataclass(frozen=True)
class TflmLibrary:
    archive: Path
    include_flags: tuple[str, ...]  # what code including TFLM headers needs (defines and -I)
    sources: int  # how many sources it holds
    compiled: int  # how many of them this call compiled (0: all cached)
    kernels: str


def tree_hash(root: Path) -> str:
    return _tree_hash(str(root), _tree_stamp(root))


def _tree_stamp(root: Path) -> tuple[tuple[str, int, int], ...]:
    return tuple((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                 for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".h", ".cc", ".c", ".inc"))


@lru_cache(maxsize=8)
def _tree_hash(root: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    """Content hash of every source and header (mtimes only decide whether to re-read, via the lru key)."""
    h = hashlib.sha256()
    for rel, _, _ in stamp:
        h.update(rel.encode() + b"\0" + (Path(root) / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def cache_root() -> Path:
    """``$EDGEFORGE_CACHE_DIR`` or ``$XDG_CACHE_HOME/edgeforge`` (``~/.cache/edgeforge``), then ``tflm/``."""
    base = os.environ.get("EDGEFORGE_CACHE_DIR") or str(Path(os.environ.get("XDG_CACHE_HOME",
                                                                            Path.home() / ".cache")) / "edgeforge")
    return Path(base) / "tflm"


def registrations(op_resolver_h: str, mutable_resolver_h: str) -> list[str]:
    """The ``Register_*`` functions the emitted resolver ends up calling: an explicit registration argument
    (``AddConv2D(tflite::Register_CONV_2D_INT8())``) or the method's default from TFLM's own header."""
    defaults: dict[str, str] = {}
    for chunk in mutable_resolver_h.split("TfLiteStatus Add")[1:]:
        name = re.match(r"\w+", chunk)
        reg = re.search(r"Register_\w+", chunk.split("}")[0])
        if name and reg:
            defaults.setdefault("Add" + name.group(0), reg.group(0))
    out = []
    for method, arg in re.findall(r"resolver\.(Add\w+)\(([^)]*)\)", op_resolver_h):
        reg = re.search(r"Register_\w+", arg)
        if reg:
            out.append(reg.group(0))
        elif method in defaults:
            out.append(defaults[method])
        else:
            raise UnsupportedOpError(f"this TFLM tree's MicroMutableOpResolver has no {method}()",
                                     "use a newer tflite-micro (--tflm-src) or --runtime native")
    return list(dict.fromkeys(out))


def _defining_file(root: Path, kernels: str, reg: str) -> Path | None:
    dirs = [root / KERNEL_DIR / "cmsis_nn"] if kernels == "cmsis_nn" else []
    pattern = re.compile(r"TFLMRegistration\s+" + reg + r"\s*\(\s*\)\s*\{")
    for d in [*dirs, root / KERNEL_DIR]:
        for path in sorted(d.glob("*.cc")):
            if pattern.search(path.read_text(errors="replace")):
                return path
    return None


def kernel_sources(root: Path, kernels: str, regs: list[str]) -> tuple[list[str], list[str]]:
    """(C++ kernel sources, CMSIS-NN C sources), relative to ``root``, for the given registrations."""
    stems: dict[str, None] = {"kernel_util": None}
    for reg in regs:
        path = _defining_file(root, kernels, reg)
        if path is None and re.search(r"_(INT8|INT16|INT4|FLOAT32)$", reg):  # reference: an inline alias
            path = _defining_file(root, kernels, re.sub(r"_(INT8|INT16|INT4|FLOAT32)$", "", reg))
        if path is None:
            raise UnsupportedOpError(f"no kernel source in {root / KERNEL_DIR} defines {reg}()",
                                     "use a complete tflite-micro tree (--tflm-src) or --runtime native")
        stems[path.stem] = None
        for extra in (f"{path.stem}_common", *_KERNEL_EXTRA.get(path.stem, ())):
            stems[extra] = None
    cc, c = [], []
    cmsis_dirs: dict[str, None] = {"NNSupportFunctions": None}
    for stem in stems:
        own = root / KERNEL_DIR / "cmsis_nn" / f"{stem}.cc"
        ref = root / KERNEL_DIR / f"{stem}.cc"
        if kernels == "cmsis_nn" and own.is_file():
            cc.append(own)
            cmsis_dirs.update(dict.fromkeys(_CMSIS_DIRS.get(stem, ())))
        elif ref.is_file():
            cc.append(ref)
    if kernels == "cmsis_nn":
        src = root / "third_party" / "cmsis_nn" / "Source"
        c = [p for d in cmsis_dirs for p in sorted((src / d).glob("*.c"))
             if not p.name.endswith(("_f16.c", "_f32.c")) and p.name != "arm_nntables_flt.c"]
    return [str(p.relative_to(root)) for p in cc], [str(p.relative_to(root)) for p in c]


def core_sources(root: Path, tc: Toolchain) -> list[str]:
    """The framework: every TFLM source outside the kernels folder that a firmware can link, with the
    platform's debug_log/micro_time (Cortex-M generic ones on Arm, the portable ones elsewhere)."""
    out = []
    for p in sorted((root / "tensorflow").rglob("*.cc")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(KERNEL_DIR + "/") or p.name in _NOT_FIRMWARE:
            continue
        generic = rel in ("tensorflow/lite/micro/debug_log.cc", "tensorflow/lite/micro/micro_time.cc")
        cortex_m = rel.startswith("tensorflow/lite/micro/cortex_m_generic/")
        if (tc.is_arm and generic) or (not tc.is_arm and cortex_m) or "/cortex_m_" in rel and not cortex_m:
            continue
        out.append(rel)
    return out


def _include_flags(root: Path, tc: Toolchain, kernels: str) -> tuple[str, ...]:
    inc = [f"-I{root}", f"-I{root}/third_party/flatbuffers/include", f"-I{root}/third_party/gemmlowp",
           f"-I{root}/third_party/ruy"]
    if tc.is_arm:
        inc += [f'-DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE=\\"{tc.cmsis_device}.h\\"', f"-D{tc.cmsis_device}",
                "-DTF_LITE_MCU_DEBUG_LOG",
                f"-I{root}/third_party/cortex_dfp/Device/{tc.cmsis_device}/Include",
                f"-I{root}/third_party/cmsis/CMSIS/Core/Include"]
    if kernels == "cmsis_nn":
        inc += [*CMSIS_NN_DEFS, f"-I{root}/third_party/cmsis_nn", f"-I{root}/third_party/cmsis_nn/Include"]
    return tuple(inc)


def _compiler_id(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        raise ToolMissingError(f"{cxx} is not installed", "make toolchain (or apt-get install the board's "
                               "cross-compiler)") from None


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def build_library(root: Path, tc: Toolchain, kernels: str, op_resolver_h: Path,
                  cache: Path | None = None) -> TflmLibrary:
    """Compile (or reuse) the TFLM archive for ``op_resolver_h``'s ops on ``tc``; DeviceError when compiling fails."""
    if kernels not in KERNELS:
        raise ValueError(kernels)
    if kernels == "cmsis_nn" and not tc.is_arm:
        raise ValueError("CMSIS-NN kernels are Arm-only")
    cxx, cc = f"{tc.cross}-g++", f"{tc.cross}-gcc"
    compiler = _compiler_id(cxx)
    mutable = (root / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text(errors="replace")
    regs = registrations(op_resolver_h.read_text(), mutable)
    kern_cc, kern_c = kernel_sources(root, kernels, regs)
    core = core_sources(root, tc)
    base = cache or cache_root()
    common = (*CXXCOMMON, "-mlittle-endian", "-fomit-frame-pointer", "-funsigned-char") if tc.is_arm else CXXCOMMON
    cpu = (*tc.cpu_flags, *tc.specs)
    core_inc = _include_flags(root, tc, "reference")
    kern_inc = _include_flags(root, tc, kernels)
    top = base / tree_hash(root)
    core_dir = top / ("core-" + _key(compiler, common, cpu, core_inc))
    kern_dir = top / (f"{kernels}-" + _key(compiler, common, cpu, kern_inc, CCOMMON))
    archive = kern_dir / f"libtflm-{_key(core_dir.name, kern_cc, kern_c)}.a"
    include_flags = (*kern_inc, *[f for f in common if f.startswith("-D")])
    if archive.is_file():
        return TflmLibrary(archive, include_flags, len(core) + len(kern_cc) + len(kern_c), 0, kernels)
    cmd = ["make", "-s", f"-j{JOBS}", "-f", str(data_dir("firmware") / "bench" / "tflm.mk"), f"R={root}",
           f"CORE_DIR={core_dir}", f"KERN_DIR={kern_dir}", f"LIB={archive}", f"CXX={cxx}", f"CC={cc}",
           f"AR={tc.cross}-ar", "CXXFLAGS=" + " ".join((*common, *cpu)), "CFLAGS=" + " ".join((*CCOMMON, *cpu)),
           "CORE_INC=" + " ".join(core_inc), "KERN_INC=" + " ".join(kern_inc),
           "SRCS_CORE=" + " ".join(core), "SRCS_KERN=" + " ".join(kern_cc), "SRCS_C=" + " ".join(kern_c)]
    before = sum(1 for _ in top.rglob("*.o")) if top.is_dir() else 0
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not archive.is_file():
        tail = (proc.stderr or proc.stdout).strip()[-600:]
        raise DeviceError(f"compiling TensorFlow Lite Micro ({kernels} kernels) failed: {tail}",
                          f"the sources are {root}; try another tree with --tflm-src")
    after = sum(1 for _ in top.rglob("*.o"))
    return TflmLibrary(archive, include_flags, len(core) + len(kern_cc) + len(kern_c), after - before, kernels)
