"""``edgeforge calibrate``: argument parsing and rendering (the work is in edgeforge/compress/calibrate.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeforge.cli.console import CliReporter, Console

HELP = "time probe models on a board and fit the target's per-op latency table"
DESCRIPTION = (
    "Builds small int8 probe models (convolutions, depthwise, fully connected; int8 and int4; dense and pruned) "
    "for the native runtime, times every op on BOARD, fits the cost coefficients of [perf.ops.RUNTIME] by "
    "non-negative least squares and writes them to .edgeforge/targets/TARGET.toml (a profile extending the "
    "bundled one), which every later command loads. On qemu-cortex-m4 the timings are emulated instruction "
    "counts, counted as cycles.")


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser, epilog: str) -> None:
    p = sub.add_parser("calibrate", parents=[common], help=HELP, description=DESCRIPTION, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", required=True,
                   help="where to measure: qemu-cortex-m4 (emulated), or a board of edgeforge-rig.toml")
    p.add_argument("--target", "-t", required=True, help="target id or alias whose table is fitted")
    p.add_argument("--runtime", choices=["native", "tflm"], default="native",
                   help="runtime whose table is fitted (default native)")
    p.add_argument("--out", "-o", type=Path,
                   help="where to write the override (default .edgeforge/targets/<target>.toml)")
    p.add_argument("--quick", action="store_true", help="two probes instead of the full set (less accurate)")
    p.add_argument("--probes", metavar="NAMES", help="comma-separated probe names (see edgeforge/compress/probes.py)")


def cmd_calibrate(args: argparse.Namespace, c: Console) -> int:
    from edgeforge.compress.calibrate import calibrate

    probes = [n.strip() for n in args.probes.split(",") if n.strip()] if args.probes else None
    cal, path = calibrate(args.target, args.board, args.runtime, args.out, probes, args.quick,
                          tuple(args.targets_dir), CliReporter(c))
    if c.json:
        c.out(json.dumps({**cal.to_json(), "written": str(path)}, indent=2, sort_keys=True))
        return 0
    t = cal.table
    c.out(f"{cal.target_id}: [perf.ops.{cal.runtime}] fitted on {cal.board} ({cal.unit})")
    c.out("  " + ", ".join(f"{k} {t[k]:g}" for k in cal.fitted))
    if cal.kept:
        c.out(f"  kept from the profile (no signal in the probes): {', '.join(cal.kept)}")
    c.out(f"  {'probe':<22} {'measured':>12} {'predicted':>12} {'residual':>9}")
    for r in cal.probes:
        c.out(f"  {r.name:<22} {r.measured_cycles:>12.0f} {r.predicted_cycles:>12.0f} {r.relative * 100:>8.1f}%")
    worst = sorted(cal.ops, key=lambda r: -abs(r.relative))[:3]
    if worst and c.verbose:
        c.out("  worst ops: " + "; ".join(f"{r.name} {r.relative * 100:+.0f}%" for r in worst))
    c.out(f"max probe residual {cal.max_residual * 100:.1f}% over {len(cal.probes)} probes "
          f"({len(cal.ops)} op timings)")
    c.out(f"wrote {path}")
    return 0
