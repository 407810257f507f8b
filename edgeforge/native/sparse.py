"""Sparse filter storage for the native runtime: pruned weights really leave flash, and their MACs are skipped.

The format, ``"sparse_rows"`` (one ``uint8_t`` array per filter; ``firmware/runtime/ef_sparse.c`` reads it):

The filter is viewed as R rows of K elements, one row per output channel:

* CONV_2D ``[out_c, k_h, k_w, in_c / groups]`` (OHWI): row oc = ``filter[oc].ravel()``, K = k_h * k_w * fic;
* FULLY_CONNECTED ``[out, in]``: row o = ``filter[o]``, K = in;
* DEPTHWISE_CONV_2D ``[1, k_h, k_w, out_c]``: row oc = ``filter[0, :, :, oc].ravel()``, K = k_h * k_w.

1. header: per row the number e of values it stores, 1 byte when K <= 255 else 2 bytes little-endian:
   ``0`` = all-zero row (nothing stored, no work: structured pruning costs a byte per channel),
   ``K`` = dense row (all K values, zeros included: no bitmap overhead where a row is barely pruned),
   anything else = bitmap row;
2. the bitmaps of the bitmap rows, in row order, ``(K + 7) // 8`` bytes each: bit ``k % 8`` of byte ``k // 8`` is
   set when element k is nonzero (padding bits 0);
3. the values of every row in row order (dense rows: all K; bitmap rows: their nonzero values in element
   order): int8 bytes, or int4 packed two per byte over the whole stream (value i in the low nibble of byte
   i // 2 when i is even; the last byte's unused high nibble 0).

Why this one: a bitmap costs 1 bit per weight whatever the sparsity, the least index overhead between ~30 % and
~90 % zeros, which is where magnitude pruning lands (an index per nonzero costs 8-16 bits; run lengths cost as
much and serialise decoding), and it works unchanged for packed int4 values. The per-row header makes whole
output channels (structured pruning) cost one byte each and no work, and lets barely-pruned rows stay dense
rows (no bitmap overhead, dense dot products). The kernels decode one 32-bit bitmap word at a time (count
trailing zeros, no division) and apply each decoded weight to 4 output pixels at once (CONV_2D; FC with
batches), so the decode is shared; DEPTHWISE_CONV_2D decodes each channel's taps once per call.

Which rows are bitmap rows: CONV_2D / FULLY_CONNECTED rows whose bitmap form (bitmap + nonzero values) is at
most 3/4 of their dense form, i.e. >= ~37.5 % zeros for int8 and >= ~50 % for int4: below that, decoding costs
more time than the skipped MACs save; DEPTHWISE_CONV_2D rows whenever the bitmap form is smaller (their decode
happens once per channel, not per pixel). A whole filter is stored this way only when that is strictly smaller
than dense, so a model without zero rows or pruned rows is emitted exactly as before. Limits: rows of at most
65535 elements, depthwise filters of at most 49 taps (7x7) per channel; larger ones stay dense.
``weight_storage`` is the exact byte count the emitter will use, and cheap enough to call per candidate.

Not counted there (it is not per filter): the sparse kernels' code and stack. Linked for a Cortex-M4 (-Os), KWS
with every filter sparse has 2.3 KB more .text than dense (the dense conv kernels drop out when no filter uses
them), and ~0.9 KB more worst-case stack (the 4-pixel im2col buffer and accumulator tile).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from edgeforge import ops
from edgeforge.model.rewrite import pack_int4

DENSE = "dense"
SPARSE = "sparse_rows"
OPS = ops.WEIGHT_OPS
#: rows longer than this are never stored sparse (the header is 16-bit)
MAX_ROW = 65535
#: depthwise taps per channel at most (the kernel decodes a channel's taps onto the stack: EF_SDW_MAXK)
MAX_DW_TAPS = 49
#: CONV_2D / FC: a row is a bitmap row when bitmap + values <= ROW_NUM / ROW_DEN of its dense size
ROW_NUM, ROW_DEN = 3, 4
#: set to 0/off/no/false to store every filter dense (benchmarks: the same model with and without sparsity)
ENV_SWITCH = "EDGEFORGE_NATIVE_SPARSE"


@dataclass(frozen=True)
class WeightStorage:
    """How the native runtime stores one filter: ``format`` is "dense" or "sparse_rows"; ``stored_bytes`` is
    exactly the flash of its constant array; ``dense_bytes`` the dense size at its bit width."""

    format: str
    stored_bytes: int
    dense_bytes: int

    @property
    def saved_bytes(self) -> int:
        return self.dense_bytes - self.stored_bytes


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "off", "no", "false")


def dense_bytes(count: int, bits: int) -> int:
    return (int(count) * bits + 7) // 8


def _check(values: np.ndarray, bits: int, op: str) -> None:
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, not {bits}")
    if op not in OPS:
        raise ValueError(f"no weight storage for {op} (one of {', '.join(OPS)})")
    if op == ops.FULLY_CONNECTED and values.ndim < 1:
        raise ValueError("a FULLY_CONNECTED filter is [out, in]")
    if op != ops.FULLY_CONNECTED and values.ndim != 4:
        raise ValueError(f"a {op} filter is 4-D, not {list(values.shape)}")


def rows(values: np.ndarray, op: str) -> np.ndarray:
    """The filter as [rows, K] (a view or a transposed copy), in the order the kernels read it."""
    v = np.asarray(values)
    if op == ops.DEPTHWISE_CONV_2D:
        return v.reshape(-1, v.shape[-1]).T
    if v.ndim == 0 or v.shape[0] == 0:
        return v.reshape(0, 0)
    return v.reshape(v.shape[0], -1)


@dataclass(frozen=True)
class _Layout:
    entries: np.ndarray  # int64 [R]: values stored per row (0 / K / nnz)
    bitmap: np.ndarray  # bool [R]: bitmap rows
    K: int
    header: int  # bytes
    stored: int  # bytes in all
    dense: int


def _layout(r: np.ndarray, bits: int, op: str) -> _Layout | None:
    """Sizes of the sparse form of rows ``r`` (None when the format cannot hold it)."""
    R, K = r.shape
    if R == 0 or K == 0 or K > MAX_ROW or (op == ops.DEPTHWISE_CONV_2D and K > MAX_DW_TAPS):
        return None
    nnz = np.count_nonzero(r, axis=1).astype(np.int64)
    rowbytes = (K + 7) // 8
    unit = 1 if bits == 8 else 2  # value units (bytes or nibbles) per byte
    sparse_units = rowbytes * unit + nnz
    if op == ops.DEPTHWISE_CONV_2D:
        bitmap = (nnz > 0) & (sparse_units < K)
    else:
        bitmap = (nnz > 0) & (sparse_units * ROW_DEN <= K * ROW_NUM)
    entries = np.where(nnz == 0, 0, np.where(bitmap, nnz, K))
    header = R * (1 if K <= 255 else 2)
    total = int(entries.sum())
    values = total if bits == 8 else (total + 1) // 2
    stored = header + int(bitmap.sum()) * rowbytes + values
    return _Layout(entries, bitmap, K, header, stored, dense_bytes(R * K, bits))


def weight_storage(values: np.ndarray, bits: int, op: str) -> WeightStorage:
    """Exactly how the native emitter stores this filter: ``values`` are the unpacked integer filter values in
    TFLite layout (CONV_2D OHWI, DEPTHWISE_CONV_2D 1HW(C*M), FULLY_CONNECTED [out, in]); ``bits`` 8 or 4
    (int4 is stored packed); ``op`` the TFLite op name. Sparse when strictly smaller than dense (and sparse
    storage is enabled, see ENV_SWITCH)."""
    v = np.asarray(values)
    _check(v, bits, op)
    dense = dense_bytes(v.size, bits)
    if not enabled():
        return WeightStorage(DENSE, dense, dense)
    lay = _layout(rows(v, op), bits, op)
    if lay is None or lay.stored >= dense:
        return WeightStorage(DENSE, dense, dense)
    return WeightStorage(SPARSE, lay.stored, dense)


def encode(values: np.ndarray, bits: int, op: str) -> tuple[WeightStorage, np.ndarray | None]:
    """``weight_storage`` and, when that is sparse, the uint8 array the emitter writes (its length is
    ``stored_bytes``); None for dense (the emitter writes the filter as today)."""
    ws = weight_storage(values, bits, op)
    if ws.format == DENSE:
        return ws, None
    r = rows(np.asarray(values), op).astype(np.int8)
    lay = _layout(r, bits, op)
    assert lay is not None
    K = r.shape[1]
    if K <= 255:
        header = lay.entries.astype(np.uint8)
    else:
        header = lay.entries.astype("<u2").view(np.uint8)
    bm = r[lay.bitmap] != 0
    if bm.size:
        pad = (-K) % 8
        bm = np.pad(bm, ((0, 0), (0, pad)))
        bitmaps = np.packbits(bm, axis=1, bitorder="little").reshape(-1)
    else:
        bitmaps = np.zeros(0, np.uint8)
    keep = np.zeros(r.shape, dtype=bool)
    keep[lay.entries == K] = True  # dense rows: every value
    keep[lay.bitmap] = r[lay.bitmap] != 0
    vals = r[keep]  # row-major order: rows in order, elements in order
    packed = vals.view(np.uint8) if bits == 8 else pack_int4(vals)
    blob = np.concatenate([header, bitmaps, packed]).astype(np.uint8)
    if blob.size != ws.stored_bytes:
        raise AssertionError(f"sparse encoding is {blob.size} bytes, weight_storage said {ws.stored_bytes}")
    return ws, blob


def decode(blob: np.ndarray, shape: tuple[int, ...], bits: int, op: str) -> np.ndarray:
    """The filter values back from a sparse array (tests and debugging; the kernels read it in place)."""
    b = np.asarray(blob, dtype=np.uint8)
    like = np.zeros(shape, np.int8)
    R, K = rows(like, op).shape
    wide = K > 255
    hdr = b[: R * (2 if wide else 1)]
    entries = hdr.view("<u2").astype(np.int64) if wide else hdr.astype(np.int64)
    pos = hdr.size
    rowbytes = (K + 7) // 8
    is_bm = (entries > 0) & (entries < K)
    nbm = int(is_bm.sum())
    bm = np.unpackbits(b[pos : pos + nbm * rowbytes].reshape(nbm, rowbytes), axis=1, bitorder="little")[:, :K]
    pos += nbm * rowbytes
    total = int(entries.sum())
    if bits == 8:
        vals = b[pos : pos + total].view(np.int8)
    else:
        p = b[pos : pos + (total + 1) // 2]
        nib = np.empty(p.size * 2, np.int16)
        nib[0::2], nib[1::2] = p & 0x0F, p >> 4
        vals = np.where(nib >= 8, nib - 16, nib)[:total].astype(np.int8)
    out = np.zeros((R, K), np.int8)
    mask = np.zeros((R, K), bool)
    mask[entries == K] = True
    mask[is_bm] = bm.astype(bool)
    out[mask] = vals
    if op == ops.DEPTHWISE_CONV_2D:
        return out.T.reshape(shape)
    return out.reshape(shape)
