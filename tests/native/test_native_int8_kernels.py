"""The int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED kernels (firmware/runtime/ef_conv.c) against a direct
transcription of TFLM's reference loops, at the C level (int8_kernels/ref_vs_ef.c), on random shapes: odd and small
channel counts, padding, strides, dilations, grouped convolutions, more depthwise taps than a block holds, positive
shifts, edge multipliers, biases near the int32 limits, partial activation ranges.

* on this machine (portable C, with ASan/UBSan where the compiler has them);
* on QEMU mps2-an386 (Cortex-M4): the Arm DSP-extension paths the host never compiles (SXTB16/SMLAD rows, 4-channel
  depthwise blocks with the input offset folded into the bias, the 32-bit requantisation, SSAT clamps);
* on QEMU mps2-an385 (Cortex-M3, no DSP extension): the portable paths as an MCU compiles them.

The reduced form runs in `make test`; EDGEFORGE_FULL_TESTS=1 (`make test-all`) runs ten times as many cases.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FULL

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "firmware" / "runtime"
HERE = Path(__file__).resolve().parent / "int8_kernels"
BOOT = Path(__file__).resolve().parent / "int4_kernels"  # startup.c / link.ld: bare-metal MPS2 start-up
ITER = 600 if FULL else 60
WARN = ["-Wall", "-Wextra", "-Werror"]
SOURCES = [str(HERE / "ref_vs_ef.c"), str(RUNTIME / "ef_conv.c")]


def _outcome(text: str) -> tuple[int, int]:
    m = re.search(r"cases (\d+) fails (\d+)", text)
    assert m, text[-2000:]
    return int(m.group(1)), int(m.group(2))


def test_int8_kernels_match_reference_on_host(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    if subprocess.run([cc, *san, str(probe), "-o", str(tmp_path / "probe")], capture_output=True).returncode != 0:
        san = []
    exe = tmp_path / "ref_vs_ef"
    subprocess.run([cc, "-std=c99", "-O1", "-g", *WARN, *san, "-DEF_T_HOST", f"-DEF_T_ITER={ITER}", "-I",
                    str(RUNTIME), *SOURCES, "-o", str(exe)], check=True, capture_output=True, text=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    cases, fails = _outcome(run.stdout + run.stderr)
    assert run.returncode == 0 and fails == 0 and cases >= 3 * ITER, run.stdout[-2000:] + run.stderr[-2000:]


M4 = ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
#: (QEMU machine, compiler flags): the DSP extension in both rounding modes (TFLITE_SINGLE_ROUNDING builds keep the
#: generic requantisation), and a core without it
BOARDS = {
    "m4": ("mps2-an386", M4),
    "m4-single-rounding": ("mps2-an386", [*M4, "-DEF_SINGLE_ROUNDING=1"]),
    # other tilings: 4 pixels per pass, short chunks, odd tiles, depthwise taps beyond a block's (the generic engine)
    "m4-odd-tiling": ("mps2-an386", [*M4, "-DEF_NPIX=4", "-DEF_KC=16", "-DEF_OT=5", "-DEF_DW4K=4"]),
    "m3": ("mps2-an385", ["-mcpu=cortex-m3"]),
}


@pytest.mark.parametrize("variant", list(BOARDS))
def test_int8_kernels_match_reference_on_cortex_m(variant: str, tmp_path: Path) -> None:
    from edgeforge.device.boards import qemu_available
    from edgeforge.native.toolchain import arm_available

    if not (qemu_available() and arm_available()):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    elf = tmp_path / "ref_vs_ef.elf"
    board, flags = BOARDS[variant]
    cmd = ["arm-none-eabi-gcc", "-std=c99", "-O2", "-mthumb", *flags, *WARN, f"-DEF_T_ITER={ITER}",
           "-I", str(RUNTIME), "-nostartfiles", "-specs=nano.specs", "-specs=nosys.specs", "-Wl,--gc-sections",
           "-Wl,-T," + str(BOOT / "link.ld"), *SOURCES, str(BOOT / "startup.c"), "-o", str(elf)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    if variant == "m4":  # the DSP paths are what this build runs: they must be in the image
        syms = subprocess.run(["arm-none-eabi-nm", str(elf)], check=True, capture_output=True, text=True).stdout
        assert "ef_dw8_blocks" in syms and "ef_dot4r_dsp" in syms, "the Cortex-M4 build lacks the DSP kernels"
    run = subprocess.run(["qemu-system-arm", "-M", board, "-nographic", "-monitor", "none", "-semihosting",
                          "-kernel", str(elf)], capture_output=True, text=True, timeout=600)
    cases, fails = _outcome(run.stdout + run.stderr)
    assert run.returncode == 0 and fails == 0 and cases >= 3 * ITER, run.stdout[-2000:]
