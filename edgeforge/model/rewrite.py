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
