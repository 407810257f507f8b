"""``edgeforge doctor``: argument parsing and rendering (the checks are in edgeforge/doctor.py)."""

from __future__ import annotations

import argparse
import json

from edgeforge.cli.console import Console

HELP = "report which toolchains and SDKs are present, per target"


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser, epilog: str) -> None:
    p = sub.add_parser("doctor", parents=[common], help=HELP, description=HELP + ".", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", "-t", action="append", default=[], help="only these targets (repeatable)")


def cmd_doctor(args: argparse.Namespace, c: Console) -> int:
    from edgeforge.doctor import report
    from edgeforge.target import load_registry

    reg = load_registry(args.targets_dir)
    targets = [reg.get(t) for t in args.target] if args.target else reg.all()
    doc = report(targets)
    if c.json:
        c.out(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    c.out(f"{'tool':<20} {'status':<8} where / version")
    for name, t in doc["tools"].items():
        where = " ".join(x for x in (t["location"], t["version"]) if x)
        status = c.style("ok", "32") if t["present"] else c.style("missing", "33")
        c.out(f"{name:<20} {status:<8} {where if t['present'] else 'install: ' + t['install']}")
    c.out("")
    c.out(f"{'target':<15} {'ready':<6} missing")
    for tid, row in doc["targets"].items():
        c.out(f"{tid:<15} {'yes' if not row['missing'] else 'no':<6} {', '.join(row['missing']) or '-'}")
    return 0
