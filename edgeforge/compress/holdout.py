"""Honest accuracy for the search: the validation data is split into a selection part (the search
chooses on it) and a report part (never used for calibration, screening, training or selection),
and the reported top-1 carries a Wilson 95 % confidence interval.

Why a split: the search picks the best of many candidates on the data it verifies them on, so the
winner's score there is optimistic (on KWS the all-int4 pick scored 91.8 % on the inputs it was
chosen on and 90.8 % on others, below plain int8). Why Wilson: the normal approximation collapses at
accuracies near 100 % and small samples; Wilson's interval stays inside [0, 1] and is close to exact.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from edgeforge.data import Dataset

#: z for a two-sided 95 % interval
Z95 = 1.959963984540054
#: the share of the validation data held out for the report
REPORT_SHARE = 0.5
#: fewer unused samples than this: no report part (too few to say anything; the report says so)
MIN_REPORT = 10
SEED = 0


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``correct / n``."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def half_width(top1: float, n: int) -> float:
    """Half the width of the Wilson interval at accuracy ``top1`` on ``n`` samples."""
    lo, hi = wilson(round(top1 * n), n)
    return (hi - lo) / 2


def _digests(x: np.ndarray) -> list[bytes]:
    flat = np.ascontiguousarray(x).reshape(len(x), -1)
    return [hashlib.sha256(row.tobytes()).digest() for row in flat]


@dataclass(frozen=True)
class Split:
    selection: Dataset
    report: Dataset | None  # None: no samples were left unused (the note says why)
    excluded: int  # validation samples that are also calibration/screening/training inputs
    note: str


def split(val: Dataset, used: list[Dataset], seed: int = SEED) -> Split:
    """Split ``val`` into a selection part and a report part. The report part is drawn (seeded, so
    builds stay deterministic) only from samples that appear in none of ``used`` (calibration,
    screening, training inputs, compared by content), and takes up to ``REPORT_SHARE`` of ``val``."""
    seen = {d for ds in used for d in _digests(ds.x)}
    digests = _digests(val.x)
    free = np.array([i for i, d in enumerate(digests) if d not in seen], dtype=np.int64)
    excluded = len(val) - len(free)
    want = min(len(free), int(math.ceil(len(val) * REPORT_SHARE)))
    if want < MIN_REPORT:
        note = (f"no held-out report part: only {len(free)} of {len(val)} validation samples are unused by "
                "calibration/screening, so the accuracy shown is the one the search selected on (optimistic)")
        return Split(val, None, excluded, note)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(free, size=want, replace=False))
    mask = np.zeros(len(val), dtype=bool)
    mask[pick] = True

    def part(m: np.ndarray, name: str) -> Dataset:
        return Dataset(val.x[m], None if val.y is None else val.y[m], f"{val.source} ({name})", val.quant)

    note = (f"held-out report part: {want} of {len(val)} validation samples (seeded draw from the {len(free)} "
            "never used for calibration, screening or training); the search selected on the other "
            f"{len(val) - want}")
    return Split(part(~mask, "selection part"), part(mask, "report part"), excluded, note)


def without(ds: Dataset, other: Dataset | None) -> Dataset:
    """``ds`` less every sample that is also in ``other`` (by content)."""
    if other is None or len(other) == 0:
        return ds
    drop = set(_digests(other.x))
    keep = np.array([d not in drop for d in _digests(ds.x)], dtype=bool)
    if keep.all():
        return ds
    return Dataset(ds.x[keep], None if ds.y is None else ds.y[keep], f"{ds.source} (less the report part)", ds.quant)
