"""Knowledge distillation: when post-training compression cannot reach the budgets (or with ``--distill``),
train genuinely smaller students (the Keras teacher with fewer channels in every hidden layer) against the
teacher's soft outputs, convert them to int8 like any source, and hand them to the search, which screens,
costs and verifies them like every other candidate (and offers their all-int4 versions too).

Loss: T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) on the teacher's and student's logits (log of the
probabilities when the model ends in softmax), plus the cross-entropy on labels where the data has them.
Augmentation: a random shift of up to one step along each spatial axis and a little Gaussian noise, so a few
hundred calibration inputs go further. Seeds are fixed; training stops at the epoch limit or the wall-time
budget, whichever comes first (the report says which). Teachers: Keras models (.keras / .h5 that load with
Keras 3); other sources are refused with a hint.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeforge.data import Dataset, float_view
from edgeforge.errors import UsageError
from edgeforge.events import NullReporter, Reporter
from edgeforge.model import convert as conv
from edgeforge.model.load import SourceModel, load_model
from edgeforge.quiet import captured_output

TEMPERATURE = 4.0
LABEL_WEIGHT = 0.5  # share of the loss on labels (when given); the rest on the teacher's soft outputs
WIDTHS = (0.5, 0.35)  # students: this share of every hidden layer's channels
MAX_EPOCHS = 200
BATCH = 64
LEARNING_RATE = 3e-3


@dataclass(frozen=True)
class Student:
    name: str  # e.g. "distilled, 50% width"
    model: bytes  # int8 .tflite
    how: str  # how it was made, for the report


def _shrunk(teacher: Any, width: float) -> Any:
    """The teacher's architecture with ``width`` of the filters/units of every weight layer but the last."""
    import keras

    weighted = [la for la in teacher.layers if hasattr(la, "filters") or hasattr(la, "units")]
    if not weighted:
        raise UsageError("the teacher has no Conv/Dense layers to narrow", "distillation needs a CNN or MLP")
    last = weighted[-1]

    def clone(layer: Any) -> Any:
        cfg = layer.get_config()
        if layer is not last:
            for key in ("filters", "units"):
                if isinstance(cfg.get(key), int):
                    cfg[key] = max(1, int(round(cfg[key] * width)))
        return layer.__class__.from_config(cfg)

    return keras.models.clone_model(teacher, clone_function=clone)


def _logits(p: Any, probabilities: bool, tf: Any) -> Any:
    return tf.math.log(tf.clip_by_value(p, 1e-7, 1.0)) if probabilities else p


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = x.copy()
    for axis in range(1, max(2, x.ndim - 1)):  # spatial axes (not batch, not channels)
        if x.shape[axis] > 2:
            out = np.roll(out, int(rng.integers(-1, 2)), axis=axis)
    return out + rng.normal(0, 0.05 * (float(x.std()) or 1.0), size=x.shape).astype(np.float32)


def _train(tf: Any, teacher: Any, student: Any, x: np.ndarray, y: np.ndarray | None, seconds: float,
           seed: int) -> tuple[int, float]:
    """Train ``student``; returns (epochs run, seconds taken)."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    soft = np.concatenate([np.asarray(teacher(x[i : i + 256], training=False)) for i in range(0, len(x), 256)])
    probabilities = bool(np.all(soft >= 0) and np.allclose(soft.sum(axis=1), 1.0, atol=1e-3))
    opt = keras.optimizers.Adam(LEARNING_RATE)
    t = TEMPERATURE

    @tf.function
    def step(xb: Any, tb: Any, yb: Any, has_y: bool) -> Any:
        with tf.GradientTape() as tape:
            s = student(xb, training=True)
            zs, zt = _logits(s, probabilities, tf), _logits(tb, probabilities, tf)
            pt = tf.nn.softmax(zt / t)
            kl = tf.reduce_mean(tf.reduce_sum(pt * (tf.math.log(pt + 1e-9) - tf.nn.log_softmax(zs / t)), axis=1))
            loss = (t * t) * kl
            if has_y:
                ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, zs))
                loss = (1 - LABEL_WEIGHT) * loss + LABEL_WEIGHT * ce
        grads = tape.gradient(loss, student.trainable_variables)
        opt.apply_gradients(zip(grads, student.trainable_variables))
        return loss

    start = time.perf_counter()
    epochs = 0
    yy = np.zeros(len(x), np.int32) if y is None else y.astype(np.int32)
    while epochs < MAX_EPOCHS and time.perf_counter() - start < seconds:
        order = rng.permutation(len(x))
        for i in range(0, len(x), BATCH):
            idx = order[i : i + BATCH]
            step(tf.constant(_augment(x[idx], rng)), tf.constant(soft[idx]), tf.constant(yy[idx]), y is not None)
        epochs += 1
    return epochs, time.perf_counter() - start


def teacher_model(source: SourceModel, float_model: tuple[bytes, Any] | None, check: np.ndarray) -> tuple[Any, str]:
    """The trainable teacher: the Keras source itself, or a Keras rebuild of the float model (checked to
    compute the same outputs) for SavedModel / .tflite sources."""
    import keras

    if source.format in ("keras", "h5"):
        with captured_output():
            teacher = conv.TFGraph._load_keras(source)
        if isinstance(teacher, keras.Model):
            return teacher, "the Keras source"
        if float_model is None:
            raise UsageError(f"{source.path.name} loads only with legacy tf_keras", "save it with Keras 3 to distill it")
    if float_model is None:
        raise UsageError(f"distillation needs a float teacher; {source.path.name} is already quantized",
                         "give the float model (Keras, SavedModel or float .tflite), or drop --distill")
    from edgeforge.compress.rebuild import keras_from_tflite

    with captured_output():
        return keras_from_tflite(float_model[0], float_model[1], check), "a Keras rebuild of the float model"


def distill(source: SourceModel, data: Dataset, calibration: np.ndarray, minutes: float,
            reporter: Reporter | None = None, seed: int = 0,
            float_model: tuple[bytes, Any] | None = None) -> list[Student]:
    """Students of ``source`` (Keras, or rebuilt from ``float_model``) trained on ``data`` (calibration /
    training inputs; labels used when present) within ``minutes`` of wall time in all, each converted to
    int8 with ``calibration``."""
    rep = reporter or NullReporter()
    if minutes <= 0:
        raise UsageError("--distill-minutes must be positive", "e.g. --distill-minutes 5")
    tf = conv.tensorflow()
    teacher, origin = teacher_model(source, float_model, float_view(data).astype(np.float32))
    x = float_view(data).astype(np.float32)
    students = []
    budget = minutes * 60 / len(WIDTHS)
    for k, width in enumerate(WIDTHS):
        rep.stage(f"distilling student {k + 1}/{len(WIDTHS)} ({width * 100:.0f}% of the channels) for at most "
                  f"{budget:.0f} s on {len(x)} inputs")
        with captured_output():
            student = _shrunk(teacher, width)
            epochs, took = _train(tf, teacher, student, x, data.y, budget, seed + k)
        with tempfile.TemporaryDirectory(prefix="edgeforge-distill-") as tmp:
            path = Path(tmp) / f"student-{int(width * 100)}.keras"
            with captured_output():
                student.save(path)
            src = load_model(path)
            graph = conv.TFGraph(src)
            try:
                model = conv.convert(src, "int8", calibration, graph)
            finally:
                graph.close()
        stop = "epoch limit" if epochs >= MAX_EPOCHS else "wall-time budget"
        students.append(Student(f"distilled, {width * 100:.0f}% width", model,
                                f"student of {origin}: the teacher with {width * 100:.0f}% of every hidden layer's channels, "
                                f"trained {epochs} epochs ({took:.0f} s, stopped by the {stop}) on {len(x)} inputs "
                                f"of {data.source} against the teacher's soft outputs (T={TEMPERATURE:g}"
                                + (", plus labels" if data.y is not None else "") + f"), seed {seed + k}"))
    return students
