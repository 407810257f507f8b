"""`make bench` (search part): wall time of the compression search on this machine and what each
candidate saves, for the MLPerf Tiny KWS (from the float SavedModel, calibrated on kws01, 60 % of the
int8 build's weight bytes, then 50 % and 40 %, with the chosen model's top-1 on the held-out report part and its
95 % interval) and IC ResNet-8 (.h5, synthetic calibration, 64 KiB RAM / 96 KiB flash).

The search's time is taken from the build's own stage events: from the first search stage to the stage
after it, so conversion, emission and cross-compilation of the final build are not counted. As the
same-run reference, the time of one full TFLite Micro evaluation of the int8 model is printed with it.

Needs ../shared/models/mlperf_tiny (the project's machines have it; users' checkouts do not).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from edgeforge.events import NullReporter

ROOT = Path(__file__).resolve().parent.parent
MLPERF = ROOT.parent / "shared" / "models" / "mlperf_tiny"
GOAL_S = 120.0  # post-training search
GOAL_DISTILL_S = 600.0  # a search that trains distilled students (issue 13: under 10 minutes on this machine)
SEARCH_STAGES = ("planning the int8 model's native image",)


class Timing(NullReporter):
    """A Reporter that timestamps stages."""

    def __init__(self) -> None:
        self.stages: list[tuple[float, str]] = []

    def stage(self, name: str) -> None:
        self.stages.append((time.perf_counter(), name))

    def _index(self, prefix: str, after: int = -1) -> int:
        return next(i for i, (_, n) in enumerate(self.stages) if i > after and n.startswith(prefix))

    def seconds(self, prefix: str, after: int = -1) -> tuple[float, int]:
        """Time from the stage starting with ``prefix`` to the next stage."""
        i = self._index(prefix, after)
        return self.stages[i + 1][0] - self.stages[i][0], i

    def search_seconds(self) -> float:
        start = self._index(SEARCH_STAGES[0])
        end = self._index("lowering to native C", start)  # the build's own native stage follows the search
        return self.stages[end][0] - self.stages[start][0]


def run(name: str, model: Path, args: dict[str, object], out: Path) -> dict[str, object]:
    from edgeforge.build import BuildOptions, build
    from edgeforge.budget import with_overrides
    from edgeforge.compress.driver import SearchOptions
    from edgeforge.data import InputQuant
    from edgeforge.target.loader import load_registry

    target = load_registry().get("cortex-m4")
    budget = with_overrides(target.budget, args.get("flash"), args.get("ram"))  # type: ignore[arg-type]
    quant = args.get("quant")
    opts = BuildOptions(out_dir=out, data=args.get("data"), val=args.get("data"),  # type: ignore[arg-type]
                        data_quant=InputQuant(*quant) if quant else None, calib_samples=100, runtime="native",
                        budget=budget, search=SearchOptions("always"))
    timing = Timing()
    wall = time.perf_counter()
    result = build(model, target, opts, timing)
    wall = time.perf_counter() - wall
    seconds = timing.search_seconds()
    reference, _ = timing.seconds("verifying c00")  # one TFLM evaluation of the int8 model (selection part)
    report = json.loads((out / "report.json").read_text())
    goal = GOAL_DISTILL_S if any(c["kind"] == "distilled" for c in report["candidates"]) else GOAL_S
    verdict = "meets" if seconds < goal else "MISSES"
    print(f"\n{name}: search {seconds:.1f} s on this machine ({verdict} the {goal:.0f} s goal; build {wall:.1f} s) = "
          f"{seconds / reference:.1f}x one TFLM evaluation of the int8 model ({reference:.1f} s, same run); "
          f"{len(report['candidates'])} candidates, chosen {report['chosen']} "
          f"(flash budget {report['budgets']['model_flash_bytes']} B, fits: {result.fits})")
    metric = "top-1" if report["metric"] == "top1" else "SQNR dB"
    print(f"  {'id':<4} {'flash B':>8} {'int4 saved':>10} {'sparse saved':>12} {metric:>8}  {'how':<9} recipe")
    for c in report["candidates"]:
        acc = c["accuracy"] if report["metric"] == "top1" else c["sqnr_db"]
        acc_s = "n/a" if acc is None else (f"{acc * 100:.1f}%" if report["metric"] == "top1" else f"{acc:.1f}")
        mark = "*" if c["id"] == report["chosen"] else (">" if report["closest"] and
                                                        c["id"] == report["closest"]["id"] else " ")
        print(f"{mark} {c['id']:<4} {c['flash_bytes']:>8} {c['saved']['int4_bytes']:>10} "
              f"{c['saved']['sparsity_bytes']:>12} {acc_s:>8}  {c['evaluated']:<9} {c['summary']}")
    return {"report": report, "seconds": seconds, "fits": result.fits}


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.1f} %"


def _held(part: dict[str, object] | None) -> str:
    if not part or part.get("top1") is None:
        return "n/a"
    lo, hi = part["top1_ci95"]  # type: ignore[misc]
    return f"{_pct(part['top1'])} [{lo * 100:.1f}, {hi * 100:.1f}]"  # type: ignore[arg-type]


def kws_table(rows: list[tuple[int, int, dict[str, object]]]) -> None:
    """The README's table: per budget the pick, its held-out top-1 with the Wilson 95 % interval, int8's."""
    print("\nKWS from the float SavedModel (calibrated on 100 kws01 inputs); top-1 on the held-out report part "
          "(never used for calibration, screening or selection), 95 % Wilson interval:")
    print("| budget | search | chosen (or held) | flash B | held-out top-1 | int8 held-out top-1 | verdict |")
    print("|---|---|---|---|---|---|---|")
    for share, flash, r in rows:
        report = r["report"]  # type: ignore[index]
        pick_id = report["chosen"] or (report["closest"] or {}).get("id")
        pick = next(c for c in report["candidates"] if c["id"] == pick_id)
        held = report.get("held_out") or {}
        status = "" if report["chosen"] else " (nothing fits: held)"
        print(f"| {share} % ({flash:,} B) | {r['seconds']:.0f} s | {pick['summary']}{status} | "  # type: ignore[index]
              f"{pick['flash_bytes']:,} | {_held(held.get('candidate'))} (n={held.get('samples')}) | "
              f"{_held(held.get('int8'))} | {held.get('verdict') or 'n/a'} |")


def main() -> int:
    if not MLPERF.is_dir():
        print("bench_search: ../shared/models/mlperf_tiny is absent; skipped")
        return 0
    only_kws = "--kws" in sys.argv[1:]
    kws01 = MLPERF / "samples" / "kws01"
    with tempfile.TemporaryDirectory() as tmp:
        from edgeforge.build import BuildOptions, build
        from edgeforge.compress.driver import SearchOptions
        from edgeforge.data import InputQuant
        from edgeforge.target.loader import load_registry

        target = load_registry().get("cortex-m4")
        plain = build(MLPERF / "kws" / "saved_model", target, BuildOptions(
            out_dir=Path(tmp) / "int8", data=kws01, data_quant=InputQuant(0.584703, 83), calib_samples=100,
            runtime="native", search=SearchOptions("never")))
        weights = plain.manifest["model"]["weight_bytes"]
        rows = []
        for share in (60, 50, 40):
            flash = int(share / 100 * weights)
            rows.append((share, flash, run(f"KWS (SavedModel, {share}% of int8 weight bytes)",
                                           MLPERF / "kws" / "saved_model",
                                           {"data": kws01, "quant": (0.584703, 83), "flash": str(flash)},
                                           Path(tmp) / f"kws{share}")))
        kws_table(rows)
        if not only_kws:
            run("IC ResNet-8 (.h5, synthetic calibration, 64 KiB RAM / 96 KiB flash)",
                MLPERF / "ic" / "pretrainedResnet.h5", {"flash": "96K", "ram": "64K"}, Path(tmp) / "ic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
