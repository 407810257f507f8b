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
WIDTHS = (0.8, 0.65)  # students: this share of every hidden layer's channels (int4 brings the weight bytes to ~32 % and ~21 % of int8)
MAX_EPOCHS = 2000
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


_PASS = ("MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D", "Activation", "ReLU", "Dropout",
         "Softmax", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "InputLayer", "ZeroPadding2D")


def _init_from_teacher(teacher: Any, student: Any) -> bool:
    """Start the student from the teacher: every hidden Conv/Dense layer keeps the teacher's output channels of
    largest L2 norm (the student's width), and every later layer the weights that read them. Works along a
    chain of layers (Sequential or a functional chain); False (the student keeps its random start) otherwise."""
    t_layers, s_layers = teacher.layers, student.layers
    if len(t_layers) != len(s_layers):
        return False
    kept: np.ndarray | None = None  # indices of the teacher's channels the current activation keeps
    spatial: tuple[int, ...] | None = None  # shape before a Flatten, to map kept channels to flat features
    weighted = [la for la in t_layers if hasattr(la, "filters") or hasattr(la, "units")]
    for t, st in zip(t_layers, s_layers):
        kind = type(t).__name__
        w = [np.asarray(v) for v in t.get_weights()]
        if kind in _PASS:
            continue
        if kind == "Flatten":
            shape = tuple(int(d) for d in t.input.shape[1:])
            if kept is not None:
                mask = np.zeros(shape[-1], dtype=bool)
                mask[kept] = True
                kept = np.flatnonzero(np.broadcast_to(mask, shape).reshape(-1))
            spatial = shape
            continue
        if kind in ("Conv2D", "Conv1D", "Dense"):
            k = w[0]
            if kept is not None:
                k = np.take(k, kept, axis=k.ndim - 2)
            if t is weighted[-1]:
                new_kept = None
            else:
                n_out = int(st.get_weights()[0].shape[-1])
                norms = np.sqrt(np.sum(k.reshape(-1, k.shape[-1]) ** 2, axis=0))
                new_kept = np.sort(np.argsort(-norms, kind="stable")[:n_out])
                k = k[..., new_kept]
            params = [k] + ([w[1] if new_kept is None else w[1][new_kept]] if len(w) > 1 else [])
            kept = new_kept
        elif kind in ("DepthwiseConv2D", "DepthwiseConv1D"):
            if kept is None:
                params = w
            elif w[0].shape[-1] != 1:
                return False  # depth multiplier > 1
            else:
                params = [np.take(w[0], kept, axis=w[0].ndim - 2)] + ([w[1][kept]] if len(w) > 1 else [])
        elif kind == "BatchNormalization":
            params = w if kept is None else [v[kept] for v in w]
        else:
            return False
        if [p.shape for p in params] != [np.asarray(v).shape for v in st.get_weights()]:
            return False
        st.set_weights(params)
    del spatial
    return True


def _logits(p: Any, probabilities: bool, tf: Any) -> Any:
    return tf.math.log(tf.clip_by_value(p, 1e-7, 1.0)) if probabilities else p


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # a shift along the first spatial axis only (time for audio features, rows for images): shifting the
    # second would scramble feature axes such as MFCC coefficients
    out = np.roll(x, int(rng.integers(-1, 2)), axis=1) if x.ndim > 2 and x.shape[1] > 2 else x.copy()
    return out + rng.normal(0, 0.02 * (float(x.std()) or 1.0), size=x.shape).astype(np.float32)


def _train(tf: Any, teacher: Any, student: Any, x: np.ndarray, y: np.ndarray | None, seconds: float,
           seed: int, learning_rate: float) -> tuple[int, float]:
    """Train ``student``; returns (epochs run, seconds taken). Every batch is a fresh augmented mix (mixup of
    two inputs, shifts, noise) that the teacher labels on the fly: a few hundred inputs become many, which is
    what lets a student learn the teacher's function rather than memorise its outputs on those inputs."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    probe = np.asarray(teacher(x[: min(len(x), 64)], training=False))
    probabilities = bool(np.all(probe >= 0) and np.allclose(probe.sum(axis=1), 1.0, atol=1e-3))
    opt = keras.optimizers.Adam(learning_rate)
    t = TEMPERATURE
    has_y = y is not None

    @tf.function
    def step(xm: Any, xb: Any, yb: Any) -> Any:
        tm = teacher(xm, training=False)
        with tf.GradientTape() as tape:
            zs, zt = _logits(student(xm, training=True), probabilities, tf), _logits(tm, probabilities, tf)
            pt = tf.nn.softmax(zt / t)
            kl = tf.reduce_mean(tf.reduce_sum(pt * (tf.math.log(pt + 1e-9) - tf.nn.log_softmax(zs / t)), axis=1))
            loss = (t * t) * kl
            if has_y:
                zb = _logits(student(xb, training=True), probabilities, tf)
                ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, zb))
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
            other = rng.integers(0, len(x), len(idx))
            lam = rng.uniform(0.0, 1.0, (len(idx),) + (1,) * (x.ndim - 1)).astype(np.float32)
            mixed = _augment(lam * x[idx] + (1 - lam) * x[other], rng)
            step(tf.constant(mixed), tf.constant(_augment(x[idx], rng)), tf.constant(yy[idx]))
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
            import keras

            keras.utils.set_random_seed(seed + k)
            student = _shrunk(teacher, width)
            warm = _init_from_teacher(teacher, student)
            epochs, took = _train(tf, teacher, student, x, data.y, budget, seed + k,
                                  LEARNING_RATE / 3 if warm else LEARNING_RATE)
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
                                f"student of {origin}: the teacher with {width * 100:.0f}% of every hidden layer's channels ("
                                + ("started from its channels of largest L2 norm" if warm else "from a random start")
                                + "), "
                                f"trained {epochs} epochs ({took:.0f} s, stopped by the {stop}) on {len(x)} inputs "
                                f"of {data.source} against the teacher's soft outputs (T={TEMPERATURE:g}"
                                + (", plus labels" if data.y is not None else "") + f"), seed {seed + k}"))
    return students
