"""The build's stages as functions with typed inputs and outputs, in pipeline order:

load (:func:`load`) -> quantize (:func:`quantize`; the two: :func:`prepare`; an int8 model already in memory:
:func:`passthrough`) -> analyze (:func:`tflm_arena`, :func:`analyze_prepared`) -> [compress:
``edgeforge.compress.stage``] -> plan, emit C and compile the native runtime (:func:`plan_native`, over
``edgeforge.native.stage``) -> budget verdicts (:func:`verdicts`) -> emit the files and the manifest
(:func:`emit`) -> write (:func:`write_build`).

``edgeforge.build.build`` composes all of them; :func:`build_int8` composes the back half for a model that needs
no conversion, search or evaluation (``build --measure`` candidates, ``calibrate`` probes). Nothing here imports
``edgeforge.build`` or the compression search, so both can use these stages."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeforge import __version__
from edgeforge.analyze import Analysis, analyze_model
from edgeforge.arena import ArenaMeasurement, measure_arena
from edgeforge.budget import Verdict
from edgeforge.compress.driver import SearchOptions
from edgeforge.compress.recipe import Recipe, layer_name
from edgeforge.data import Dataset, InputQuant, float_view, load_dataset, synthetic
from edgeforge.emit import bundle as bundle_emit
from edgeforge.emit import espidf, mcu
from edgeforge.emit.project import for_emitter, kernels_of, project_emitter
from edgeforge.errors import ModelError, UnsupportedOpError, UsageError
from edgeforge.evaluate import Accuracy
from edgeforge.events import NullReporter, Reporter
from edgeforge.manifest import (Compression, Estimates, InputModel, Manifest, ModelSummary, TargetRef, TensorSpec,
                                verdict_fits)
from edgeforge.model import convert as conv
from edgeforge.model.load import SourceModel, check_model, load_model
from edgeforge.model.rewrite import float_graph
from edgeforge.model.tflite import ModelInfo, read_tflite
from edgeforge.native.stage import NativeResult, native_stage
from edgeforge.output import sha256, write_tree
from edgeforge.runtimes import Runtime, runtime_support
from edgeforge.target.schema import PROJECT_EMITTERS, Budget, Target

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
    emitter: str | None = None  # the firmware project to write (espidf, platformio); default: the profile's first
    trust_model_code: bool = False  # --trust-model-code: Keras may run Python stored in the model file
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
    calibration: str  # how it was calibrated, for people: "data:<path> (N samples)", "synthetic ...", ...
    sample_shape: tuple[int, ...]
    data_dtype: str
    warnings: tuple[str, ...]
    recipe: Recipe | None = None  # per-layer compression chosen by the search (None: uniform int8)
    synthetic_calibration: bool = False  # int8 ranges from synthetic inputs: no --data was given


def choose(target: Target, quantization: str | None, runtime: str | None) -> tuple[str, str]:
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


@dataclass
class Loaded:
    """The load stage's result: the user's model, its one input and the data read for it. A Keras or SavedModel
    source keeps its TensorFlow graph open for the conversions: use it as a context manager."""

    source: SourceModel
    graph: conv.TFGraph | None
    sample_shape: tuple[int, ...]
    data_dtype: str
    data: Dataset | None

    def __enter__(self) -> Loaded:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.graph is not None:
            self.graph.close()
            self.graph = None


def load(model_path: Path, data: Path | None, data_quant: InputQuant | None, reporter: Reporter,
         trust_model_code: bool = False) -> Loaded:
    """Load the model (single input), and read ``data`` for it when given. ``trust_model_code``: Keras may run
    Python stored in the model file (``--trust-model-code``)."""
    reporter.stage("loading model")
    source = load_model(model_path, trust_model_code)
    graph = None
    try:
        if source.tflite is not None:
            assert source.info is not None
            shapes = [(t.shape, t.dtype) for t in source.info.input_tensors()]
        else:
            graph = conv.TFGraph(source)
            shapes = [(s.shape, s.dtype) for s in graph.inputs]
        if len(shapes) != 1:
            raise ModelError(f"the model has {len(shapes)} inputs; edgeforge builds single-input models",
                             "wrap the model so that it takes one input tensor")
        shape, dtype = shapes[0]
        ds = None
        if data is not None:
            reporter.stage("reading data")
            ds = load_dataset(data, _sample_shape(shape), np.dtype(dtype), data_quant)
    except BaseException:
        if graph is not None:
            graph.close()
        raise
    return Loaded(source, graph, _sample_shape(shape), dtype, ds)


def quantize(loaded: Loaded, scheme: str, runtime: str, calib_samples: int,
             reporter: Reporter) -> tuple[Prepared, Dataset | None]:
    """Convert the loaded model to ``scheme`` (int8: calibrated on the data, or on synthetic inputs, said loudly),
    with its float reference when there is one; returns the converted model and the data (synthetic when none)."""
    source, graph, ds, sample_shape = loaded.source, loaded.graph, loaded.data, loaded.sample_shape
    warnings: list[str] = []
    synthetic_calibration = False
    if source.info is not None and source.info.is_int8:
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
                synthetic_calibration = True
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
    elif source.tflite is not None and source.info is not None and not source.info.is_int8 and all(
            t.dtype == "float32" for t in source.info.input_tensors()):
        fb = float_graph(source.tflite)  # a hybrid model (int8 weights, float I/O): its float reference
        float_model = (fb, read_tflite(fb))
    info = read_tflite(prepared_model, "the converted model")
    check_converted(info, source.path.name, scheme)
    return Prepared(source, scheme, runtime, prepared_model, info, float_model, calibration, sample_shape,
                    loaded.data_dtype, tuple(warnings), synthetic_calibration=synthetic_calibration), ds


def prepare(model_path: Path, target: Target, scheme: str, runtime: str, data: Path | None,
            data_quant: InputQuant | None, calib_samples: int, reporter: Reporter,
            trust_model_code: bool = False) -> tuple[Prepared, Dataset | None]:
    """Load, read the calibration data and quantize: :func:`load` then :func:`quantize`."""
    with load(model_path, data, data_quant, reporter, trust_model_code) as loaded:
        return quantize(loaded, scheme, runtime, calib_samples, reporter)


def check_converted(info: ModelInfo, name: str, scheme: str) -> None:
    """ModelError (exit 65) when conversion gave something other than what ``scheme`` promises."""
    check_model(info, f"the {scheme} conversion of {name}")
    if scheme == "int8" and not info.is_int8:
        io = sorted({t.dtype for t in info.input_tensors() + info.output_tensors()})
        raise ModelError(f"the int8 conversion of {name} has {'/'.join(io)} inputs or outputs, not int8",
                         "the converter could not quantize the model's inputs: check the calibration data, "
                         "or use --quantization float32 / a target with float support")


def tflm_arena(prepared: Prepared, reporter: Reporter) -> ArenaMeasurement | None:
    """TFLM's arena, measured: the figure for TFLM builds, the comparison for native ones."""
    if not Runtime(prepared.runtime).on_microcontroller or Runtime.TFLM.support.unsupported(prepared.info.op_names):
        return None
    reporter.stage("measuring the TFLite Micro arena")
    return measure_arena(prepared.model, prepared.info)


def base_context(prepared: Prepared, target: Target) -> dict[str, Any]:
    return {"version": __version__, "target_id": target.id, "model_name": prepared.source.name,
            "model_sha256": sha256(prepared.model)}


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


def with_native_estimates(analysis: Analysis, native: NativeResult, info: ModelInfo) -> Analysis:
    est = analysis.estimates
    assert est is not None
    flash, flash_basis = native_model_flash(native, info)
    ram, ram_basis = native.ram
    return replace(analysis, estimates=replace(est, flash_bytes=flash, flash_basis=flash_basis, ram_bytes=ram,
                                               ram_basis=ram_basis))


def verdicts(analysis: Analysis, budget: Budget, accuracy: Accuracy | None) -> tuple[Verdict, ...]:
    """The budget gate: one verdict per budget, with the basis of each figure."""
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
        Verdict("latency_ms", budget.latency_ms, round_ms(est.latency_ms), est.latency_basis),
        Verdict("max_accuracy_drop", budget.max_accuracy_drop, drop, acc_basis),
    )


def round_ms(ms: float) -> float:
    """Milliseconds to 3 decimals, or to 3 significant digits below 1 ms (a 10 us estimate is not 0.01)."""
    return round(ms, 3) if ms >= 1 or ms == 0 else float(f"{ms:.3g}")


def compression_label(prepared: Prepared) -> str:
    if prepared.recipe is not None:
        names = {op: layer_name(prepared.info.ops[op].op, op) for op, _ in prepared.recipe.layers}
        return f"int8 activations, per-layer weights: {prepared.recipe.summary(names)}"
    return {"int8": "full-integer int8 (int8 I/O)", "float16": "float16 weights", "dynamic-int8":
            "dynamic-range int8 weights, float activations", "float32": "float32 (no quantization)"}[prepared.scheme]


def emit_files(prepared: Prepared, target: Target, opts: BuildOptions, analysis: Analysis,
               labels: list[str] | None, native: NativeResult | None = None,
               sample: bytes | None = None) -> dict[str, bytes]:
    """The build's files (``sample``: the first data sample, compiled into the firmware application)."""
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
    project = project_emitter(target, opts.emitter)
    if native is not None:
        files.update({f"native/{k}": v for k, v in native.files.items()})
        if project == "espidf":
            ctx = mcu.io_context(base, prepared.info)
            files.update({f"espidf/{k}": v for k, v in espidf.native_project(
                ctx, native.files, espidf_model_bytes(prepared, analysis, native), native.native.plan.arena_bytes,
                mlperf_model_name(prepared.info)).items()})
        if project == "platformio" and target.platformio:
            files.update({f"platformio/{k}": v for k, v in
                          mcu.native_platformio(base, prepared.info, native.files, sample).items()})
    elif "carray" in target.emit or project is not None:
        ctx = mcu.tflm_context(base, prepared.model, prepared.info, opts.symbol)
        if "carray" in target.emit:
            files.update({f"tflm/{k}": v for k, v in mcu.carray(ctx).items()})
        if project == "platformio" and target.platformio:
            files.update({f"platformio/{k}": v for k, v in mcu.platformio(ctx, sample).items()})
        if project == "espidf":
            files.update({f"espidf/{k}": v for k, v in espidf.tflm_project(ctx).items()})
    if "bundle" in target.emit:
        norm = {"mean": opts.input_mean, "std": opts.input_std,
                "formula": "x_model = (x - mean) / std" if opts.input_mean is not None else
                "none given at build time: feed inputs as the model was trained"}
        files.update({f"bundle/{k}": v for k, v in
                      bundle_emit.bundle(base, prepared.model, prepared.info, labels, norm).items()})
    return files


def make_manifest(prepared: Prepared, target: Target, analysis: Analysis, accuracy: Accuracy | None,
                  checks: tuple[Verdict, ...], files: dict[str, bytes], warnings: list[str], *, fits: bool,
                  emitter: str | None = None, kernels: str | None = None, espidf: dict[str, Any] | None = None,
                  native: dict[str, Any] | None = None, search: dict[str, Any] | None = None,
                  latency_alternatives: list[dict[str, Any]] | None = None,
                  data_quant: InputQuant | None = None) -> Manifest:
    est = analysis.estimates
    assert est is not None
    info = prepared.info
    return Manifest(
        edgeforge_version=__version__,
        input_model=InputModel(model_display(prepared.source), prepared.source.format, prepared.source.sha256),
        target=TargetRef(target.id, target.name, target.profile_hash, prepared.runtime, emitter, kernels or None),
        compression=Compression(prepared.scheme, compression_label(prepared), prepared.calibration,
                                prepared.synthetic_calibration,
                                None if data_quant is None else (data_quant.scale, data_quant.zero_point)),
        model=ModelSummary("model.tflite", len(prepared.model), sha256(prepared.model), tuple(info.op_names),
                           analysis.total_params, analysis.total_macs, analysis.weight_bytes,
                           analysis.activation_peak_bytes, tuple(TensorSpec.of(t) for t in info.input_tensors()),
                           tuple(TensorSpec.of(t) for t in info.output_tensors())),
        estimates=Estimates(est.flash_bytes, est.ram_bytes, round_ms(est.latency_ms)),
        budgets=checks, fits=fits,
        artifacts={rel: {"bytes": len(data), "sha256": sha256(data)} for rel, data in sorted(files.items())},
        warnings=tuple(warnings), arena=analysis.arena.to_json() if analysis.arena else None,
        accuracy=accuracy.to_json() if accuracy else None, espidf=espidf, native=native, search=search,
        latency_alternatives=tuple(latency_alternatives) if latency_alternatives else None)


def espidf_model_bytes(prepared: Prepared, analysis: Analysis, native: NativeResult | None) -> int:
    """What the model puts in the ESP-IDF app: the flatbuffer (TFLM), or the native runtime's weights."""
    if native is not None and analysis.estimates is not None:
        return int(analysis.estimates.flash_bytes)
    return len(prepared.model)


def mlperf_model_name(info: ModelInfo) -> str:
    """The `profile` model string MLPerf Tiny hosts pick their dataset by (the bench firmware reports it)."""
    from edgeforge.bench.firmware import _mlperf_name

    return _mlperf_name(info.input_tensors()[0].shape)


def model_display(source: SourceModel) -> str:
    return source.path.name


def passthrough(model: bytes, name: str, runtime: str) -> Prepared:
    """An int8 ``.tflite`` already in memory (a search candidate, a calibration probe) as the load and quantize
    stages would have left it: nothing to convert, no float reference, no data."""
    info = read_tflite(model, name)
    source = SourceModel(Path(f"{name}.tflite"), "tflite", sha256(model), model, info)
    return Prepared(source, "int8", runtime, model, info, None,
                    "not needed: the source is already int8 (passed through)",
                    _sample_shape(info.input_tensors()[0].shape), info.input_tensors()[0].dtype, ())


def plan_native(prepared: Prepared, target: Target, single_rounding: bool, reporter: Reporter) -> NativeResult:
    """Lower to typed kernel calls, fuse, plan and verify the arena, render the C and (where the toolchain
    is installed) link it for the target: the native runtime's plan, emit and compile stages."""
    reporter.stage("lowering to native C and planning the arena")
    native = native_stage(prepared.info, prepared.model, target, base_context(prepared, target), single_rounding)
    for note in native.native.fusion_declined:
        reporter.detail(note)
    return native


def check_supported(prepared: Prepared, target: Target) -> None:
    """Interpreter runtimes: every op of the model must be one the runtime runs."""
    unsupported = runtime_support(prepared.runtime).unsupported(prepared.info.op_names)
    if unsupported:
        raise UnsupportedOpError(
            f"runtime {prepared.runtime} of target {target.id} cannot run op(s) {', '.join(unsupported)}",
            "replace those ops in the model, or choose a target/--runtime that supports them")


def analyze_prepared(prepared: Prepared, target: Target, native: NativeResult | None,
                     arena: ArenaMeasurement | None) -> Analysis:
    """The model's analysis for ``target``, with the native runtime's measured flash and RAM when it has one."""
    analysis = analyze_model(prepared.info, target, prepared.runtime, arena)
    return with_native_estimates(analysis, native, prepared.info) if native is not None else analysis


def emit(prepared: Prepared, target: Target, opts: BuildOptions, analysis: Analysis, native: NativeResult | None,
         arena: ArenaMeasurement | None, accuracy: Accuracy | None, checks: tuple[Verdict, ...],
         warnings: list[str], labels: list[str] | None = None, extra: dict[str, bytes] | None = None,
         search: dict[str, Any] | None = None, search_found: bool = True, *, sample: bytes | None = None,
         latency_alternatives: list[dict[str, Any]] | None = None) -> tuple[Manifest, dict[str, bytes]]:
    """Every file of the build folder and its manifest (``extra``: the search's report and recipe; ``sample``:
    the firmware application's compiled-in input; ``latency_alternatives``: what would meet a missed latency
    budget)."""
    project = project_emitter(target, opts.emitter)
    files = emit_files(prepared, target, opts, analysis, labels, native, sample)
    files.update(extra or {})
    link_error = native.arm.link_error if native is not None and native.arm is not None else None
    manifest = make_manifest(prepared, target, analysis, accuracy, checks, files, warnings,
                             fits=verdict_fits(checks, link_error, search_found),
                             emitter=project if sum(e in PROJECT_EMITTERS for e in target.emit) > 1 else None,
                             kernels=kernels_of(target, project) if prepared.runtime == Runtime.TFLM else None,
                             espidf=espidf.manifest_entry(target.data, espidf_model_bytes(prepared, analysis, native))
                             if project == "espidf" else None,
                             native=native.to_json(arena.total if arena else None) if native is not None else None,
                             search=search, latency_alternatives=latency_alternatives, data_quant=opts.data_quant)
    return manifest, files


def write_build(out_dir: Path, manifest: Manifest, files: dict[str, bytes]) -> None:
    """Write the build folder atomically, the manifest with it."""
    write_tree(out_dir, {**files, "manifest.json": manifest.dumps()})


def build_int8(model: bytes, name: str, target: Target, runtime: str, out_dir: Path,
               reporter: Reporter | None = None, single_rounding: bool = False) -> Manifest:
    """Build an int8 model in memory into ``out_dir`` with the target's budgets and no conversion, search or
    evaluation, ready for ``edgeforge bench``. Native builds skip the TFLM arena measurement (a comparison
    figure the bench does not use)."""
    reporter = reporter or NullReporter()
    opts = BuildOptions(out_dir=out_dir, runtime=runtime, single_rounding=single_rounding)
    target = for_emitter(target, project_emitter(target, None))
    prepared = passthrough(model, name, runtime)
    native = None
    if Runtime(runtime).generates_c:
        native = plan_native(prepared, target, single_rounding, reporter)
    else:
        check_supported(prepared, target)
    arena = tflm_arena(prepared, reporter) if native is None else None
    analysis = analyze_prepared(prepared, target, native, arena)
    checks = verdicts(analysis, target.budget, None)
    manifest, files = emit(prepared, target, opts, analysis, native, arena, None, checks, [])
    write_build(out_dir, manifest, files)
    return manifest
