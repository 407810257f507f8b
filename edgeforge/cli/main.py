"""``edgeforge`` entry point: argument parsing, one place mapping errors to exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from edgeforge import __version__
from edgeforge.cli import calibrate as calibrate_cli
from edgeforge.cli import doctor as doctor_cli
from edgeforge.cli.console import CliReporter, Console
from edgeforge.errors import EXIT_CODE_TABLE, EdgeforgeError, ExitCode, UsageError
from edgeforge.runtimes import Runtime

EPILOG = "exit codes:\n" + "\n".join(f"  {int(code):>3}  {text}" for code, text in EXIT_CODE_TABLE)

BUILD_EXAMPLES = """examples:
  edgeforge build kws.tflite --target cortex-m4 --out build/m4
  edgeforge build model.keras --target esp32 --data calib.npz --val val.npz --ram-budget 96K
  edgeforge build kws.tflite --target cortex-m4 --runtime native --latency-budget-ms 50 --search always
  edgeforge build model.keras --target rpi4 --quantization float16 --labels labels.txt

"""


class _Parser(argparse.ArgumentParser):
    """argparse with edgeforge's error path: a usage error is a UsageError (one ``error:`` line and a ``hint:``,
    JSON under --json, exit 2), never argparse's own usage dump; option prefixes are not guessed
    (``--flash-bud`` is an error, not ``--flash-budget``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", f"`{self.prog} --help` lists the options")


def _checked(kind: Callable[[str], Any], test: Callable[[Any], bool], want: str) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` that must pass ``test`` (and be finite, for floats)."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except (ValueError, UsageError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {want}") from None
        if isinstance(value, float) and not math.isfinite(value) or not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {want}")
        return value

    convert.__name__ = want
    return convert


def _size(text: str) -> int:
    from edgeforge.budget import parse_bytes

    return parse_bytes(text)


SIZE = _checked(_size, lambda v: v >= 1, "a size of at least 1 byte (e.g. 65536, 64K, 1M, 96kB)")
POSITIVE = _checked(float, lambda v: v > 0, "a positive number")
FINITE = _checked(float, lambda v: True, "a finite number")
FRACTION = _checked(float, lambda v: 0 <= v <= 1, "a fraction between 0 and 1")


def _at_least(low: int) -> Callable[[str], int]:
    return _checked(int, lambda v: v >= low, f"an integer >= {low}")


def _common(json_flag: bool = True) -> argparse.ArgumentParser:
    p = _Parser(add_help=False)
    g = p.add_argument_group("output")
    if json_flag:
        g.add_argument("--json", "--json-output", dest="json", action="store_true",
                       help="print one JSON document on stdout")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more detail on stderr (-vv: tracebacks)")
    g.add_argument("-q", "--quiet", action="store_true", help="errors only on stderr")
    g.add_argument("--no-color", action="store_true", help="no ANSI colour (NO_COLOR is honoured too)")
    g.add_argument("--targets-dir", type=Path, action="append", default=[], metavar="DIR",
                   help="extra folder of target profiles (highest precedence)")
    return p


def _parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="edgeforge", description="Compress a trained model to fit a board and emit what the board runs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"edgeforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("targets", parents=[common], help="list target profiles, or show one",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    t.add_argument("id", nargs="?", help="target id or alias (for show)")

    a = sub.add_parser("analyze", parents=[common], help="per-layer cost, runtime support and budget fit",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("model", type=Path, help=".tflite, .keras, .h5 or SavedModel folder")
    a.add_argument("--target", "-t", help="target id or alias")
    _data_args(a, calibration_only=True)
    _trust_arg(a)

    b = sub.add_parser("build", parents=[common], help="compress, emit artifacts, check budgets",
                       description="Compress a model for a target, emit what the board runs and check the budgets.",
                       epilog=BUILD_EXAMPLES + EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("model", type=Path, help=".tflite, .keras, .h5 or SavedModel folder")
    g = b.add_argument_group("target and output")
    g.add_argument("--target", "-t", required=True, help="target id or alias (see `edgeforge targets`)")
    g.add_argument("--out", "-o", type=Path, help="output folder (default: build/<target>)")
    g.add_argument("--runtime", choices=["tflm", "native", "litert"],
                   help="runtime (default: the target's); native = ahead-of-time C, no interpreter")
    g.add_argument("--rounding", choices=["double", "single"], default="double",
                   help="native runtime arithmetic: TFLM's default double rounding, or TFLITE_SINGLE_ROUNDING")
    g.add_argument("--symbol", default="g_model", help="C symbol of the model array (default g_model)")
    g.add_argument("--emitter", choices=["espidf", "platformio"],
                   help="firmware project to write (default: the target's first; ESP32 chips: espidf)")
    g.add_argument("--templates-dir", type=Path, action="append", default=[], metavar="DIR",
                   help="folder of templates overriding the bundled ones")
    g = b.add_argument_group("data")
    _data_args(g, calibration_only=False)
    _trust_arg(g)
    g = b.add_argument_group("budgets (default: the target profile's)")
    g.add_argument("--flash-budget", type=SIZE, metavar="SIZE", help="model flash budget (e.g. 256K)")
    g.add_argument("--ram-budget", type=SIZE, metavar="SIZE", help="model RAM budget (e.g. 64K)")
    g.add_argument("--latency-budget-ms", type=POSITIVE, metavar="MS", help="latency budget in milliseconds")
    g.add_argument("--max-accuracy-drop", type=FRACTION, metavar="FRACTION",
                   help="accuracy budget (0.02 = two top-1 points)")
    g = b.add_argument_group("compression")
    g.add_argument("--quantization", choices=["int8", "float16", "dynamic-int8", "float32"],
                   help="compression scheme (default: the target's first)")
    g.add_argument("--search", choices=["auto", "always", "never"], default="auto",
                   help="compression search over per-layer int4/int8 and pruning: auto = when the int8 model "
                        "misses the flash budget (or, native runtime, the latency budget); writes report.html/.json")
    g.add_argument("--recipe", type=Path, metavar="TOML",
                   help="apply a recipe (e.g. the recipe.toml of an earlier search) instead of searching")
    g.add_argument("--train", type=Path, metavar="DATA",
                   help="labelled training data: fine-tune the best pruned/int4 candidates (Keras models)")
    g.add_argument("--epochs", type=_at_least(1), default=5, metavar="N",
                   help="fine-tuning epochs with --train (default 5)")
    g.add_argument("--distill", choices=("auto", "always", "never"), default="auto",
                   help="train smaller students of the source (Keras, SavedModel, float .tflite) against its "
                        "outputs: auto when nothing post-training fits and --data is given (default auto)")
    g.add_argument("--distill-minutes", type=POSITIVE, default=3.0, metavar="M",
                   help="wall-time budget of distillation, all students together (default 3)")
    g = b.add_argument_group("measuring on a board")
    g.add_argument("--measure", action="store_true",
                   help="with --board: flash the best candidates and decide on measured latency")
    g.add_argument("--board", help="board for --measure (see `edgeforge bench --help`)")
    g.add_argument("--port", help="serial port or URL of the --board")
    g = b.add_argument_group("application bundles (Raspberry Pi, Android)")
    g.add_argument("--labels", type=Path, help="labels.txt (one class per line) for bundles")
    g.add_argument("--input-mean", type=FINITE, metavar="MEAN", help="normalization mean recorded for bundles")
    g.add_argument("--input-std", type=POSITIVE, metavar="STD", help="normalization std recorded for bundles (> 0)")
    r = sub.add_parser("run", parents=[common], help="run a build on this machine (native, TFLM or LiteRT)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("build_dir", type=Path, help="the --out folder of `edgeforge build`")
    r.add_argument("--input", "-i", type=Path, required=True,
                   help="inputs: .npy, .npz (x) or a folder of .bin, in the model's input dtype (a batch)")
    r.add_argument("--data-quant", metavar="SCALE,ZERO_POINT",
                   help="8-bit input data means SCALE*(q-ZERO_POINT) (default: what the build recorded, else the "
                        "model input's quantization); converted to the model input's quantization")
    r.add_argument("--output", "-o", type=Path, default=None,
                   help="where to write the outputs as .npy (default BUILD_DIR/outputs.npy, not the working "
                        "directory)")
    f = sub.add_parser("flash", parents=[common], help="build the bench firmware and load it onto a board",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("build_dir", type=Path)
    g = f.add_mutually_exclusive_group()
    g.add_argument("--board", help="emulated board: host-sim or one of `edgeforge boards`")
    g.add_argument("--port", help="a real board's serial port (e.g. /dev/ttyACM0) for PlatformIO/esptool uploads")
    f.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    f.add_argument("--tflm-src", type=Path, metavar="DIR", help=TFLM_SRC_HELP)
    f.add_argument("--tflm-kernels", choices=("reference", "cmsis_nn"),
                   help="TFLM kernel set of a --runtime tflm image (default: the target profile's)")

    bn = sub.add_parser("bench", parents=[common], help="benchmark a build on a board over serial",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    bn.add_argument("build_dir", type=Path)
    g = bn.add_mutually_exclusive_group(required=True)
    g.add_argument("--board", help="host-sim, an emulated board (`edgeforge boards`), pi-local, or a board of "
                                   "edgeforge-rig.toml")
    g.add_argument("--port", help="serial URL: /dev/ttyACM0, socket://host:port, rfc2217://host:port, or "
                                  "ssh://user@host for a Raspberry Pi bundle")
    bn.add_argument("--runs", type=_at_least(1), default=10, help="timed inferences per input (default 10)")
    bn.add_argument("--warmup", type=_at_least(0), default=1, help="untimed inferences first (default 1)")
    bn.add_argument("--input", type=Path, help="inputs (.npy/.npz/.bin folder); default: seeded random inputs")
    bn.add_argument("--count", type=_at_least(1), default=5, help="how many inputs to bench (default 5)")
    bn.add_argument("--data-quant", metavar="SCALE,ZERO_POINT",
                    help="8-bit --input data means SCALE*(q-ZERO_POINT) (default: what the build recorded)")
    bn.add_argument("--baud", type=_at_least(1), help="serial speed (default: the target profile's)")
    bn.add_argument("--plain-dut", action="store_true",
                    help="the board runs a plain MLPerf Tiny DUT firmware: bench it without the identity check "
                         "and without CRC-checked figures (default: refuse a board that does not prove it runs "
                         "this build's model, exit 4)")
    bn.add_argument("--tflm-src", type=Path, metavar="DIR", help=TFLM_SRC_HELP)
    sub.add_parser("boards", parents=[common], help="list the emulated boards and the profiles each stands in for",
                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    calibrate_cli.add_parser(sub, common, EPILOG)
    doctor_cli.add_parser(sub, common, EPILOG)
    return parser


TFLM_SRC_HELP = ("TensorFlow Lite Micro sources for --runtime tflm builds (default: $EDGEFORGE_TFLM_SRC, the build's "
                 "PlatformIO library, then ../shared/third_party/tflite-micro)")


def _data_args(p: Any, calibration_only: bool) -> None:
    p.add_argument("--data", type=Path, metavar="CALIB",
                   help="calibration data: .npz (x, optional y), .npy, or folder of .bin (+ y_labels.csv)")
    if not calibration_only:
        p.add_argument("--val", type=Path, metavar="VAL", help="validation data, same formats as --data")
        p.add_argument("--calib-samples", type=_at_least(1), default=200, metavar="N",
                       help="use the first N samples of --data for calibration (default 200)")
    p.add_argument("--data-quant", metavar="SCALE,ZERO_POINT",
                   help="the data holds int8 values q meaning SCALE*(q-ZERO_POINT) (e.g. 0.584703,83)")


def _trust_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-model-code", action="store_true",
                   help="let Keras run Python stored in the model file (Lambda/custom layers); only for files "
                        "you trust: by default such files are refused")


def _data_quant(text: str | None) -> Any:
    if text is None:
        return None
    from edgeforge.data import InputQuant

    try:
        scale, zp = text.split(",")
        quant = InputQuant(float(scale), int(zp))
    except ValueError:
        raise UsageError(f"cannot read --data-quant {text!r}", "write SCALE,ZERO_POINT, e.g. 0.584703,83") from None
    if not (math.isfinite(quant.scale) and quant.scale > 0) or not -128 <= quant.zero_point <= 127:
        raise UsageError(f"--data-quant {text!r}: the scale must be a positive finite number and the zero point an "
                         "int8 value (-128..127)", "write SCALE,ZERO_POINT, e.g. 0.584703,83")
    return quant


def _check_targets_dirs(args: argparse.Namespace) -> None:
    for folder in getattr(args, "targets_dir", []):
        if not folder.is_dir():
            raise UsageError(f"--targets-dir {folder} is not a folder",
                             "name a folder of target profiles (*.toml), or drop the option")


def _registry(args: argparse.Namespace) -> Any:
    from edgeforge.target import load_registry

    return load_registry(args.targets_dir)


def cmd_targets(args: argparse.Namespace, c: Console) -> int:
    reg = _registry(args)
    if args.action == "show" or args.id:
        if not args.id:
            raise UsageError("`targets show` needs a target id", "e.g. edgeforge targets show esp32")
        t = reg.get(args.id)
        if c.json:
            c.out(json.dumps(t.to_json(), indent=2, sort_keys=True))
        else:
            from edgeforge.cli.render import target_details

            c.out("\n".join(target_details(t)))
        return 0
    targets = reg.all()
    if c.json:
        c.out(json.dumps({"targets": [t.to_json() for t in targets],
                          "search_path": [str(f) for f in reg.folders]}, indent=2, sort_keys=True))
    else:
        from edgeforge.cli.render import target_row

        c.out(f"{'id':<14} {'kind':<7} {'cpu':<22} {'clock':>10}  {'flash':>16} {'RAM':>14}  {'runtime':<7} aliases")
        for t in targets:
            c.out(target_row(t))
    return 0


def cmd_analyze(args: argparse.Namespace, c: Console) -> int:
    from edgeforge.build import analyze, verdicts
    from edgeforge.cli.render import analysis_json, layers_table, verdict_lines

    target = _registry(args).get(args.target) if args.target else None
    prepared, a = analyze(args.model, target, args.data, _data_quant(args.data_quant), CliReporter(c),
                          args.trust_model_code)
    checks = verdicts(a, target.budget, None) if target else ()
    if c.json:
        doc = analysis_json(a, target, checks)
        doc["model"] = str(args.model)
        doc["analysed_as"] = None if prepared is None else {"scheme": prepared.scheme,
                                                             "calibration": prepared.calibration}
        c.out(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    c.out(f"{args.model}" + (f" for {target.id} ({target.name}), runtime {a.runtime}" if target else ""))
    if prepared is not None:
        c.out(f"analysed as: {prepared.scheme} ({prepared.calibration})")
    c.out("")
    c.out("\n".join(layers_table(a)))
    c.out("")
    c.out(f"model {a.model_bytes} B, weights {a.weight_bytes} B, activation lower bound {a.activation_peak_bytes} B")
    if a.unsupported_ops:
        c.out(c.style(f"NOT SUPPORTED by {a.runtime}: {', '.join(a.unsupported_ops)}", "1;31"))
    if a.arena:
        c.out(f"TFLM arena: {a.arena.total} B measured, {a.arena.emitted} B with a "
              f"{a.arena.margin * 100:.0f}% margin (head {a.arena.head} B, tail {a.arena.tail} B)")
    if a.native:
        n = a.native
        c.out(f"native runtime: {n['unavailable']}" if "unavailable" in n else
              f"native runtime: arena {n['arena_bytes']} B planned (live-set lower bound {n['lower_bound_bytes']} B, "
              f"TFLM-style plan {n['tflm_like_head_bytes']} B), constants {n['const_bytes']} B in flash")
    if checks:
        c.out("")
        c.out("\n".join(verdict_lines(c, checks)))
    for note in a.notes:
        c.out(f"note: {note}")
    return 0


def cmd_build(args: argparse.Namespace, c: Console) -> int:
    from edgeforge.budget import with_overrides
    from edgeforge.build import BuildOptions, build
    from edgeforge.compress.driver import SearchOptions
    from edgeforge.cli.render import (faster_hint, human_bytes, ms_text, native_lines, search_lines,
                                      verdict_lines)

    target = _registry(args).get(args.target)
    budget = with_overrides(target.budget, None, None, args.latency_budget_ms, args.max_accuracy_drop)
    if args.flash_budget is not None:  # sizes arrive parsed and checked (SIZE)
        budget = dataclasses.replace(budget, model_flash_bytes=args.flash_budget)
    if args.ram_budget is not None:
        budget = dataclasses.replace(budget, model_ram_bytes=args.ram_budget)
    out = args.out or Path("build") / target.id
    opts = BuildOptions(out_dir=out, data=args.data, val=args.val, data_quant=_data_quant(args.data_quant),
                        calib_samples=args.calib_samples, quantization=args.quantization, runtime=args.runtime,
                        budget=budget, labels=args.labels, symbol=args.symbol, input_mean=args.input_mean,
                        input_std=args.input_std, template_dirs=tuple(args.templates_dir),
                        single_rounding=args.rounding == "single", emitter=args.emitter,
                        search=SearchOptions(args.search, args.recipe, args.board if args.measure else None,
                                             args.port, args.train, args.epochs, args.distill,
                                             args.distill_minutes))
    if args.measure and not args.board:
        raise UsageError("--measure needs --board", "e.g. --measure --board qemu-cortex-m4")
    if args.rounding == "single" and not Runtime(args.runtime or target.runtime).selectable_rounding:
        raise UsageError("--rounding single applies to the native runtime", "add --runtime native")
    result = build(args.model, target, opts, CliReporter(c))
    m = result.manifest
    code = ExitCode.OK if result.fits else ExitCode.BUDGET
    if c.json:
        c.out(json.dumps({**m.to_json(), "out_dir": str(out), "exit_code": int(code)}, indent=2, sort_keys=True))
        return code
    c.out(f"{args.model} -> {target.id} ({target.name}), runtime {m.target.runtime}")
    c.out(f"model:     {m.compression.description}, {m.model.bytes} B, {len(m.model.ops)} op kinds, "
          f"{m.model.macs} MACs")
    c.out(f"calibration: {m.compression.calibration}")
    if result.analysis.arena and m.native is None:  # a native build has its own arena (below)
        ar = result.analysis.arena
        c.out(f"arena:     {ar.total} B measured with tflite-micro, kTensorArenaSize = {ar.emitted} B "
              f"(+{ar.margin * 100:.0f}%)")
    acc = result.accuracy
    if acc is not None:
        parts = []
        if acc.top1 is not None:
            parts.append(f"top-1 {acc.top1 * 100:.2f}%")
        if acc.float_top1 is not None:
            parts.append(f"float {acc.float_top1 * 100:.2f}%")
        if acc.sqnr_db is not None:
            parts.append(f"output SQNR {acc.sqnr_db:.1f} dB vs float")
        c.out(f"accuracy:  {', '.join(parts) or 'n/a'} on {acc.samples} samples ({acc.runtime} on the host)")
    if result.search is not None:
        c.out("\n".join(search_lines(result.search, out)))
    c.out("")
    c.out("\n".join(verdict_lines(c, result.verdicts)))
    c.out("")
    c.out(f"artifacts: {out}/ — " + ", ".join(sorted({a.split('/')[0] for a in m.artifacts} | {'manifest.json'})))
    if m.native is not None:
        c.out("\n".join(native_lines(m)))
    if result.link_error:
        c.err(f"does not fit {target.id}: the image fails to link: {result.link_error}")
    if result.fits:
        c.out(c.style("fits every budget", "32"))
    else:
        for v in result.missed:
            unit = human_bytes(v.excess or 0) if v.budget.endswith("bytes") else (
                ms_text(v.excess or 0) if v.budget == "latency_ms" else f"{(v.excess or 0) * 100:.2f} pts")
            c.err(f"budget missed: {v.budget} by {unit} ({v.value} > {v.limit})")
        if result.search is not None and result.search.get("closest"):
            cl = result.search["closest"]
            c.err(f"nothing fits: closest candidate {cl['id']} ({result.search['recipe']}) misses "
                  + ", ".join(f"{k} by {v}" for k, v in cl["misses"].items()) + f"; see {out}/report.html")
        held = (f"this build ({result.search['layers']})" if result.search is not None and result.search.get("layers")
                else f"this {m.compression.scheme} build")  # a held search build is int4/pruned, not int8
        c.err(f"closest result: {held} in {out}/ "
              f"(flash {m.estimates.flash_bytes} B, RAM {m.estimates.ram_bytes} B, "
              f"latency {m.estimates.latency_ms} ms)")
        c.err("hint: " + (faster_hint(m, target.id) + "; or " if m.latency_alternatives else "")
              + "raise the budget with --flash-budget/--ram-budget/--latency-budget-ms/--max-accuracy-drop, "
              "or choose a larger target")
    return code


def cmd_run(args: argparse.Namespace, c: Console) -> int:
    import numpy as np

    from edgeforge.run import run_build

    result = run_build(args.build_dir, args.input, _data_quant(args.data_quant))
    if args.output is None:
        args.output = args.build_dir / "outputs.npy"
    try:
        np.save(args.output, result.outputs)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror}", "choose another --output") from None
    doc = {"output": str(args.output), "runtime": result.runtime, "samples": result.samples,
           "shape": list(result.outputs.shape), "dtype": str(result.outputs.dtype), "inputs": result.data_note}
    if c.json:
        c.out(json.dumps(doc, indent=2, sort_keys=True))
    else:
        c.out(f"ran {result.samples} input(s) with the {result.runtime} runtime on this machine -> {args.output} "
              f"({result.outputs.dtype} {list(result.outputs.shape)})")
        c.out(f"inputs:    {result.data_note}")
    return 0


def cmd_flash(args: argparse.Namespace, c: Console) -> int:
    from edgeforge.bench.flash import flash_build

    result = flash_build(args.build_dir, args.board, args.port, args.dry_run, args.tflm_src, args.tflm_kernels)
    if c.json:
        c.out(json.dumps(result, indent=2, sort_keys=True))
    else:
        for cmd in result["commands"]:
            c.out(("would run: " if args.dry_run else "ran: ") + shlex.join(cmd))  # quoted: copy-paste safe
        c.out(result["summary"])
    return 0


def cmd_bench(args: argparse.Namespace, c: Console) -> int:
    from edgeforge.bench.run import bench_build

    if args.runs < 1 or args.warmup < 0 or args.count < 1:
        raise UsageError("--runs and --count must be >= 1, --warmup >= 0", "e.g. --runs 10 --warmup 1")
    from edgeforge.device.boards import BOARDS

    if args.board and args.board not in BOARDS:
        # a board of the rig file (edgeforge-rig.toml): its port, locked so parallel jobs never share it
        from edgeforge.device.rig import load_rig

        rig = load_rig()
        with rig.lock(args.board) as rb:
            kw = rb.bench_args()
            outcome = bench_build(args.build_dir, kw["board"], kw["port"], args.runs, args.warmup, args.input,
                                  args.count, CliReporter(c), args.baud or kw["baud"], _data_quant(args.data_quant),
                                  args.plain_dut, args.tflm_src)
    else:
        outcome = bench_build(args.build_dir, args.board, args.port, args.runs, args.warmup, args.input,
                              args.count, CliReporter(c), args.baud, _data_quant(args.data_quant), args.plain_dut,
                              args.tflm_src)
    d = outcome.doc
    code = ExitCode.OK
    if not outcome.outputs_match:
        code = ExitCode.DEVICE
    elif not outcome.fits:
        code = ExitCode.BUDGET
    if c.json:
        c.out(json.dumps({**d, "exit_code": int(code)}, indent=2, sort_keys=True))
    else:
        lat = d["latency"]
        c.out(f"{d['board']}: {d['inputs']} input(s) x {d['runs']} runs ({d['warmup']} warm-up), "
              f"{d['retries']} retried exchange(s)")
        if lat["emulated"]:
            c.out(f"latency:   emulated: {lat['instructions_median']} instructions per inference "
                  f"({lat['instructions_per_mac']} per MAC) — not a real-time figure")
        else:
            c.out(f"latency:   median {lat['median_ms']} ms, p90 {lat['p90_ms']} ms")
        if d["memory"]:
            c.out("memory:    " + ", ".join(f"{k} {v} B" for k, v in d["memory"].items() if v >= 0))
        o = d["outputs"]
        c.out("outputs:   " + ("byte-identical to the host reference" if o["byte_identical"] else
                                f"DIFFER from the host reference on inputs {o['mismatches']}"
                                + (f"; first divergent op {o['first_divergence']['op']}" if o["first_divergence"]
                                   else "")))
        for chk in d["budgets"]:
            c.out(f"budget {chk['budget']}: {chk['value']} of {chk['limit']} " + ("ok" if chk["fits"] else "OVER"))
        c.out(f"wrote {args.build_dir / 'bench.json'}")
    return code


def cmd_boards(args: argparse.Namespace, c: Console) -> int:
    from edgeforge.bench.firmware import describe
    from edgeforge.device.boards import EMULATED

    rows = [describe(b) for b in EMULATED]
    if c.json:
        c.out(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    c.out(f"{'board':<20} {'emulator':<34} {'stands in for':<16} {'TFLM kernels':<20} here")
    for r in rows:
        c.out(f"{r['name']:<20} {r['machine']:<34} {', '.join(r['stands_in_for']):<16} "
              f"{', '.join(r['tflm_kernels']):<20} {'yes' if r['available'] else 'no (make toolchain)'}")
    return 0


COMMANDS = {"boards": cmd_boards, "targets": cmd_targets, "analyze": cmd_analyze, "build": cmd_build, "run": cmd_run,
            "flash": cmd_flash, "bench": cmd_bench, "calibrate": calibrate_cli.cmd_calibrate,
            "doctor": doctor_cli.cmd_doctor}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:  # argparse's usage errors, in edgeforge's format (and JSON under --json)
        words = argv[:argv.index("--")] if "--" in argv else argv
        c = Console(json=bool({"--json", "--json-output"} & set(words)), no_color="--no-color" in words)
        command = next((w for w in words if w in COMMANDS), None)
        hint = exc.hint.replace("`edgeforge --help`", f"`edgeforge {command} --help`") if command else exc.hint
        return _report_error(c, exc.message, hint, exc.exit_code)
    c = Console(json=getattr(args, "json", False), verbose=args.verbose, quiet=args.quiet, no_color=args.no_color)
    if not args.verbose:
        warnings.simplefilter("ignore")  # third-party UserWarnings are noise to a user; -v shows them
    try:
        _check_targets_dirs(args)
        return int(COMMANDS[args.command](args, c))
    except EdgeforgeError as exc:
        return _report_error(c, exc.message, exc.hint, exc.exit_code)
    except KeyboardInterrupt:
        c.err("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as exc:  # a bug: keep the traceback, show one line
        fd, path = tempfile.mkstemp(prefix="edgeforge-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        if args.verbose >= 2:
            traceback.print_exc()
        return _report_error(c, f"internal error: {type(exc).__name__}: {str(exc)[:200]}",
                             f"this is a bug in edgeforge; the traceback is in {path}", ExitCode.INTERNAL)


def _report_error(c: Console, message: str, hint: str, code: int) -> int:
    if c.json:
        c.out(json.dumps({"error": {"message": message, "hint": hint, "exit_code": int(code)}}, indent=2))
    c.err(c.style("error: ", "1;31") + message)
    if hint:
        c.err("hint: " + hint)
    return int(code)


def entry() -> None:
    """Console-script entry point."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout at exit; point it at devnull so a closed pipe is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
