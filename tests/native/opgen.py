"""Seeded generators of single-op int8 .tflite models through TensorFlow's converter (tests only).

``make_model(kind, seed)`` draws random shapes, strides, dilations, padding, fused activations,
per-channel weight scales and input ranges (so zero points vary) from ``seed`` and returns the
converted model; results are cached on disk by (kind, seed, generator version, TF version), so
only the first run pays for TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

VERSION = 6  # bump when a generator changes
GRAPHS = ("residual", "branch", "reshape_chain")  # small multi-op graphs (fusion and planner tests)
GRAPHS_VERSION = 2  # bump when one of them changes

KINDS = (
    "conv", "conv_dilated", "depthwise", "fc", "avgpool", "maxpool", "add", "mul", "add_const",
    "softmax", "reshape", "mean", "pad", "padv2", "concat", "logistic", "tanh", "float_io",
)


def _cache_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"edgeforge-native-opgen-{os.getuid()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


_TF_VERSION: str | None = None


def _tf_version() -> str:
    global _TF_VERSION
    if _TF_VERSION is None:
        from importlib.metadata import version

        _TF_VERSION = version("tensorflow")
    return _TF_VERSION


def make_model(kind: str, seed: int) -> bytes:
    version = f"{VERSION}" if kind not in GRAPHS else f"{VERSION}g{GRAPHS_VERSION}"
    key = hashlib.sha256(f"{version}:{_tf_version()}:{kind}:{seed}".encode()).hexdigest()[:24]
    path = _cache_dir() / f"{kind}-{seed}-{key}.tflite"
    if path.exists():
        return path.read_bytes()
    index = KINDS.index(kind) if kind in KINDS else 1000 + sorted(_EXTRA).index(kind)
    data = _convert(*_GENERATORS[kind](np.random.default_rng([seed, index])))
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


# --------------------------------------------------------------------------------------------------


def _range(rng: np.random.Generator) -> tuple[float, float]:
    """A random calibration range: zero points end up anywhere in [-128, 127]."""
    style = rng.integers(0, 4)
    if style == 0:
        lo = float(rng.uniform(-6, 0))
        return lo, lo + float(rng.uniform(0.5, 12))
    if style == 1:  # positive only
        lo = float(rng.uniform(0, 2))
        return lo, lo + float(rng.uniform(0.2, 6))
    if style == 2:  # negative mostly
        hi = float(rng.uniform(-1, 0.5))
        return hi - float(rng.uniform(0.5, 8)), hi
    a = float(rng.uniform(0.05, 20))
    return -a, a


def _convert(fn: Callable[..., Any], specs: list[tuple[tuple[int, ...], tuple[float, float]]],
             float_io: bool = False, per_tensor_fc: bool = False) -> bytes:
    import tensorflow as tf

    sig = [tf.TensorSpec(shape, tf.float32) for shape, _ in specs]
    func = tf.function(fn, input_signature=sig)
    conc = func.get_concrete_function()
    rng = np.random.default_rng(len(specs))

    def rep():  # type: ignore[no-untyped-def]
        for i in range(12):
            out = []
            for shape, (lo, hi) in specs:
                x = rng.uniform(lo, hi, size=shape).astype(np.float32)
                if i == 0:  # make sure the extremes are seen
                    x.reshape(-1)[0] = lo
                    x.reshape(-1)[-1] = hi
                out.append(x)
            yield out

    conv = tf.lite.TFLiteConverter.from_concrete_functions([conc], func)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if per_tensor_fc:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    if not float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return bytes(conv.convert())


def _act(rng: np.random.Generator, y: Any) -> Any:
    import tensorflow as tf

    a = int(rng.integers(0, 4))
    if a == 1:
        return tf.nn.relu(y)
    if a == 2:
        return tf.nn.relu6(y)
    if a == 3:
        return tf.clip_by_value(y, -1.0, 1.0)
    return y


def _weights(rng: np.random.Generator, shape: tuple[int, ...], channel_axis: int) -> np.ndarray:
    w = rng.normal(size=shape).astype(np.float32)
    # very different per-channel scales
    scale = np.exp(rng.uniform(-3, 1.5, size=shape[channel_axis])).astype(np.float32)
    if shape[channel_axis] > 1 and rng.random() < 0.15:  # an all-zero channel: filter scale 0 or tiny
        scale[int(rng.integers(0, shape[channel_axis]))] = 0.0
    bshape = [1] * len(shape)
    bshape[channel_axis] = shape[channel_axis]
    return (w * scale.reshape(bshape)).astype(np.float32)


def _gen_conv(rng: np.random.Generator, dilated: bool = False) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    n = int(rng.choice([1, 1, 1, 2]))
    h, w = int(rng.integers(3, 13)), int(rng.integers(3, 13))
    cin, cout = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    fic = cin
    if not dilated and rng.random() < 0.2:  # grouped convolution
        groups = int(rng.integers(2, 4))
        fic = int(rng.integers(1, 4))
        cin, cout = groups * fic, groups * int(rng.integers(1, 4))
    kh, kw = int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1))
    if dilated:
        dh, dw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        sh = sw = 1
    else:
        dh = dw = 1
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    padding = "SAME" if rng.random() < 0.5 else "VALID"
    if padding == "VALID" and ((kh - 1) * dh + 1 > h or (kw - 1) * dw + 1 > w):
        padding = "SAME"
    wt = _weights(rng, (kh, kw, fic, cout), 3)
    b = rng.normal(size=cout).astype(np.float32) * float(rng.uniform(0, 2))
    act = int(rng.integers(0, 1 << 30))

    def f(x):  # type: ignore[no-untyped-def]
        y = tf.nn.conv2d(x, wt, strides=[1, sh, sw, 1], padding=padding, dilations=[1, dh, dw, 1]) + b
        return _act(np.random.default_rng(act), y)

    return f, [((n, h, w, cin), _range(rng))]


def _gen_depthwise(rng: np.random.Generator) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    h, w = int(rng.integers(3, 13)), int(rng.integers(3, 13))
    cin, mult = int(rng.integers(1, 9)), int(rng.choice([1, 1, 2, 3]))
    kh, kw = int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1))
    if rng.random() < 0.3:
        d = int(rng.integers(2, 4))
        s = 1
    else:
        d = 1
        s = int(rng.integers(1, 4))
    padding = "SAME" if rng.random() < 0.5 else "VALID"
    if padding == "VALID" and ((kh - 1) * d + 1 > h or (kw - 1) * d + 1 > w):
        padding = "SAME"
    wt = _weights(rng, (kh, kw, cin, mult), 2)
    b = rng.normal(size=cin * mult).astype(np.float32)
    act = int(rng.integers(0, 1 << 30))

    def f(x):  # type: ignore[no-untyped-def]
        y = tf.nn.depthwise_conv2d(x, wt, strides=[1, s, s, 1], padding=padding, dilations=[d, d]) + b
        return _act(np.random.default_rng(act), y)

    return f, [((1, h, w, cin), _range(rng))]


def _gen_fc(rng: np.random.Generator) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    bsz, d, o = int(rng.choice([1, 1, 2, 3])), int(rng.integers(1, 65)), int(rng.integers(1, 33))
    wt = _weights(rng, (d, o), 1)
    b = rng.normal(size=o).astype(np.float32)
    act = int(rng.integers(0, 1 << 30))
    use_bias = rng.random() < 0.8
    per_tensor = bool(rng.random() < 0.5)

    def f(x):  # type: ignore[no-untyped-def]
        y = tf.matmul(x, wt)
        if use_bias:
            y = y + b
        return _act(np.random.default_rng(act), y)

    return f, [((bsz, d), _range(rng))], False, per_tensor


def _gen_pool(rng: np.random.Generator, kind: str) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    h, w, c = int(rng.integers(2, 14)), int(rng.integers(2, 14)), int(rng.integers(1, 9))
    kh, kw = int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    padding = "SAME" if rng.random() < 0.5 else "VALID"
    act = int(rng.integers(0, 1 << 30))
    pool = tf.nn.avg_pool2d if kind == "avg" else tf.nn.max_pool2d

    def f(x):  # type: ignore[no-untyped-def]
        y = pool(x, ksize=[kh, kw], strides=[sh, sw], padding=padding)
        return _act(np.random.default_rng(act), y)

    return f, [((1, h, w, c), _range(rng))]


def _broadcast_shapes(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    rank = int(rng.integers(1, 5))
    full = [int(rng.integers(1, 7)) for _ in range(rank)]
    a = list(full)
    b = list(full)
    for i in range(rank):
        r = rng.random()
        if r < 0.25:
            a[i] = 1
        elif r < 0.5:
            b[i] = 1
    rb = int(rng.integers(0, rank + 1))  # b may have lower rank
    if rng.random() < 0.3:
        b = b[rank - rb :] if rb else [1]
    return tuple(a), tuple(b)


def _gen_binary(rng: np.random.Generator, kind: str) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    a, b = _broadcast_shapes(rng)
    act = int(rng.integers(0, 1 << 30))

    def f(x, y):  # type: ignore[no-untyped-def]
        z = tf.add(x, y) if kind == "add" else tf.multiply(x, y)
        return _act(np.random.default_rng(act), z)

    return f, [(a, _range(rng)), (b, _range(rng))]


def _gen_add_const(rng: np.random.Generator) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    a, b = _broadcast_shapes(rng)
    c = rng.uniform(-3, 3, size=b).astype(np.float32)
    mul = rng.random() < 0.5

    def f(x):  # type: ignore[no-untyped-def]
        return tf.multiply(x, c) if mul else tf.add(x, c)

    return f, [(a, _range(rng))]


def _gen_softmax(rng: np.random.Generator) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    rank = int(rng.integers(1, 5))
    shape = tuple(int(rng.integers(1, 5)) for _ in range(rank - 1)) + (int(rng.integers(1, 40)),)
    beta = float(rng.choice([1.0, 1.0, float(rng.uniform(0.2, 3))]))

    def f(x):  # type: ignore[no-untyped-def]
        return tf.nn.softmax(x * beta if beta != 1.0 else x, axis=-1)

    lo = float(rng.uniform(-20, 0))
    return f, [(shape, (lo, lo + float(rng.uniform(0.5, 30))))]


def _gen_reshape(rng: np.random.Generator) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    shape = (1, int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 7)))
    new = (1, -1) if rng.random() < 0.5 else (shape[1] * shape[2], shape[3])

    def f(x):  # type: ignore[no-untyped-def]
        return tf.reshape(x, new)

    return f, [(shape, _range(rng))]


def _gen_mean(rng: np.random.Generator) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    rank = int(rng.integers(1, 5))
    shape = tuple(int(rng.integers(1, 8)) for _ in range(rank))
    k = int(rng.integers(1, rank + 1))
    axes = sorted(int(a) for a in rng.choice(rank, size=k, replace=False))
    if rng.random() < 0.3:
        axes = [a - rank for a in axes]
    if rank == 4 and rng.random() < 0.3:
        axes = [1, 2]
    keep = bool(rng.random() < 0.5)
    if not keep and len(axes) == rank:
        keep = True

    def f(x):  # type: ignore[no-untyped-def]
        return tf.reduce_mean(x, axis=axes, keepdims=keep)

    return f, [(shape, _range(rng))]


def _gen_pad(rng: np.random.Generator, v2: bool) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    rank = int(rng.integers(1, 5))
    shape = tuple(int(rng.integers(1, 6)) for _ in range(rank))
    pads = [[int(rng.integers(0, 3)), int(rng.integers(0, 3))] for _ in range(rank)]
    if not any(p for pair in pads for p in pair):  # an all-zero PAD is folded away by the converter
        pads[int(rng.integers(0, rank))][int(rng.integers(0, 2))] = 1
    lo, hi = _range(rng)
    value = float(rng.uniform(lo, hi)) if v2 else 0.0

    def f(x):  # type: ignore[no-untyped-def]
        return tf.pad(x, pads, constant_values=value)

    return f, [(shape, (lo, hi))]


def _gen_concat(rng: np.random.Generator) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    rank = int(rng.integers(1, 5))
    base = [int(rng.integers(1, 5)) for _ in range(rank)]
    axis = int(rng.integers(0, rank))
    k = int(rng.integers(2, 4))
    shapes = []
    for _ in range(k):
        s = list(base)
        s[axis] = int(rng.integers(1, 5))
        shapes.append(tuple(s))
    same = rng.random() < 0.5
    r = _range(rng)
    neg = axis - rank if rng.random() < 0.3 else axis

    def f(*xs):  # type: ignore[no-untyped-def]
        return tf.concat(list(xs), axis=neg)

    return f, [(s, r if same else _range(rng)) for s in shapes]


def _gen_unary(rng: np.random.Generator, kind: str) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    rank = int(rng.integers(1, 5))
    shape = tuple(int(rng.integers(1, 8)) for _ in range(rank))
    fn = tf.sigmoid if kind == "logistic" else tf.tanh

    def f(x):  # type: ignore[no-untyped-def]
        return fn(x)

    lo = float(rng.uniform(-12, 1))
    return f, [(shape, (lo, lo + float(rng.uniform(0.1, 16))))]


def _gen_float_io(rng: np.random.Generator) -> tuple[Any, list[Any], bool]:
    """float32 in and out: QUANTIZE -> op -> DEQUANTIZE."""
    import tensorflow as tf

    shape = tuple(int(rng.integers(1, 6)) for _ in range(int(rng.integers(1, 5))))
    c = rng.uniform(-2, 2, size=shape[-1:]).astype(np.float32)
    which = int(rng.integers(0, 3))

    def f(x):  # type: ignore[no-untyped-def]
        if which == 0:
            return x + c
        if which == 1:
            return tf.nn.relu(x * c)
        return tf.sigmoid(x)

    return f, [(shape, _range(rng))], True


_GENERATORS: dict[str, Callable[[np.random.Generator], Any]] = {
    "conv": lambda r: _gen_conv(r),
    "conv_dilated": lambda r: _gen_conv(r, dilated=True),
    "depthwise": _gen_depthwise,
    "fc": _gen_fc,
    "avgpool": lambda r: _gen_pool(r, "avg"),
    "maxpool": lambda r: _gen_pool(r, "max"),
    "add": lambda r: _gen_binary(r, "add"),
    "mul": lambda r: _gen_binary(r, "mul"),
    "add_const": _gen_add_const,
    "softmax": _gen_softmax,
    "reshape": _gen_reshape,
    "mean": _gen_mean,
    "pad": lambda r: _gen_pad(r, False),
    "padv2": lambda r: _gen_pad(r, True),
    "concat": _gen_concat,
    "logistic": lambda r: _gen_unary(r, "logistic"),
    "tanh": lambda r: _gen_unary(r, "tanh"),
    "float_io": _gen_float_io,
}


def _gen_transpose(rng: np.random.Generator) -> tuple[Any, list[Any]]:
    """An op the native runtime does not support."""
    import tensorflow as tf

    def f(x):  # type: ignore[no-untyped-def]
        return tf.transpose(x, [0, 2, 1])

    return f, [((1, int(rng.integers(2, 5)), int(rng.integers(2, 5))), _range(rng))]


# ---- small graphs for fusion and the memory planner (fixed shapes: tests assert exact plans) ------------------


def _conv(rng: np.random.Generator, x: Any, cout: int, k: int = 3) -> Any:
    import tensorflow as tf

    w = _weights(rng, (k, k, int(x.shape[-1]), cout), 3)
    b = rng.normal(size=cout).astype(np.float32) * 0.1
    return tf.nn.conv2d(x, w, strides=1, padding="SAME") + b


def _gen_residual(rng: np.random.Generator) -> tuple[Any, list[Any]]:
    """A stem conv and two residual-style joins on 1x8x8x8 tensors. Block 1: conv-relu-conv whose output only
    feeds the skip ADD (fusable). Block 2: a conv plus a per-channel mean of its input (a broadcasting ADD of
    different shapes: not fusable), then a global mean."""
    import tensorflow as tf

    def f(x):  # type: ignore[no-untyped-def]
        s = tf.nn.relu(_conv(rng, x, 8))
        a = tf.nn.relu(_conv(rng, s, 8))
        y = tf.nn.relu(_conv(rng, a, 8) + s)
        z = _conv(rng, y, 8) + tf.reduce_mean(y, axis=[1, 2], keepdims=True)
        return tf.reduce_mean(z, axis=[1, 2])

    return f, [((1, 8, 8, 8), (-1.0, 1.0))]


def _gen_branch(rng: np.random.Generator) -> tuple[Any, list[Any]]:
    """Two branches from one input joined by a CONCATENATION: a wide 1x1 conv (32 channels) and a narrow
    chain (4 -> 4 channels); running the narrow chain first keeps the wide tensor alive for less time."""
    import tensorflow as tf

    def f(x):  # type: ignore[no-untyped-def]
        wide = tf.nn.relu(_conv(rng, x, 32, k=1))
        narrow = tf.nn.relu(_conv(rng, tf.nn.relu(_conv(rng, x, 4)), 4))
        return tf.concat([wide, narrow], axis=-1)

    return f, [((1, 6, 6, 8), (-1.0, 1.0))]


def _gen_reshape_chain(rng: np.random.Generator) -> tuple[Any, list[Any]]:
    """conv -> reshape -> fully connected -> reshape -> softmax -> reshape: reshapes alias their input."""
    import tensorflow as tf

    w = _weights(rng, (64, 12), 1)

    def f(x):  # type: ignore[no-untyped-def]
        c = tf.nn.relu(_conv(rng, x, 4))
        h = tf.reshape(tf.matmul(tf.reshape(c, (1, 64)), w), (1, 3, 4))
        return tf.reshape(tf.nn.softmax(h), (1, 12))

    return f, [((1, 4, 4, 3), (-1.0, 1.0))]


#: generators outside the property suite (make_model accepts them too)
_EXTRA: dict[str, Callable[[np.random.Generator], Any]] = {
    "transpose": _gen_transpose, "residual": _gen_residual, "branch": _gen_branch,
    "reshape_chain": _gen_reshape_chain}
assert set(_GENERATORS) == set(KINDS)
_GENERATORS.update(_EXTRA)
