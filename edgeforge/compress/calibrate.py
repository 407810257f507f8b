"""``edgeforge calibrate``: time the probe models (edgeforge/compress/probes.py) op by op on a board, fit the
target's ``[perf.ops.<runtime>]`` coefficients by non-negative least squares, and write them as a user-level
profile override (``.edgeforge/targets/<id>.toml``, a profile that ``extends`` the same id).

The fit minimises residuals (weighted by 1/sqrt(cycles)) over every op timing of every probe (the bench firmware's per-op
profiler, ``ef-ops``); each probe's whole-invoke latency is then predicted from the fitted table and compared
with its measurement, which is the residual reported. Coefficients without any signal in the probes (say,
``int4_unpack_weight`` on the native runtime, which reads int4 weights in place) keep the profile's value.
"""

from __future__ import annotations

import re
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeforge.cost.latency import FEATURES, MAC_KINDS, LatencyModel, OpTable, observed_choices
from edgeforge.compress.measure import BoardArgs, instructions_per_tick, resolve_board
from edgeforge.compress.probes import QUICK, probe_model, probe_set
from edgeforge.device.transport import DeviceError
from edgeforge.errors import TargetError, UsageError
from edgeforge.events import NullReporter, Reporter
from edgeforge.runtimes import Runtime

#: Coefficients a runtime's kernels cannot show: the native runtime reads int4 weights in place (no unpacking
#: pass) and TFLM/LiteRT multiply by zero weights like any other.
NOT_APPLICABLE = {"native": ("int4_unpack_weight",), "tflm": ("sparse_scan",), "litert": ("sparse_scan",)}
#: Relative residuals are computed against max(measured, this many cycles): an op of a few dozen cycles on
#: a timer that ticks every 40 would otherwise weigh as much as the largest convolution.
RESIDUAL_FLOOR_CYCLES = 400.0
SIGNIFICANT = 4
MIN_MAC_COEFFICIENT = 1e-3  # the schema wants MAC coefficients > 0


@dataclass(frozen=True)
class OpTiming:
    probe: str
    ops: tuple[int, ...]  # model op indices this timing covers (a fused call covers two)
    name: str  # as the firmware names it
    cycles: float
    features: tuple[float, ...]


@dataclass(frozen=True)
class ProbeTiming:
    probe: str
    total_cycles: float  # whole invoke
    ops: tuple[OpTiming, ...]  # empty when the firmware has no per-op profiler
    features: tuple[float, ...]  # summed over the model's ops


@dataclass(frozen=True)
class Residual:
    name: str
    measured_cycles: float
    predicted_cycles: float
    floor: float = 1e-9  # relative to max(measured, floor)

    @property
    def relative(self) -> float:
        return (self.predicted_cycles - self.measured_cycles) / max(self.measured_cycles, self.floor)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "measured_cycles": round(self.measured_cycles, 1),
                "predicted_cycles": round(self.predicted_cycles, 1), "residual": round(self.relative, 5)}


@dataclass(frozen=True)
class Calibration:
    target_id: str
    runtime: str
    board: str
    emulated: bool
    table: OpTable
    fitted: tuple[str, ...]  # coefficients the probes determined
    kept: tuple[str, ...]  # coefficients carried over from the profile (no signal in the probes)
    probes: tuple[Residual, ...]  # whole-invoke residual per probe
    ops: tuple[Residual, ...]  # per-op residuals (name = "probe#k OP")
    unit: str
    notes: tuple[str, ...] = field(default=())
    timings: tuple[ProbeTiming, ...] = field(default=(), repr=False, compare=False)  # what was fitted

    @property
    def max_residual(self) -> float:
        return max((abs(r.relative) for r in self.probes), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target_id, "runtime": self.runtime, "board": self.board, "emulated": self.emulated,
                "table": self.table.to_data(), "fitted": list(self.fitted), "kept_from_profile": list(self.kept),
                "max_residual": round(self.max_residual, 5), "probes": [r.to_json() for r in self.probes],
                "ops": [r.to_json() for r in self.ops], "unit": self.unit, "notes": list(self.notes)}

    def override_toml(self) -> str:
        """The user-level override: deterministic (no timestamps, fixed rounding and order)."""
        lines = [f"# Latency cost table of {self.target_id} for the {self.runtime} runtime, fitted by",
                 f"#   edgeforge calibrate --board {self.board} --target {self.target_id} --runtime {self.runtime}",
                 f"# Unit: {self.unit}.",
                 (f"# Fit: non-negative least squares on {len(self.ops)} op timings of {len(self.probes)} probe "
                  "models (rows weighted by 1/sqrt(cycles))."),
                 f"# {'probe':<22} {'measured':>12} {'predicted':>12} {'residual':>9}"]
        for r in self.probes:
            lines.append(f"# {r.name:<22} {r.measured_cycles:>12.0f} {r.predicted_cycles:>12.0f} "
                         f"{r.relative * 100:>8.2f}%")
        if self.kept:
            lines.append(f"# Not measured by the probes (kept from the profile): {', '.join(self.kept)}")
        lines += [f"# {n}" for n in self.notes]
        lines += ["", f'id = "{self.target_id}"', f'extends = "{self.target_id}"', "", _table_toml(self.runtime,
                                                                                                    self.table)]
        return "\n".join(lines)


def _fmt(x: float) -> str:
    return repr(float(f"{x:.{SIGNIFICANT}g}"))


def _table_toml(runtime: str, table: OpTable) -> str:
    out = [f"[perf.ops.{runtime}]"]
    for k in FEATURES:
        out.append(f"{k} = {_fmt(table[k])}")
    out.append(f"source = {_toml_string(table.source)}")
    return "\n".join(out) + "\n"


def _toml_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------------------------------ measuring


def _call_rows(info: Any, model: bytes) -> list[tuple[str, tuple[int, ...]]]:
    """The native runtime's calls in execution order: (name, model op indices covered)."""
    from edgeforge.native.emit import prepare_native

    nm = prepare_native(info, model)
    rows = []
    for ci in nm.plan.order:
        call = nm.calls[ci]
        covered = (call.op_index,)
        if "+" in call.op:  # a convolution fused into the ADD that reads it: inputs are (skip, *conv inputs)
            add = info.ops[call.op_index]
            conv_out = [t for t in add.inputs if t != call.inputs[0]]
            producers = [op.index for op in info.ops if set(op.outputs) & set(conv_out)]
            covered = (*producers[:1], call.op_index)
        rows.append((call.op, covered))
    return rows


def measure_probe(name: str, target: Any, runtime: str, board: BoardArgs, work: Path,
                  reporter: Reporter) -> ProbeTiming:
    return measure_model(name, probe_model(name), target, runtime, board, work, reporter)


def measure_model(name: str, model: bytes, target: Any, runtime: str, board: BoardArgs, work: Path,
                  reporter: Reporter) -> ProbeTiming:
    """Build int8 ``model`` for ``target``, bench it once on ``board`` and return its op and invoke timings
    with the cost model's features (any model works: the probes, or a user's own layers)."""
    from edgeforge.bench.run import bench_build
    from edgeforge.model.tflite import read_tflite
    from edgeforge.stages import build_int8

    info = read_tflite(model, f"probe {name}")
    out = work / name
    reporter.detail(f"probe {name}: building for {target.id} ({runtime})")
    build_int8(model, name, target, runtime, out, reporter)
    runs = 1 if board.emulated else 5
    outcome = bench_build(out, board.board, board.port, runs, 0 if board.emulated else 1, None, 1, None, board.baud)
    if not outcome.outputs_match:
        raise DeviceError(f"probe {name}: the board's outputs differ from the host reference",
                          f"see {out / 'bench.json'}; timings from a wrong result are not used")
    doc = outcome.doc
    clock_mhz = float(target.hardware["clock_mhz"])
    if doc["latency"]["emulated"]:
        total = float(doc["latency"]["instructions_median"])
        per_tick = instructions_per_tick(board.board)
        op_cycles = [float(r["cycles"]) * per_tick if per_tick else float(r["us"]) * 1000.0 for r in doc["ops"]]
        if op_cycles and not 0.8 < sum(op_cycles) / max(total, 1.0) < 1.25:
            raise DeviceError(f"probe {name}: per-op timings ({sum(op_cycles):.0f}) do not add up to the invoke "
                              f"({total:.0f} instructions)", "the emulator's timer is not what edgeforge expects")
    else:
        total = float(doc["latency"]["median_ms"]) * clock_mhz * 1e3
        op_cycles = [float(r["cycles"]) if r["cycles"] > 0 else float(r["us"]) * clock_mhz for r in doc["ops"]]
    choices = observed_choices(info, model)
    base = LatencyModel.for_target(target, runtime)
    cost = base.with_table(base.table, base.basis).prepare(info)  # table semantics even on a fallback profile
    fm = cost.feature_matrix(choices)
    timings: list[OpTiming] = []
    if not doc["ops"]:
        calls = []
    elif runtime == "tflm":  # TFLM invokes the model's operators one by one, in order
        calls = [(op.op, (op.index,)) for op in info.ops]
    else:
        calls = _call_rows(info, model)
    names = [r["op"] for r in doc["ops"]]
    if calls and [c[0] for c in calls] == names:
        for (cname, covered), cyc in zip(calls, op_cycles):
            timings.append(OpTiming(name, covered, cname, cyc, tuple(float(v) for v in fm[list(covered)].sum(axis=0))))
    elif doc["ops"]:
        reporter.warning(f"probe {name}: the firmware's op list does not match the model's; "
                         "fitting its whole-invoke latency only")
    return ProbeTiming(name, total, tuple(timings), tuple(float(v) for v in fm.sum(axis=0)))


# -------------------------------------------------------------------------------------------------- fitting


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        from scipy.optimize import nnls

        return np.asarray(nnls(a, b, maxiter=50 * a.shape[1])[0])
    except ImportError:  # projected coordinate descent: enough for a handful of columns
        x = np.zeros(a.shape[1])
        ata, atb = a.T @ a, a.T @ b
        for _ in range(5000):
            for j in range(a.shape[1]):
                if ata[j, j] > 0:
                    x[j] = max(0.0, x[j] + (atb[j] - ata[j] @ x) / ata[j, j])
        return x


def fit(target: Any, runtime: str, board: str, emulated: bool, timings: Sequence[ProbeTiming]) -> Calibration:
    """Fit the op-kind coefficients to ``timings`` (pure: no device)."""
    if not timings:
        raise UsageError("nothing to fit: no probe was timed", "pass at least one probe")
    base = LatencyModel.for_target(target, runtime)
    rows = [t for p in timings for t in p.ops]
    if rows:
        a = np.array([r.features for r in rows])
        y = np.array([r.cycles for r in rows])
    else:  # no per-op profiler: whole invokes only
        a = np.array([p.features for p in timings])
        y = np.array([p.total_cycles for p in timings])
    skip = set(NOT_APPLICABLE.get(runtime, ()))
    cols = [j for j, k in enumerate(FEATURES) if k not in skip and np.any(a[:, j] > 0)]
    # rows weighted by 1/sqrt(cycles): between absolute least squares (the largest convolution decides
    # everything) and relative (a 40-cycle RESHAPE counts as much as it); whole-probe residuals come out best
    w = 1.0 / np.sqrt(np.maximum(y, RESIDUAL_FLOOR_CYCLES))
    x = _nnls(a[:, cols] * w[:, None], y * w)
    coef = list(base.table.coefficients) if base.table_from_profile else [0.0] * len(FEATURES)
    for j, v in zip(cols, x):
        coef[j] = float(v)
    notes = []
    for k in MAC_KINDS:
        j = FEATURES.index(k)
        if coef[j] < MIN_MAC_COEFFICIENT:
            notes.append(f"{k}: the fit gave {coef[j]:.3g}; set to {MIN_MAC_COEFFICIENT} (probes lack that op kind?)")
            coef[j] = MIN_MAC_COEFFICIENT
    coef = [float(_fmt(c)) for c in coef]
    fitted = tuple(FEATURES[j] for j in cols)
    kept = tuple(k for k in FEATURES if k not in fitted)
    c = np.array(coef)
    probes = tuple(Residual(p.probe, p.total_cycles, float(np.array(p.features) @ c)) for p in timings)
    ops = tuple(Residual(f"{r.probe}#{'+'.join(map(str, r.ops))} {r.name}", r.cycles, float(np.array(r.features) @ c),
                         RESIDUAL_FLOOR_CYCLES) for r in rows)
    worst = max((abs(r.relative) for r in probes), default=0.0)
    source = (f"calibrated with edgeforge calibrate on board {board}: {len(timings)} probes, "
              f"max residual {worst * 100:.1f}%")
    unit = (f"emulated instructions (QEMU -icount shift=0) counted as cycles at the profile's "
            f"{target.hardware['clock_mhz']} MHz" if emulated else
            f"cycles of the board's clock ({target.hardware['clock_mhz']} MHz in the profile)")
    from edgeforge.device.boards import emulated_board

    stand_in = emulated_board(board)
    if emulated and stand_in is not None and target.id not in stand_in.stands_in_for:
        notes.append(f"{board} stands in for {', '.join(stand_in.stands_in_for)}, not {target.id}: these are "
                     f"instruction counts of {stand_in.summary}, not this target's cycles")
    return Calibration(target.id, runtime, board, emulated, OpTable(tuple(coef), source), fitted, kept, probes, ops,
                       unit, tuple(notes), tuple(timings))


# -------------------------------------------------------------------------------------------------- writing


def default_override_path(target_id: str, cwd: Path | None = None) -> Path:
    from edgeforge.target.loader import PROJECT_DIR

    return (cwd or Path.cwd()) / PROJECT_DIR / f"{target_id}.toml"


_MARK = "# Latency cost table of "


def write_override(cal: Calibration, path: Path) -> Path:
    """Write (or update) the override. A file edgeforge calibrate wrote is replaced; a user's own override of
    the same target keeps everything but its ``[perf.ops.<runtime>]`` table, which is replaced."""
    text = cal.override_toml()
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        if not old.startswith(_MARK):
            try:
                data = tomllib.loads(old)
            except tomllib.TOMLDecodeError as exc:
                raise UsageError(f"cannot update {path}: it is not valid TOML ({exc})",
                                 "fix it, or write the table elsewhere with --out") from None
            if data.get("id") not in (None, cal.target_id):
                raise UsageError(f"{path} is the profile of {data.get('id')!r}, not {cal.target_id!r}",
                                 "choose another --out")
            kept = _drop_table(old, f"perf.ops.{cal.runtime}").rstrip("\n")
            notes = [ln for ln in text.splitlines() if ln.startswith("# ") and not ln.startswith(_MARK)]
            text = (f"{kept}\n\n# The table below was written by edgeforge calibrate (--board {cal.board}).\n"
                    + "\n".join(notes) + "\n" + _table_toml(cal.runtime, cal.table))
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # e.g. the user's file defines perf.ops inline
        raise UsageError(f"cannot merge the fitted table into {path}: {exc}",
                         "write it elsewhere with --out and copy the table by hand") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}", "choose another --out") from None
    return path


def _drop_table(text: str, table: str) -> str:
    """``text`` without the ``[table]`` section (up to the next table header) and the comment block right
    above its header."""
    out: list[str] = []
    skipping = False
    header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    for ln in text.splitlines():
        m = header.match(ln)
        if m:
            skipping = m.group(1).replace('"', "").replace(" ", "") == table
            if skipping:
                while out and out[-1].lstrip().startswith("#"):
                    out.pop()
        if not skipping:
            out.append(ln)
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------- the whole


def calibrate(target_name: str, board: str, runtime: str = "native", out: Path | None = None,
              probes: Sequence[str] | None = None, quick: bool = False, targets_dirs: Sequence[Path] = (),
              reporter: Reporter | None = None, work_dir: Path | None = None) -> tuple[Calibration, Path]:
    """Measure, fit, write; returns the calibration and the file written."""
    from edgeforge.target import load_registry

    reporter = reporter or NullReporter()
    target = load_registry(targets_dirs).get(target_name)
    if runtime not in (Runtime.NATIVE, Runtime.TFLM):
        raise UsageError(f"cannot calibrate runtime {runtime!r}", "use --runtime native or --runtime tflm")
    if not target.is_mcu:
        raise UsageError(f"{target.id} is not a microcontroller target",
                         "calibrate fits the MCU runtimes (native, tflm); phones and Pis keep the coarse litert table")
    if runtime not in target.runtimes:
        raise UsageError(f"target {target.id} does not offer runtime {runtime}",
                         f"choose one of: {', '.join(target.runtimes)}")
    names = list(probes or (QUICK if quick else [p.name for p in probe_set()]))
    try:
        probe_set(names)
    except KeyError as exc:
        raise UsageError(f"unknown probe {exc.args[0]!r}",
                         f"probes: {', '.join(p.name for p in probe_set())}") from None
    with resolve_board(board) as b:
        if b.board in ("host-sim", "pi-local"):
            raise UsageError(f"board {b.name} times this machine, not a microcontroller",
                             "calibrate on an emulated board (`edgeforge boards`: instruction counts) or a real one")
        if b.board is None:
            raise UsageError(f"board {b.name} is a real board: edgeforge cannot flash native builds onto it yet, "
                             "and calibrate needs one build per probe", "calibrate on qemu-cortex-m4, or bench the "
                             "probes by hand (edgeforge/compress/probes.py) and fit them with edgeforge.compress."
                             "calibrate.fit")
        timings = []
        with tempfile.TemporaryDirectory(prefix="edgeforge-calibrate-") as tmp:
            work = work_dir or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            for i, name in enumerate(names):
                reporter.stage(f"probe {name} on {b.name} ({i + 1}/{len(names)})")
                timings.append(measure_probe(name, target, runtime, b, work, reporter))
    reporter.stage("fitting")
    cal = fit(target, runtime, board, b.emulated, timings)
    for n in cal.notes:
        reporter.warning(n)
    path = write_override(cal, out or default_override_path(target.id))
    try:  # the file must load as a profile: through the project folder, or from --out's folder
        load_registry(list(targets_dirs) + ([path.parent] if out is not None else [])).get(target.id)
    except TargetError as exc:
        raise UsageError(f"the override {path} does not load: {exc.message}", exc.hint) from None
    return cal, path
