"""The build pipeline: load -> quantize -> analyze (arena measured for TFLM) -> evaluate ->
budget verdicts -> emit -> write atomically with a manifest. Also ``analyze`` on its own."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeforge import __version__
from edgeforge.analyze import Analysis, analyze_model
from edgeforge.arena import ArenaMeasurement, measure_arena
from edgeforge.budget import Verdict
from edgeforge.compress import stage
from edgeforge.compress.driver import SearchOptions
from edgeforge.data import Dataset, InputQuant, float_view, load_dataset, model_view, synthetic
from edgeforge.emit import bundle as bundle_emit
from edgeforge.emit import mcu
from edgeforge.errors import DataError, ModelError, UnsupportedOpError, UsageError
from edgeforge.evaluate import Accuracy, dequantize, evaluate, score
from edgeforge.events import NullReporter, Reporter
from edgeforge.model import convert as conv
from edgeforge.model.load import SourceModel, load_model
from edgeforge.model.tflite import ModelInfo, read_tflite
from edgeforge.native.emit import prepare_native
from edgeforge.native.stage import NativeResult, native_stage
from edgeforge.output import sha256, write_tree
from edgeforge.runtimes import runtime_support
from edgeforge.target.schema import Budget, Target

SYNTHETIC_SAMPLES = 100


@dataclass(frozen=True)
class BuildOptions:
    out_dir: Path
    data: Path | None = None
    val: Path | None = None
    data_quant: InputQuant | None = None
    calib_samples: int = 200
    quantization: str | None = None
    runtime: str | None = None
    budget: Budget | None = None  # overrides the target's budgets when set
    labels: Path | None = None
    symbol: str = "g_model"
    input_mean: float | None = None
    input_std: float | None = None
    template_dirs: tuple[Path, ...] = ()
    single_rounding: bool = False  # native runtime: TFLITE_SINGLE_ROUNDING arithmetic instead of the default
    search: SearchOptions = field(default_factory=SearchOptions)


@dataclass(frozen=True)
class Prepared:
    """A model converted for one target: what both ``analyze`` and ``build`` start from."""

    source: SourceModel
    scheme: str
    runtime: str
    model: bytes
    info: ModelInfo
    float_model: tuple[bytes, ModelInfo] | None
    calibration: str  # how it was calibrated: "data:<path> (N samples)", "synthetic ...", "not needed ..."
    sample_shape: tuple[int, ...]
    data_dtype: str
    warnings: tuple[str, ...]
    recipe: str | None = None  # per-layer compression chosen by the search (None: uniform int8)


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    manifest: dict[str, Any]
    analysis: Analysis
    verdicts: tuple[Verdict, ...]
    accuracy: Accuracy | None
    warnings: tuple[str, ...] = field(default=())
    link_error: str | None = None  # the native image did not link into the board's memory
    search: dict[str, Any] | None = None  # what the compression search chose (manifest["search"])

    @property
    def fits(self) -> bool:
        searched_out = self.search is not None and "replayed" not in self.search and self.search["chosen"] is None
        return self.link_error is None and not searched_out and all(v.fits is not False for v in self.verdicts)

    @property
    def missed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.fits is False]


def _choose(target: Target, quantization: str | None, runtime: str | None) -> tuple[str, str]:
    scheme = quantization or target.quantization[0]
    if scheme not in target.quantization:
        raise UsageError(f"target {target.id} does not offer --quantization {scheme}",
                         f"choose one of: {', '.join(target.quantization)}")
    rt = runtime or target.runtime
    if rt not in target.runtimes:
        raise UsageError(f"target {target.id} does not offer --runtime {rt}",
                         f"choose one of: {', '.join(target.runtimes)}")
    return scheme, rt


def _sample_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[1:] if len(shape) > 1 and shape[0] == 1 else shape


def _is_float_tflite(info: ModelInfo) -> bool:
    return all(t.dtype == "float32" for t in info.input_tensors()) and not any(
        t.is_constant and t.dtype in ("int8", "int4") for t in info.tensors)


def prepare(model_path: Path, target: Target, scheme: str, runtime: str, data: Path | None,
            data_quant: InputQuant | None, calib_samples: int, reporter: Reporter) -> tuple[Prepared, Dataset | None]:
    """Load the model, read the calibration data, convert; returns the converted model and the data."""
    warnings: list[str] = []
    reporter.stage("loading model")
    source = load_model(model_path)
    graph = None
    try:
        if source.tflite is not None:
            assert source.info is not None
            ins = source.info.input_tensors()
            shapes = [(t.shape, t.dtype) for t in ins]
        else:
            graph = conv.TFGraph(source)
            shapes = [(s.shape, s.dtype) for s in graph.inputs]
        if len(shapes) != 1:
            raise ModelError(f"the model has {len(shapes)} inputs; edgeforge builds single-input models",
                             "wrap the model so that it takes one input tensor")
        shape, dtype = shapes[0]
        sample_shape = _sample_shape(shape)
        already_int8 = source.info is not None and source.info.is_int8
        data_dtype = dtype
        ds = None
        if data is not None:
            reporter.stage("reading data")
            ds = load_dataset(data, sample_shape, np.dtype(dtype), data_quant)
        if already_int8:
            if scheme != "int8":
                raise ModelError(f"{source.path.name} is already an int8 model; it cannot become {scheme}",
                                 "pass the float model, or build with --quantization int8")
            prepared_model, calibration = source.tflite, "not needed: the source is already int8 (passed through)"
        else:
            calib = None
            if scheme == "int8":
                if ds is not None:
                    subset = ds.head(calib_samples)
                    calib = float_view(subset)
                    calibration = f"data: {subset.source} ({len(subset)} samples)"
                else:
                    calib = synthetic(sample_shape, SYNTHETIC_SAMPLES)
                    calibration = f"synthetic: {SYNTHETIC_SAMPLES} samples of normal(0, 1), seed 0"
                    # Still worth an output SQNR against the float model: it catches broken conversions.
                    ds = Dataset(calib, None, "synthetic normal(0, 1) inputs (no data given)")
                    warnings.append("NO CALIBRATION DATA: int8 ranges come from synthetic normal(0,1) inputs and "
                                    "accuracy may suffer badly; pass --data with real inputs (recorded in the manifest)")
                    for w in warnings:
                        reporter.warning(w)
            else:
                calibration = f"not needed for {scheme}"
            reporter.stage(f"converting to {scheme}" + (" and calibrating" if calib is not None else ""))
            prepared_model = conv.convert(source, scheme, calib, graph)
        assert prepared_model is not None
        float_model = None
        if graph is not None:
            reporter.stage("converting the float reference")
            fb = conv.convert(source, "float32", None, graph)
            float_model = (fb, read_tflite(fb))
        elif source.info is not None and _is_float_tflite(source.info):
            float_model = (source.tflite, source.info)
    finally:
        if graph is not None:
            graph.close()
    info = read_tflite(prepared_model, "the converted model")
    return Prepared(source, scheme, runtime, prepared_model, info, float_model, calibration, sample_shape,
                    data_dtype, tuple(warnings)), ds


def _arena(prepared: Prepared, reporter: Reporter) -> ArenaMeasurement | None:
    """TFLM's arena, measured: the figure for TFLM builds, the comparison for native ones."""
    if prepared.runtime == "litert" or runtime_support("tflm").unsupported(prepared.info.op_names):
        return None
    reporter.stage("measuring the TFLite Micro arena")
    return measure_arena(prepared.model, prepared.info)


def analyze(model_path: Path, target: Target | None, data: Path | None = None,
            data_quant: InputQuant | None = None, reporter: Reporter | None = None) -> tuple[Prepared | None, Analysis]:
    """Analyse ``model_path`` as it would be built for ``target`` (as-is when no target is given)."""
    reporter = reporter or NullReporter()
    if target is None:
        source = load_model(model_path)
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
    scheme, runtime = _choose(target, None, None)
    prepared, _ = prepare(model_path, target, scheme, runtime, data, data_quant, 100, reporter)
    arena = _arena(prepared, reporter)
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


def verdicts(analysis: Analysis, budget: Budget, accuracy: Accuracy | None) -> tuple[Verdict, ...]:
    est = analysis.estimates
    assert est is not None
    drop = accuracy.drop if accuracy is not None else None
    if drop is not None:
        acc_basis = f"measured: top-1 {accuracy.float_top1:.4f} (float) -> {accuracy.top1:.4f} on {accuracy.samples} samples"
    elif accuracy is not None and accuracy.sqnr_db is not None:
        acc_basis = f"not evaluated: no labels (output SQNR {accuracy.sqnr_db:.1f} dB vs the float model)"
    elif accuracy is not None and accuracy.top1 is not None:
        acc_basis = f"not evaluated: no float reference (top-1 {accuracy.top1:.4f})"
    else:
        acc_basis = "not evaluated: no validation data"
    return (
        Verdict("model_flash_bytes", budget.model_flash_bytes, est.flash_bytes, est.flash_basis),
        Verdict("model_ram_bytes", budget.model_ram_bytes, est.ram_bytes, est.ram_basis),
        Verdict("latency_ms", budget.latency_ms, round(est.latency_ms, 3), est.latency_basis),
        Verdict("max_accuracy_drop", budget.max_accuracy_drop, drop, acc_basis),
    )


def _read_labels(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    try:
        labels = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read labels {path}: {exc}", "pass a UTF-8 text file, one label per line") from None
    return labels


def _tensor_json(t: Any) -> dict[str, Any]:
    return bundle_emit.io_spec(t)


def build(model_path: Path, target: Target, opts: BuildOptions, reporter: Reporter | None = None) -> BuildResult:
    """Build ``model_path`` for ``target`` into ``opts.out_dir``; see the module docstring."""
    reporter = reporter or NullReporter()
    scheme, runtime = _choose(target, opts.quantization, opts.runtime)
    if opts.calib_samples < 1:
        raise UsageError("--calib-samples must be at least 1", "e.g. --calib-samples 100")
    labels = _read_labels(opts.labels)
    prepared, ds = prepare(model_path, target, scheme, runtime, opts.data, opts.data_quant, opts.calib_samples,
                           reporter)
    warnings = list(prepared.warnings)
    budget = opts.budget or target.budget
    val = ds
    if opts.val is not None:
        val = load_dataset(opts.val, prepared.sample_shape, np.dtype(prepared.data_dtype), opts.data_quant)
    elif opts.data is not None:
        warnings.append("no --val data: accuracy is measured on the calibration data")
        reporter.warning(warnings[-1])
    outcome, searched = stage.maybe_search(model_path, prepared, ds, val, target, opts, budget, reporter)
    if (outcome is not None and outcome.result is not None and outcome.result.chosen is None and opts.runtime is None
            and runtime == "tflm" and "native" in target.runtimes and outcome.result.closest is not None
            and "model_flash_bytes" in outcome.result.closest.misses):
        # TFLM's flatbuffer (graph, per-channel scales as floats, int64 zero points) can be most of a small
        # model's flash: the native runtime stores only the weights. The runtime was not pinned, so try it.
        reporter.warning("nothing fits with TFLite Micro; searching again for the native runtime (no flatbuffer "
                         "in flash)")
        retry, again = stage.maybe_search(model_path, replace(prepared, runtime="native"), ds, val, target, opts,
                                          budget, reporter)
        if retry is None or retry.result is None or retry.result.chosen is not None:  # None: int8 fits as is
            outcome, searched, runtime = retry, again, "native"
            warnings.append("switched to the native runtime: no TFLite Micro candidate fits the budgets "
                            "(pin one with --runtime)")
    prepared = searched
    if outcome is not None and outcome.scheme is None:
        prepared = replace(prepared, model=outcome.model, info=outcome.info, recipe=outcome.summary["layers"])
        if outcome.result is not None and outcome.result.chosen is None:
            warnings.append("no candidate fits every budget: the build holds the closest one")
    native = None
    if runtime == "native":
        reporter.stage("lowering to native C and planning the arena")
        native = native_stage(prepared.info, prepared.model, target, base_context(prepared, target),
                              opts.single_rounding)
        if native.arm is not None and native.arm.link_error:
            warnings.append(f"the native image does not fit {target.id}: {native.arm.link_error}")
            reporter.warning(warnings[-1])
    else:
        unsupported = runtime_support(runtime).unsupported(prepared.info.op_names)
        if unsupported:
            raise UnsupportedOpError(
                f"runtime {runtime} of target {target.id} cannot run op(s) {', '.join(unsupported)}",
                "replace those ops in the model, or choose a target/--runtime that supports them")
    arena = _arena(prepared, reporter)
    analysis = analyze_model(prepared.info, target, runtime, arena)
    if native is not None:
        analysis = with_native_estimates(analysis, native, prepared.info)
    if outcome is not None and outcome.measured_ms is None and analysis.estimates is not None:
        from edgeforge.compress.cost import LatencyModel, observed_choices

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
        if runtime == "native" and opts.single_rounding:  # TFLM is double-rounding: run the generated C itself
            accuracy = evaluate_native(prepared, native, val)
        else:
            eval_runtime = "tflm" if runtime == "native" else runtime
            accuracy = evaluate(prepared.float_model, prepared.model, prepared.info, eval_runtime, val,
                                reporter.progress)
    checks = verdicts(analysis, budget, accuracy)

    reporter.stage("emitting artifacts")
    files = emit_files(prepared, target, opts, analysis, labels, native)
    if outcome is not None:
        files.update(outcome.files)
    manifest = make_manifest(prepared, target, opts, analysis, accuracy, checks, files, warnings)
    if native is not None:
        manifest["native"] = native.to_json(arena.total if arena else None)
        manifest["fits"] = manifest["fits"] and not (native.arm and native.arm.link_error)
    if outcome is not None:
        manifest["search"] = outcome.summary
        manifest["fits"] = manifest["fits"] and outcome.fits
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    write_tree(opts.out_dir, files)
    link_error = native.arm.link_error if native is not None and native.arm is not None else None
    return BuildResult(opts.out_dir, manifest, analysis, checks, accuracy, tuple(warnings), link_error,
                       outcome.summary if outcome is not None else None)


def native_model_flash(native: NativeResult, info: ModelInfo) -> tuple[int, str]:
    """The model's weights as the native runtime stores them: filters (sparse where smaller) and the
    other constant tensors (biases). The requantization tables and kernel code are in the linked image,
    which the linker checks against the board's flash."""
    from edgeforge.compress.layers import WEIGHT_OPS

    filters = {op.inputs[1] for op in info.ops if op.op in WEIGHT_OPS and len(op.inputs) > 1 and op.inputs[1] >= 0}
    other = sum(t.nbytes for t in info.tensors if t.is_constant and t.index not in filters)
    weights = native.to_json(None).get("weights")
    stored = weights["stored_bytes"] if weights else sum(info.tensors[i].nbytes for i in filters)
    image = native.arm.flash if native.arm is not None and native.arm.link_error is None else None
    basis = (f"measured: model weights in the generated C ({stored} B of filters, dense or sparse, + {other} B of "
             f"biases/constants); all model constants {native.native.const_bytes} B"
             + (f", linked image {image} B" if image else ""))
    return stored + other, basis


def compression_label(prepared: Prepared) -> str:
    if prepared.recipe is not None:
        return f"int8 activations, per-layer weights: {prepared.recipe}"
    return {"int8": "full-integer int8 (int8 I/O)", "float16": "float16 weights", "dynamic-int8":
            "dynamic-range int8 weights, float activations", "float32": "float32 (no quantization)"}[prepared.scheme]


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


def base_context(prepared: Prepared, target: Target) -> dict[str, Any]:
    return {"version": __version__, "target_id": target.id, "model_name": prepared.source.name,
            "model_sha256": sha256(prepared.model)}


def with_native_estimates(analysis: Analysis, native: NativeResult, info: ModelInfo) -> Analysis:
    est = analysis.estimates
    assert est is not None
    flash, flash_basis = native_model_flash(native, info)
    ram, ram_basis = native.ram
    return replace(analysis, estimates=replace(est, flash_bytes=flash, flash_basis=flash_basis, ram_bytes=ram,
                                               ram_basis=ram_basis))


def emit_files(prepared: Prepared, target: Target, opts: BuildOptions, analysis: Analysis,
               labels: list[str] | None, native: NativeResult | None = None) -> dict[str, bytes]:
    arena = analysis.arena
    base: dict[str, Any] = {
        "version": __version__,
        "target": {**target.data, "id": target.id, "name": target.name},
        "model": {"name": prepared.source.name, "sha256": prepared.source.sha256,
                  "output_sha256": sha256(prepared.model), "bytes": len(prepared.model)},
        "compression": compression_label(prepared),
        "arena": {"measured": arena.total if arena else 0, "emitted": arena.emitted if arena else 0,
                  "margin_percent": round(arena.margin * 100) if arena else 0},
        "bench": {"runs": 50, "warmup": 5, "threads": int(target.hardware["cores"])},
        "remote_dir": target.data["flash"].get("remote_dir", "edgeforge"),
        # where ANDROID.md's adb lines push to, whichever target the bundle was built for
        "android_dir": target.data["flash"]["remote_dir"] if target.data["flash"]["tool"] == "adb"
        else "/data/local/tmp/edgeforge",
    }
    files: dict[str, bytes] = {"model.tflite": prepared.model}
    if native is not None:
        files.update({f"native/{k}": v for k, v in native.files.items()})
    elif "carray" in target.emit or "platformio" in target.emit:
        ctx = mcu.tflm_context(base, prepared.model, prepared.info, opts.symbol)
        if "carray" in target.emit:
            files.update({f"tflm/{k}": v for k, v in mcu.carray(ctx).items()})
        if "platformio" in target.emit and target.platformio:
            files.update({f"platformio/{k}": v for k, v in mcu.platformio(ctx).items()})
    if "bundle" in target.emit:
        norm = {"mean": opts.input_mean, "std": opts.input_std,
                "formula": "x_model = (x - mean) / std" if opts.input_mean is not None else
                "none given at build time: feed inputs as the model was trained"}
        files.update({f"bundle/{k}": v for k, v in
                      bundle_emit.bundle(base, prepared.model, prepared.info, labels, norm).items()})
    return files


def make_manifest(prepared: Prepared, target: Target, opts: BuildOptions, analysis: Analysis,
                  accuracy: Accuracy | None, checks: tuple[Verdict, ...], files: dict[str, bytes],
                  warnings: list[str]) -> dict[str, Any]:
    est = analysis.estimates
    assert est is not None
    return {
        "format": "edgeforge-build/1",
        "edgeforge_version": __version__,
        "input_model": {"path": str(model_display(prepared.source)), "format": prepared.source.format,
                        "sha256": prepared.source.sha256},
        "target": {"id": target.id, "name": target.name, "profile_sha256": target.profile_hash,
                   "runtime": prepared.runtime},
        "compression": {"scheme": prepared.scheme, "description": compression_label(prepared),
                        "calibration": prepared.calibration,
                        # what integer --data/--val meant: run and bench read raw int8 data the same way
                        "data_quant": None if opts.data_quant is None else {
                            "scale": opts.data_quant.scale, "zero_point": opts.data_quant.zero_point},
                        "synthetic_calibration": prepared.calibration.startswith("synthetic")},
        "model": {"path": "model.tflite", "bytes": len(prepared.model), "sha256": sha256(prepared.model),
                  "ops": prepared.info.op_names, "params": analysis.total_params, "macs": analysis.total_macs,
                  "weight_bytes": analysis.weight_bytes, "activation_peak_bytes": analysis.activation_peak_bytes,
                  "inputs": [_tensor_json(t) for t in prepared.info.input_tensors()],
                  "outputs": [_tensor_json(t) for t in prepared.info.output_tensors()]},
        "arena": analysis.arena.to_json() if analysis.arena else None,
        "estimates": {"flash_bytes": est.flash_bytes, "ram_bytes": est.ram_bytes,
                      "latency_ms": round(est.latency_ms, 3)},
        "accuracy": accuracy.to_json() if accuracy else None,
        "budgets": [v.to_json() for v in checks],
        "fits": all(v.fits is not False for v in checks),
        "artifacts": {rel: {"bytes": len(data), "sha256": sha256(data)} for rel, data in sorted(files.items())},
        "warnings": warnings,
    }


def model_display(source: SourceModel) -> str:
    return source.path.name

