"""TFLite Micro's Prepare-time integer math, reproduced exactly (docs INT8_REFERENCE sections 3-7).

Every function mirrors one TFLM helper; scales come in as Python floats holding float32 values (what
the flatbuffer stores) and are combined in double, except where TFLM deliberately works in float32
(activation bounds, FC per-tensor product). ``single_rounding`` mirrors ``TFLITE_SINGLE_ROUNDING``:
it changes ``QuantizeMultiplier`` (shift saturation) and the softmax multiplier cap; the generated
C must then be built with ``-DEF_SINGLE_ROUNDING=1`` so that ``ef_mbqm`` matches.

``mbqm`` and friends are bit-exact Python models of the C runtime's fixed-point arithmetic, used by
tests and by nothing at build time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def round_half_away(x: float) -> int:
    """``std::round`` on a double: ties away from zero (Python's ``round`` is banker's rounding)."""
    a = abs(x)
    r = math.floor(a)
    if a - r >= 0.5:
        r += 1
    return int(r) if x >= 0 else -int(r)


def _f32(x: float) -> np.float32:
    return np.float32(x)


# --------------------------------------------------------------------------------------------------
# QuantizeMultiplier (quantization_util.cc)


def quantize_multiplier(m: float, single_rounding: bool = False) -> tuple[int, int]:
    """``QuantizeMultiplier(M) -> (multiplier, shift)``; shift > 0 means a left shift."""
    if m == 0.0:
        return 0, 0
    f, e = math.frexp(m)
    q = round_half_away(f * float(1 << 31))
    if q == 1 << 31:
        q //= 2
        e += 1
    if e < -31:
        return 0, 0
    if single_rounding and e > 30:
        return (1 << 31) - 1, 30
    return q, e


def quantize_multiplier_smaller_than_one_exp(m: float, single_rounding: bool = False) -> tuple[int, int]:
    if not 0.0 < m < 1.0:
        raise ValueError(f"QuantizeMultiplierSmallerThanOneExp needs 0 < M < 1, got {m!r}")
    q, e = quantize_multiplier(m, single_rounding)
    if e > 0:
        raise ValueError(f"QuantizeMultiplierSmallerThanOneExp: shift {e} > 0 for M = {m!r}")
    return q, e


def quantize_multiplier_greater_than_one(m: float, single_rounding: bool = False) -> tuple[int, int]:
    if not m > 1.0:
        raise ValueError(f"QuantizeMultiplierGreaterThanOne needs M > 1, got {m!r}")
    q, e = quantize_multiplier(m, single_rounding)
    if e < 0:
        raise ValueError(f"QuantizeMultiplierGreaterThanOne: shift {e} < 0 for M = {m!r}")
    return q, e


# --------------------------------------------------------------------------------------------------
# Fused activations (kernel_util.cc CalculateActivationRangeQuantized), in float32

ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6 = 0, 1, 2, 3


def quantize_value_f32(scale: float, zero_point: int, value: float) -> int:
    """``zero_point + (int)TfLiteRound(value / scale)`` with the division and rounding in float32."""
    t = float(_f32(value) / _f32(scale))  # float32 division
    return int(zero_point) + round_half_away(t)


def activation_range(activation: int, scale: float, zero_point: int, qmin: int = -128, qmax: int = 127,
                     single_rounding: bool = False) -> tuple[int, int]:
    """(act_min, act_max) for a fused activation; the same in both rounding modes."""
    del single_rounding
    if activation == ACT_NONE:
        return qmin, qmax
    if activation == ACT_RELU:
        return max(qmin, quantize_value_f32(scale, zero_point, 0.0)), qmax
    if activation == ACT_RELU6:
        return (max(qmin, quantize_value_f32(scale, zero_point, 0.0)),
                min(qmax, quantize_value_f32(scale, zero_point, 6.0)))
    if activation == ACT_RELU_N1_TO_1:
        return (max(qmin, quantize_value_f32(scale, zero_point, -1.0)),
                min(qmax, quantize_value_f32(scale, zero_point, 1.0)))
    raise ValueError(f"unknown fused activation {activation}")


# --------------------------------------------------------------------------------------------------
# Per-op multipliers


def conv_multipliers(s_in: float, s_w: tuple[float, ...] | list[float], s_out: float, channels: int,
                     single_rounding: bool = False) -> tuple[list[int], list[int]]:
    """CONV / DW / per-channel FC: ``(double)s_in * (double)s_w[c] / (double)s_out`` per output channel;
    a per-tensor filter scale is broadcast (PopulateConvolutionQuantizationParams)."""
    mults: list[int] = []
    shifts: list[int] = []
    for c in range(channels):
        sw = s_w[c] if len(s_w) > 1 else s_w[0]
        m, e = quantize_multiplier(float(s_in) * float(sw) / float(s_out), single_rounding)
        mults.append(m)
        shifts.append(e)
    return mults, shifts


def fc_per_tensor_multiplier(s_in: float, s_w: float, s_out: float,
                             single_rounding: bool = False) -> tuple[int, int]:
    """GetQuantizedConvolutionMultipler: the input*filter product is formed in float32 first."""
    product = float(_f32(s_in) * _f32(s_w))
    return quantize_multiplier(product / float(s_out), single_rounding)


def mul_multiplier(s1: float, s2: float, s_out: float, single_rounding: bool = False) -> tuple[int, int]:
    return quantize_multiplier(float(s1) * float(s2) / float(s_out), single_rounding)


def requantize_multiplier(s_in: float, s_out: float, single_rounding: bool = False) -> tuple[int, int]:
    return quantize_multiplier(float(s_in) / float(s_out), single_rounding)


@dataclass(frozen=True)
class AddParams:
    left_shift: int
    in1_mult: int
    in1_shift: int
    in2_mult: int
    in2_shift: int
    out_mult: int
    out_shift: int


def add_params(s1: float, s2: float, s_out: float, single_rounding: bool = False) -> AddParams:
    """add_common.cc: left_shift 20, ``twice_max = 2 * max(s1, s2)`` taken on the float32 values."""
    left_shift = 20
    twice_max = 2.0 * float(max(_f32(s1), _f32(s2)))
    m1, e1 = quantize_multiplier_smaller_than_one_exp(float(s1) / twice_max, single_rounding)
    m2, e2 = quantize_multiplier_smaller_than_one_exp(float(s2) / twice_max, single_rounding)
    mo, eo = quantize_multiplier_smaller_than_one_exp(twice_max / (float(1 << left_shift) * float(s_out)),
                                                      single_rounding)
    return AddParams(left_shift, m1, e1, m2, e2, mo, eo)


def mean_multiplier(s_in: float, s_out: float, n: int, single_rounding: bool = False) -> tuple[int, int]:
    """reduce_common.cc + QuantizedMeanOrSum: ``QuantizeMultiplier(s_in/s_out)`` with 1/n folded in:
    ``k = min(floor(log2 n), 32, 31 + e)``, ``m' = floor(m * 2^k / n)``, ``e' = e - k``."""
    m, e = quantize_multiplier(float(s_in) / float(s_out), single_rounding)
    if n <= 0:
        raise ValueError("MEAN over an empty axis")
    k = n.bit_length() - 1
    k = min(k, 32, 31 + e)
    # static_cast<int32_t>((int64_t(m) << k) / n): C truncation (m >= 0, so floor); k may be negative
    # only for e < -31, which QuantizeMultiplier already flushed to (0, 0).
    mm = ((m << k) // n) if k >= 0 else 0
    return mm, e - k


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """``floor((2^ib - 1) * 2^(tsb - ib) / 2^left_shift)`` computed in double."""
    v = 1.0 * ((1 << input_integer_bits) - 1) * float(1 << (total_signed_bits - input_integer_bits)) \
        / float(2.0 ** input_left_shift)
    return int(math.floor(v))


@dataclass(frozen=True)
class SoftmaxParams:
    mult: int
    left_shift: int
    diff_min: int


def softmax_params(beta: float, s_in: float, single_rounding: bool = False) -> SoftmaxParams:
    """PreprocessSoftmaxScaling with kScaledDiffIntegerBits = 5; the cap is 2^31-1 (double rounding)
    or 2^30-1 (single rounding); diff_min = -CalculateInputRadius(5, left_shift)."""
    cap = float((1 << 30) - 1) if single_rounding else float((1 << 31) - 1)
    real = min(float(beta) * float(s_in) * float(1 << (31 - 5)), cap)
    mult, ls = quantize_multiplier_greater_than_one(real, single_rounding)
    return SoftmaxParams(mult, ls, -calculate_input_radius(5, ls, 31))


@dataclass(frozen=True)
class LogisticParams:
    mult: int
    left_shift: int
    radius: int


def logistic_params(s_in: float, single_rounding: bool = False) -> LogisticParams:
    """logistic_common.cc / tanh.cc (int8): ``frexp(s_in * 2^27)`` without the 2^31 renormalisation;
    the same in both rounding modes (the runtime's ef_mbqm applies the mode)."""
    del single_rounding
    real = float(s_in) * float(1 << (31 - 4))
    f, ls = math.frexp(real)
    mult = round_half_away(f * float(1 << 31))
    if mult >= 1 << 31:  # static_cast<int32_t> of 2^31 wraps on every real target
        mult -= 1 << 32
    return LogisticParams(mult, ls, calculate_input_radius(4, ls, 31))


# --------------------------------------------------------------------------------------------------
# Python models of the runtime arithmetic (tests)


def _wrap32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= 1 << 31 else x


def srdhm(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    return (a * b + (1 << 30)) >> 31


def rdbpot(x: int, k: int) -> int:
    mask = (1 << k) - 1
    rem = x & mask
    thr = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> k) + (1 if rem > thr else 0)


def mbqm(x: int, m: int, e: int, single_rounding: bool = False) -> int:
    """MultiplyByQuantizedMultiplier as TFLM computes it in the selected rounding mode."""
    if single_rounding:
        t = 31 - e
        return (x * m + (1 << (t - 1))) >> t
    ls = max(e, 0)
    rs = max(-e, 0)
    return rdbpot(srdhm(_wrap32(x * (1 << ls)), m), rs)
