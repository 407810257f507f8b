"""`make bench`: the emulated boards (`edgeforge boards`), measured in one run.

* KWS, IC and AD int8 on qemu-cortex-m4 and qemu-cortex-m7: emulated instructions per inference and per MAC, arena
  used, stack high-water mark and image flash (text + rodata + data of the bench firmware) for the native runtime,
  TFLM with reference kernels and TFLM with CMSIS-NN;
* every emulated board: KWS native vs TFLM (the profile's kernel set).

Every row is an `edgeforge flash` + `edgeforge bench` with outputs byte-identical to the host reference (a row whose
outputs differ is printed as FAILED, never with a figure). Instruction counts come from QEMU -icount shift=0 at the
firmware's 1 us timer resolution (1000 instructions). Needs ../shared (MLPerf Tiny models, the TFLM tree) and the
toolchains of `make toolchain`; boards whose tools are missing are skipped. TFLM libraries are cached
(edgeforge/bench/tflm_lib.py): a cold cache compiles the framework once per core.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MLPERF = ROOT.parent / "shared" / "models" / "mlperf_tiny"
MODELS = {"KWS": "kws/kws_ref_model_int8.tflite", "IC": "ic/pretrainedResnet_quant.tflite",
          "AD": "ad/ad01_int8.tflite"}
PROFILES = {"qemu-cortex-m0plus": "rp2040", "qemu-cortex-m4": "cortex-m4", "qemu-cortex-m7": "cortex-m7",
            "qemu-cortex-m33": "cortex-m33", "qemu-cortex-m55": "cortex-m55", "qemu-riscv32": "esp32c3"}


def _ef(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeforge", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


def _image_flash(elf: Path, cross: str) -> int:
    out = subprocess.run([f"{cross}-size", str(elf)], capture_output=True, text=True, check=True).stdout
    text, data = out.splitlines()[1].split()[:2]
    return int(text) + int(data)


def row(work: Path, model: str, board: str, runtime: str, kernels: str | None) -> str:
    from edgeforge.device.boards import EMULATED_BY_NAME

    b = EMULATED_BY_NAME[board]
    build = work / f"{model}-{board}-{runtime}-{kernels}"
    label = f"{model:<4} {board:<19} {runtime + (f' ({kernels})' if kernels else ''):<20}"
    res = _ef("build", MLPERF / MODELS[model], "--target", PROFILES[board], "--runtime", runtime, "--out", build, "-q")
    if res.returncode not in (0, 3):  # 3: a budget missed; the image is still benched
        return f"{label} build failed: {res.stderr.strip().splitlines()[-1:]}"
    res = _ef("flash", build, "--board", board, *(["--tflm-kernels", kernels] if kernels else []))
    if res.returncode != 0:
        return f"{label} flash failed: {res.stderr.strip().splitlines()[:1]}"
    res = _ef("bench", build, "--board", board, "--count", 1, "--runs", 1, "--json")
    doc = json.loads(res.stdout) if res.stdout.strip().startswith("{") else None
    if doc is None or not doc["outputs"]["byte_identical"]:
        return f"{label} FAILED (outputs differ or no result): {res.stderr.strip()[-200:]}"
    lat, mem = doc["latency"], doc["memory"]
    flash = _image_flash(build / "firmware" / b.image, b.cross)
    return (f"{label} {lat['instructions_median'] / 1e6:>9.3f} M {lat['instructions_per_mac']:>7.2f} "
            f"{mem['arena']:>8} {mem['stack_hwm']:>6} {flash:>9}")


def main() -> int:
    from edgeforge.device.boards import EMULATED

    if not MLPERF.is_dir():
        print("bench_boards: ../shared/models/mlperf_tiny is absent; skipped")
        return 0
    print("model board               runtime               instr/inf  /MAC     arena  stack  image B")
    with tempfile.TemporaryDirectory(prefix="edgeforge-bench-boards-") as tmp:
        work = Path(tmp)
        for board in ("qemu-cortex-m4", "qemu-cortex-m7"):
            b = next(x for x in EMULATED if x.name == board)
            if b.missing_tools():
                print(f"{board}: skipped ({b.missing_tools()})")
                continue
            for model in MODELS:
                print(row(work, model, board, "native", None), flush=True)
                for kernels in b.kernels:
                    print(row(work, model, board, "tflm", kernels), flush=True)
        print()
        for b in EMULATED:
            if b.missing_tools():
                print(f"{b.name}: skipped ({b.missing_tools()})")
                continue
            print(row(work, "KWS", b.name, "native", None), flush=True)
            if b.kernels:
                print(row(work, "KWS", b.name, "tflm", None), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
