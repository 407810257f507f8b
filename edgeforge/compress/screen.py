"""Scoring candidates: screened fast with LiteRT on a subset, verified with TFLite Micro on all of
the validation data (the interpreter bit-exact with the MCU's reference kernels and the native C)."""

from __future__ import annotations

import warnings

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeforge.data import Dataset, float_view, model_view
from edgeforge.evaluate import Accuracy, dequantize, evaluate, sqnr_db
from edgeforge.hostrun import run_batch
from edgeforge.model.tflite import ModelInfo
from edgeforge.quiet import captured_output


@dataclass(frozen=True)
class Score:
    """A screened model: top-1 on the screening labels (if any), SQNR against the float model (if
    any) and the output noise against the uncompressed int8 model (always)."""

    top1: float | None
    sqnr_db: float | None
    noise: float  # sum((y - y_int8)^2) / sum(y_int8^2): 0 for the int8 model itself

    def rank(self) -> tuple[float, float]:
        """Bigger is better: accuracy first, then fidelity to the int8 model."""
        primary = self.top1 if self.top1 is not None else (self.sqnr_db if self.sqnr_db is not None else 0.0)
        return (primary if math.isfinite(primary) else 1e9, -self.noise)


def _finite(v: float | None) -> float | None:
    return None if v is None else (v if math.isfinite(v) else 1e3)


class Screener:
    """Runs compressed variants of one int8 model on a fixed screening set."""

    def __init__(self, model: bytes, info: ModelInfo, float_model: tuple[bytes, ModelInfo] | None,
                 screen: Dataset) -> None:
        self.info = info
        self.ds = screen
        inp = info.input_tensors()[0]
        scale = inp.scale[0] if inp.scale else None
        zp = inp.zero_point[0] if inp.zero_point else None
        x = model_view(screen, inp.dtype, scale, zp)
        self.x = x.reshape((len(x), *inp.shape)) if inp.shape and inp.shape[0] == 1 else x
        self.runtime = "litert"
        # noise is measured on the logits when the model ends in SOFTMAX: saturated probabilities hide
        # how far a layer's change moved the decision, and pre-softmax noise adds up more linearly
        last = next((op for op in info.ops if info.output_tensors()[0].index in op.outputs), None)
        self.logits = info.tensors[last.inputs[0]] if last is not None and last.op == "SOFTMAX" else None
        self.base, self.base_noise_view = self._run(model)
        self.ref: np.ndarray | None = None
        if float_model is not None:
            fbytes, finfo = float_model
            fin = finfo.input_tensors()[0]
            xf = float_view(screen).astype(np.dtype(fin.dtype))
            xf = xf.reshape((len(xf), *fin.shape)) if fin.shape and fin.shape[0] == 1 else xf
            self.ref = dequantize(run_batch(fbytes, "litert", xf), finfo.output_tensors()[0]).reshape(len(xf), -1)
        centred = self.base_noise_view - self.base_noise_view.mean(axis=1, keepdims=True)
        self._power = float(np.sum(centred**2)) or 1.0

    def _run(self, model: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(real outputs, real logits or outputs) for every screening sample."""
        out_t = self.info.output_tensors()[0]
        if self.logits is None:
            y = dequantize(run_batch(model, self.runtime, self.x), out_t).reshape(len(self.x), -1)
            return y, y
        from ai_edge_litert.interpreter import Interpreter

        # LiteRT warns that keeping every tensor is for debugging: keeping them is the point here
        with captured_output(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ip = Interpreter(model_content=model, num_threads=1, experimental_preserve_all_tensors=True)
            ip.allocate_tensors()
        i_in = ip.get_input_details()[0]["index"]
        ys, zs = [], []
        for sample in self.x:
            ip.set_tensor(i_in, sample)
            ip.invoke()
            ys.append(ip.get_tensor(out_t.index).copy())
            zs.append(ip.get_tensor(self.logits.index).copy())
        y = dequantize(np.stack(ys), out_t).reshape(len(self.x), -1)
        return y, dequantize(np.stack(zs), self.logits).reshape(len(self.x), -1)

    def score(self, model: bytes, info: ModelInfo | None = None) -> Score:
        """Screen ``model``: a variant of the int8 model, or (``info`` given) another model with the same
        input and output, e.g. a distilled student, whose noise is then measured on its outputs."""
        if info is not None and info is not self.info:
            y = dequantize(run_batch(model, self.runtime, self.x), info.output_tensors()[0]).reshape(len(self.x), -1)
            top1 = float(np.mean(y.argmax(axis=1) == self.ds.y)) if self.ds.y is not None else None
            sq = _finite(sqnr_db(self.ref, y)) if self.ref is not None else None
            power = float(np.sum((self.base - self.base.mean(axis=1, keepdims=True)) ** 2)) or 1.0
            return Score(top1, sq, float(np.sum((y - self.base) ** 2)) / power)
        y, z = self._run(model)
        top1 = float(np.mean(y.argmax(axis=1) == self.ds.y)) if self.ds.y is not None else None
        sq = _finite(sqnr_db(self.ref, y)) if self.ref is not None else None
        return Score(top1, sq, float(np.sum((z - self.base_noise_view) ** 2)) / self._power)

    def describe(self) -> str:
        return f"LiteRT on {len(self.x)} samples of {self.ds.source}"


def verify(model: bytes, info: ModelInfo, float_model: tuple[bytes, ModelInfo] | None, val: Dataset) -> Accuracy:
    """The full evaluation a build reports: TFLite Micro on every validation sample."""
    return evaluate(float_model, model, info, "tflm", val)


def accuracy_json(acc: Accuracy | None) -> dict[str, Any] | None:
    return acc.to_json() if acc is not None else None
