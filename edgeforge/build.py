"""The build pipeline, composed of the stages in ``edgeforge.stages``: load -> quantize -> [compression
search] -> plan/emit/compile the native runtime -> analyze (arena measured for TFLM) -> evaluate -> budget
verdicts -> emit -> write atomically with a manifest. Also ``analyze`` on its own."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeforge.analyze import Analysis, analyze_model
from edgeforge.budget import Verdict
from edgeforge.compress import stage
from edgeforge.data import Dataset, InputQuant, load_dataset, model_view, require_regular_file
from edgeforge.emit import mcu
from edgeforge.emit.project import for_emitter, project_emitter
from edgeforge.emit.symbol import model_symbol
from edgeforge.errors import DataError, UnsupportedOpError, UsageError
from edgeforge.evaluate import Accuracy, dequantize, evaluate, score
from edgeforge.events import NullReporter, Reporter
from edgeforge.manifest import Manifest
from edgeforge.model import convert as conv
from edgeforge.model.load import load_model
from edgeforge.model.tflite import read_tflite
from edgeforge.native.emit import prepare_native
from edgeforge.native.stage import NativeResult
from edgeforge.runtimes import Runtime
from edgeforge.stages import (BuildOptions, Prepared, analyze_prepared, check_supported, choose, emit, plan_native,
                              prepare, tflm_arena, verdicts, write_build)
from edgeforge.target.schema import Target

__all__ = ["BuildOptions", "BuildResult", "Prepared", "analyze", "build", "prepare", "verdicts"]


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    manifest: Manifest
    analysis: Analysis
    verdicts: tuple[Verdict, ...]
    accuracy: Accuracy | None
    warnings: tuple[str, ...] = field(default=())
    link_error: str | None = None  # the native image did not link into the board's memory

    @property
    def fits(self) -> bool:
        return self.manifest.fits  # the one verdict, the one written to manifest.json

    @property
    def search(self) -> dict[str, Any] | None:
        """What the compression search chose (the manifest's ``search`` section)."""
        return dict(self.manifest.search) if self.manifest.search is not None else None

    @property
    def missed(self) -> list[Verdict]:
        return self.manifest.missed


def analyze(model_path: Path, target: Target | None, data: Path | None = None,
            data_quant: InputQuant | None = None, reporter: Reporter | None = None,
            trust_model_code: bool = False) -> tuple[Prepared | None, Analysis]:
    """Analyse ``model_path`` as it would be built for ``target`` (as-is when no target is given)."""
    reporter = reporter or NullReporter()
    if target is None:
        source = load_model(model_path, trust_model_code)
        if source.info is None:
            reporter.stage("converting to float32 for analysis")
            graph = conv.TFGraph(source)
            try:
                model = conv.convert(source, "float32", None, graph)
            finally:
                graph.close()
            info = read_tflite(model)
        else:
            info = source.info
        return None, analyze_model(info, None, "litert", None)
    scheme, runtime = choose(target, None, None)
    prepared, _ = prepare(model_path, target, scheme, runtime, data, data_quant, 100, reporter, trust_model_code)
    arena = tflm_arena(prepared, reporter)
    analysis = analyze_model(prepared.info, target, runtime, arena)
    if "native" in target.runtimes:
        reporter.stage("planning the native runtime's arena")
        analysis = replace(analysis, native=_native_summary(prepared))
    return prepared, analysis


def _native_summary(prepared: Prepared) -> dict[str, Any]:
    try:
        nm = prepare_native(prepared.info, prepared.model)
    except UnsupportedOpError as exc:
        return {"unavailable": exc.message}
    return {"arena_bytes": nm.plan.arena_bytes, "lower_bound_bytes": nm.plan.lower_bound,
            "tflm_like_head_bytes": nm.tflm_like_head, "const_bytes": nm.const_bytes}


def _read_labels(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    require_regular_file(path, DataError)
    try:
        labels = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read labels {path}: {exc}", "pass a UTF-8 text file, one label per line") from None
    return labels


def build(model_path: Path, target: Target, opts: BuildOptions, reporter: Reporter | None = None) -> BuildResult:
    """Build ``model_path`` for ``target`` into ``opts.out_dir``; see the module docstring."""
    reporter = reporter or NullReporter()
    scheme, runtime = choose(target, opts.quantization, opts.runtime)
    project = project_emitter(target, opts.emitter)
    target = for_emitter(target, project)  # the latency tables of the kernels that project compiles
    model_symbol(opts.symbol)
    if opts.calib_samples < 1:
        raise UsageError("--calib-samples must be at least 1", "e.g. --calib-samples 100")
    labels = _read_labels(opts.labels)
    prepared, ds = prepare(model_path, target, scheme, runtime, opts.data, opts.data_quant, opts.calib_samples,
                           reporter, opts.trust_model_code)
    warnings = list(prepared.warnings)
    budget = opts.budget or target.budget
    val = ds
    if opts.val is not None:
        val = load_dataset(opts.val, prepared.sample_shape, np.dtype(prepared.data_dtype), opts.data_quant)
    elif opts.data is not None:
        warnings.append("no --val data: accuracy is measured on the calibration data")
        reporter.warning(warnings[-1])
    if val is not None:  # before the search and evaluation use them: a wrong label file is not 0 % top-1
        val.check_labels(prepared.info.output_tensors()[0].elements)
    outcome, searched = stage.maybe_search(model_path, prepared, ds, val, target, opts, budget, reporter)
    if (outcome is not None and outcome.result is not None and outcome.result.chosen is None and opts.runtime is None
            and runtime == Runtime.TFLM and Runtime.NATIVE in target.runtimes and outcome.result.closest is not None
            and "model_flash_bytes" in outcome.result.closest.misses):
        # TFLM's flatbuffer (graph, per-channel scales as floats, int64 zero points) can be most of a small
        # model's flash: the native runtime stores only the weights. The runtime was not pinned, so try it.
        reporter.warning("nothing fits with TFLite Micro; searching again for the native runtime (no flatbuffer "
                         "in flash)")
        retry, again = stage.maybe_search(model_path, replace(prepared, runtime=Runtime.NATIVE), ds, val, target, opts,
                                          budget, reporter)
        if retry is None or retry.result is None or retry.result.chosen is not None:  # None: int8 fits as is
            outcome, searched, runtime = retry, again, "native"
            warnings.append("switched to the native runtime: no TFLite Micro candidate fits the budgets "
                            "(pin one with --runtime)")
    prepared = searched
    if outcome is not None and outcome.scheme is None:
        prepared = replace(prepared, model=outcome.model, info=outcome.info, recipe=outcome.recipe)
        if outcome.result is not None and outcome.result.chosen is None:
            warnings.append("no candidate fits every budget: the build holds the closest one")
    native = None
    if Runtime(runtime).generates_c:
        native = plan_native(prepared, target, opts.single_rounding, reporter)
        if native.arm is not None and native.arm.link_error:
            warnings.append(f"the native image does not fit {target.id}: {native.arm.link_error}")
            reporter.warning(warnings[-1])
    else:
        check_supported(prepared, target)
    arena = tflm_arena(prepared, reporter)
    analysis = analyze_prepared(prepared, target, native, arena)
    if outcome is not None and outcome.measured_ms is None and analysis.estimates is not None:
        from edgeforge.cost.latency import LatencyModel, observed_choices

        est = analysis.estimates  # count the compressed layers' int4 and sparsity, as the search did
        ms = float(LatencyModel.for_target(target, runtime).estimate_ms(prepared.info,
                                                                        observed_choices(prepared.info, prepared.model)))
        analysis = replace(analysis, estimates=replace(
            est, latency_ms=ms, latency_basis=f"{est.latency_basis}; int4 and sparse layers costed as such"))
    if outcome is not None and outcome.measured_ms is not None and analysis.estimates is not None:
        analysis = replace(analysis, estimates=replace(
            analysis.estimates, latency_ms=outcome.measured_ms,
            latency_basis=f"measured: median on board {opts.search.measure_board} (build --measure)"))

    accuracy = None
    if outcome is not None and outcome.accuracy is not None and not opts.single_rounding:
        accuracy = outcome.accuracy  # the search verified this very model with TFLM on the same data
    elif val is not None:
        reporter.stage(f"evaluating on {len(val)} samples")
        # the tflite-micro interpreter is bit-exact with the native runtime, and is what MCU builds run
        if Runtime(runtime).generates_c and opts.single_rounding:  # TFLM is double-rounding: run the generated C itself
            accuracy = evaluate_native(prepared, native, val)
        else:
            eval_runtime = Runtime(runtime).reference_interpreter
            accuracy = evaluate(prepared.float_model, prepared.model, prepared.info, eval_runtime, val,
                                reporter.progress)
    checks = verdicts(analysis, budget, accuracy)
    faster = faster_options(prepared, target, runtime, budget.latency_ms) if any(
        v.budget == "latency_ms" and v.fits is False for v in checks) else []

    reporter.stage("emitting artifacts")
    sample = first_sample(prepared, ds) if opts.data is not None else None
    if project == "espidf":
        from edgeforge.bench.esptool_flash import idf_missing

        missing = idf_missing()
        if missing:  # said once per build; the project is complete, only the compile is left to the user
            warnings.append(f"{missing}: emitted the ESP-IDF project's sources only (espidf/); build it with "
                            f"`idf.py build` where ESP-IDF is installed, or let `edgeforge flash` do it")
            reporter.warning(warnings[-1])
    manifest, files = emit(prepared, target, opts, analysis, native, arena, accuracy, checks, warnings, labels,
                           outcome.files if outcome is not None else None,
                           outcome.summary if outcome is not None else None, outcome is None or outcome.fits,
                           sample=sample, latency_alternatives=faster)
    keep_user_code(opts.out_dir, files)
    write_build(opts.out_dir, manifest, files)
    link_error = native.arm.link_error if native is not None and native.arm is not None else None
    return BuildResult(opts.out_dir, manifest, analysis, checks, accuracy, tuple(warnings), link_error)


def evaluate_native(prepared: Prepared, native: NativeResult | None, val: Dataset) -> Accuracy:
    """Accuracy of the generated C compiled for this machine (for modes the TFLM interpreter does not have)."""
    import tempfile

    from edgeforge.native.toolchain import host_runner
    from edgeforge.run import run_native

    assert native is not None
    with tempfile.TemporaryDirectory(prefix="edgeforge-eval-") as tmp:
        root = Path(tmp)
        for rel, data in native.files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        host_runner(root)  # compiled (and cached) once
        inp, out = prepared.info.input_tensors()[0], prepared.info.output_tensors()[0]
        x = model_view(val, inp.dtype, inp.scale[0] if inp.scale else None, inp.zero_point[0] if inp.zero_point else None)
        raw = run_native(root, x.reshape((len(x), *inp.shape)), tuple(out.shape[1:]), out.dtype)
    real = dequantize(raw.reshape(len(raw), -1), out)
    return score(real, prepared.float_model, val, "native (generated C on the host)")


def faster_options(prepared: Prepared, target: Target, runtime: str, limit_ms: float) -> list[dict[str, Any]]:
    """When a build misses its latency budget: the other runtime of this target, else other targets of the
    same kind, whose estimate (same cost model as the verdict) for this very model meets ``limit_ms``."""
    from edgeforge.cost.latency import LatencyModel, observed_choices
    from edgeforge.runtimes import runtime_support
    from edgeforge.stages import round_ms
    from edgeforge.target import load_registry

    choices = observed_choices(prepared.info, prepared.model)

    def estimate(t: Target, rt: str) -> float | None:
        if runtime_support(rt).unsupported(prepared.info.op_names):
            return None
        return float(LatencyModel.for_target(t, rt).estimate_ms(prepared.info, choices))

    found = []
    for rt in target.runtimes:
        ms = estimate(target, rt) if rt != runtime else None
        if ms is not None and ms <= limit_ms:
            found.append({"target": target.id, "runtime": rt, "latency_ms": round_ms(ms)})
    if found:
        return found
    for other in load_registry().all():
        if other.id == target.id or other.kind != target.kind:
            continue
        ms = estimate(other, other.runtime)
        if ms is not None and ms <= limit_ms:
            found.append({"target": other.id, "runtime": other.runtime, "latency_ms": round_ms(ms)})
    return sorted(found, key=lambda f: f["latency_ms"])[:3]


def first_sample(prepared: Prepared, ds: Dataset | None) -> bytes | None:
    """The first sample of the build's data in the model's input quantization (the firmware's sample)."""
    if ds is None or len(ds) == 0:
        return None
    inp = prepared.info.input_tensors()[0]
    x = model_view(ds.head(1), inp.dtype, inp.scale[0] if inp.scale else None,
                   inp.zero_point[0] if inp.zero_point else None)
    data = np.ascontiguousarray(x[0]).astype(np.dtype(inp.dtype).newbyteorder("<"), copy=False).tobytes()
    return data if len(data) == inp.nbytes else None


def keep_user_code(out: Path, files: dict[str, bytes]) -> None:
    """Carry the user blocks of a previous build's firmware sources in ``out`` into the new ones."""
    for rel in files:
        if rel.startswith("platformio/src/") and rel.endswith(".cpp"):
            old = out / rel
            with contextlib.suppress(OSError):
                files[rel] = mcu.keep_user_blocks(files[rel], old.read_bytes())
