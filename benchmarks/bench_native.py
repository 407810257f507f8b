"""`make bench`: the native runtime against TFLite Micro on the MLPerf Tiny int8 models, as ratios
measured in the same run on this machine.

* arena:  native planned arena / TFLM arena measured by the tflite-micro interpreter (total; its head
          is shown too, as the like-for-like activation figure);
* image:  native model image (generated code + constants of ef_model.o, arm-none-eabi-gcc -Os for
          Cortex-M4; the host object when no cross-compiler) / the .tflite file;
* speed:  host time per inference, tflite-micro interpreter / native C (both -O2 class builds).
* sparse: the KWS model with the 50 % / 75 % smallest-magnitude weights of every filter set to 0 (unstructured
          magnitude pruning), built twice: filters stored dense int8 (EDGEFORGE_NATIVE_SPARSE=0) and as the
          emitter picks (sparse_rows): constant flash, host time and QEMU instructions, dense / sparse.

Needs ../shared/models/mlperf_tiny (the project's machines have it; users' checkouts do not).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MLPERF = ROOT.parent / "shared" / "models" / "mlperf_tiny"
MODELS = {"KWS": "kws/kws_ref_model_int8.tflite", "IC": "ic/pretrainedResnet_quant.tflite",
          "AD": "ad/ad01_int8.tflite"}
GOALS = {"arena": 0.8, "image": 0.9, "speed": 5.0}


def tflm_seconds(model: bytes, x: np.ndarray, runs: int) -> float:
    from tflite_micro.python.tflite_micro import runtime

    ip = runtime.Interpreter.from_bytes(model)
    ip.set_input(x, 0)
    ip.invoke()
    start = time.perf_counter()
    for _ in range(runs):
        ip.set_input(x, 0)
        ip.invoke()
    return (time.perf_counter() - start) / runs


def native_seconds(native_dir: Path, x: np.ndarray, runs: int) -> float:
    from edgeforge.native.toolchain import host_runner

    exe = host_runner(native_dir)
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(x.tobytes())
        f.flush()
        out = subprocess.run([str(exe), "--time", str(runs), f.name], capture_output=True, text=True, check=True)
    return float(out.stdout.strip()) / 1e9


def qemu_instructions(build_dir: Path) -> tuple[int, float]:
    """Instructions per inference on the emulated Cortex-M4 (QEMU -icount shift=0), over the serial bench."""
    from edgeforge.bench.run import bench_build

    outcome = bench_build(build_dir, "qemu-cortex-m4", None, runs=2, warmup=1, input_path=None, count=1)
    lat = outcome.doc["latency"]
    return lat["instructions_median"], lat["instructions_per_mac"]


def bench_one(name: str, rel: str, runs: int, qemu: bool) -> dict[str, float | int | str | None]:
    from edgeforge.build import BuildOptions, build
    from edgeforge.target import load_registry

    target = load_registry().get("cortex-m4")
    src = MLPERF / rel
    with tempfile.TemporaryDirectory(prefix="edgeforge-bench-") as tmp:
        out = Path(tmp) / name
        result = build(src, target, BuildOptions(out_dir=out, runtime="native"))
        n = result.manifest["native"]
        model = src.read_bytes()
        inp = result.manifest["model"]["inputs"][0]
        x = np.random.default_rng(0).integers(-128, 128, inp["shape"], dtype=np.int16).astype(np.int8)
        t_tflm = tflm_seconds(model, x, runs)
        t_native = native_seconds(out / "native", x, runs * 20)
        arm = n["arm"]
        image = (arm["model_text"] + arm["model_rodata"]) if arm and not arm["link_error"] else n["const_bytes"]
        emulated = qemu_instructions(out) if qemu else None
    return {
        "model": name, "tflite_bytes": len(model), "native_image_bytes": image,
        "qemu_instructions": emulated[0] if emulated else None,
        "qemu_instructions_per_mac": emulated[1] if emulated else None,
        "image_basis": "arm-none-eabi-gcc -Os ef_model.o" if arm else "constants only (no cross-compiler)",
        "native_arena": n["arena_bytes"], "tflm_arena": n["tflm_measured_arena_bytes"],
        "tflm_like_head": n["tflm_like_head_bytes"], "lower_bound": n["lower_bound_bytes"],
        "native_us": t_native * 1e6, "tflm_us": t_tflm * 1e6,
        "arena_ratio": n["arena_bytes"] / n["tflm_measured_arena_bytes"],
        "image_ratio": image / len(model), "speedup": t_tflm / t_native,
    }


def prune_magnitude(model: bytes, fraction: float) -> bytes:
    """Every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED int8 filter with its ``fraction`` smallest-magnitude
    weights set to 0 (unstructured magnitude pruning per layer, as the compression search prunes)."""
    from edgeforge.compress.apply import prune_all

    return prune_all(model, fraction)


def bench_sparse(fraction: float, runs: int, qemu: bool) -> dict[str, float | int | str | None]:
    """KWS pruned at ``fraction``: dense int8 storage vs the emitter's choice (sparse)."""
    import os

    from edgeforge.build import BuildOptions, build
    from edgeforge.native.sparse import ENV_SWITCH
    from edgeforge.target import load_registry

    target = load_registry().get("cortex-m4")
    model = prune_magnitude((MLPERF / MODELS["KWS"]).read_bytes(), fraction)
    row: dict[str, float | int | str | None] = {"model": f"KWS pruned {fraction:.0%}"}
    with tempfile.TemporaryDirectory(prefix="edgeforge-bench-") as tmp:
        src = Path(tmp) / "kws_pruned.tflite"
        src.write_bytes(model)
        x = None
        for kind, switch in (("dense", "0"), ("sparse", "1")):
            out = Path(tmp) / kind
            old = os.environ.get(ENV_SWITCH)
            os.environ[ENV_SWITCH] = switch
            try:
                result = build(src, target, BuildOptions(out_dir=out, runtime="native"))
            finally:
                if old is None:
                    os.environ.pop(ENV_SWITCH, None)
                else:
                    os.environ[ENV_SWITCH] = old
            n = result.manifest["native"]
            if x is None:
                inp = result.manifest["model"]["inputs"][0]
                x = np.random.default_rng(0).integers(-128, 128, inp["shape"], dtype=np.int16).astype(np.int8)
            row[f"{kind}_const_bytes"] = n["const_bytes"]
            row[f"{kind}_weight_bytes"] = n["weights"]["stored_bytes"]
            row[f"{kind}_sparse_tensors"] = n["weights"]["sparse_tensors"]
            arm = n["arm"]
            row[f"{kind}_image_bytes"] = (arm["model_text"] + arm["model_rodata"]) if arm and not arm["link_error"] \
                else None
            row[f"{kind}_us"] = native_seconds(out / "native", x, runs * 20) * 1e6
            row[f"{kind}_qemu_instructions"] = qemu_instructions(out)[0] if qemu else None
    row["const_ratio"] = row["sparse_const_bytes"] / row["dense_const_bytes"]  # type: ignore[operator]
    row["speedup"] = row["dense_us"] / row["sparse_us"]  # type: ignore[operator]
    row["qemu_ratio"] = (row["dense_qemu_instructions"] / row["sparse_qemu_instructions"]  # type: ignore[operator]
                         if qemu else None)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="tflite-micro invocations per model")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not MLPERF.is_dir():
        print(f"skipped: {MLPERF} is absent", file=sys.stderr)
        return 0
    from edgeforge.device.boards import qemu_available
    from edgeforge.native.toolchain import arm_available

    qemu = qemu_available() and arm_available()
    rows = [bench_one(name, rel, args.runs, qemu) for name, rel in MODELS.items()]
    sparse = [bench_sparse(f, args.runs, qemu) for f in (0.5, 0.75)]
    if args.json:
        print(json.dumps(rows + sparse, indent=2))
        return 0
    print(f"{'model':<5} {'arena native/TFLM':>22} {'image native/.tflite':>26} {'host speed TFLM/native':>30}")
    for r in rows:
        print(f"{r['model']:<5} {r['native_arena']:>7}/{r['tflm_arena']:<7} {r['arena_ratio']:5.2f}x"
              f" {r['native_image_bytes']:>8}/{r['tflite_bytes']:<8} {r['image_ratio']:5.2f}x"
              f" {r['tflm_us']:>9.0f}/{r['native_us']:<9.0f}us {r['speedup']:6.1f}x")
    if qemu:
        print("emulated Cortex-M4 (QEMU mps2-an386, -icount shift=0; instruction counts, not cycles):")
        for r in rows:
            print(f"  {r['model']:<5} {r['qemu_instructions']:>11} instructions/inference, "
                  f"{r['qemu_instructions_per_mac']:6.2f} per MAC")
        print("  (reference: a real 120 MHz Cortex-M4 takes ~8 cycles/MAC on KWS with TFLM's reference kernels, "
              "~2 with vendor-optimised kernels)")
    else:
        print("emulated Cortex-M4: skipped (needs qemu-system-arm and arm-none-eabi-gcc: make toolchain)")
    print("sparse weights (KWS, magnitude-pruned per filter; dense int8 storage vs sparse_rows, same outputs):")
    for r in sparse:
        line = (f"  {r['model']:<15} constants {r['dense_const_bytes']:>6}/{r['sparse_const_bytes']:<6} B "
                f"{r['const_ratio']:5.2f}x ({r['sparse_sparse_tensors']} sparse filters), "
                f"host {r['dense_us']:.0f}/{r['sparse_us']:.0f} us: speed-up {r['speedup']:4.2f}x")
        if r["qemu_ratio"] is not None:
            line += (f", QEMU {r['dense_qemu_instructions']}/{r['sparse_qemu_instructions']} instructions "
                     f"{r['qemu_ratio']:4.2f}x fewer")
        print(line)
    print(f"goals: arena <= {GOALS['arena']}x, image <= {GOALS['image']}x, speed >= {GOALS['speed']}x "
          f"(lower bound and TFLM-like head per model: "
          + ", ".join(f"{r['model']} {r['lower_bound']}/{r['tflm_like_head']} B" for r in rows) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
