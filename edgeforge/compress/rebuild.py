"""A trainable Keras model rebuilt from a float .tflite, so that sources without Keras metadata (a SavedModel
such as MLPerf's KWS, or a .tflite) can teach distilled students.

Supported ops (what MLPerf-Tiny-sized CNNs and MLPs use): CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED (a rank > 2
input is flattened), AVERAGE_POOL_2D, MAX_POOL_2D, MEAN over the spatial axes, RESHAPE to [1, N] (a flatten),
ADD, RELU, RELU6, SOFTMAX, with fused RELU/RELU6 activations and SAME/VALID padding. The rebuilt model is checked
against the .tflite on the given inputs: a mismatch is refused rather than taught from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeforge.errors import UsageError
from edgeforge.model.tflite import ModelInfo, constant_data

_ACT = {0: None, 1: "relu", 3: "relu6"}
_PAD = {0: "same", 1: "valid"}


def _const(model: bytes, info: ModelInfo, t: int) -> np.ndarray:
    ten = info.tensors[t]
    raw = constant_data(model, t)
    if ten.dtype == "float32":
        return raw.view(np.float32).reshape(ten.shape)
    if ten.dtype == "int8" and ten.scale:  # hybrid weights: dequantize (per channel along dim 0 or 3)
        v = raw.view(np.int8).reshape(ten.shape).astype(np.float32)
        scale = np.asarray(ten.scale, np.float32)
        shape = [1] * v.ndim
        shape[ten.quantized_dimension if scale.size > 1 else 0] = -1
        return v * scale.reshape(shape)
    if ten.dtype == "int32":
        return raw.view(np.int32).reshape(ten.shape)
    raise UsageError(f"cannot rebuild a Keras layer from a {ten.dtype} constant ({ten.name})",
                     "distillation rebuilds float models; give the float source")


def _act(options: dict[str, Any], op: str) -> str | None:
    code = int(options.get("fusedActivationFunction", 0))
    if code not in _ACT:
        raise UsageError(f"{op} with fused activation {code} cannot be rebuilt", "use RELU/RELU6 or none")
    return _ACT[code]


def keras_from_tflite(model: bytes, info: ModelInfo, check: np.ndarray) -> Any:
    """A Keras 3 functional model computing what the float ``model`` computes; ``check`` (float inputs,
    [N, ...]) must give the same outputs (to 1e-3 relative)."""
    import keras

    inp_t = info.input_tensors()[0]
    x_in = keras.Input(tuple(inp_t.shape[1:]), name="input")
    values: dict[int, Any] = {inp_t.index: x_in}
    weights: list[tuple[Any, list[np.ndarray]]] = []
    for op in info.ops:
        o = op.options
        x = values.get(op.inputs[0])
        if x is None:
            raise UsageError(f"op {op.op} #{op.index} reads a tensor the rebuild does not have",
                             "distillation rebuilds single-input feed-forward graphs")
        if op.op == "CONV_2D":
            w = _const(model, info, op.inputs[1])  # OHWI
            layer = keras.layers.Conv2D(w.shape[0], w.shape[1:3], strides=(o["strideH"], o["strideW"]),
                                        padding=_PAD[o["padding"]], activation=_act(o, op.op),
                                        dilation_rate=(o.get("dilationHFactor", 1), o.get("dilationWFactor", 1)),
                                        use_bias=len(op.inputs) > 2 and op.inputs[2] >= 0)
            y = layer(x)
            params = [w.transpose(1, 2, 3, 0)]
        elif op.op == "DEPTHWISE_CONV_2D":
            w = _const(model, info, op.inputs[1])  # [1, H, W, C*M]
            mult = int(o.get("depthMultiplier", 1)) or 1
            channels = w.shape[3] // mult
            layer = keras.layers.DepthwiseConv2D(w.shape[1:3], strides=(o["strideH"], o["strideW"]),
                                                 padding=_PAD[o["padding"]], depth_multiplier=mult,
                                                 activation=_act(o, op.op),
                                                 use_bias=len(op.inputs) > 2 and op.inputs[2] >= 0)
            y = layer(x)
            params = [w.reshape(w.shape[1], w.shape[2], channels, mult)]
        elif op.op == "FULLY_CONNECTED":
            w = _const(model, info, op.inputs[1])  # [O, I]
            if len(x.shape) > 2:
                x = keras.layers.Flatten()(x)
            layer = keras.layers.Dense(w.shape[0], activation=_act(o, op.op),
                                       use_bias=len(op.inputs) > 2 and op.inputs[2] >= 0)
            y = layer(x)
            params = [w.T]
        elif op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            cls = keras.layers.AveragePooling2D if op.op == "AVERAGE_POOL_2D" else keras.layers.MaxPooling2D
            y = cls((o["filterHeight"], o["filterWidth"]), strides=(o["strideH"], o["strideW"]),
                    padding=_PAD[o["padding"]])(x)
            act = _act(o, op.op)
            y = keras.layers.Activation(act)(y) if act else y
            layer, params = None, []
        elif op.op == "MEAN":
            axes = sorted(int(a) % 4 for a in _const(model, info, op.inputs[1]).reshape(-1))
            if axes != [1, 2]:
                raise UsageError(f"MEAN over axes {axes} cannot be rebuilt", "only a mean over height and width")
            y = keras.layers.GlobalAveragePooling2D(keepdims=len(info.tensors[op.outputs[0]].shape) == 4)(x)
            layer, params = None, []
        elif op.op == "RESHAPE":
            out = info.tensors[op.outputs[0]].shape
            if len(out) != 2:
                raise UsageError("only reshapes to [1, N] (a flatten) can be rebuilt", "flatten before dense layers")
            y = keras.layers.Flatten()(x)
            layer, params = None, []
        elif op.op == "ADD":
            other = values.get(op.inputs[1])
            if other is None:
                raise UsageError("ADD of a constant cannot be rebuilt", "distillation rebuilds plain CNNs")
            y = keras.layers.Add()([x, other])
            act = _act(o, op.op)
            y = keras.layers.Activation(act)(y) if act else y
            layer, params = None, []
        elif op.op in ("RELU", "RELU6"):
            y = keras.layers.Activation(op.op.lower())(x)
            layer, params = None, []
        elif op.op == "SOFTMAX":
            if float(o.get("beta", 1.0)) != 1.0:
                raise UsageError("SOFTMAX with beta != 1 cannot be rebuilt", "use a plain softmax")
            y = keras.layers.Softmax()(x)
            layer, params = None, []
        else:
            raise UsageError(f"distillation cannot rebuild op {op.op} as a Keras layer",
                             "give a Keras (.keras/.h5) source to distill from, or drop --distill")
        if layer is not None:
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                params.append(_const(model, info, op.inputs[2]).reshape(-1).astype(np.float32))
            weights.append((layer, params))
        values[op.outputs[0]] = y
    out_t = info.output_tensors()[0]
    built = keras.Model(x_in, values[out_t.index])
    for layer, params in weights:
        layer.set_weights(params)
    _check(built, model, info, check)
    return built


def _check(built: Any, model: bytes, info: ModelInfo, x: np.ndarray) -> None:
    from edgeforge.hostrun import run_batch

    inp = info.input_tensors()[0]
    sample = x[: min(len(x), 32)].astype(np.float32)
    want = run_batch(model, "litert", sample.reshape(len(sample), *inp.shape)).reshape(len(sample), -1)
    got = np.asarray(built(sample.reshape(len(sample), *inp.shape[1:]), training=False)).reshape(len(sample), -1)
    err = float(np.max(np.abs(got - want))) / (float(np.max(np.abs(want))) or 1.0)
    if err > 1e-3:
        raise UsageError(f"the Keras rebuild of the model differs from it (relative error {err:.2g})",
                         "give a Keras (.keras/.h5) source to distill from, or drop --distill")
