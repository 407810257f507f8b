"""The compression search: per-layer sensitivity, a frontier of recipes under the flash and latency
budgets, screening of every candidate, and a full verification of the choice and its neighbours.

1. Sensitivity: every per-layer option (int4, pruning levels, structured pruning) is applied to that
   layer alone and screened; its output noise against the int8 model is the layer's cost in accuracy.
2. Frontier: treating per-layer noise as additive, a multiple-choice knapsack (dynamic programming over
   model flash, with a Lagrange weight on latency when the latency budget binds) gives the least-noise
   recipe for a ladder of flash budgets, the target's own budget among them.
3. Screening: every frontier recipe and the uniform presets are applied to the whole model and run.
4. Verification: the best screened candidates that fit flash, RAM and latency are evaluated on the
   selection part of the validation data with TFLite Micro; the best verified one that also keeps the
   accuracy budget wins, except that a gain inside the noise goes to the simpler candidate.
5. Distillation (when nothing post-training fits, or ``--distill always``): smaller students join as
   candidates and go through the same costing, screening and verification.
6. Report: the chosen (or held) candidate and the unchanged model on the held-out report part, with
   Wilson intervals (``holdout``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgeforge.compress.apply import Compressed, apply_recipe, compress_layer
from edgeforge.compress.layers import WeightLayer, input_means, weight_layers
from edgeforge.cost.candidate import NO_COST_MODEL, CandidateCost, FlashModel, LatencyEstimator, Storage, native_weight_bytes
from edgeforge.compress.recipe import DENSE_INT8, LayerChoice, Recipe, SearchSpace
from edgeforge.compress.screen import Score, Screener, verify
from edgeforge.data import Dataset
from edgeforge.errors import UsageError
from edgeforge.evaluate import Accuracy
from edgeforge.evaluate import outputs as model_outputs
from edgeforge.evaluate import score as score_outputs
from edgeforge.events import NullReporter, Reporter
from edgeforge.model.tflite import ModelInfo, read_tflite
from edgeforge.target.schema import Budget
from edgeforge.runtimes import Runtime

BUDGET_KEYS = ("model_flash_bytes", "model_ram_bytes", "latency_ms", "max_accuracy_drop")


@dataclass
class Candidate:
    id: str
    recipe: Recipe
    kind: str  # "preset" | "frontier"
    model: bytes
    cost: CandidateCost
    storage: dict[int, Storage]
    score: Score
    accuracy: Accuracy | None = None  # set once verified
    measured_ms: float | None = None  # set when measured on a board (build --measure)
    misses: dict[str, float] = field(default_factory=dict)  # budget -> excess
    identical: bool | None = None  # verified outputs identical to the unchanged int8 model's (set once verified)
    held_out: Accuracy | None = None  # on the report part, never used to choose (chosen/closest and int8 only)
    how: str = ""  # distilled students: how they were made

    @property
    def hw_fits(self) -> bool:
        return not any(k != "max_accuracy_drop" for k in self.misses)


@dataclass(frozen=True)
class SearchResult:
    chosen: Candidate | None
    closest: Candidate | None
    candidates: list[Candidate]
    binding: str | None
    sensitivity: dict[int, dict[LayerChoice, Score]]
    notes: tuple[str, ...]
    screen_basis: str
    latency_basis: str
    flash_basis: str
    reference: str | None = None  # what accuracy drops are measured from: "float model" / "unchanged int8 model"
    report_part: Dataset | None = None  # the held-out data the chosen/closest candidate is reported on


@dataclass(frozen=True)
class SearchInputs:
    model: bytes
    info: ModelInfo
    layers: list[WeightLayer]
    float_model: tuple[bytes, ModelInfo] | None
    screen: Dataset
    val: Dataset
    budget: Budget
    runtime: str
    target: Any
    space: SearchSpace
    base_flash: int  # model flash of the int8 model under ``runtime`` (exact)
    base_ram: int  # RAM of the int8 model under ``runtime`` (recipes do not change activations)
    ram_exact: Callable[[bytes], int] | None = None  # measures a candidate's RAM (TFLM: its arena)
    measure: Callable[[bytes], float] | None = None  # build --measure: latency (ms) of a candidate on a board
    finetune: Callable[[Recipe], bytes] | None = None  # --train: the recipe applied to a fine-tuned model
    training: str = "post-training only (no --train data given)"
    report: Dataset | None = None  # held-out report part (``val`` is then the selection part)
    split_note: str | None = None  # how the validation data was split (for the report's notes)
    distill: Callable[[Dataset | None], list[Any]] | None = None  # trains students, never on the report part
    distill_always: bool = False  # --distill always: train them even when a post-training candidate fits


class Search:
    def __init__(self, inp: SearchInputs, reporter: Reporter | None = None) -> None:
        self.inp = inp
        self.rep = reporter or NullReporter()
        self.flash = FlashModel(inp.runtime, inp.layers, inp.base_flash)
        try:
            self.latency: LatencyEstimator | None = LatencyEstimator(inp.target, inp.runtime, inp.info)
        except NO_COST_MODEL as exc:  # a target without a cost model still gets a search, without latency
            self.rep.detail(f"no latency model: {exc}")
            self.latency = None
        self.cache: dict[tuple[int, LayerChoice], Compressed] = {}
        self.storage_cache: dict[tuple[int, LayerChoice], Storage] = {}
        self.ram_cache: dict[tuple[int, ...], int] = {}
        self.screener = Screener(inp.model, inp.info, inp.float_model, inp.screen)
        self.means = input_means(inp.model, inp.info, inp.layers, self.screener.x)
        self.candidates: list[Candidate] = []
        self.by_key: dict[Any, Candidate] = {}
        self.best: Candidate | None = None
        # accuracy can be judged only with labels or a float reference: without either, only candidates
        # whose outputs equal the unchanged model's may be chosen (a lossy pick needs --recipe)
        self.judged = inp.val.y is not None or inp.float_model is not None
        self.base_outputs: np.ndarray | None = None
        self.reference_top1: float | None = None

    # -- per-layer pieces ----------------------------------------------------------------------
    def comp(self, op: int, choice: LayerChoice) -> Compressed:
        key = (op, choice)
        if key not in self.cache:
            layer = next(la for la in self.inp.layers if la.op_index == op)
            self.cache[key] = compress_layer(layer, choice, self.means.get(op))
        return self.cache[key]

    def store(self, op: int, choice: LayerChoice) -> Storage:
        key = (op, choice)
        if key not in self.storage_cache:
            self.storage_cache[key] = self.flash.storage(op, None if choice.is_default else self.comp(op, choice))
        return self.storage_cache[key]

    def layer_cost(self, op: int, choice: LayerChoice) -> tuple[int, float, float]:
        """(bits, weight density, output-channel density) of a layer under ``choice``."""
        comp = self.comp(op, choice)
        layer = next(la for la in self.inp.layers if la.op_index == op)
        per_channel = np.moveaxis(comp.values, layer.channel_axis, 0).reshape(layer.channels, -1)
        return choice.bits, comp.density, float(np.mean(np.any(per_channel != 0, axis=1)))

    def latency_ms(self, recipe: Recipe) -> float | None:
        if self.latency is None:
            return None
        return self.latency.ms({op: self.layer_cost(op, c) for op, c in recipe.layers})

    def cost(self, recipe: Recipe) -> tuple[CandidateCost, dict[int, Storage]]:
        stored = {la.op_index: self.store(la.op_index, recipe.choice(la.op_index)) for la in self.inp.layers}
        flash = self.flash.total(stored)
        ram = self.inp.base_ram
        int4_saved = sum(s.int8_bytes - s.dense_bytes for s in stored.values())
        sparse_saved = sum(s.dense_bytes - s.stored_bytes for s in stored.values())
        return CandidateCost(flash, ram, self.latency_ms(recipe), int4_saved, sparse_saved), stored

    # -- candidates ------------------------------------------------------------------------------
    def add(self, recipe: Recipe, kind: str) -> Candidate:
        if recipe.key in self.by_key:
            return self.by_key[recipe.key]
        model = apply_recipe(self.inp.model, self.inp.layers, recipe, self.cache, self.means)
        cost, stored = self.cost(recipe)
        if Runtime(self.inp.runtime).flash_holds_flatbuffer:  # the flatbuffer itself is what goes to flash: exact size
            cost = replace(cost, flash_bytes=len(model), ram_bytes=self._ram(recipe, model))
        elif any(c.structured for _, c in recipe.layers):  # removed channels shrink their consumers too
            cost = replace(cost, flash_bytes=native_weight_bytes(read_tflite(model), model))
        cand = Candidate(f"c{len(self.candidates):02d}", recipe, kind, model, cost, stored,
                         self.screener.score(model))
        cand.misses = self.misses(cand)
        self.candidates.append(cand)
        self.by_key[recipe.key] = cand
        if cand.hw_fits and (self.best is None or cand.score.rank() > self.best.score.rank()):
            self.best = cand
        return cand

    def misses(self, cand: Candidate) -> dict[str, float]:
        return budget_misses(cand, self.inp.budget, self.reference_top1)

    # -- the steps ---------------------------------------------------------------------------------
    def sensitivity(self, options: list[LayerChoice]) -> dict[int, dict[LayerChoice, Score]]:
        total = len(self.inp.layers) * len(options)
        self.rep.stage(f"measuring per-layer sensitivity ({total} single-layer variants)")
        out: dict[int, dict[LayerChoice, Score]] = {}
        done = 0
        for layer in self.inp.layers:
            row: dict[LayerChoice, Score] = {DENSE_INT8: Score(None, None, 0.0)}
            for choice in options:
                if choice.is_default or not layer.allows(choice.bits):
                    done += 1
                    continue
                model = apply_recipe(self.inp.model, self.inp.layers, Recipe.of("probe", {layer.op_index: choice}),
                                     self.cache, self.means)
                row[choice] = self.screener.score(model)
                done += 1
                self.rep.progress(done, total)
            out[layer.op_index] = row
        return out

    def frontier(self, sens: dict[int, dict[LayerChoice, Score]], options: list[LayerChoice]) -> list[Recipe]:
        """Least-noise recipes for a ladder of flash capacities (and the budget itself)."""
        layers = self.inp.layers
        ops = [la.op_index for la in layers]
        cost = np.array([[self.store(op, c).stored_bytes for c in options] for op in ops], dtype=np.int64)
        noise = np.array([[sens[op][c].noise if c in sens[op] else np.inf for c in options] for op in ops])
        lat = self._latency_deltas(ops, options)
        lo, hi = int(cost.min(axis=1).sum()), int(cost.max(axis=1).sum())
        unit = max(1, math.ceil(hi / 4000))
        budget_cap = self.inp.budget.model_flash_bytes - self.flash.fixed
        n = self.inp.space.frontier_points
        caps = sorted({int(lo + (hi - lo) * k / max(n - 1, 1)) for k in range(n)} | {budget_cap})
        caps = [c for c in caps if c >= lo]
        recipes = []
        for cap in caps:
            rec = self._knapsack(ops, options, cost, noise, lat, cap, unit)
            if rec is not None:
                recipes.append(rec)
        return recipes

    def _latency_deltas(self, ops: list[int], options: list[LayerChoice]) -> np.ndarray | None:
        if self.latency is None:
            return None
        base = self.latency.ms({})
        return np.array([[self.latency.ms({op: self.layer_cost(op, c)}) - base if not c.is_default
                          else 0.0 for c in options] for op in ops])

    def _knapsack(self, ops: list[int], options: list[LayerChoice], cost: np.ndarray, noise: np.ndarray,
                  lat: np.ndarray | None, cap: int, unit: int) -> Recipe | None:
        budget_ms = self.inp.budget.latency_ms
        base_ms = self.latency.ms({}) if self.latency is not None else 0.0

        def solve(mu: float) -> list[int] | None:
            pen = noise + (mu * lat if lat is not None else 0.0)
            slots = cap // unit + 1
            q = -(-cost // unit)  # ceil: never under-count bytes
            best = np.zeros(slots)
            picks = np.zeros((len(ops), slots), dtype=np.int16)
            for i in range(len(ops)):
                nxt = np.full(slots, np.inf)
                for j in range(len(options)):
                    c = int(q[i, j])
                    if c >= slots:
                        continue
                    cand = np.full(slots, np.inf)
                    cand[c:] = best[: slots - c] + pen[i, j]
                    better = cand < nxt
                    nxt[better] = cand[better]
                    picks[i, better] = j
                best = nxt
            if not np.isfinite(best[-1]):
                return None
            slot, chosen = slots - 1, []
            for i in range(len(ops) - 1, -1, -1):
                j = int(picks[i, slot])
                chosen.append(j)
                slot -= int(q[i, j])
            return chosen[::-1]

        chosen = solve(0.0)
        if chosen is None:
            return None
        if lat is not None and base_ms + sum(lat[i, j] for i, j in enumerate(chosen)) > budget_ms:
            lo_mu, hi_mu = 0.0, 1.0
            for _ in range(40):  # bisect the Lagrange weight on latency
                trial = solve(hi_mu)
                if trial is not None and base_ms + sum(lat[i, j] for i, j in enumerate(trial)) <= budget_ms:
                    break
                hi_mu *= 4
            for _ in range(20):
                mid = (lo_mu + hi_mu) / 2
                trial = solve(mid)
                if trial is not None and base_ms + sum(lat[i, j] for i, j in enumerate(trial)) <= budget_ms:
                    hi_mu, chosen = mid, trial
                else:
                    lo_mu = mid
            chosen = solve(hi_mu) or chosen
        return Recipe.of(f"frontier @ {cap + self.flash.fixed} B",
                         {op: options[j] for op, j in zip(ops, chosen)})

    def run(self) -> SearchResult:
        inp = self.inp
        options = inp.space.options()
        base = self.add(Recipe("int8"), "preset")
        sens = self.sensitivity(options)
        presets = [Recipe.of(name, {la.op_index: c if la.allows(c.bits) else LayerChoice(8, c.sparsity, c.structured)
                                    for la in inp.layers}) for name, c in inp.space.presets if c.bits in inp.space.bits]
        frontier = self.frontier(sens, options)
        todo = [(r, "preset") for r in presets] + [(r, "frontier") for r in frontier]
        self.rep.stage(f"screening {len(todo)} candidates")
        for k, (recipe, kind) in enumerate(todo, 1):
            self.add(recipe, kind)
            best = self.best
            self.rep.progress(k, len(todo), "" if best is None else
                              f"best so far {best.id}: {self._score_text(best.score)}, {best.cost.flash_bytes} B")
        if inp.finetune is not None:
            self._finetune()
        self._verify(base)  # first: its outputs and accuracy are the reference for every other candidate
        self.distilled = False
        if inp.distill is not None and inp.distill_always:
            self._distill()
        chosen = self._choose()
        if chosen is None and inp.distill is not None and not self.distilled:
            self._distill()  # post-training compression cannot reach the budgets: train smaller students
            chosen = self._choose()
        closest = None if chosen is not None else self._closest()
        pick = chosen or closest
        if pick is not None and self.judged:
            self._held_out(base)
            self._held_out(pick)
        notes = self._notes()
        latency_basis = self.latency.basis if self.latency is not None else "no latency model for this target"
        reference = None
        if base.accuracy is not None and base.accuracy.float_top1 is not None:
            reference = "float model"
        elif base.accuracy is not None and base.accuracy.top1 is not None:
            reference = "unchanged int8 model"
        return SearchResult(chosen, closest, self.candidates, self._binding(chosen), sens, tuple(notes),
                            self.screener.describe(), latency_basis, self.flash.basis, reference, self.inp.report)

    @staticmethod
    def _score_text(s: Score) -> str:
        if s.top1 is not None:
            return f"top-1 {s.top1 * 100:.1f}% screened"
        return f"SQNR {s.sqnr_db:.1f} dB screened" if s.sqnr_db is not None else f"noise {s.noise:.2e}"

    def _finetune(self) -> None:
        """Fine-tune the best screened candidates that fit flash, RAM and latency (and compress)."""
        assert self.inp.finetune is not None
        picks = sorted((c for c in self.candidates if c.hw_fits and c.recipe.layers),
                       key=lambda c: (c.score.rank(), -c.cost.flash_bytes), reverse=True)
        picks = picks[: self.inp.space.finetune_candidates]
        for k, cand in enumerate(picks, 1):
            self.rep.stage(f"fine-tuning {cand.id} ({k}/{len(picks)}): {cand.recipe.summary()}")
            model = self.inp.finetune(cand.recipe)
            recipe = Recipe(f"{cand.recipe.name}, fine-tuned", cand.recipe.layers)
            cost = replace(cand.cost, flash_bytes=self.flash.measure(model)) if Runtime(self.inp.runtime).generates_c \
                else replace(cand.cost, flash_bytes=len(model))
            ft = Candidate(f"c{len(self.candidates):02d}", recipe, "fine-tuned", model, cost, cand.storage,
                           self.screener.score(model))
            ft.misses = self.misses(ft)
            self.candidates.append(ft)

    def _distill(self) -> None:
        """Students (and their all-int4 versions) as candidates, costed, screened and verified like any."""
        assert self.inp.distill is not None
        self.distilled = True
        try:
            students = self.inp.distill(self.inp.report)
        except UsageError as exc:
            if self.inp.distill_always:
                raise
            # auto: a model the rebuild cannot express is searched post-training only, and the report says why
            self.distill_skipped = f"distillation skipped: {exc.message}"
            self.rep.warning(self.distill_skipped)
            return
        for st in students:
            info = read_tflite(st.model)
            layers = weight_layers(st.model, info)
            int4 = Recipe.of("int4", {la.op_index: LayerChoice(4) for la in layers if la.allows(4)})
            means = input_means(st.model, info, layers, self.screener.x)
            for name, model, how in ((st.name, st.model, st.how),
                                     (f"{st.name}, int4", apply_recipe(st.model, layers, int4, None, means),
                                      f"{st.how}; then every weight layer int4 (bias-corrected)")):
                cand = self._add_model(name, model, "distilled", [4 if "int4" in name else 8], how)
                if cand.hw_fits:
                    self._verify(cand)

    def _add_model(self, name: str, model: bytes, kind: str, bits: list[int], how: str) -> Candidate:
        """A candidate that is a different model (not a recipe on the int8 one)."""
        info = read_tflite(model)
        native = self.inp.runtime == "native"
        flash = native_weight_bytes(info, model) if native else len(model)
        ram = self.inp.base_ram
        if not native and self.inp.ram_exact is not None:
            ram = self.inp.ram_exact(model)
        latency = None
        if self.latency is not None:
            est = LatencyEstimator(self.inp.target, self.inp.runtime, info)
            latency = est.ms({la.op_index: (bits[0], 1.0, 1.0) for la in weight_layers(model, info)})
        cand = Candidate(f"c{len(self.candidates):02d}", Recipe(name), kind, model,
                         CandidateCost(flash, ram, latency, 0, 0), {}, self.screener.score(model, info), how=how)
        cand.misses = self.misses(cand)
        self.candidates.append(cand)
        return cand

    def _ram(self, recipe: Recipe, model: bytes) -> int:
        """TFLM's arena grows with int4 filters (unpacking scratch): measured once per set of int4 layers
        (pruning does not change it)."""
        int4 = tuple(op for op, c in recipe.layers if c.bits == 4)
        if not int4 or self.inp.ram_exact is None:
            return self.inp.base_ram
        if int4 not in self.ram_cache:
            self.ram_cache[int4] = self.inp.ram_exact(model)
        return self.ram_cache[int4]

    def _verify(self, cand: Candidate) -> None:
        """TFLite Micro on the selection part; the first candidate verified is the unchanged int8 model,
        whose outputs and accuracy are the reference for the others."""
        if cand.accuracy is not None:
            return
        self.rep.stage(f"verifying {cand.id} ({cand.recipe.name}) on {len(self.inp.val)} samples with TFLite Micro")
        info = read_tflite(cand.model)
        y = model_outputs(cand.model, info, "tflm", self.inp.val)
        cand.accuracy = score_outputs(y, self.inp.float_model, self.inp.val, "tflm")
        if self.base_outputs is None:  # the unchanged model
            self.base_outputs = y
            acc = cand.accuracy
            self.reference_top1 = acc.float_top1 if acc.float_top1 is not None else acc.top1
        cand.identical = bool(np.array_equal(y, self.base_outputs))
        cand.misses = self.misses(cand)

    def eligible(self, cand: Candidate) -> bool:
        """Verified, within every budget, and judged: a candidate whose accuracy cannot be measured is
        eligible only with the unchanged model's exact outputs."""
        return cand.accuracy is not None and not cand.misses and (self.judged or bool(cand.identical))

    def _held_out(self, cand: Candidate) -> None:
        """The reported accuracy: TFLite Micro on the report part, which nothing was chosen on."""
        rep = self.inp.report
        if rep is None or cand.held_out is not None:
            return
        self.rep.stage(f"reporting {cand.id} on {len(rep)} held-out samples with TFLite Micro")
        cand.held_out = verify(cand.model, read_tflite(cand.model), self.inp.float_model, rep)

    def _choose(self) -> Candidate | None:
        fits = sorted((c for c in self.candidates if c.hw_fits),
                      key=lambda c: (c.score.rank(), -c.cost.flash_bytes), reverse=True)
        want = 1 + self.inp.space.verify_neighbours
        verified: list[Candidate] = []
        for cand in fits:
            if not self.judged and cand.score.noise > 0:  # cannot be chosen: no need to verify it
                continue
            self._verify(cand)
            verified.append(cand)
            good = [c for c in verified if self.eligible(c)]
            if len(verified) >= want and good:
                break
            if len(verified) >= want + 4:  # give up: the accuracy budget is out of reach
                break
        if self.inp.measure is not None:
            self._measure(verified)
        good = [c for c in self.candidates if self.eligible(c)]  # verified here or before (students)
        if not good:
            return None
        return prefer_simple(good, len(self.inp.val))

    def _measure(self, cands: list[Candidate]) -> None:
        """Flash the verified candidates and decide latency on what the board measures."""
        assert self.inp.measure is not None
        base = self.candidates[0]
        for k, cand in enumerate([base] + [c for c in cands if c is not base], 1):
            self.rep.stage(f"measuring {cand.id} on the board ({k}/{len(cands) + 1})")
            cand.measured_ms = self.inp.measure(cand.model)
            cand.cost = replace(cand.cost, latency_ms=cand.measured_ms)
            cand.misses = self.misses(cand)

    def _closest(self) -> Candidate | None:
        def worst_excess(c: Candidate) -> float:
            b = self.inp.budget
            limits = {"model_flash_bytes": b.model_flash_bytes, "model_ram_bytes": b.model_ram_bytes,
                      "latency_ms": b.latency_ms, "max_accuracy_drop": max(b.max_accuracy_drop, 1e-3)}
            return max((v / limits[k] for k, v in c.misses.items()), default=0.0)

        if not self.judged:  # no way to tell what a lossy candidate costs in accuracy: hold the unchanged model
            return self.candidates[0] if self.candidates else None
        # a build that fits the hardware can at least be flashed and measured: prefer one, the most
        # accurate as verified (else as screened); only when none fits, the one missing by the least
        hw = [c for c in self.candidates if c.hw_fits]
        for c in sorted(hw, key=lambda c: c.score.rank(), reverse=True)[:2]:
            self._verify(c)  # the held build's accuracy is always measured
        checked = [c for c in hw if c.accuracy is not None]
        if checked:
            return max(checked, key=lambda c: (verified_rank(c), -c.cost.flash_bytes))
        return min(self.candidates, key=lambda c: (worst_excess(c), -c.score.rank()[0]), default=None)

    def _binding(self, chosen: Candidate | None) -> str | None:
        return binding_budget(chosen, self.candidates, self.inp.budget, lambda c: c.score.rank())

    def _notes(self) -> list[str]:
        notes = ["post-training only: no --train data was given, so pruned and int4 layers are not fine-tuned"
                 if self.inp.finetune is None else f"{self.inp.training}; the post-training candidates are kept "
                 "in the table for comparison"]
        if self.inp.runtime == Runtime.TFLM:
            notes.append("TFLite Micro stores and runs pruned weights dense: sparsity saves no flash or time "
                         "with the tflm runtime (build with --runtime native to exploit it); int4 halves filter "
                         "flash but TFLM unpacks int4 filters into an int8 scratch buffer (counted in RAM)")
        elif self.inp.runtime == Runtime.NATIVE:
            notes.append("native runtime: pruned filters are stored sparse when that is smaller and their "
                         "kernels skip zero weights (bit-exact with the dense result)")
        if self.inp.val.y is None and self.judged:
            notes.append("no labels: candidates are ranked by output SQNR against the float model")
        if not self.judged:
            notes.append("no labels and no float reference: accuracy cannot be measured, so only a candidate "
                         "with the unchanged model's exact outputs may be chosen (name a lossy one with --recipe, "
                         "or give labelled --val data)")
        elif self.inp.val.y is not None and self.reference_top1 is not None \
                and self.candidates and self.candidates[0].accuracy is not None \
                and self.candidates[0].accuracy.float_top1 is None:
            notes.append("no float reference: the accuracy budget is the drop from the unchanged int8 model")
        if self.inp.val.y is not None:
            notes.append("ties within the noise go to the simpler model: a candidate is preferred over a more "
                         "accurate-looking one when their selection top-1 differ by less than the Wilson 95 % "
                         "half-width (the unchanged model first, then the least output change)")
        if self.inp.split_note:
            notes.append(self.inp.split_note)
        if getattr(self, "distill_skipped", None):
            notes.append(self.distill_skipped)
        elif getattr(self, "distilled", False):
            notes.append("distilled students (kind 'distilled') are new, smaller models trained against the source's "
                         "outputs, never on the held-out report part; they are screened, costed and verified like "
                         "every other candidate. Where their training inputs overlap the selection part (the same "
                         "data given as --data and --val), their selection top-1 is optimistic: judge them by "
                         "the held-out figure")
        return notes


def verified_rank(c: Candidate) -> tuple[float, float]:
    """Verified accuracy (top-1, else SQNR against the float model), then fidelity to the int8 model."""
    acc = c.accuracy
    if acc is None:
        return (-math.inf, -c.score.noise)
    if acc.top1 is not None:
        return (acc.top1, -c.score.noise)
    sq = acc.sqnr_db if acc.sqnr_db is not None and math.isfinite(acc.sqnr_db) else 1e9
    return (sq if acc.sqnr_db is not None else 0.0, -c.score.noise)


def prefer_simple(good: list[Candidate], n: int) -> Candidate:
    """The most accurate of ``good``, except that a gain inside the noise is not taken: every candidate
    whose selection top-1 is within the Wilson 95 % half-width of the best is tied, and of those the
    unchanged model wins, then the one whose outputs moved least from it. Without labels: the best rank."""
    from edgeforge.compress.holdout import half_width

    best = max(good, key=lambda c: (verified_rank(c), -c.cost.flash_bytes))
    top = best.accuracy.top1 if best.accuracy is not None else None
    if top is None:
        return best
    margin = half_width(top, n)
    tied = [c for c in good if c.accuracy is not None and c.accuracy.top1 is not None
            and top - c.accuracy.top1 <= margin]
    return max(tied, key=lambda c: (not c.recipe.layers, -c.score.noise, -c.cost.flash_bytes))


def accuracy_drop(acc: Accuracy | None, reference_top1: float | None) -> float | None:
    """Top-1 drop from the float model, or from the unchanged int8 model when there is no float model
    (an int8 ``.tflite`` source): the accuracy budget holds for every kind of source."""
    if acc is None or acc.top1 is None:
        return None
    if acc.drop is not None:
        return acc.drop
    return None if reference_top1 is None else reference_top1 - acc.top1


def budget_misses(cand: Candidate, b: Budget, reference_top1: float | None = None) -> dict[str, float]:
    """Budget -> excess, for every budget ``cand`` misses (accuracy only once it is verified)."""
    out: dict[str, float] = {}
    if cand.cost.flash_bytes > b.model_flash_bytes:
        out["model_flash_bytes"] = cand.cost.flash_bytes - b.model_flash_bytes
    if cand.cost.ram_bytes > b.model_ram_bytes:
        out["model_ram_bytes"] = cand.cost.ram_bytes - b.model_ram_bytes
    if cand.cost.latency_ms is not None and cand.cost.latency_ms > b.latency_ms:
        out["latency_ms"] = round(cand.cost.latency_ms - b.latency_ms, 3)
    drop = accuracy_drop(cand.accuracy, reference_top1)
    if drop is not None and drop > b.max_accuracy_drop:
        out["max_accuracy_drop"] = round(drop - b.max_accuracy_drop, 6)
    return out


def binding_budget(chosen: Candidate | None, candidates: list[Candidate], b: Budget,
                   rank: Callable[[Candidate], Any]) -> str | None:
    """The budget that keeps the search from a more accurate candidate: of the candidates ranked above
    the chosen one that miss a budget, the best one's most exceeded budget (relative to its limit).
    None when no better candidate was turned away by a budget (the chosen one is the best that was
    found, or better-looking ones lost only on verification)."""
    if chosen is None:
        return None
    turned_away = [c for c in candidates if rank(c) > rank(chosen) and c.misses]
    if not turned_away:
        return None
    best = max(turned_away, key=rank)
    limits = {"model_flash_bytes": b.model_flash_bytes, "model_ram_bytes": b.model_ram_bytes,
              "latency_ms": b.latency_ms, "max_accuracy_drop": max(b.max_accuracy_drop, 1e-3)}
    return max(sorted(best.misses), key=lambda k: best.misses[k] / limits[k])
