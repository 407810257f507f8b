"""Fine-tuning a compression recipe into the Keras source model (``--train DATA --epochs N``).

Post-training pruning and int4 rounding lose accuracy that a little training wins back. ``finetune``
trains the Keras source for one recipe and writes the result as a Keras model file; the build then
converts that file to int8 exactly as it converts any source (``finetuned_int8``) and applies the same
recipe with ``apply.apply_recipe``. Because the fine-tuned weights already carry the recipe's zeros and
(for int4 layers) lie on the int4 grid, that post-training step then changes almost nothing.

What happens, per weight layer the recipe names (the tflite op index is mapped to its Keras kernel by
``map_layers``):

* pruned layers follow a gradual magnitude-pruning schedule: the sparsity rises from 0 to the target
  along a cubic (polynomial decay) curve over the first two thirds of the training steps, then the
  masks stay fixed. Masks are ranked exactly as ``apply.prune_mask`` ranks the int8 model (single
  weights of smallest magnitude, or whole output channels of smallest L2 norm), on the Keras weights
  scaled per output channel by the gain the converter folds in (a following BatchNormalization), and are
  re-applied after every optimizer step;
* int4 layers are fine-tuned quantization-aware once the masks are final (from the start when the recipe
  prunes nothing): the forward and backward pass see the kernel fake-quantized to 15 symmetric levels
  [-7, 7] (per output channel, or per tensor where the int8 model's filter is per-tensor, as
  ``apply`` keeps it), the update goes to the float kernel (straight-through estimator, done by
  swapping the quantized values into the variable around the gradient computation, which works for any
  layer class, Keras 3 or tf_keras). At the end the kernels are baked onto that grid. int8 layers
  need no quantization-aware step: int8 rounding costs little.

Loss: sparse categorical cross-entropy on the first output when the data has labels (probabilities or
logits, detected from the model's outputs); without labels the model learns to reproduce its own
original outputs (mean squared error against the unmodified model: distillation, which also suits
autoencoders; it converges more slowly than training on labels, so give it more epochs or a higher learning
rate). BatchNormalization layers stay frozen (inference statistics), so the fold the converter
applies matches what was trained. The run is deterministic for a given ``seed`` and silent.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeforge.compress.apply import INT4_MAX, prune_mask
from edgeforge.ops import CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
from edgeforge.compress.layers import WeightLayer, weight_layers
from edgeforge.compress.recipe import LayerChoice, Recipe
from edgeforge.data import Dataset, float_view
from edgeforge.errors import ModelError, UsageError
from edgeforge.model import convert as conv
from edgeforge.model.load import SourceModel, load_model
from edgeforge.model.tflite import read_tflite
from edgeforge.quiet import captured_output

KERAS_FORMATS = ("keras", "h5")
PRUNE_FRACTION = 2 / 3  # share of the training steps over which the sparsity ramps up
MASK_UPDATES = 16  # how many times the masks are recomputed during the ramp
MIN_SIMILARITY = 0.9  # |cosine| per output channel a Keras kernel needs to match an int8 filter
MIN_MARGIN = 0.05  # and how much better than the runner-up, when shapes alone do not decide


# --------------------------------------------------------------------------- layer mapping


def _hwio(k: np.ndarray) -> np.ndarray:  # Conv2D HWIO -> CONV_2D OHWI
    return k.transpose(3, 0, 1, 2)


def _kio(k: np.ndarray) -> np.ndarray:  # Conv1D [K, I, O] -> CONV_2D [O, 1, K, I]
    return k.transpose(2, 0, 1)[:, None]


def _hwcm(k: np.ndarray) -> np.ndarray:  # DepthwiseConv2D [H, W, C, M] -> [1, H, W, C*M]
    return k.reshape(1, k.shape[0], k.shape[1], -1)


def _kcm(k: np.ndarray) -> np.ndarray:  # DepthwiseConv1D [K, C, M] -> [1, 1, K, C*M]
    return k.reshape(1, 1, k.shape[0], -1)


def _io(k: np.ndarray) -> np.ndarray:  # Dense [I, O] -> FULLY_CONNECTED [O, I]
    return k.T


_LAYOUTS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray, tuple[int, ...]], np.ndarray],
                          int]] = {
    # name: (Keras -> TFLite layout, TFLite -> Keras layout (given the Keras shape), output-channel axes in Keras)
    "hwio": (_hwio, lambda t, s: t.transpose(1, 2, 3, 0), 1),
    "kio": (_kio, lambda t, s: t[:, 0].transpose(1, 2, 0), 1),
    "hwcm": (_hwcm, lambda t, s: t.reshape(s), 2),
    "kcm": (_kcm, lambda t, s: t.reshape(s), 2),
    "io": (_io, lambda t, s: t.T, 1),
}

DW, CONV, FC = DEPTHWISE_CONV_2D, CONV_2D, FULLY_CONNECTED
# Keras layer class (either Keras 3 or tf_keras) -> its kernels: (attributes to try, layout, TFLite op)
_KERNELS: dict[str, tuple[tuple[tuple[str, ...], str, str], ...]] = {
    "Dense": ((("kernel",), "io", FC),),
    "Conv2D": ((("kernel",), "hwio", CONV),),
    "Conv1D": ((("kernel",), "kio", CONV),),
    "DepthwiseConv2D": ((("depthwise_kernel", "kernel"), "hwcm", DW),),
    "DepthwiseConv1D": ((("depthwise_kernel", "kernel"), "kcm", DW),),
    "SeparableConv2D": ((("depthwise_kernel",), "hwcm", DW), (("pointwise_kernel",), "hwio", CONV)),
    "SeparableConv1D": ((("depthwise_kernel",), "kcm", DW), (("pointwise_kernel",), "kio", CONV)),
}
# classes whose MRO passes through a class above but whose kernel is something else (tf_keras derives
# Conv2DTranspose from Conv2D)
_NOT_WEIGHT_LAYERS = {"Conv2DTranspose", "Conv1DTranspose", "Conv3DTranspose", "Conv3D"}


@dataclass(frozen=True)
class KernelRef:
    """One Keras kernel variable and how it lies in TFLite's filter layout."""

    layer: str  # the Keras layer's name
    attr: str  # the kernel attribute: kernel, depthwise_kernel or pointwise_kernel
    op: str  # the TFLite op it becomes
    layout: str  # a key of _LAYOUTS
    keras_shape: tuple[int, ...]
    tflite_shape: tuple[int, ...]

    def to_tflite(self, k: np.ndarray) -> np.ndarray:
        return _LAYOUTS[self.layout][0](np.asarray(k))

    def to_keras(self, t: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(_LAYOUTS[self.layout][1](np.asarray(t), self.keras_shape))

    @property
    def out_axes(self) -> tuple[int, ...]:
        """Output-channel axes in the Keras layout (the last one or two)."""
        n = _LAYOUTS[self.layout][2]
        return tuple(range(len(self.keras_shape) - n, len(self.keras_shape)))


@dataclass(frozen=True, eq=False)
class Mapped:
    """A tflite weight layer with its Keras kernel; ``gain`` is the per-output-channel factor the converter
    folded into the int8 filter (1 without a following BatchNormalization), ``similarity`` the mean
    |cosine| between the int8 filter and the Keras kernel per output channel."""

    ref: KernelRef
    gain: np.ndarray
    similarity: float


def _kernel_kind(layer: Any) -> tuple[tuple[tuple[str, ...], str, str], ...]:
    for cls in type(layer).__mro__:
        if cls.__name__ in _NOT_WEIGHT_LAYERS:
            return ()
        if cls.__name__ in _KERNELS:
            return _KERNELS[cls.__name__]
    return ()


def _all_layers(model: Any) -> list[Any]:
    """Every layer of ``model`` in graph order, nested models flattened (depth first)."""
    out: list[Any] = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if getattr(layer, "layers", None):
            out.extend(_all_layers(layer))
    return out


def keras_kernels(model: Any) -> list[tuple[KernelRef, Any]]:
    """The weight kernels of a Keras (3 or tf_keras) model that the converter turns into
    CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED filters, with their variables, in graph order."""
    out = []
    for layer in _all_layers(model):
        for attrs, layout, op in _kernel_kind(layer):
            var = next((getattr(layer, a) for a in attrs if getattr(layer, a, None) is not None), None)
            if var is None:
                continue
            attr = next(a for a in attrs if getattr(layer, a, None) is not None)
            shape = tuple(int(d) for d in var.shape)
            tshape = tuple(int(d) for d in _LAYOUTS[layout][0](np.zeros(shape, np.float32)).shape)
            out.append((KernelRef(layer.name, attr, op, layout, shape, tshape), var))
    return out


def _channel_stats(layer: WeightLayer, k_tfl: np.ndarray) -> tuple[float, np.ndarray]:
    """Similarity (mean |cosine| over output channels) and gain (norm ratio) per output channel."""
    axis = layer.channel_axis
    t = np.moveaxis(layer.real(), axis, 0).reshape(layer.channels, -1)
    k = np.moveaxis(k_tfl.astype(np.float64), axis, 0).reshape(layer.channels, -1)
    tn, kn = np.linalg.norm(t, axis=1), np.linalg.norm(k, axis=1)
    live = (tn > 0) & (kn > 0)
    cos = np.abs(np.sum(t * k, axis=1))[live] / (tn[live] * kn[live])
    gain = np.where(live, tn / np.where(kn > 0, kn, 1.0), 1.0)
    return (float(cos.mean()) if cos.size else 0.0), gain


def map_layers(model: Any, layers: list[WeightLayer], required: list[int] | None = None) -> dict[int, Mapped]:
    """Map tflite weight layers (by op index) to the Keras kernels of ``model``.

    A layer matches Keras kernels of the same op kind whose shape, transposed into TFLite's layout,
    equals its filter's. One candidate on each side decides; otherwise the int8 values pick the
    candidate (|cosine| per output channel, which a folded BatchNormalization does not change), and the
    pick must be clear. A layer of ``required`` (default: all) that stays unmapped is a UsageError."""
    kernels = keras_kernels(model)
    values = [np.asarray(v.numpy() if hasattr(v, "numpy") else v) for _, v in kernels]
    candidates: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for i, (ref, _) in enumerate(kernels):
        candidates.setdefault((ref.op, ref.tflite_shape), []).append(i)
    siblings: dict[tuple[str, tuple[int, ...]], int] = {}
    for la in layers:
        key = (la.op, tuple(la.values.shape))
        siblings[key] = siblings.get(key, 0) + 1
    out: dict[int, Mapped] = {}
    problems: dict[int, str] = {}
    for la in layers:
        key = (la.op, tuple(la.values.shape))
        cands = candidates.get(key, [])
        if not cands:
            problems[la.op_index] = (f"no Keras layer has a kernel that becomes a {la.op} filter of shape "
                                     f"{list(la.values.shape)}")
            continue
        stats = [_channel_stats(la, kernels[i][0].to_tflite(values[i])) for i in cands]
        if len(cands) == 1 and siblings[key] == 1:
            best = 0
        else:
            order = sorted(range(len(cands)), key=lambda j: -stats[j][0])
            best = order[0]
            runner_up = stats[order[1]][0] if len(order) > 1 else -1.0
            if stats[best][0] < MIN_SIMILARITY or stats[best][0] - runner_up < MIN_MARGIN:
                names = ", ".join(kernels[i][0].layer for i in cands)
                problems[la.op_index] = (f"{la.op} #{la.op_index} ({la.name}) could be any of the Keras layers "
                                         f"{names}: their shapes are equal and their weights do not tell them apart")
                continue
        out[la.op_index] = Mapped(kernels[cands[best]][0], stats[best][1], stats[best][0])
    wanted = [la.op_index for la in layers] if required is None else list(required)
    missing = [op for op in wanted if op not in out]
    if missing:
        raise UsageError("cannot match the int8 model's weight layers to the Keras model: "
                         + "; ".join(problems.get(op, f"op #{op} is not a weight layer") for op in missing),
                         "fine-tuning needs the Keras model the int8 model was converted from, with one kernel "
                         "per CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED filter")
    return out


# --------------------------------------------------------------------------- schedule and quantizer


def sparsity_at(step: int, end: int, target: float) -> float:
    """Polynomial-decay (cubic) pruning schedule: 0 at step 0, ``target`` from step ``end`` on."""
    if end <= 0 or step >= end:
        return target
    return target * (1.0 - (1.0 - step / end) ** 3)


def fake_quant(tf: Any, w: Any, axes: tuple[int, ...] | None) -> Any:
    """``w`` rounded to 15 symmetric levels per output channel (``axes``: the output-channel axes;
    None: one scale for the tensor), scale = max |w| / 7 (no clipping)."""
    red = list(range(len(w.shape))) if axes is None else [i for i in range(len(w.shape)) if i not in axes]
    peak = tf.reduce_max(tf.abs(w), axis=red, keepdims=True)
    scale = tf.where(peak > 0, peak / INT4_MAX, tf.ones_like(peak))
    return tf.clip_by_value(tf.round(w / scale), -INT4_MAX, INT4_MAX) * scale


@dataclass(eq=False)
class _Target:
    """One Keras kernel the recipe changes."""

    ref: KernelRef
    var: Any
    layer: WeightLayer
    choice: LayerChoice
    gain: np.ndarray
    mask: Any = None  # tf.Variable, Keras layout, 1 keep / 0 pruned
    shadow: Any = None  # tf.Variable holding the float kernel while the quantized one is swapped in

    @property
    def qaxes(self) -> tuple[int, ...] | None:
        # the granularity apply.py gives int4 filters: the source's, but one scale for FULLY_CONNECTED
        per_tensor = bool(np.all(self.layer.scales == self.layer.scales[0])) or self.layer.op == FULLY_CONNECTED
        return None if per_tensor else self.ref.out_axes

    def compute_mask(self, sparsity: float) -> np.ndarray:
        """The keep-mask at ``sparsity``, ranked as ``apply.prune_mask`` ranks the int8 filter."""
        w = self.ref.to_tflite(np.asarray(self.var.numpy(), dtype=np.float64))
        ranked = replace(self.layer, values=w, scales=np.abs(self.gain))  # real() = w * |gain|
        keep = prune_mask(ranked, LayerChoice(8, sparsity, self.choice.structured))
        return self.ref.to_keras(keep).astype(np.float32)


# --------------------------------------------------------------------------- training


def _is_keras3(model: Any) -> bool:
    try:
        import keras
    except ImportError:
        return False
    return isinstance(model, keras.Model)


def _first(out: Any, tf: Any) -> Any:
    return tf.nest.flatten(out)[0]


def _is_probabilities(out: np.ndarray) -> bool:
    if out.ndim != 2 or out.size == 0:
        return False
    return bool(np.all(out >= 0) and np.all(out <= 1) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))


def _predict(model: Any, x: np.ndarray, batch: int, tf: Any) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = []
    for i in range(0, len(x), batch):
        parts.append([np.asarray(o) for o in tf.nest.flatten(model(x[i : i + batch], training=False))])
    return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]


def _check_inputs(source: SourceModel, train: Dataset, epochs: int) -> None:
    if source.format not in KERAS_FORMATS:
        raise UsageError(f"cannot fine-tune a {source.format} model ({source.path.name})",
                         "fine-tuning needs the Keras model (.keras/.h5); pass it instead, or drop --train to "
                         "compress post-training only")
    if epochs < 1:
        raise UsageError(f"--epochs must be at least 1 (got {epochs})", "pass --epochs N with N >= 1")
    if len(train) == 0:
        raise UsageError(f"the training data {train.source} holds no samples", "pass --train with samples")
    if train.y is not None and len(train.y) != len(train):
        raise UsageError(f"the training data {train.source} has {len(train)} samples but {len(train.y)} labels",
                         "give one label per sample")


def finetune(source: SourceModel, layers: list[WeightLayer], recipe: Recipe, train: Dataset, epochs: int,
             out_dir: Path, seed: int = 0, batch_size: int = 64, learning_rate: float = 1e-3) -> SourceModel:
    """Fine-tune the Keras ``source`` for ``recipe`` on ``train`` for ``epochs`` and save it into ``out_dir``.

    ``layers`` are the weight layers of the int8 conversion of ``source`` (``weight_layers``); the recipe
    is keyed by their op indices. Returns the saved model, opened with ``load_model``:
    ``out_dir/<name>-finetuned.keras`` (``.h5`` when the source loads only with tf_keras). Convert it to
    int8 (``finetuned_int8``), then apply the same recipe to that model with ``apply.apply_recipe``: the
    op indices stay those of ``layers``. An empty recipe returns a copy of the source untrained.
    Raises UsageError for a non-Keras source, bad epochs/data or layers that cannot be matched."""
    _check_inputs(source, train, epochs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tf = conv.tensorflow()
    with captured_output():
        model = conv.TFGraph._load_keras(source)
    keras3 = _is_keras3(model)
    dest = out_dir / f"{source.name}-finetuned.{'keras' if keras3 else 'h5'}"
    if not recipe.layers:
        if source.path.suffix == dest.suffix:
            shutil.copyfile(source.path, dest)
        else:
            with captured_output():
                model.save(dest)
        return load_model(dest, source.trust_code)

    by_op = {la.op_index: la for la in layers}
    unknown = [op for op, _ in recipe.layers if op not in by_op]
    if unknown:
        raise UsageError(f"the recipe names ops {unknown} that are not weight layers of the model",
                         f"weight layers: {sorted(by_op)}")
    mapping = map_layers(model, layers, [op for op, _ in recipe.layers])
    variables = {(ref.layer, ref.attr): var for ref, var in keras_kernels(model)}
    targets: dict[tuple[str, str], _Target] = {}
    for op, choice in recipe.layers:
        m = mapping[op]
        key = (m.ref.layer, m.ref.attr)
        if key in targets and targets[key].choice != choice:
            raise UsageError(f"ops #{targets[key].layer.op_index} and #{op} share the Keras kernel {m.ref.layer}."
                             f"{m.ref.attr} but the recipe compresses them differently",
                             "give layers that share weights the same choice")
        targets.setdefault(key, _Target(m.ref, variables[key], by_op[op], choice, m.gain))

    with captured_output():
        _train(tf, model, keras3, list(targets.values()), train, epochs, seed, batch_size, learning_rate)
        model.save(dest)
    return load_model(dest, source.trust_code)


def _train(tf: Any, model: Any, keras3: bool, targets: list[_Target], train: Dataset, epochs: int, seed: int,
           batch_size: int, learning_rate: float) -> None:
    if keras3:
        import keras

        keras.utils.set_random_seed(seed)
        optimizer = keras.optimizers.Adam(learning_rate)
    else:
        import tf_keras

        tf_keras.utils.set_random_seed(seed)
        optimizer = tf_keras.optimizers.Adam(learning_rate)
    rng = np.random.default_rng(seed)

    x = float_view(train).astype(np.float32)
    first = _predict(model, x[: min(len(x), batch_size)], batch_size, tf)[0]
    if train.y is not None:
        y = np.asarray(train.y).astype(np.int32).reshape(-1)
        classes = first.shape[-1] if first.ndim == 2 else 0
        if first.ndim != 2 or y.min() < 0 or y.max() >= classes:
            raise UsageError(f"the labels of {train.source} (0..{int(y.max())}) do not fit the model's output "
                             f"{list(first.shape[1:])}", "labels must be class indices into a [N, classes] output; "
                             "pass --train data without labels to fine-tune by distillation")
        probs = _is_probabilities(first)
        goals: list[np.ndarray] = [y]
    else:  # distillation: reproduce the original model's outputs
        goals = _predict(model, x, batch_size, tf)
        probs = False

    # BatchNormalization keeps its inference statistics: the converter folds exactly what was trained
    frozen = [la for la in _all_layers(model)
              if any(c.__name__ == "BatchNormalization" for c in type(la).__mro__) and la.trainable]
    for la in frozen:
        la.trainable = False
    try:
        _loop(tf, model, keras3, optimizer, targets, x, goals, probs, train.y is not None, epochs, rng, batch_size)
    finally:
        for la in frozen:
            la.trainable = True


def _loop(tf: Any, model: Any, keras3: bool, optimizer: Any, targets: list[_Target], x: np.ndarray,
          goals: list[np.ndarray], probs: bool, labelled: bool, epochs: int, rng: np.random.Generator,
          batch_size: int) -> None:
    train_vars = list(model.trainable_variables)
    if keras3:
        optimizer.build(train_vars)
    for t in targets:
        t.mask = tf.Variable(np.ones(t.ref.keras_shape, np.float32), trainable=False)
        t.shadow = tf.Variable(np.zeros(t.ref.keras_shape, np.float32), trainable=False)
    pruned = [t for t in targets if t.choice.sparsity > 0]
    quantized = [t for t in targets if t.choice.bits == 4]

    def loss_fn(out: Any, goal: list[Any]) -> Any:
        if labelled:
            logits = _first(out, tf)
            if probs:
                p = tf.gather(logits, goal[0], axis=1, batch_dims=1)
                return -tf.reduce_mean(tf.math.log(tf.clip_by_value(p, 1e-7, 1.0)))
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=goal[0], logits=logits))
        outs = tf.nest.flatten(out)
        return tf.add_n([tf.reduce_mean(tf.square(tf.cast(o, tf.float32) - g)) for o, g in zip(outs, goal)])

    def make_step(qat: bool) -> Any:
        def step(xb: Any, goal: list[Any]) -> Any:
            if qat:
                for t in quantized:
                    t.shadow.assign(tf.convert_to_tensor(t.var))
                    t.var.assign(fake_quant(tf, tf.convert_to_tensor(t.var), t.qaxes))
            with tf.GradientTape() as tape:
                loss = loss_fn(model(xb, training=True), goal)
            grads = tape.gradient(loss, train_vars)
            if qat:  # straight-through: the gradient at the quantized kernel updates the float one
                for t in quantized:
                    t.var.assign(t.shadow)
            pairs = [(g, v) for g, v in zip(grads, train_vars) if g is not None]
            if keras3:
                optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
            else:
                optimizer.apply_gradients(pairs)
            for t in pruned:
                t.var.assign(tf.convert_to_tensor(t.var) * t.mask)
            return loss

        return tf.function(step, reduce_retracing=True)

    plain, qat_step = make_step(False), make_step(True)
    per_epoch = math.ceil(len(x) / batch_size)
    total = epochs * per_epoch
    prune_end = max(1, round(PRUNE_FRACTION * total)) if pruned else 0
    every = max(1, prune_end // MASK_UPDATES)
    step_no = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for b in range(per_epoch):
            idx = order[b * batch_size : (b + 1) * batch_size]
            if pruned and step_no <= prune_end and (step_no % every == 0 or step_no == prune_end):
                for t in pruned:
                    s = sparsity_at(step_no, prune_end, t.choice.sparsity)
                    t.mask.assign(t.compute_mask(s))
                    t.var.assign(t.var.numpy() * t.mask.numpy())
            fn = qat_step if quantized and step_no >= prune_end else plain
            fn(tf.constant(x[idx]), [tf.constant(g[idx]) for g in goals])
            step_no += 1
    # bake: final masks at the target sparsity, int4 layers onto their grid
    for t in targets:
        w = np.asarray(t.var.numpy(), dtype=np.float32)
        if t.choice.sparsity > 0:
            w = w * t.compute_mask(t.choice.sparsity)
        if t.choice.bits == 4:
            w = np.asarray(fake_quant(tf, tf.constant(w), t.qaxes))
        t.var.assign(w)


# --------------------------------------------------------------------------- back to int8


def finetuned_int8(finetuned: SourceModel, calibration: np.ndarray,
                   layers: list[WeightLayer]) -> tuple[bytes, list[WeightLayer]]:
    """Convert the fine-tuned model to int8 as the build converts any source (``calibration``: float
    inputs, [N, ...]) and return it with its weight layers, checked to be the same ops as ``layers`` (so
    the recipe's op indices hold). Apply the recipe to the result with ``apply.apply_recipe``."""
    graph = conv.TFGraph(finetuned)
    try:
        model = conv.convert(finetuned, "int8", calibration, graph)
    finally:
        graph.close()
    new = weight_layers(model, read_tflite(model, "the fine-tuned model"))
    def ops(ls: list[WeightLayer]) -> list[tuple[int, str, tuple[int, ...]]]:
        return [(la.op_index, la.op, tuple(la.values.shape)) for la in ls]

    if ops(new) != ops(layers):
        raise ModelError("the fine-tuned model converts to a different graph than the original",
                         "report this: fine-tuning must not change the model's structure")
    return model, new
