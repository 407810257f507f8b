"""TEST-ONLY fault-injection campaign: many `edgeforge bench` sessions through the fault proxy, every figure
of every accepted session checked against the truth. The test suite runs a reduced form
(tests/device/test_bench.py); the full campaign runs as a script:

    PYTHONPATH=. .venv/bin/python tests/device/campaign.py BUILD --host-sessions 150 --qemu-sessions 30

BUILD: a native build of the tiny fixture (``edgeforge build tests/fixtures/tiny_int8.tflite --target cortex-m4
--runtime native --out BUILD``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_proxy import FaultProxy, Faults  # noqa: E402

#: The fault rates of the test suite (tests/device/test_bench.py), and stalls alone (the desync of item 4).
SUITE = Faults(drop=0.0003, flip=0.0003, duplicate=0.0003, noise=0.01, stall=0.02, reset=0.005)
STALLS = Faults(stall=0.2, stall_s=0.6)


def truth(build: Path) -> dict:
    """What a correct session reports for this build (figures that do not depend on the clock)."""
    from edgeforge.model.tflite import read_tflite

    m = json.loads((build / "manifest.json").read_text())
    info = read_tflite((build / "model.tflite").read_bytes())
    return {"sha256": m["model"]["sha256"], "arena": m["native"]["arena_bytes"],
            "ops": [info.ops[i].op for i in m["native"]["schedule"]], "target": m["target"]["id"]}


def wrong_figures(doc: dict, want: dict, emulated: bool) -> list[str]:
    """Every way an accepted bench.json could be wrong; [] when all its figures are right."""
    bad = []
    if not doc["outputs"]["byte_identical"]:
        bad.append("outputs")
    if doc["identity"].get("model_sha256") != want["sha256"] or doc["identity"].get("target") != want["target"]:
        bad.append("identity")
    if doc["memory"].get("arena") != want["arena"]:
        bad.append(f"arena={doc['memory'].get('arena')}")
    hwm, size = doc["memory"].get("stack_hwm"), doc["memory"].get("stack_size")
    if (emulated and not (isinstance(hwm, int) and 0 < hwm <= (size or 0))) or (not emulated and hwm != -1):
        bad.append(f"stack_hwm={hwm}")
    ops = doc["ops"]
    if [o["op"] for o in ops] != want["ops"] or [o["index"] for o in ops] != list(range(len(want["ops"]))):
        bad.append("op names")
    if not all(0 <= o["us"] < 1_000_000 for o in doc["ops"]):
        bad.append("op timings")
    ram = [b for b in doc["budgets"] if b["budget"] == "model_ram_bytes"]
    if not ram or ram[0]["value"] != want["arena"] + max(hwm or 0, 0):
        bad.append("ram budget check")
    if not doc["latencies_us"] or not all(0 < us < 1e6 for us in doc["latencies_us"]):
        bad.append("latency")
    return bad


@contextlib.contextmanager
def _board(image: Path, qemu: bool) -> Iterator[str]:
    from edgeforge.device.boards import host_sim, qemu_cortex_m4

    with (qemu_cortex_m4(image) if qemu else host_sim(image)) as board:
        yield board.url


def session(build: Path, image: Path, faults: Faults, seed: int, qemu: bool, want: dict | None,
            count: int = 3) -> tuple[str, list[str], dict]:
    """One bench session through the proxy: ("accepted" | "refused", wrong figures, proxy stats).
    ``want`` None: the board runs another model than ``build`` names (any acceptance is wrong)."""
    from edgeforge.bench.run import bench_build
    from edgeforge.device.transport import DeviceError

    with _board(image, qemu) as url:
        host, port = url[len("socket://"):].split(":")
        proxy = FaultProxy(lambda h=host, p=port: (h, int(p)), faults, seed=seed)
        try:
            outcome = bench_build(build, None, proxy.url, runs=2, warmup=0, input_path=None, count=count)
        except DeviceError:
            return "refused", [], dict(proxy.stats)
        finally:
            proxy.close()
    if want is None:
        return "accepted", ["another model accepted"], dict(proxy.stats)
    return "accepted", wrong_figures(outcome.doc, want, qemu), dict(proxy.stats)


def other_model(build: Path, into: Path) -> Path:
    """A copy of ``build`` whose manifest names another model (the board keeps running the real one)."""
    shutil.copytree(build, into, ignore=shutil.ignore_patterns("bench.json", "firmware"), dirs_exist_ok=True)
    m = json.loads((into / "manifest.json").read_text())
    m["model"]["sha256"] = "f" * 64
    (into / "manifest.json").write_text(json.dumps(m))
    return into


def campaign(build: Path, image: Path, qemu: bool, sessions: int, other: Path | None, stall_sessions: int,
             log: Callable[[str], None] = lambda _s: None) -> dict:
    want = truth(build)
    tally: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    wrong = []
    for seed in range(1, sessions + 1):
        verdict, bad, stats = session(build, image, SUITE, seed, qemu, want)
        tally[verdict] += 1
        faults.update(stats)
        if bad:
            wrong.append((seed, bad))
        log(f"{'qemu' if qemu else 'host'} seed {seed}: {verdict} {bad or ''} {stats}")
    for seed in range(1, stall_sessions + 1):
        assert other is not None
        verdict, bad, stats = session(other, image, STALLS, 1000 + seed, qemu, None, count=1)
        tally[f"other-model {verdict}"] += 1
        faults.update(stats)
        if bad:
            wrong.append((1000 + seed, bad))
        log(f"{'qemu' if qemu else 'host'} other-model stall seed {seed}: {verdict} {stats}")
    return {"sessions": dict(tally), "faults": dict(faults), "wrong_accepted": wrong}


def main() -> int:
    from edgeforge.bench.firmware import build_image
    from edgeforge.manifest import read_manifest
    from edgeforge.target import load_registry

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", type=Path)
    ap.add_argument("--host-sessions", type=int, default=150)
    ap.add_argument("--qemu-sessions", type=int, default=30)
    ap.add_argument("--stall-sessions", type=int, default=15, help="other-model, stall-only sessions per board")
    args = ap.parse_args()
    manifest = read_manifest(args.build)
    hw = load_registry().get(manifest.target.id).hardware
    other = other_model(args.build, args.build.parent / (args.build.name + "-other"))
    report = {}
    for board, n in (("host-sim", args.host_sessions), ("qemu-cortex-m4", args.qemu_sessions)):
        if n <= 0:
            continue
        image = build_image(args.build, board, manifest, hw)
        (other / "firmware").mkdir(exist_ok=True)
        shutil.copy2(image, other / "firmware" / image.name)
        report[board] = campaign(args.build, image, board != "host-sim", n, other, args.stall_sessions,
                                 lambda s: print(s, flush=True))
        print(json.dumps({board: report[board]}), flush=True)
    print(json.dumps(report, indent=2))
    return 1 if any(r["wrong_accepted"] for r in report.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
