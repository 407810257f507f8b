"""The emitted PlatformIO projects compile, for every MCU profile and both runtimes, and main.cpp is an
application skeleton whose user blocks survive regeneration.

PlatformIO cannot download its frameworks here, so the generated sources are compiled with the compilers
the frameworks use (arm-none-eabi-g++ for the Arm profiles with the profile's own -mcpu flags, the host
g++/gcc for the Xtensa ones) against the TFLM headers the project pins (../shared/third_party/tflite-micro)
and a minimal Arduino.h written here (Serial, micros, millis, delay, setup/loop). Only the generated files
are compiled, never the TFLM library itself, so this stays fast. The MLPerf KWS skeletons also run on QEMU
mps2-an386 (Cortex-M4) with a test-only Arduino core, for both runtimes; the TFLM one links the bench's cached
per-op-set TFLM library (edgeforge.bench.tflm_lib), which is compiled only on a cold cache.
"""

from __future__ import annotations

import functools
import os
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, ROOT
from edgeforge.emit.mcu import keep_user_blocks, user_blocks
from edgeforge.target import load_registry

TFLM = ROOT.parent / "shared" / "third_party" / "tflite-micro"
PIO_TARGETS = [t for t in load_registry().all() if t.platformio]

ARDUINO_H = """\
#ifndef EF_TEST_ARDUINO_H_
#define EF_TEST_ARDUINO_H_
// Test stand-in for the Arduino core: only what edgeforge's main.cpp may use.
#include <stddef.h>
#include <stdint.h>
unsigned long micros(void);
unsigned long millis(void);
void delay(unsigned long ms);
class HardwareSerialStandIn {
 public:
  void begin(unsigned long baud);
  int available();
  int read();
  size_t print(const char* s);
  size_t print(int v);
  size_t print(long v);
  size_t print(unsigned long v);
  size_t print(double v, int digits = 2);
  size_t println(const char* s);
  size_t println();
};
extern HardwareSerialStandIn Serial;
void setup();
void loop();
#endif
"""


def _compilers(target) -> tuple[list[str], list[str], list[str]]:
    """(C++ compiler, C compiler, flags) the framework would use for this profile's core."""
    tc = target.data.get("toolchain")
    if tc and tc.get("cross") == "arm-none-eabi":
        return ["arm-none-eabi-g++"], ["arm-none-eabi-gcc"], list(tc["cflags"])
    return ["g++"], ["gcc"], []


@functools.cache
def _cxx_usable(compiler: str) -> bool:
    """The compiler exists and has its C++ library headers (Debian: libstdc++-arm-none-eabi-newlib)."""
    if shutil.which(compiler) is None:
        return False
    probe = subprocess.run([compiler, "-x", "c++", "-std=c++17", "-fsyntax-only", "-"], input="#include <cstdint>\n",
                           capture_output=True, text=True)
    return probe.returncode == 0


def _compile(cmd: list[str], cwd: Path) -> None:
    if shutil.which(cmd[0]) is None or (cmd[0].endswith("g++") and not _cxx_usable(cmd[0])):
        pytest.skip(f"{cmd[0]} or its C++ headers are not installed (make toolchain)")
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr[-4000:]}"


def _stand_ins(tmp: Path, tflm_header: str | None) -> Path:
    inc = tmp / "stand-in"
    inc.mkdir(exist_ok=True)
    (inc / "Arduino.h").write_text(ARDUINO_H)
    if tflm_header:  # the Arduino library's sketch header: its API is the TFLM headers' below
        (inc / tflm_header).write_text("// stand-in for the TFLM Arduino library's sketch header\n")
    return inc


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "x.npy"
    np.save(path, np.random.default_rng(3).integers(-128, 128, (4, 8, 8, 1)).astype(np.int8))
    return path


@pytest.mark.parametrize("target", PIO_TARGETS, ids=lambda t: t.id)
def test_tflm_platformio_project_compiles_against_the_pinned_tflm(cli, tiny: Path, data_file: Path,
                                                                  tmp_path: Path, target) -> None:
    if not (TFLM / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
        pytest.skip("../shared/third_party/tflite-micro is absent")
    out = tmp_path / "b"
    assert cli("build", tiny, "--target", target.id, "--emitter", "platformio", "--data", data_file,
               "--out", out).code in (0, 3)
    src = out / "platformio" / "src"
    assert (src / "sample_input.h").is_file()
    cxx, _, flags = _compilers(target)
    inc = _stand_ins(tmp_path, target.platformio.get("tflm_header"))
    includes = [f"-I{inc}", f"-I{TFLM}", f"-I{TFLM / 'third_party/flatbuffers/include'}",
                f"-I{TFLM / 'third_party/gemmlowp'}", f"-I{TFLM / 'third_party/ruy'}"]
    common = [*cxx, "-std=c++17", "-Wall", "-Werror", "-Wno-unused-function", "-DTF_LITE_STATIC_MEMORY",
              "-DEF_MONITOR_SPEED=115200", *flags, *includes]
    for name in ("main.cpp", "model_data.cc"):
        _compile([*common, "-c", name, "-o", str(tmp_path / f"{name}.o")], src)


@pytest.mark.parametrize("target", PIO_TARGETS, ids=lambda t: t.id)
def test_native_platformio_project_compiles(cli, tiny: Path, tmp_path: Path, target) -> None:
    out = tmp_path / "b"
    assert cli("build", tiny, "--target", target.id, "--runtime", "native", "--emitter", "platformio",
               "--out", out).code in (0, 3)
    src = out / "platformio" / "src"
    ini = (out / "platformio" / "platformio.ini").read_text()
    assert "lib_deps" not in ini and f"board = {target.platformio['board']}" in ini
    assert not (src / "sample_input.h").exists()  # no --data: serial input only
    cxx, cc, flags = _compilers(target)
    inc = _stand_ins(tmp_path, None)
    _compile([*cxx, "-std=c++17", "-Wall", "-Werror", "-DEF_MONITOR_SPEED=115200", *flags, f"-I{inc}", "-c",
              "main.cpp", "-o", str(tmp_path / "main.o")], src)
    for c in sorted(src.glob("*.c")):
        _compile([*cc, "-std=c99", "-O1", "-Wall", *flags, "-c", c.name, "-o", str(tmp_path / f"{c.stem}.o")], src)


def test_native_makefile_arm_rule_refuses_clearly_on_a_non_arm_target(cli, tiny: Path, tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = tmp_path / "b"
    assert cli("build", tiny, "--target", "esp32", "--runtime", "native", "--out", out).code in (0, 3)
    r = subprocess.run(["make", "arm"], cwd=out / "native", capture_output=True, text=True)
    assert r.returncode != 0
    assert "not an Arm Cortex-M target" in r.stderr and "pio run -d ../platformio" in r.stderr


HOST_MAIN = """\
#include <stdio.h>
#include <string.h>
#include "Arduino.h"
HardwareSerialStandIn Serial;
static const char* g_in = "";
static unsigned long g_ms = 0;
unsigned long micros(void) { return g_ms * 1000; }
unsigned long millis(void) { return g_ms; }
void delay(unsigned long ms) { g_ms += ms; }
void HardwareSerialStandIn::begin(unsigned long) {}
int HardwareSerialStandIn::available() { return (int)strlen(g_in); }
int HardwareSerialStandIn::read() { return *g_in ? *g_in++ : -1; }
size_t HardwareSerialStandIn::print(const char* s) { return (size_t)printf("%s", s); }
size_t HardwareSerialStandIn::print(int v) { return (size_t)printf("%d", v); }
size_t HardwareSerialStandIn::print(long v) { return (size_t)printf("%ld", v); }
size_t HardwareSerialStandIn::print(unsigned long v) { return (size_t)printf("%lu", v); }
size_t HardwareSerialStandIn::print(double v, int d) { return (size_t)printf("%.*f", d, v); }
size_t HardwareSerialStandIn::println(const char* s) { return (size_t)printf("%s\\n", s); }
size_t HardwareSerialStandIn::println() { return (size_t)printf("\\n"); }
int main(int argc, char** argv) {
  if (argc > 1) g_in = argv[1];
  setup();
  loop();
  return 0;
}
"""


def test_native_skeleton_reads_a_serial_hex_line_and_prints_the_dequantized_top_class(cli, tiny: Path,
                                                                                      tmp_path: Path) -> None:
    """The skeleton linked on the host with the native runtime: the printed class and score are the
    model's own (checked against `edgeforge run` on the same input)."""
    out = tmp_path / "b"
    assert cli("build", tiny, "--target", "cortex-m4", "--runtime", "native", "--out", out).code in (0, 3)
    exe = _host_skeleton(out, tmp_path)
    x = np.random.default_rng(11).integers(-128, 128, (1, 8, 8, 1)).astype(np.int8)
    top, score = _top(exe, x.tobytes().hex() + "\n")
    np.save(tmp_path / "in.npy", x)
    assert cli("run", out, "--input", tmp_path / "in.npy", "--output", tmp_path / "o.npy").code == 0
    raw = np.load(tmp_path / "o.npy").reshape(-1).astype(int)
    q = json.loads((out / "manifest.json").read_text())["model"]["outputs"][0]
    assert top == int(np.argmax(raw))
    assert score == pytest.approx(q["scale"] * (raw.max() - q["zero_point"]), abs=1e-5)
    for bad, why in (("12zz\n", "needs 128 hex digits"), ("zz" * 64 + "\n", "is not hex")):
        r = subprocess.run([str(exe), bad], capture_output=True, text=True, timeout=60)
        assert f"e-input line {why}" in r.stdout and "m-top[" not in r.stdout, r.stdout


def test_regenerating_keeps_the_user_blocks(cli, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert cli("build", tiny, "--target", "esp32", "--emitter", "platformio", "--out", out).code in (0, 3)
    main = out / "platformio" / "src" / "main.cpp"
    text = main.read_text()
    assert set(user_blocks(text.encode())) == {b"includes", b"input", b"output", b"setup"}
    mine = "  // my sensor\n  readMicrophone(dst, n);\n  return true;\n"
    edited = text.replace("  return DefaultInput(dst, n);\n", mine)
    begin = "// edgeforge:user-begin includes\n"
    edited = edited.replace(begin, begin + '#include "mic.h"\n')
    main.write_text(edited)
    assert cli("build", tiny, "--target", "esp32", "--emitter", "platformio", "--out", out).code in (0, 3)
    again = main.read_text()
    assert mine in again and '#include "mic.h"\n' in again and "return DefaultInput(dst, n);" not in again
    assert again == edited  # everything outside the blocks is regenerated, identical here
    # a fresh folder gets the defaults back
    assert cli("build", tiny, "--target", "esp32", "--emitter", "platformio", "--out", tmp_path / "fresh").code in (0, 3)
    assert (tmp_path / "fresh" / "platformio" / "src" / "main.cpp").read_text() == text


def test_keep_user_blocks_ignores_unknown_and_unterminated_blocks() -> None:
    new = b"a\n// edgeforge:user-begin x\nNEW\n// edgeforge:user-end x\nb\n"
    old = (b"// edgeforge:user-begin x\nOLD\n// edgeforge:user-end x\n"
           b"// edgeforge:user-begin gone\nG\n// edgeforge:user-end gone\n// edgeforge:user-begin open\n")
    assert keep_user_blocks(new, old) == b"a\n// edgeforge:user-begin x\nOLD\n// edgeforge:user-end x\nb\n"
    assert keep_user_blocks(new, b"nothing") == new


def _host_skeleton(out: Path, tmp: Path) -> Path:
    """The native PlatformIO project's main.cpp + model + kernels linked for this machine, with the serial
    stand-in above: argv[1] is what arrives on serial."""
    if shutil.which("g++") is None or shutil.which("gcc") is None:
        pytest.skip("host g++/gcc not installed")
    src = out / "platformio" / "src"
    inc = _stand_ins(tmp, None)
    (tmp / "host.cpp").write_text(HOST_MAIN)
    objs = []
    for c in sorted(src.glob("*.c")):
        objs.append(str(tmp / f"{c.stem}.o"))
        _compile(["gcc", "-std=c99", "-O2", "-c", str(c), "-o", objs[-1]], src)
    exe = tmp / "skeleton"
    _compile(["g++", "-std=c++17", "-DEF_MONITOR_SPEED=115200", f"-I{inc}", f"-I{src}", "main.cpp",
              str(tmp / "host.cpp"), *objs, "-o", str(exe)], src)
    return exe


def _top(exe: Path, serial: str = "") -> tuple[int, float]:
    r = subprocess.run([str(exe), serial], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "m-ready" in r.stdout and "e-" not in r.stdout, r.stdout + r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("m-top["))
    top, score = line[len("m-top["):-1].split(",")
    return int(top), float(score)


def test_native_skeleton_classifies_real_kws_inputs(cli, mlperf: Path, tmp_path: Path) -> None:
    """MLPerf Tiny KWS, native runtime: with no serial input the skeleton runs the compiled-in first --data
    sample (tst_000000_Stop_7.bin); a hex line over serial is classified instead. Classes and dequantized
    scores are the reference int8 model's (samples/kws01_int8_golden.csv, from a host LiteRT interpreter and
    printed to 3 decimals: within one output step, 1/256, of TFLM's and the native runtime's)."""
    samples = mlperf / "samples" / "kws01"
    out = tmp_path / "kws"
    r = cli("build", mlperf / "kws" / "kws_ref_model_int8.tflite", "--target", "cortex-m4", "--runtime", "native",
            "--data", samples, "--data-quant", "0.584703,83", "--out", out)
    assert r.code in (0, 3), r.err
    assert (out / "platformio" / "src" / "sample_input.h").is_file()
    golden = {row.split(",")[0]: row.split(",") for row in
              (mlperf / "samples" / "kws01_int8_golden.csv").read_text().splitlines()[1:]}
    exe = _host_skeleton(out, tmp_path)
    first, second = sorted(p.name for p in samples.glob("*.bin"))[:2]
    step = 1 / 256 + 0.0005
    top, score = _top(exe)
    assert top == int(golden[first][2]) and score == pytest.approx(float(golden[first][3 + top]), abs=step)
    top, score = _top(exe, (samples / second).read_bytes().hex() + "\n")
    assert top == int(golden[second][2]) and score == pytest.approx(float(golden[second][3 + top]), abs=step)


AN386_SHIM = """\
// Test-only Arduino core for QEMU mps2-an386 (Cortex-M4): CMSDK UART0 for Serial, SysTick (25 MHz) for time.
#include <stdint.h>
#include "Arduino.h"
#define REG32(a) (*(volatile uint32_t*)(a))
#define UART_DATA REG32(0x40004000u)
#define UART_STATE REG32(0x40004004u)
#define UART_CTRL REG32(0x40004008u)
#define UART_BAUDDIV REG32(0x40004010u)
#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
static const uint32_t kTicksPerMs = 25000u;
static volatile uint32_t g_ms = 0;
extern "C" void SysTick_Handler(void) { ++g_ms; }
unsigned long millis(void) { return g_ms; }
unsigned long micros(void) {
  uint32_t ms, cvr;
  do { ms = g_ms; cvr = SYST_CVR; } while (ms != g_ms);
  return ms * 1000u + (kTicksPerMs - 1u - cvr) / 25u;
}
void delay(unsigned long ms) { unsigned long t = millis(); while (millis() - t < ms) {} }
HardwareSerialStandIn Serial;
static void put(char c) { while (UART_STATE & 1u) {} UART_DATA = (uint8_t)c; }
void HardwareSerialStandIn::begin(unsigned long) { UART_BAUDDIV = 16u; UART_CTRL = 3u; }
int HardwareSerialStandIn::available() { return (UART_STATE & 2u) ? 1 : 0; }
int HardwareSerialStandIn::read() { return (UART_STATE & 2u) ? (int)(UART_DATA & 0xFFu) : -1; }
size_t HardwareSerialStandIn::print(const char* s) { size_t n = 0; while (*s) { put(*s++); ++n; } return n; }
size_t HardwareSerialStandIn::print(unsigned long v) {
  char b[12]; int i = 0;
  do { b[i++] = (char)('0' + v % 10u); v /= 10u; } while (v);
  while (i) put(b[--i]);
  return 1;
}
size_t HardwareSerialStandIn::print(long v) { if (v < 0) { put('-'); v = -v; } return print((unsigned long)v); }
size_t HardwareSerialStandIn::print(int v) { return print((long)v); }
size_t HardwareSerialStandIn::print(double v, int digits) {
  if (v < 0) { put('-'); v = -v; }
  unsigned long whole = (unsigned long)v;
  print(whole);
  put('.');
  double frac = v - (double)whole;
  for (int i = 0; i < digits; ++i) { frac *= 10.0; int d = (int)frac; put((char)('0' + d)); frac -= d; }
  return 1;
}
size_t HardwareSerialStandIn::println(const char* s) { print(s); put('\\n'); return 1; }
size_t HardwareSerialStandIn::println() { put('\\n'); return 1; }
extern "C" {
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
void* __dso_handle = nullptr;  // C++ static destructors register against it; crtbegin (left out here) defines it
int main(void) {
  SYST_RVR = kTicksPerMs - 1u; SYST_CVR = 0u; SYST_CSR = 7u;  // processor clock, interrupt, enable
  setup();
  for (;;) loop();
}
void Reset_Handler(void) {
  uint32_t* s = &_sidata; uint32_t* d = &_sdata;
  while (d < &_edata) *d++ = *s++;
  for (d = &_sbss; d < &_ebss; ++d) *d = 0;
  REG32(0xE000ED88u) |= 0xFu << 20;  // CPACR: FPU on (hard-float build)
  main();
  for (;;) {}
}
static void Default_Handler(void) { for (;;) {} }
__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler,
    SysTick_Handler};
}
"""

AN386_LD = """\
MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M  RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 4M }
ENTRY(Reset_Handler)
SECTIONS {
  .isr_vector : { KEEP(*(.isr_vector)) } > FLASH
  .text : { *(.text*) . = ALIGN(4); } > FLASH
  .rodata : { *(.rodata*) . = ALIGN(4); } > FLASH
  .ARM.exidx : { *(.ARM.exidx*) } > FLASH
  _sidata = LOADADDR(.data);
  .data : { . = ALIGN(4); _sdata = .; *(.data*) . = ALIGN(4); _edata = .; } > RAM AT > FLASH
  .bss (NOLOAD) : { . = ALIGN(4); _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; } > RAM
  .stack (NOLOAD) : { . = ALIGN(8); . = . + 0x8000; _estack = .; } > RAM
}
"""


AN386_CPU = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


def _kws_build(cli, mlperf: Path, out: Path, runtime: str) -> Path:
    """MLPerf Tiny KWS for cortex-m4 with the kws01 samples as --data; the PlatformIO project's src/."""
    r = cli("build", mlperf / "kws" / "kws_ref_model_int8.tflite", "--target", "cortex-m4", "--runtime", runtime,
            "--emitter", "platformio", "--data", mlperf / "samples" / "kws01", "--data-quant", "0.584703,83",
            "--out", out)
    assert r.code in (0, 3), r.err
    src = out / "platformio" / "src"
    assert (src / "sample_input.h").is_file()
    return src


def _an386_link(src: Path, tmp: Path, flags: list[str], inputs: list[str], tflm_header: str | None = None) -> Path:
    """The project's main.cpp, unchanged, with the test-only mps2-an386 Arduino core and ``inputs`` (objects,
    archives) linked into an ELF for QEMU."""
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed (make toolchain)")
    inc = _stand_ins(tmp, tflm_header)
    (tmp / "an386.cpp").write_text(AN386_SHIM)
    (tmp / "an386.ld").write_text(AN386_LD)
    elf = tmp / "skeleton.elf"
    _compile(["arm-none-eabi-g++", "-std=c++17", "-O2", "-fno-exceptions", "-fno-rtti", "-DEF_MONITOR_SPEED=115200",
              *AN386_CPU, f"-I{inc}", f"-I{src}", *flags, "main.cpp", str(tmp / "an386.cpp"), *inputs,
              "-nostartfiles", "-specs=nano.specs", "-specs=nosys.specs", "-Wl,--gc-sections",
              f"-Wl,-T,{tmp / 'an386.ld'}", "-o", str(elf), "-lm"], src)
    return elf


def _an386_kws_session(elf: Path, mlperf: Path) -> list[str]:
    """Boots ``elf`` on QEMU mps2-an386 and waits for the compiled-in sample's result; then sends the second
    kws01 sample as a hex line over the emulated UART and waits for its class (2). The serial lines."""
    import select
    import time

    samples = mlperf / "samples" / "kws01"
    second = sorted(p.name for p in samples.glob("*.bin"))[1]
    assert second.endswith("_2.bin")
    proc = subprocess.Popen(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-icount",
                             "shift=0", "-kernel", str(elf)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    text, deadline = b"", time.monotonic() + 120

    def read_until(done) -> None:
        nonlocal text
        while not done(text):
            assert proc.stdout is not None and time.monotonic() < deadline, text
            if select.select([proc.stdout], [], [], 1.0)[0]:
                chunk = os.read(proc.stdout.fileno(), 4096)
                assert chunk, text
                text += chunk

    try:
        read_until(lambda t: b"m-top[" in t and t.split(b"m-top[")[1].count(b"\n") >= 2)
        assert proc.stdin is not None  # then a serial line: the second sample, classified as such
        proc.stdin.write((samples / second).read_bytes().hex().encode() + b"\n")
        proc.stdin.flush()
        read_until(lambda t: b"m-top[2," in t)
    finally:
        proc.kill()
        proc.wait()
    assert b"e-" not in text, text
    return text.decode(errors="replace").splitlines()


def _assert_first_kws_sample(lines: list[str], mlperf: Path) -> None:
    """The compiled-in first sample (tst_000000_Stop_7.bin) came out as class 7 with the reference int8
    model's dequantized score (samples/kws01_int8_golden.csv), within one output step, and a real latency."""
    samples = mlperf / "samples" / "kws01"
    assert "m-ready" in lines, lines
    top, score = next(ln for ln in lines if ln.startswith("m-top["))[len("m-top["):-1].split(",")
    golden = (mlperf / "samples" / "kws01_int8_golden.csv").read_text().splitlines()[1].split(",")
    assert golden[0] == sorted(p.name for p in samples.glob("*.bin"))[0]
    assert int(top) == int(golden[2]) == 7
    assert float(score) == pytest.approx(float(golden[3 + int(top)]), abs=1 / 256 + 0.0005)
    assert int(next(ln for ln in lines if ln.startswith("m-lap-us-["))[len("m-lap-us-["):-1]) > 0


@pytest.mark.mlperf
def test_native_skeleton_prints_the_right_kws_class_on_the_emulated_cortex_m4(cli, mlperf: Path,
                                                                              tmp_path: Path) -> None:
    """The native runtime's generated main.cpp, unchanged, on QEMU mps2-an386 with a minimal Arduino core: the
    compiled-in first --data sample comes out as class 7 with the reference model's score, and a hex line
    sent over the emulated UART (tst_000001_Left_2.bin) as class 2."""
    src = _kws_build(cli, mlperf, tmp_path / "kws", "native")
    objs = []
    for c in sorted(src.glob("*.c")):
        objs.append(str(tmp_path / f"{c.stem}.o"))
        _compile(["arm-none-eabi-gcc", "-std=c99", "-O2", *AN386_CPU, "-c", str(c), "-o", objs[-1]], src)
    _assert_first_kws_sample(_an386_kws_session(_an386_link(src, tmp_path, [], objs), mlperf), mlperf)


@pytest.mark.mlperf
def test_tflm_skeleton_prints_the_right_kws_class_on_the_emulated_cortex_m4(cli, mlperf: Path,
                                                                            tmp_path: Path) -> None:
    """The same for the TFLM runtime: the generated main.cpp and model files, unchanged, linked against a
    TFLM static library for the M4 (the bench's cached per-op-set library, from ../shared/third_party/
    tflite-micro, with the kernel set the profile's PlatformIO project uses) and the stand-in Arduino core."""
    from edgeforge.bench.firmware import tflm_kernels
    from edgeforge.bench.tflm_lib import build_library, Toolchain
    from edgeforge.bench.tflm_src import find_tflm_src
    from edgeforge.device.boards import EMULATED_BY_NAME
    from edgeforge.errors import ToolMissingError

    if not all(shutil.which(f"arm-none-eabi-{t}") for t in ("g++", "gcc", "ar")) or shutil.which("make") is None:
        pytest.skip("arm-none-eabi-g++/gcc/ar or make is not installed (make toolchain)")
    if not _cxx_usable("arm-none-eabi-g++"):
        pytest.skip("arm-none-eabi-g++'s C++ headers are not installed (make toolchain)")
    out = tmp_path / "kws"
    src = _kws_build(cli, mlperf, out, "tflm")
    try:
        root = find_tflm_src(None, out)
    except ToolMissingError:
        pytest.skip("no TensorFlow Lite Micro tree (../shared/third_party/tflite-micro is absent)")
    board = EMULATED_BY_NAME["qemu-cortex-m4"]
    kernels = tflm_kernels(load_registry().get("cortex-m4").data, board)
    lib = build_library(root, Toolchain(board.cross, board.cpu_flags, board.cmsis_device, board.libc_specs),
                        kernels, src / "op_resolver.h")
    # include_flags are quoted for make's shell; here each is one argv entry
    flags = [*(f.replace('\\"', '"') for f in lib.include_flags), "-fno-threadsafe-statics", "-ffunction-sections",
             "-fdata-sections"]
    model_o = tmp_path / "model_data.o"
    _compile(["arm-none-eabi-g++", "-std=c++17", "-O2", "-fno-exceptions", "-fno-rtti", *AN386_CPU, *flags, "-c",
              "model_data.cc", "-o", str(model_o)], src)
    header = load_registry().get("cortex-m4").platformio.get("tflm_header")
    elf = _an386_link(src, tmp_path, flags, [str(model_o), str(lib.archive)], header)
    _assert_first_kws_sample(_an386_kws_session(elf, mlperf), mlperf)
