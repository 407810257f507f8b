"""Rewriting a .tflite flatbuffer through the schema's object API (what the converter cannot emit:
int4 filters, pruned weights)."""

from __future__ import annotations

from typing import Any

import flatbuffers
import numpy as np

from edgeforge.model.tflite import FILE_IDENTIFIER, _schema


def unpack(data: bytes) -> Any:
    """The mutable object tree (``ModelT``) of a .tflite."""
    return _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack(model: Any) -> bytes:
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def pack_int4(values: np.ndarray) -> np.ndarray:
    """TFLite's INT4 layout: two values per byte over the flattened tensor, element 2i in the low nibble."""
    v = np.asarray(values, dtype=np.int8).reshape(-1)
    if v.size % 2:
        v = np.concatenate([v, np.zeros(1, np.int8)])
    nib = (v.astype(np.int16) & 0x0F).astype(np.uint8)
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
    b = np.asarray(packed, dtype=np.uint8)
    vals = np.empty(b.size * 2, dtype=np.int16)
    vals[0::2] = b & 0x0F
    vals[1::2] = b >> 4
    return np.where(vals >= 8, vals - 16, vals)[:count].astype(np.int8)


def tensor_type(name: str) -> int:
    return int(getattr(_schema().TensorType, name))


def dequantize_constants(data: bytes) -> bytes:
    """``data`` with its int8 constant tensors (the weights of a hybrid "dynamic-range" model with float
    I/O) stored as the float32 values they stand for: a clean float graph that a quantizer can calibrate
    (ai-edge-quantizer mis-quantizes pre-quantized weights: the KWS model's conv biases became int8).
    Exact: every int8 value times its scale is a float32. Unchanged when there is nothing to convert."""
    model = unpack(data)
    sg = model.subgraphs[0]
    int8, float32 = tensor_type("INT8"), tensor_type("FLOAT32")
    users: dict[int, int] = {}
    for t in sg.tensors or []:
        users[t.buffer] = users.get(t.buffer, 0) + 1
    changed = False
    for t in sg.tensors or []:
        buf = model.buffers[t.buffer] if 0 < t.buffer < len(model.buffers) else None
        q = t.quantization
        if (t.type != int8 or buf is None or buf.data is None or len(buf.data) == 0 or q is None
                or q.scale is None or len(q.scale) == 0):
            continue
        values = np.frombuffer(bytes(np.asarray(buf.data, dtype=np.uint8)), dtype=np.int8).astype(np.float32)
        shape = [int(d) for d in (t.shape if t.shape is not None else [values.size])]
        scale = np.asarray(q.scale, dtype=np.float32)
        zp = np.asarray(q.zeroPoint if q.zeroPoint is not None and len(q.zeroPoint) else [0], dtype=np.float32)
        if scale.size > 1:  # per-channel along quantizedDimension
            axis_shape = [1] * len(shape)
            axis_shape[q.quantizedDimension] = scale.size
            scale, zp = scale.reshape(axis_shape), np.broadcast_to(zp, scale.shape).reshape(axis_shape)
        real = ((values.reshape(shape) - zp) * scale).astype(np.float32)
        new = _schema().BufferT()
        new.data = np.frombuffer(real.tobytes(), dtype=np.uint8)
        if users[t.buffer] == 1:
            model.buffers[t.buffer] = new
        else:
            model.buffers.append(new)
            t.buffer = len(model.buffers) - 1
        t.type, t.quantization = float32, None
        changed = True
    return pack(model) if changed else data


def normalize_opcodes(data: bytes) -> bytes:
    """``data`` with every operator code in the current schema's form: ``builtin_code`` holds the op.
    Files from converters before schema 3a (the MLPerf KWS model among them) keep it in
    ``deprecated_builtin_code`` and leave ``builtin_code`` 0, which readers of only the new field take
    for ADD (ai-edge-quantizer then quantized every weight as an activation)."""
    model = unpack(data)
    changed = False
    for code in model.operatorCodes or []:
        value = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if code.builtinCode != value:
            code.builtinCode = value
            changed = True
    return pack(model) if changed else data


def float_graph(data: bytes) -> bytes:
    """A float-I/O .tflite as a clean float graph: current op codes, float32 weights (see above)."""
    return dequantize_constants(normalize_opcodes(data))
