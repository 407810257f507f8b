"""The single-op property models of test_native_ops.py (CONV_2D, dilated CONV_2D, DEPTHWISE_CONV_2D,
FULLY_CONNECTED from TensorFlow's converter: random shapes, strides, dilations, padding, per-channel scales, fused
activations) on the emulated Cortex-M4: lowered and rendered by the same harness, cross-compiled with
arm-none-eabi-gcc for mps2-an386 (where the runtime's Arm DSP-extension paths run), executed by qemu-system-arm
with the inputs built in, and every output byte compared with the tflite-micro reference interpreter's.

`make test` runs 3 models per kind; EDGEFORGE_FULL_TESTS=1 (`make test-all`) runs 12. Skipped without QEMU or the
cross-compiler.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import FULL
from harness import _CTYPES, RUNTIME, Program, random_inputs, tflm_run
from test_native_ops import _collect, _edge_inputs

from edgeforge.model.tflite import ModelInfo

KINDS = ["conv", "conv_dilated", "depthwise", "fc"]
PER_KIND = 12 if FULL else 3
BOOT = Path(__file__).resolve().parent / "int4_kernels"  # startup.c (semihosting) / link.ld
M4 = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


def _c_array(name: str, ctype: str, a: np.ndarray) -> str:
    return f"static const {ctype} {name}[{a.size}] = {{{', '.join(str(int(v)) for v in a.ravel())}}};"


class QemuProgram(Program):
    """The harness's models in a bare-metal image: each request's inputs are constants, the outputs are printed in
    hex over semihosting (one line per request)."""

    def __init__(self, models: list[tuple[ModelInfo, bytes]], requests: list[tuple[int, list[np.ndarray]]],
                 tmp: Path) -> None:
        self.requests = requests
        self.tmp = tmp
        super().__init__(models)

    def _render(self) -> str:
        out = ["#include <stdio.h>", "#include <string.h>", '#include "ef_kernels.h"', "void ef_t_puts(const char* s);",
               "static char line[65536];", ""]
        for k, m in enumerate(self.models):
            out += [x for x in self._render_model(k, m)]
        for r, (k, xs) in enumerate(self.requests):
            for j, (x, i) in enumerate(zip(xs, self.models[k].info.inputs, strict=True)):
                out.append(_c_array(f"req{r}_in{j}", _CTYPES[self.models[k].info.tensors[i].dtype], x))
        out += ["static void put_hex(const void* p, int n) {", "  static const char d[] = \"0123456789abcdef\";",
                "  const unsigned char* b = (const unsigned char*)p;", "  int i;",
                "  for (i = 0; i < n; ++i) { line[2 * i] = d[b[i] >> 4]; line[2 * i + 1] = d[b[i] & 15]; }",
                "  line[2 * n] = 0;", "  ef_t_puts(line);", "}", "int main(void) {"]
        for r, (k, xs) in enumerate(self.requests):
            info = self.models[k].info
            for j, i in enumerate(info.inputs):
                out.append(f"  memcpy(m{k}_t{i}, req{r}_in{j}, {info.tensors[i].nbytes});")
            out.append(f"  run_m{k}();")
            out.append(f'  ef_t_puts("R{r} ");')
            for o in info.outputs:
                out.append(f"  put_hex(m{k}_t{o}, {info.tensors[o].nbytes});")
            out.append('  ef_t_puts("\\n");')
        out += ['  ef_t_puts("END\\n");', "  return 0;", "}", ""]
        return "\n".join(out)

    def _compile(self) -> Path:
        src = self.tmp / "prog.c"
        src.write_text(self.source)
        elf = self.tmp / "prog.elf"
        runtime = sorted(str(p) for p in RUNTIME.glob("*.c"))
        cmd = ["arm-none-eabi-gcc", "-std=c99", "-O2", *M4, "-Wall", "-Wextra", "-Wno-unused-function", "-I",
               str(RUNTIME), "-nostartfiles", "-specs=nano.specs", "-specs=nosys.specs", "-Wl,--gc-sections",
               "-Wl,-T," + str(BOOT / "link.ld"), str(src), *runtime, str(BOOT / "startup.c"), "-o", str(elf)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return elf

    def outputs(self) -> dict[int, bytes]:
        run = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-semihosting",
                              "-kernel", str(self.exe)], capture_output=True, text=True, timeout=600)
        text = run.stdout + run.stderr  # semihosting writes where QEMU's stderr goes
        assert run.returncode == 0 and "END" in text, text[-2000:]
        return {int(m.group(1)): bytes.fromhex(m.group(2)) for m in re.finditer(r"^R(\d+) ([0-9a-f]*)$", text, re.M)}


@pytest.mark.parametrize("kind", KINDS)
def test_single_op_models_bit_exact_on_cortex_m4(kind: str) -> None:
    from edgeforge.device.boards import qemu_available
    from edgeforge.native.toolchain import arm_available

    if not (qemu_available() and arm_available()):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    cases = _collect(kind, PER_KIND)
    requests: list[tuple[int, list[np.ndarray]]] = []
    for k, (seed, _, info) in enumerate(cases):
        rng = np.random.default_rng([seed, 7])
        requests += [(k, random_inputs(info, rng)), (k, _edge_inputs(info, rng))]
    tmp = Path(tempfile.mkdtemp(prefix="ef-ops-m4-"))
    try:
        program = QemuProgram([(info, data) for _, data, info in cases], requests, tmp)
        got = program.outputs()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert sorted(got) == list(range(len(requests)))
    for r, (k, xs) in enumerate(requests):
        want = b"".join(np.ascontiguousarray(y).tobytes() for y in tflm_run(cases[k][1], xs))
        assert got[r] == want, f"{kind} model seed {cases[k][0]}, request {r}: M4 output differs from tflite-micro"
