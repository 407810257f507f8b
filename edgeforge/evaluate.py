"""Accuracy of the compressed model against the float model: top-1 with labels, else output SQNR."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeforge.data import Dataset, float_view, model_view
from edgeforge.hostrun import run_batch
from edgeforge.model.tflite import ModelInfo, TensorInfo


@dataclass(frozen=True)
class Accuracy:
    samples: int
    data: str  # where the evaluation inputs came from
    runtime: str  # host interpreter that ran the compressed model
    float_top1: float | None = None
    top1: float | None = None
    sqnr_db: float | None = None

    @property
    def drop(self) -> float | None:
        if self.float_top1 is None or self.top1 is None:
            return None
        return self.float_top1 - self.top1

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "data": self.data, "runtime": self.runtime, "float_top1": self.float_top1,
                "top1": self.top1, "top1_drop": self.drop,
                # JSON has no infinity: identical outputs are flagged instead
                "sqnr_db": self.sqnr_db if self.sqnr_db is None or math.isfinite(self.sqnr_db) else None,
                "identical_outputs": self.sqnr_db == math.inf}


def dequantize(out: np.ndarray, t: TensorInfo) -> np.ndarray:
    """Real values of raw outputs of tensor ``t`` (quantized integers are mapped through scale and zero point)."""
    if np.dtype(t.dtype).kind in "iu" and t.scale:
        return (out.astype(np.float64) - t.zero_point[0]) * t.scale[0]
    return out.astype(np.float64)


def _batch(x: np.ndarray, t: TensorInfo) -> np.ndarray:
    return x.reshape((x.shape[0], 1, *t.shape[1:])) if t.shape and t.shape[0] == 1 else x


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    noise = float(np.sum((reference - test) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def outputs(model: bytes, info: ModelInfo, runtime: str, ds: Dataset,
            progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Real-valued first output of ``model`` for every sample of ``ds``: [N, ...]."""
    inp, out = info.input_tensors()[0], info.output_tensors()[0]
    scale = inp.scale[0] if inp.scale else None
    zp = inp.zero_point[0] if inp.zero_point else None
    x = _batch(model_view(ds, inp.dtype, scale, zp), inp)
    return dequantize(run_batch(model, runtime, x, progress), out)


def score(got: np.ndarray, float_model: tuple[bytes, ModelInfo] | None, ds: Dataset, runtime: str) -> Accuracy:
    """Accuracy of real-valued outputs ``got`` [N, ...]: top-1 with labels, SQNR against the float model."""
    got = got.reshape(len(got), -1)
    ds.check_labels(got.shape[1])
    ref = None
    if float_model is not None:
        fbytes, finfo = float_model
        fin = finfo.input_tensors()[0]
        x = _batch(float_view(ds).astype(np.dtype(fin.dtype)), fin)
        ref = dequantize(run_batch(fbytes, "litert", x), finfo.output_tensors()[0]).reshape(len(got), -1)
    top1 = float(np.mean(got.argmax(axis=1) == ds.y)) if ds.y is not None else None
    float_top1 = float(np.mean(ref.argmax(axis=1) == ds.y)) if ds.y is not None and ref is not None else None
    return Accuracy(len(ds), ds.source, runtime, float_top1, top1, sqnr_db(ref, got) if ref is not None else None)


def evaluate(float_model: tuple[bytes, ModelInfo] | None, model: bytes, info: ModelInfo, runtime: str,
             ds: Dataset, progress: Callable[[int, int], None] | None = None) -> Accuracy:
    """Run ``model`` on ``ds`` with a host interpreter and score it."""
    return score(outputs(model, info, runtime, ds, progress), float_model, ds, runtime)
