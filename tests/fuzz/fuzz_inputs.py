"""Seeded mutation fuzzer for edgeforge's input readers, run in-process.

Targets: the .tflite reader and the model checks (``read_tflite``, ``load_model``), LiteRT's flatbuffer
verifier as edgeforge calls it, the rewrite that cleans float sources for the quantizer; the data
loaders (``load_dataset`` on .npz, .npy, .bin, .bin folders with y_labels.csv, then ``float_view``,
``model_view`` and the label check); and the Keras config check (``.keras`` archives). Inputs start
from tests/fixtures/*.tflite and small generated data files and are mutated as bytes (flips,
interesting integers, truncation, splices) and as structure (tensor shapes, scales, buffer and
op-code indices; array dtypes, shapes, labels, non-finite values).

A run passes when every input is either accepted or refused with edgeforge's own error
(``EdgeforgeError``): any other exception, a hang (10 s per input) or a crash of the process is a
failure. Each failure's input is saved under ``build/fuzz/`` with its traceback. The fuzzing runs
in a child process that the parent restarts after a crash (the input being tried is on disk).

    python tests/fuzz/fuzz_inputs.py --seconds 300 --seed 1
    python tests/fuzz/fuzz_inputs.py --runs 300 --seed 1      # a fixed amount of work (the smoke test)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
HANG_S = 10
INTERESTING32 = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                 0xFFFFFFFE, 0x10000, 4, 8, 16]
SPECIAL_FLOATS = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-45, 1e38, -1.0, 5e-324]


# --------------------------------------------------------------------------- byte mutations


def mutate_bytes(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 8])):
        kind = rng.randrange(8)
        if not b:
            b = bytearray(rng.randbytes(rng.randrange(1, 64)))
            continue
        pos = rng.randrange(len(b))
        if kind == 0:
            b[pos] ^= 1 << rng.randrange(8)
        elif kind == 1:
            b[pos] = rng.randrange(256)
        elif kind == 2 and len(b) >= 4:
            pos = rng.randrange(len(b) - 3)
            b[pos : pos + 4] = struct.pack("<I", rng.choice(INTERESTING32))
        elif kind == 3:
            del b[rng.randrange(len(b)) :]
        elif kind == 4:
            end = min(len(b), pos + rng.randrange(1, 64))
            del b[pos:end]
        elif kind == 5:
            b[pos:pos] = rng.randbytes(rng.randrange(1, 32))
        elif kind == 6 and others:
            other = rng.choice(others)
            if other:
                start = rng.randrange(len(other))
                b[pos:pos] = other[start : start + rng.randrange(1, 256)]
        elif kind == 7 and len(b) >= 4:
            pos = rng.randrange(len(b) - 3)
            b[pos : pos + 4] = struct.pack("<f", rng.choice(SPECIAL_FLOATS))
    return bytes(b)


# --------------------------------------------------------------------------- structured .tflite mutations


def mutate_tflite_structure(rng: random.Random, data: bytes) -> bytes:
    """Edit the object tree: what a well-formed but hostile flatbuffer can say."""
    from edgeforge.model.rewrite import pack, unpack

    model = unpack(data)
    sg = model.subgraphs[0]
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(9)
        t = rng.choice(sg.tensors) if sg.tensors else None
        if kind == 0 and t is not None:
            t.shape = [rng.choice([0, 1, -1, 3, 1 << 20, 1 << 31 - 1]) for _ in range(rng.randrange(0, 6))]
        elif kind == 1 and t is not None and t.quantization is not None:
            t.quantization.scale = [rng.choice(SPECIAL_FLOATS + [0.1]) for _ in range(rng.randrange(0, 4))]
        elif kind == 2 and t is not None:
            t.buffer = rng.choice([0, 1, len(model.buffers), len(model.buffers) + 5, -1 & 0xFFFFFFFF])
        elif kind == 3 and sg.operators:
            op = rng.choice(sg.operators)
            op.opcodeIndex = rng.choice([0, len(model.operatorCodes), 999])
        elif kind == 4 and sg.operators:
            op = rng.choice(sg.operators)
            op.inputs = [rng.choice([-1, 0, len(sg.tensors), 1 << 30]) for _ in range(rng.randrange(0, 4))]
        elif kind == 5 and t is not None:
            t.type = rng.randrange(-2, 20)
        elif kind == 6:
            sg.operators = [] if rng.random() < 0.5 else list(sg.operators or [])[: rng.randrange(3)]
        elif kind == 7:
            sg.inputs = [rng.choice([0, len(sg.tensors), -1]) for _ in range(rng.randrange(0, 3))]
        elif kind == 8 and model.operatorCodes:
            code = rng.choice(model.operatorCodes)
            code.builtinCode = rng.choice([0, 32, 127, 200, 1000])
            code.deprecatedBuiltinCode = rng.choice([0, 3, 32, 127])
    return pack(model)


# --------------------------------------------------------------------------- generated data files


def _array(rng: random.Random):  # noqa: ANN202 - numpy array
    import numpy as np

    n = rng.choice([0, 1, 2, 5])
    shape = rng.choice([(n, 8, 8, 1), (n, 64), (n, 8, 8), (n,), (), (n, 8, 8, 2), (n, 1, 8, 8, 1)])
    dtype = rng.choice(["float32", "float64", "int8", "uint8", "int64", "float16", "bool", "complex64", "U3"])
    if dtype == "U3":
        return np.full(shape, "ab", dtype=dtype)
    x = np.asarray(rng.random() * 4 - 2 + np.zeros(shape)).astype(dtype)
    if x.size and dtype.startswith("float") and rng.random() < 0.5:
        x.reshape(-1)[rng.randrange(x.size)] = rng.choice(SPECIAL_FLOATS)
    return x


def gen_npz(rng: random.Random) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    arrays = {}
    if rng.random() < 0.9:
        arrays["x"] = _array(rng)
    if rng.random() < 0.7:
        n = len(arrays["x"]) if "x" in arrays and arrays["x"].ndim else 3
        arrays["y"] = np.array([rng.choice([0, 3, 9, 10, 99, -1, 0.5, float("nan"), 2**40]) for _ in range(n)])
    if rng.random() < 0.1:
        arrays["z"] = np.zeros(2)
    np.savez(buf, **arrays)
    return buf.getvalue()


def gen_npy(rng: random.Random) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, _array(rng))
    return buf.getvalue()


def gen_bin(rng: random.Random) -> bytes:
    size = rng.choice([64, 64, 256, 0, 63, 65, 128])
    return rng.randbytes(size)


def gen_labels_csv(rng: random.Random, names: list[str]) -> bytes:
    count = rng.choice([10, 10, 10, 12, 0, -1])
    rows = ["file,num_classes,label"] if rng.random() < 0.3 else []
    for name in names + (["extra.bin"] if rng.random() < 0.2 else []):
        if rng.random() < 0.05:
            continue
        label = rng.choice([0, 3, 9, 0, 3, 9, 10, -1, "x", "0.5"])
        rows.append(",".join([name, str(count if rng.random() < 0.95 else 11), str(label)]))
    return ("\n".join(rows) + "\n").encode()


def gen_keras(rng: random.Random) -> bytes:
    layer = rng.choice([
        {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 3}},
        {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "l", "function": {
            "class_name": "__lambda__", "config": {"code": "4wEAAA"}}}},
        {"module": "os", "class_name": "system", "config": "true"},
        {"class_name": "TFOpLambda", "config": {"function": "math.add"}},
    ])
    config: object = {"module": "keras", "class_name": "Sequential", "config": {"layers": [layer]}}
    for _ in range(rng.choice([0, 0, 1, 50])):
        config = {"config": config}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", "{}")
    return buf.getvalue()


# --------------------------------------------------------------------------- targets


def target_tflite(data: bytes, work: Path) -> str:
    from edgeforge.hostrun import verify_flatbuffer
    from edgeforge.model.load import load_model
    from edgeforge.model.rewrite import float_graph
    from edgeforge.model.tflite import read_tflite

    info = read_tflite(data, "fuzz.tflite")
    path = work / "m.tflite"
    path.write_bytes(data)
    source = load_model(path)  # the source checks (shapes, scales, operators)
    verify_flatbuffer(data)
    if all(t.dtype == "float32" for t in info.input_tensors()):
        read_tflite(float_graph(data), "the float graph")
    return "accepted" if source.info is not None else "?"


def _load(path: Path, shape: tuple[int, ...], dtype: str, quant: tuple[float, int] | None) -> str:
    import numpy as np

    from edgeforge.data import InputQuant, float_view, load_dataset, model_view

    ds = load_dataset(path, shape, np.dtype(dtype), InputQuant(*quant) if quant else None)
    float_view(ds)
    model_view(ds, "int8", 0.05, -3)
    ds.check_labels(10)
    return "accepted"


def _data_args(rng: random.Random) -> tuple[tuple[int, ...], str, tuple[float, int] | None]:
    shape = rng.choice([(8, 8, 1), (64,), (8, 8)])
    dtype = rng.choice(["float32", "int8", "float32"])
    quant = rng.choice([None, None, (0.5, 3), (float("nan"), 0), (0.0, 0), (1e999, 0), (0.1, 300)])
    return shape, dtype, quant


def run_one(target: str, data: bytes, rng_seed: int, work: Path) -> str:
    """One execution; returns "accepted" or "refused"; raises anything else."""
    from edgeforge.errors import EdgeforgeError

    rng = random.Random(rng_seed)
    try:
        if target == "tflite":
            return target_tflite(data, work)
        if target in ("npz", "npy", "bin"):
            path = work / f"d.{target}"
            path.write_bytes(data)
            return _load(path, *_data_args(rng))
        if target == "binfolder":
            folder = work / "bins"
            folder.mkdir(exist_ok=True)
            for old in folder.iterdir():
                old.unlink()
            parts = data.split(b"\n--\n")
            names = []
            for i, part in enumerate(parts[:-1] or [b""]):
                names.append(f"s{i}.bin")
                (folder / names[-1]).write_bytes(part)
            (folder / "y_labels.csv").write_bytes(parts[-1])
            return _load(folder, *_data_args(rng))
        if target == "keras":
            from edgeforge.model.load import load_model

            path = work / "m.keras"
            path.write_bytes(data)
            load_model(path)
            return "accepted"
    except EdgeforgeError:
        return "refused"
    raise ValueError(f"unknown target {target}")


def seeds(rng: random.Random) -> dict[str, list[bytes]]:
    tflite = [p.read_bytes() for p in sorted(FIXTURES.glob("*.tflite"))]
    folders = []
    for _ in range(4):
        size = rng.choice([64, 256])  # a valid folder: same-size tensors, mutations break it
        bins = [rng.randbytes(size) for _ in range(rng.randrange(1, 4))]
        folders.append(b"\n--\n".join(bins + [gen_labels_csv(rng, [f"s{i}.bin" for i in range(len(bins))])]))
    return {"tflite": tflite, "npz": [gen_npz(rng) for _ in range(8)], "npy": [gen_npy(rng) for _ in range(8)],
            "bin": [gen_bin(rng) for _ in range(4)], "binfolder": folders, "keras": [gen_keras(rng) for _ in range(6)]}


def next_input(rng: random.Random, corpus: dict[str, list[bytes]]) -> tuple[str, bytes]:
    target = rng.choice(list(corpus))
    base = rng.choice(corpus[target])
    if target == "tflite" and rng.random() < 0.4:
        try:
            return target, mutate_tflite_structure(rng, base)
        except Exception:  # noqa: BLE001 - the object API refused a mutated tree: fall back to bytes
            pass
    if target in ("npz", "npy", "keras") and rng.random() < 0.3:
        return target, {"npz": gen_npz, "npy": gen_npy, "keras": gen_keras}[target](rng)
    if rng.random() < 0.1:
        return target, base
    return target, mutate_bytes(rng, base, corpus[target])


# --------------------------------------------------------------------------- worker and supervisor


def _expire(*_: object) -> None:
    raise TimeoutError(f"no result in {HANG_S} s (a hang)")


def worker(args: argparse.Namespace) -> int:
    """Fuzz until the time or run budget is spent; one JSON line of counts per second on stdout."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))
    import warnings

    warnings.simplefilter("ignore")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    corpus = seeds(rng)
    counts: Counter[str] = Counter()
    failures: set[str] = set()
    deadline = time.monotonic() + args.seconds if args.seconds else math.inf
    signal.signal(signal.SIGALRM, _expire)
    last_report = 0.0
    with tempfile.TemporaryDirectory(prefix="edgeforge-fuzz-") as tmp:
        work = Path(tmp)
        run = args.start
        while time.monotonic() < deadline and (not args.runs or run < args.runs):
            target, data = next_input(random.Random(f"{args.seed}:{run}"), corpus)
            (out / "current").write_bytes(json.dumps({"target": target, "run": run}).encode() + b"\n" + data)
            signal.alarm(HANG_S)
            try:
                result = run_one(target, data, run, work)
            except BaseException as exc:  # noqa: BLE001 - everything that is not EdgeforgeError is a finding
                if isinstance(exc, KeyboardInterrupt):
                    raise
                result = "FAILED"
                tb = traceback.format_exc()
                sig = hashlib.sha1(f"{target}:{type(exc).__name__}:{tb.splitlines()[-3:]}".encode()).hexdigest()[:12]
                if sig not in failures:
                    failures.add(sig)
                    (out / f"failure-{target}-{sig}.bin").write_bytes(data)
                    (out / f"failure-{target}-{sig}.txt").write_text(f"target {target}, run {run}, seed {args.seed}\n{tb}")
                    print(json.dumps({"failure": sig, "target": target, "run": run,
                                      "error": f"{type(exc).__name__}: {str(exc)[:200]}"}), flush=True)
            finally:
                signal.alarm(0)
            counts[f"{target}:{result}"] += 1
            counts["executions"] += 1
            run += 1
            if time.monotonic() - last_report > 1:
                last_report = time.monotonic()
                print(json.dumps({"counts": dict(counts), "run": run}), flush=True)
        print(json.dumps({"counts": dict(counts), "run": run, "done": True}), flush=True)
    (out / "current").unlink(missing_ok=True)
    return 0


def supervise(args: argparse.Namespace) -> int:
    """Run the worker; after a crash (a signal), save the input it was on and go on from the next one."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start_time, start_run = time.monotonic(), 0
    total: Counter[str] = Counter()
    failures: list[dict[str, object]] = []
    crashes = 0
    while True:
        left = args.seconds - (time.monotonic() - start_time) if args.seconds else 0
        if args.seconds and left <= 0:
            break
        cmd = [sys.executable, __file__, "--worker", "--seed", str(args.seed), "--out", str(out),
               "--start", str(start_run), "--seconds", str(max(left, 0.001) if args.seconds else 0),
               "--runs", str(args.runs)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
        last: dict[str, object] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            doc = json.loads(line)
            if "failure" in doc:
                failures.append(doc)
                print(f"FAILURE {doc['target']} run {doc['run']}: {doc['error']} (build/fuzz/failure-"
                      f"{doc['target']}-{doc['failure']}.*)", flush=True)
            else:
                last = doc
        code = proc.wait()
        total.update(last.get("counts", {}))  # type: ignore[arg-type]
        if code == 0 and last.get("done"):
            break
        current = out / "current"  # the worker died on this input
        head, _, data = current.read_bytes().partition(b"\n") if current.exists() else (b"{}", b"", b"")
        info = json.loads(head or b"{}")
        run = int(info.get("run", int(last.get("run", start_run))))  # type: ignore[arg-type]
        crashes += 1
        name = f"crash-{info.get('target', 'unknown')}-{run}"
        (out / f"{name}.bin").write_bytes(data)
        print(f"CRASH (exit {code}) in target {info.get('target')} at run {run}: input saved as build/fuzz/{name}.bin",
              flush=True)
        total["executions"] += 1
        start_run = run + 1
        if args.runs and start_run >= args.runs:
            break
    execs = total["executions"]
    elapsed = time.monotonic() - start_time
    summary = {"executions": execs, "seconds": round(elapsed, 1), "per_second": round(execs / max(elapsed, 1e-9), 1),
               "failures": len(failures), "crashes": crashes, "seed": args.seed,
               "by_target": {k: v for k, v in sorted(total.items()) if k != "executions"}}
    print(json.dumps(summary, indent=1, sort_keys=True))
    return 1 if failures or crashes else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=0, help="fuzz for this long (0: until --runs)")
    p.add_argument("--runs", type=int, default=0, help="stop after this many executions (0: until --seconds)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "build" / "fuzz"), help="where failures are saved")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.seconds and not args.runs:
        p.error("give --seconds N or --runs N")
    return worker(args) if args.worker else supervise(args)


if __name__ == "__main__":
    sys.exit(main())
