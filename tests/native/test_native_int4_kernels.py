"""The packed int4 kernels (firmware/runtime/ef_conv.c, ef_sparse.c) against the int8 kernels on the same values,
at the C level (int4_kernels/s4_vs_s8.c): random CONV_2D (grouped, dilated, odd row lengths, rows longer than a
chunk), DEPTHWISE_CONV_2D (any channel count, multipliers 1-3, up to 8x8 taps) and FULLY_CONNECTED shapes, dense and
in every sparse row form, must give the int8 kernels' bytes (those are checked against tflite-micro elsewhere).

* on this machine, under several tilings, with exact-size heap copies of the filter and input (and ASan/UBSan where
  the compiler has them: any read past the packed array fails);
* on QEMU: the Cortex-M4 build (mps2-an386), which runs the DSP-extension paths the host never compiles (packed
  nibbles multiplied in place with SXTB16/SMLAD, rows starting mid-byte, 4-channel depthwise blocks with SMLABB/
  SMLATT), and the Cortex-M3 one (mps2-an385: no DSP extension, the portable unpacking paths); the filter and input
  copies end where an MPU no-access region begins, so a read past them faults.
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
HERE = Path(__file__).resolve().parent / "int4_kernels"
ITER = 1000 if FULL else 150
WARN = ["-Wall", "-Wextra", "-Werror"]

#: (name, extra C flags)
TILINGS = [
    ("default", []),
    ("mcu", ["-DEF_NPIX=1", "-DEF_KC=64", "-DEF_OT=16", "-DEF_DWV=8", "-DEF_DW4V=4"]),
    ("odd", ["-DEF_NPIX=4", "-DEF_KC=16", "-DEF_OT=5", "-DEF_DW4V=3", "-DEF_DW4K=9", "-DEF_SKC=32", "-DEF_SNPIX=3",
             "-DEF_SOT=3"]),
]


def _outcome(text: str) -> tuple[int, int]:
    m = re.search(r"cases (\d+) fails (\d+)", text)
    assert m, text[-2000:]
    return int(m.group(1)), int(m.group(2))


def _host_cc(tmp: Path) -> tuple[str, list[str]]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    probe = tmp / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    probe_run = subprocess.run([cc, *san, str(probe), "-o", str(tmp / "probe")], check=False, capture_output=True)
    return cc, san if probe_run.returncode == 0 else []


@pytest.mark.parametrize("tiling", [t for t, _ in TILINGS])
def test_int4_kernels_equal_int8_on_host(tiling: str, tmp_path: Path) -> None:
    cc, san = _host_cc(tmp_path)
    exe = tmp_path / "s4_vs_s8"
    cmd = [cc, "-std=c99", "-O1", "-g", *WARN, *san, "-DEF_T_HOST", f"-DEF_T_ITER={ITER}", *dict(TILINGS)[tiling],
           "-I", str(RUNTIME), str(HERE / "s4_vs_s8.c"), str(RUNTIME / "ef_conv.c"), str(RUNTIME / "ef_sparse.c"),
           "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    run = subprocess.run([str(exe)], check=False, capture_output=True, text=True, timeout=600)
    cases, fails = _outcome(run.stdout + run.stderr)
    assert run.returncode == 0 and fails == 0 and cases >= 6 * ITER, run.stdout[-2000:] + run.stderr[-2000:]


BOARDS = [
    ("mps2-an386", ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]),  # DSP extension
    ("mps2-an385", ["-mcpu=cortex-m3"]),  # none
]


@pytest.mark.parametrize("board", [b for b, _ in BOARDS])
def test_int4_kernels_equal_int8_on_cortex_m(board: str, tmp_path: Path) -> None:
    from edgeforge.device.boards import qemu_available
    from edgeforge.native.toolchain import arm_available

    if not (qemu_available() and arm_available()):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    elf = tmp_path / "s4_vs_s8.elf"
    for tiling in ("default", "odd"):
        cmd = ["arm-none-eabi-gcc", "-std=c99", "-O2", "-mthumb", *dict(BOARDS)[board], *WARN, f"-DEF_T_ITER={ITER}",
               *dict(TILINGS)[tiling], "-I", str(RUNTIME), "-nostartfiles", "-specs=nano.specs", "-specs=nosys.specs",
               "-Wl,--gc-sections", "-Wl,-T," + str(HERE / "link.ld"), str(HERE / "s4_vs_s8.c"),
               str(HERE / "startup.c"), str(RUNTIME / "ef_conv.c"), str(RUNTIME / "ef_sparse.c"), "-o", str(elf)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        run = subprocess.run(["qemu-system-arm", "-M", board, "-nographic", "-monitor", "none", "-semihosting",
                              "-kernel", str(elf)], check=False, capture_output=True, text=True, timeout=600)
        cases, fails = _outcome(run.stdout + run.stderr)
        assert run.returncode == 0 and fails == 0 and cases >= 6 * ITER, (tiling, run.stdout[-2000:])
