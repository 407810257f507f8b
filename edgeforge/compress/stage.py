"""The compression search as a stage of the build pipeline: decides whether to search, wires the search
to what only the pipeline knows (conversion, the native image, fine-tuning, building and benchmarking a
candidate) and returns the outcome the build continues with."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeforge.arena import measure_arena
from edgeforge.compress.driver import Outcome
from edgeforge.data import Dataset, float_view, load_dataset, synthetic
from edgeforge.errors import ModelError, UsageError
from edgeforge.events import NullReporter, Reporter
from edgeforge.model.tflite import read_tflite
from edgeforge.native.stage import native_stage
from edgeforge.target.schema import Budget, Target
from edgeforge.runtimes import Runtime

if TYPE_CHECKING:
    from edgeforge.stages import BuildOptions, Prepared


def maybe_search(model_path: Path, prepared: Prepared, ds: Dataset | None, val: Dataset | None, target: Target,
                  opts: BuildOptions, budget: Budget, reporter: Reporter) -> tuple[Outcome | None, Prepared]:
    """Run the compression search (or replay ``--recipe``) when the options and budgets call for it;
    returns the outcome and what the build continues from."""
    from edgeforge import stages as pipeline
    from edgeforge.compress import driver
    from edgeforge.cost.candidate import NO_COST_MODEL, LatencyEstimator

    runtime = prepared.runtime
    if runtime == Runtime.LITERT:
        return scheme_search(model_path, prepared, ds, val, target, opts, budget, reporter)
    if prepared.scheme != "int8":
        if opts.search.recipe is not None or opts.search.mode == "always":
            raise UsageError(f"the per-layer search works on full-integer int8 models, not {prepared.scheme}",
                             "build with --quantization int8, or drop --search/--recipe")
        return None, prepared
    try:
        latency = LatencyEstimator(target, runtime, prepared.info).ms({})
    except NO_COST_MODEL:  # no cost model for this target: latency cannot trigger a search
        latency = None
    flash = driver.base_flash(prepared.info, prepared.model, runtime)
    if not driver.wanted(opts.search, runtime, prepared.scheme, flash, latency, budget):
        return None, prepared
    if ds is None:  # an int8 source built without data: screen on synthetic inputs
        ds = Dataset(synthetic(prepared.sample_shape, pipeline.SYNTHETIC_SAMPLES), None,
                     f"synthetic: {pipeline.SYNTHETIC_SAMPLES} samples of normal(0, 1), seed 0")
    finetune, training = finetuner(prepared, ds, opts, reporter)
    if opts.search.recipe is not None:
        reporter.stage(f"applying recipe {opts.search.recipe}")
        return driver.replay(prepared.model, prepared.info, opts.search.recipe, ds, finetune), prepared
    val = val if val is not None else ds
    if Runtime(runtime).generates_c:
        reporter.stage("planning the int8 model's native image (RAM for the search)")
        base = native_stage(prepared.info, prepared.model, target, pipeline.base_context(prepared, target),
                            opts.single_rounding)
        base_ram, ram_exact = base.ram[0], None
    else:
        reporter.stage("measuring the TFLite Micro arena of the int8 model")
        base_ram = measure_arena(prepared.model, prepared.info).emitted

        def ram_exact(model: bytes) -> int:
            return measure_arena(model, read_tflite(model)).emitted
    ctx = {"model": {"name": prepared.source.name, "sha256": prepared.source.sha256},
           "target": {"id": target.id, "name": target.name, "runtime": runtime},
           "board": opts.search.measure_board}
    used = [ds.head(opts.calib_samples)]  # what calibration saw: never part of the held-out report part
    if opts.search.train is not None:
        used.append(load_dataset(opts.search.train, prepared.sample_shape, np.dtype(prepared.data_dtype),
                                 opts.data_quant))
    distill, always = distiller(prepared, ds, opts, reporter)
    return driver.search(prepared.model, prepared.info, prepared.float_model, ds, val, target, runtime, budget,
                         base_ram, ram_exact, ctx, reporter, measurer(target, opts), finetune, training,
                         tuple(used), distill, always), prepared


def distiller(prepared: Prepared, ds: Dataset, opts: BuildOptions,
              reporter: Reporter) -> tuple[Callable[[Dataset | None], list[Any]] | None, bool]:
    """``--distill auto|always|never``: students of a Keras source trained on the --train data, else the
    --data inputs (auto: only when real data was given, and only if nothing post-training fits)."""
    mode = opts.search.distill
    teachable = prepared.source.format in ("keras", "h5") or prepared.float_model is not None
    if mode == "never" or (mode == "auto" and (not teachable or opts.data is None)):
        return None, False
    if not teachable:
        raise UsageError(f"--distill needs a float teacher; {prepared.source.path.name} is already quantized",
                         "pass the float model (Keras, SavedModel or float .tflite), or drop --distill")
    from edgeforge.compress.distill import distill

    data = ds
    if opts.search.train is not None:
        data = load_dataset(opts.search.train, prepared.sample_shape, np.dtype(prepared.data_dtype), opts.data_quant)
    calib = float_view(ds.head(opts.calib_samples))

    def run(held_out: Dataset | None) -> list[Any]:
        from edgeforge.compress.holdout import without

        # students never train on the held-out report part: the reported figure stays unseen
        return distill(prepared.source, without(data, held_out), calib, opts.search.distill_minutes, reporter,
                       float_model=prepared.float_model)

    return run, mode == "always"


def finetuner(prepared: Prepared, ds: Dataset, opts: BuildOptions,
               reporter: Reporter) -> tuple[Callable[[Any], bytes] | None, str]:
    """``--train DATA --epochs N``: a function from a recipe to the int8 model fine-tuned for it, with
    the recipe applied (bias-corrected on the same screening inputs the search uses)."""
    if opts.search.train is None:
        return None, "post-training only (no --train data given)"
    from edgeforge.compress.apply import apply_recipe
    from edgeforge.compress.finetune import finetune, finetuned_int8
    from edgeforge.compress.layers import input_means, weight_layers
    from edgeforge.compress.recipe import load_space
    from edgeforge.compress.screen import Screener

    if prepared.source.format not in ("keras", "h5"):
        raise UsageError(f"--train fine-tunes Keras models; {prepared.source.path.name} is {prepared.source.format}",
                         "pass the .keras/.h5 model, or build without --train (post-training only)")
    if opts.search.epochs < 1:
        raise UsageError("--epochs must be at least 1", "e.g. --epochs 5")
    train = load_dataset(opts.search.train, prepared.sample_shape, np.dtype(prepared.data_dtype), opts.data_quant)
    layers = weight_layers(prepared.model, prepared.info)
    calib = float_view(ds.head(opts.calib_samples))
    screen = ds.head(load_space().screen_samples)

    def run(recipe: Any) -> bytes:
        with tempfile.TemporaryDirectory(prefix="edgeforge-finetune-") as tmp:
            tuned = finetune(prepared.source, layers, recipe, train, opts.search.epochs, Path(tmp))
            model, tuned_layers = finetuned_int8(tuned, calib, layers)
        info = read_tflite(model)
        means = input_means(model, info, tuned_layers, Screener(model, info, None, screen).x)
        return apply_recipe(model, tuned_layers, recipe, {}, means)

    return run, (f"fine-tuned: {opts.search.epochs} epochs on {len(train)} samples of {train.source} (gradual "
                 "magnitude pruning, then int4 quantization-aware steps)")


def scheme_search(model_path: Path, prepared: Prepared, ds: Dataset | None, val: Dataset | None, target: Target,
                   opts: BuildOptions, budget: Budget, reporter: Reporter) -> tuple[Outcome | None, Prepared]:
    """LiteRT targets: choose among the target's whole-model schemes (int8, float16, dynamic-int8, ...)."""
    from edgeforge import stages as pipeline
    from edgeforge.compress import driver

    if opts.search.recipe is not None or opts.search.measure_board is not None:
        raise UsageError("--recipe and --measure apply to microcontroller runtimes (tflm, native)",
                         "for LiteRT targets use --search always to compare the target's quantization schemes")
    searched = opts.search.mode == "always" or (opts.search.mode == "auto" and opts.quantization is None
                                                and len(prepared.model) > budget.model_flash_bytes)
    if not searched:
        return None, prepared
    variants: dict[str, Prepared] = {prepared.scheme: prepared}
    with pipeline.load(model_path, opts.data, opts.data_quant, NullReporter(),
                       opts.trust_model_code) as loaded:  # once for every scheme
        for scheme in target.quantization:
            if scheme in variants:
                continue
            reporter.stage(f"converting to {scheme}")
            try:
                variants[scheme], _ = pipeline.quantize(loaded, scheme, prepared.runtime, opts.calib_samples,
                                                        NullReporter())
            except ModelError as exc:  # e.g. an int8 source cannot become float16
                reporter.detail(f"{scheme}: {exc.message}")
    if val is None:
        val = Dataset(synthetic(prepared.sample_shape, pipeline.SYNTHETIC_SAMPLES), None,
                      f"synthetic: {pipeline.SYNTHETIC_SAMPLES} samples of normal(0, 1), seed 0")
    ctx = {"model": {"name": prepared.source.name, "sha256": prepared.source.sha256},
           "target": {"id": target.id, "name": target.name, "runtime": prepared.runtime}}
    float_model = next((p.float_model for p in variants.values() if p.float_model is not None), None)
    outcome = driver.scheme_search([(k, p.model, p.info) for k, p in variants.items()], float_model, val, target,
                                   budget, ctx, reporter)
    assert outcome.scheme is not None
    return outcome, variants[outcome.scheme]


def measurer(target: Target, opts: BuildOptions) -> Callable[[bytes], float] | None:
    """``build --measure --board``: a candidate is built (native, no search) and benchmarked on the board."""
    board = opts.search.measure_board
    if board is None:
        return None
    if not Runtime(opts.runtime or target.runtime).generates_c:
        raise UsageError("--measure benchmarks native builds", "add --runtime native")
    from edgeforge import stages as pipeline
    from edgeforge.compress.measure import measure_latency_ms

    def measure(model: bytes) -> float:
        with tempfile.TemporaryDirectory(prefix="edgeforge-measure-") as tmp:
            pipeline.build_int8(model, "candidate", target, opts.runtime or target.runtime, Path(tmp) / "build",
                                single_rounding=opts.single_rounding)
            return measure_latency_ms(Path(tmp) / "build", board, opts.search.measure_port)

    return measure
