"""The search as a build stage: decide whether to search, run it (or replay a recipe), and hand the
build the chosen model with its report files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeforge.compress.apply import apply_recipe
from edgeforge.compress.document import layer_names, search_document
from edgeforge.compress.layers import WeightLayer, input_means, weight_layers
from edgeforge.compress.recipe import Recipe, load_space, read_recipe
from edgeforge.report.render import render_html, render_json
from edgeforge.compress.screen import Screener
from edgeforge.compress.search import Candidate, Search, SearchInputs, SearchResult
from edgeforge.data import Dataset
from edgeforge.errors import UsageError
from edgeforge.evaluate import Accuracy
from edgeforge.events import Reporter
from edgeforge.model.tflite import ModelInfo, read_tflite
from edgeforge.target.schema import Budget, Target
from edgeforge.runtimes import Runtime

SEARCH_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class SearchOptions:
    mode: str = "auto"  # auto: search when the int8 model misses the flash or latency budget
    recipe: Path | None = None  # replay a recipe instead of searching
    measure_board: str | None = None  # build --measure --board: decide latency on measured numbers
    measure_port: str | None = None
    train: Path | None = None  # --train DATA: fine-tune pruned/int4 candidates (Keras sources)
    epochs: int = 5
    distill: str = "auto"  # auto: train students when nothing post-training fits (Keras source, real data)
    distill_minutes: float = 3.0  # wall-time budget of all students together


@dataclass(frozen=True)
class Outcome:
    """What the build continues with."""

    model: bytes
    info: ModelInfo
    recipe: Recipe
    accuracy: Accuracy | None  # verified with TFLM on the validation data, when the search did it
    result: SearchResult | None
    measured_ms: float | None = None  # build --measure: the chosen model's latency on the board
    files: dict[str, bytes] = field(default_factory=dict)  # report.html, report.json, recipe.toml
    summary: dict[str, Any] = field(default_factory=dict)  # for the manifest and the CLI
    scheme: str | None = None  # LiteRT scheme search: the whole-model scheme chosen

    @property
    def fits(self) -> bool:
        return self.result is None or self.result.chosen is not None


def base_flash(info: ModelInfo, model: bytes, runtime: str) -> int:
    """Model flash of the uncompressed model: for the native runtime its weights as the emitter stores
    them (filters sparse where ``edgeforge.native.sparse`` says that is smaller, so zeros already in
    the source count as saved; biases and other constants as they are), the flatbuffer for interpreters."""
    if Runtime(runtime).flash_holds_flatbuffer:
        return len(model)
    from edgeforge.cost.candidate import native_weight_bytes

    return native_weight_bytes(info, model)


def wanted(opts: SearchOptions, runtime: str, scheme: str, flash: int, latency_ms: float | None,
           budget: Budget) -> bool:
    if opts.recipe is not None or opts.mode == "always":
        return True
    if opts.mode == "never" or scheme != "int8" or runtime == Runtime.LITERT:
        return False
    # TFLite Micro runs pruned weights dense and int4 slower: per-layer compression cannot buy it latency
    slow = Runtime(runtime).skips_zero_weights and latency_ms is not None and latency_ms > budget.latency_ms
    return flash > budget.model_flash_bytes or slow


def replay(model: bytes, info: ModelInfo, path: Path, screen: Dataset | None, finetune: Any = None) -> Outcome:
    """``--recipe FILE``: apply a recipe as written (with bias correction when data is given; after
    fine-tuning with ``--train``)."""
    layers = weight_layers(model, info)
    recipe = read_recipe(path, [la.op_index for la in layers])
    if finetune is not None:
        out = finetune(recipe)
        return Outcome(out, read_tflite(out, "the compressed model"), recipe, None, None,
                       summary={"recipe": recipe.name, "replayed": str(path), "fine_tuned": True,
                                "layers": recipe.summary(layer_names(layers))})
    means = None
    if screen is not None:  # the same inputs the search corrected biases with: same bytes out
        subset = screen.head(load_space().screen_samples)
        means = input_means(model, info, layers, Screener(model, info, None, subset).x)
    out = apply_recipe(model, layers, recipe, {}, means)
    return Outcome(out, read_tflite(out, "the compressed model"), recipe, None, None,
                   summary={"recipe": recipe.name, "replayed": str(path), "layers": recipe.summary(layer_names(layers))})


def search(model: bytes, info: ModelInfo, float_model: tuple[bytes, ModelInfo] | None, screen: Dataset,
           val: Dataset, target: Target, runtime: str, budget: Budget, base_ram: int, ram_exact: Any,
           report_ctx: dict[str, Any], reporter: Reporter, measure: Any = None, finetune: Any = None,
           training: str = "post-training only (no --train data given)", used: tuple[Dataset, ...] = (),
           distill: Any = None, distill_always: bool = False) -> Outcome:
    """Search; ``val`` is split into a selection part and a held-out report part that shares no sample
    with ``used`` (calibration, screening and training inputs)."""
    from edgeforge.compress.holdout import split

    layers: list[WeightLayer] = weight_layers(model, info)
    if not layers:
        raise UsageError("the model has no int8 CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED filters to compress",
                         "build without --search")
    space = load_space(target.data.get("search"))
    screened = screen.head(space.screen_samples)
    parts = split(val, [screened, *used])
    inputs = SearchInputs(model, info, layers, float_model, screened, parts.selection, budget, runtime,
                          target, space, base_flash(info, model, runtime), base_ram, ram_exact, measure, finetune,
                          training, parts.report, parts.note, distill, distill_always)
    result = Search(inputs, reporter).run()
    pick: Candidate | None = result.chosen or result.closest
    assert pick is not None
    sel = parts.selection
    doc = search_document(result, layers, budget, report_ctx["model"], report_ctx["target"],
                          f"TFLite Micro (bit-exact with the native runtime) on {len(sel)} samples of {sel.source}",
                          training)
    files = {"report.html": render_html(doc), "report.json": render_json(doc)}
    if pick.kind != "distilled":  # a student is a new model, not a recipe on this one: no recipe to replay
        files["recipe.toml"] = pick.recipe.to_toml().encode()
    summary = _summary(doc, pick, pick.recipe.name if pick.kind == "distilled"
                       else pick.recipe.summary(layer_names(layers)))
    if measure is not None:
        summary["measured_on"] = report_ctx.get("board")
    accuracy = pick.held_out if pick.held_out is not None else pick.accuracy  # the honest figure when there is one
    return Outcome(pick.model, read_tflite(pick.model, "the compressed model"), pick.recipe, accuracy, result,
                   pick.measured_ms, files, summary)


_TABLE_KEYS = ("id", "name", "summary", "flash_bytes", "ram_bytes", "latency_ms", "accuracy", "sqnr_db", "evaluated",
               "fits", "misses", "pareto", "saved")


def _summary(doc: dict[str, Any], pick: Candidate, layers: str) -> dict[str, Any]:
    """What the manifest and the CLI show of a search: the choice and a compact table of every candidate."""
    return {"chosen": doc["chosen"], "closest": doc["closest"], "binding": doc["binding"],
            "held_out": doc.get("held_out"),
            "candidates": len(doc["candidates"]), "recipe": pick.recipe.name, "layers": layers,
            "flash_bytes": pick.cost.flash_bytes, "saved": pick.cost.to_json()["saved"], "report": "report.html",
            "table": [{k: r[k] for k in _TABLE_KEYS} for r in doc["candidates"]]}


def scheme_search(variants: list[tuple[str, bytes, ModelInfo]], float_model: tuple[bytes, ModelInfo] | None,
                  val: Dataset, target: Target, budget: Budget, report_ctx: dict[str, Any],
                  reporter: Reporter) -> Outcome:
    """Phones and Raspberry Pi (LiteRT): the candidates are whole-model schemes (int8, float16,
    dynamic-range int8, float32), each converted, run with LiteRT on the validation data, and sized
    exactly (the .tflite is what ships). LiteRT's CPU kernels run weights dense, so per-layer pruning
    is not offered here."""
    from edgeforge.analyze import activation_peak
    from edgeforge.cost.candidate import NO_COST_MODEL, CandidateCost, LatencyEstimator
    from edgeforge.compress.screen import Score
    from edgeforge.compress.search import binding_budget, budget_misses, verified_rank
    from edgeforge.evaluate import evaluate

    cands: list[Candidate] = []
    for k, (scheme, model, info) in enumerate(variants):
        reporter.stage(f"evaluating {scheme} with LiteRT on {len(val)} samples ({k + 1}/{len(variants)})")
        acc = evaluate(float_model, model, info, "litert", val)
        try:
            latency: float | None = LatencyEstimator(target, "litert", info).ms({})
        except NO_COST_MODEL:
            latency = None
        cost = CandidateCost(len(model), activation_peak(info), latency, 0, 0)
        cand = Candidate(f"c{k:02d}", Recipe(scheme), "scheme", model, cost, {}, Score(acc.top1, acc.sqnr_db, 0.0), acc)
        cands.append(cand)
    for c in cands:
        c.misses = budget_misses(c, budget)
    good = [c for c in cands if not c.misses]
    chosen = max(good, key=lambda c: (verified_rank(c), -c.cost.flash_bytes)) if good else None
    closest = None if chosen is not None else min(cands, key=lambda c: (len(c.misses), c.cost.flash_bytes))
    binding = binding_budget(chosen, cands, budget, verified_rank)
    notes = ("LiteRT runs weights dense: the candidates are whole-model schemes; per-layer int4 and pruning are "
             "offered for microcontroller runtimes (tflm, native)",
             "post-training only (no --train data given)")
    result = SearchResult(chosen, closest, cands, binding, {}, notes, "LiteRT on every validation sample",
                          "target profile cost model (litert)", "exact: the .tflite file")
    pick = chosen or closest
    assert pick is not None
    doc = search_document(result, [], budget, report_ctx["model"], report_ctx["target"],
                          f"LiteRT on {len(val)} samples of {val.source}", "post-training only (no --train data given)")
    files = {"report.html": render_html(doc), "report.json": render_json(doc)}
    summary = {**_summary(doc, pick, f"whole model {pick.recipe.name}"), "scheme": pick.recipe.name}
    return Outcome(pick.model, read_tflite(pick.model), pick.recipe, pick.accuracy, result, None, files, summary,
                   scheme=pick.recipe.name)
