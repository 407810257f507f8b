"""Flatbuffer surgery on converted models (tests only): what TensorFlow's converter cannot emit.

* ``to_int4``: rewrite a model's filter tensor to TensorType.INT4 with packed data (two values per byte
  over the flattened tensor, element 2i in the low nibble), values in [-7, 7], scales unchanged.
* ``to_requantize``: turn a one-op model into an int8 -> int8 QUANTIZE with new output parameters.
* ``set_quant``: change a tensor's scale / zero point.
"""

from __future__ import annotations

import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from edgeforge.model.rewrite import pack, pack_int4, unpack  # noqa: F401 (pack_int4: re-exported to tests)


def load(data: bytes) -> schema.ModelT:
    return unpack(data)


def save(model: schema.ModelT) -> bytes:
    return pack(model)


def to_int4(data: bytes, op_index: int = 0, input_index: int = 1,
            rng: np.random.Generator | None = None) -> tuple[bytes, np.ndarray]:
    """Replace op ``op_index``'s filter by int4 values derived from the int8 ones (or random with
    ``rng``); returns the model and the int4 values (unpacked, int8)."""
    m = load(data)
    sg = m.subgraphs[0]
    t = sg.tensors[sg.operators[op_index].inputs[input_index]]
    assert t.type == schema.TensorType.INT8, t.type
    buf = m.buffers[t.buffer]
    w8 = np.asarray(buf.data, dtype=np.uint8).view(np.int8)
    if rng is None:
        w4 = np.clip(np.round(w8.astype(np.float64) * 7 / 127), -7, 7).astype(np.int8)
    else:
        w4 = rng.integers(-7, 8, size=w8.size).astype(np.int8)
    t.type = schema.TensorType.INT4
    buf.data = pack_int4(w4)
    return save(m), w4


def set_quant(data: bytes, tensor: int, scale: float, zero_point: int) -> bytes:
    m = load(data)
    t = m.subgraphs[0].tensors[tensor]
    q = t.quantization or schema.QuantizationParametersT()
    q.scale = [float(scale)]
    q.zeroPoint = [int(zero_point)]
    t.quantization = q
    return save(m)


def to_requantize(data: bytes, scale: float, zero_point: int) -> bytes:
    """A one-op model (input -> output of the same shape) becomes int8 -> int8 QUANTIZE."""
    m = load(data)
    sg = m.subgraphs[0]
    assert len(sg.operators) == 1
    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.QUANTIZE
    code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 1
    m.operatorCodes.append(code)
    op = sg.operators[0]
    op.opcodeIndex = len(m.operatorCodes) - 1
    op.builtinOptionsType = 0
    op.builtinOptions = None
    op.inputs = [op.inputs[0]]
    out = sg.tensors[op.outputs[0]]
    out.quantization.scale = [float(scale)]
    out.quantization.zeroPoint = [int(zero_point)]
    return save(m)


def set_int8_values(data: bytes, values: np.ndarray, op_index: int = 0, input_index: int = 1) -> bytes:
    """Overwrite an int8 constant input of op ``op_index`` with ``values``."""
    m = load(data)
    sg = m.subgraphs[0]
    t = sg.tensors[sg.operators[op_index].inputs[input_index]]
    assert t.type == schema.TensorType.INT8, t.type
    m.buffers[t.buffer].data = np.asarray(values, dtype=np.int8).reshape(-1).view(np.uint8)
    return save(m)


def set_int4_values(data: bytes, values: np.ndarray, op_index: int = 0, input_index: int = 1) -> bytes:
    """Overwrite an INT4 constant input of op ``op_index`` with ``values`` (unpacked, in [-8, 7]), packed."""
    m = load(data)
    sg = m.subgraphs[0]
    t = sg.tensors[sg.operators[op_index].inputs[input_index]]
    assert t.type == schema.TensorType.INT4, t.type
    m.buffers[t.buffer].data = pack_int4(values)
    return save(m)
