"""Unit tests of the Prepare-time integer math (edgeforge.native.qparams) on the edge cases named in
INT8_REFERENCE section 3.2 and around it, and of the C fixed-point primitives against the Python
models in both rounding modes (including ties where double and single rounding disagree)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess

import numpy as np
import pytest
from harness import CFLAGS, RUNTIME, _cache_dir

from edgeforge.native import qparams as qp

# ---- QuantizeMultiplier --------------------------------------------------------------------------


def test_zero_multiplier() -> None:
    assert qp.quantize_multiplier(0.0) == (0, 0)
    assert qp.quantize_multiplier(0.0, single_rounding=True) == (0, 0)


@pytest.mark.parametrize("e", [-31, -20, -1, 0, 1, 5, 30])
def test_power_of_two_gives_half_mantissa(e: int) -> None:
    # M = 2^(e-1) = 0.5 * 2^e: f = 0.5 exactly, m = 2^30
    assert qp.quantize_multiplier(2.0 ** (e - 1)) == (1 << 30, e)


def test_mantissa_rounding_up_to_one_renormalises() -> None:
    m = 1.0 - 2.0 ** -33  # f within 2^-32 of 1: round(f * 2^31) == 2^31
    assert qp.quantize_multiplier(m) == (1 << 30, 1)
    m = 0.75 * (1.0 - 2.0 ** -40)
    assert qp.quantize_multiplier(m) == (round(0.75 * 2 ** 31), 0)


def test_half_away_from_zero_not_bankers() -> None:
    # f * 2^31 = k + 0.5 exactly with k even: std::round gives k+1, Python's round gives k
    k = (1 << 30) + 2  # even
    f = (k + 0.5) / 2.0 ** 31
    assert round(f * 2 ** 31) == k  # banker's
    assert qp.quantize_multiplier(f) == (k + 1, 0)
    assert qp.round_half_away(-2.5) == -3 and qp.round_half_away(2.5) == 3 and qp.round_half_away(2.4999) == 2


def test_tiny_multipliers_flush_to_zero() -> None:
    assert qp.quantize_multiplier(2.0 ** -33) == (0, 0)  # frexp exponent -32 < -31
    assert qp.quantize_multiplier(2.0 ** -32) == (1 << 30, -31)  # exponent -31: kept
    assert qp.quantize_multiplier(1e-12) == (0, 0)


def test_large_multiplier_saturates_only_in_single_rounding() -> None:
    assert qp.quantize_multiplier(2.0 ** 40) == (1 << 30, 41)
    assert qp.quantize_multiplier(2.0 ** 40, single_rounding=True) == ((1 << 31) - 1, 30)
    assert qp.quantize_multiplier(2.0 ** 29, single_rounding=True) == (1 << 30, 30)  # e == 30 kept


def test_wrappers_check_their_ranges() -> None:
    assert qp.quantize_multiplier_smaller_than_one_exp(0.3)[1] <= 0
    assert qp.quantize_multiplier_greater_than_one(3.0)[1] >= 0
    with pytest.raises(ValueError):
        qp.quantize_multiplier_smaller_than_one_exp(1.5)
    with pytest.raises(ValueError):
        qp.quantize_multiplier_greater_than_one(0.5)


def test_zero_filter_scale_channel() -> None:
    mults, shifts = qp.conv_multipliers(0.02, [0.01, 0.0, 0.03], 0.1, 3)
    assert (mults[1], shifts[1]) == (0, 0)
    assert qp.mbqm(123456, 0, 0) == 0 and qp.mbqm(-99, 0, 0, single_rounding=True) == 0
    # per-tensor filter scale is broadcast over the channels
    assert qp.conv_multipliers(0.02, [0.01], 0.1, 4) == ([qp.quantize_multiplier(0.002)[0]] * 4,
                                                          [qp.quantize_multiplier(0.002)[1]] * 4)


# ---- per-op quirks ---------------------------------------------------------------------------------


def test_fc_per_tensor_product_is_float32() -> None:
    # found by search: the float32 product s_in*s_w changes the multiplier's low bits
    s_in, s_w, s_out = (float.fromhex(h) for h in ("0x1.c0d03p-5", "0x1.7c9e2ap-9", "0x1.9f712cp-9"))
    assert qp.fc_per_tensor_multiplier(s_in, s_w, s_out) == (1724662773, -4)
    assert qp.quantize_multiplier(s_in * s_w / s_out) == (1724662828, -4)
    # per-channel FC and conv use the double product
    assert qp.conv_multipliers(s_in, [s_w, s_w], s_out, 2)[0] == [1724662828] * 2


def test_activation_bounds_are_computed_in_float32() -> None:
    s = float(np.float32(2.4))  # 6 / 2.4f is exactly 2.5 in float32, 2.4999999 in double
    assert qp.quantize_value_f32(s, 0, 6.0) == 3
    assert qp.round_half_away(6.0 / s) == 2
    assert qp.activation_range(qp.ACT_RELU6, s, 0) == (0, 3)
    s = float(np.float32(0.8))
    assert qp.activation_range(qp.ACT_RELU6, s, -128) == (-128, -120)
    assert qp.activation_range(qp.ACT_NONE, s, 5) == (-128, 127)
    assert qp.activation_range(qp.ACT_RELU, s, 5) == (5, 127)
    assert qp.activation_range(qp.ACT_RELU_N1_TO_1, 0.01, 3) == (-97, 103)
    assert qp.activation_range(qp.ACT_RELU_N1_TO_1, 0.001, 3) == (-128, 127)


def test_add_params() -> None:
    p = qp.add_params(0.0625, 0.125, 0.25)
    assert p.left_shift == 20
    # twice_max = 0.25: M1 = 0.25 -> (2^30, -1); M2 = 0.5 -> (2^30, 0); Mout = 2^-20 -> (2^30, -19)
    assert (p.in1_mult, p.in1_shift) == (1 << 30, -1)
    assert (p.in2_mult, p.in2_shift) == (1 << 30, 0)
    assert (p.out_mult, p.out_shift) == (1 << 30, -19)
    # the max is taken on the float32 scales, then widened: 0.1 is not 0.1f
    q = qp.add_params(0.05, float(np.float32(0.1)), 0.2)
    assert (q.in2_mult, q.in2_shift) == (1 << 30, 0)
    with pytest.raises(ValueError):  # output scale so small that the output multiplier exceeds 1
        qp.add_params(0.05, 0.1, 1e-8)


def test_mean_folds_one_over_n() -> None:
    m, e = qp.quantize_multiplier(0.5)
    assert qp.mean_multiplier(0.5, 1.0, 4) == ((m << 2) // 4, e - 2)
    assert qp.mean_multiplier(0.5, 1.0, 10) == ((m << 3) // 10, e - 3)
    # k limited by 31 + e when the multiplier is tiny
    m, e = qp.quantize_multiplier(2.0 ** -25)
    assert e == -24
    assert qp.mean_multiplier(2.0 ** -25, 1.0, 1 << 12) == ((m << 7) // (1 << 12), e - 7)
    # k limited to 32 is unreachable for int32 element counts; n = 1 leaves the multiplier alone
    assert qp.mean_multiplier(0.3, 0.7, 1) == qp.quantize_multiplier(0.3 / 0.7)


def test_softmax_params_and_the_cap_difference() -> None:
    p = qp.softmax_params(1.0, 1.0 / 16)
    real = 2.0 ** 22
    assert (p.mult, p.left_shift) == (1 << 30, 23)
    assert p.diff_min == -math.floor(31 * 2 ** 26 / 2 ** 23) == -248
    assert real == 2.0 ** 26 / 16
    # beta * s_in * 2^26 above the cap: double caps at 2^31 - 1, single at 2^30 - 1
    d = qp.softmax_params(1.0, 64.0)
    s = qp.softmax_params(1.0, 64.0, single_rounding=True)
    assert (d.mult, d.left_shift, d.diff_min) == ((1 << 31) - 1, 31, 0)
    assert (s.mult, s.left_shift, s.diff_min) == ((1 << 31) - 2, 30, -1)
    # between the two caps the modes differ too
    mid = qp.softmax_params(1.0, 2.0 ** 30 * 1.5 / 2 ** 26)
    assert mid.left_shift == 31
    assert qp.softmax_params(1.0, 2.0 ** 30 * 1.5 / 2 ** 26, single_rounding=True).left_shift == 30


def test_logistic_params() -> None:
    p = qp.logistic_params(2.0 ** -5)  # real = 2^22: f = 0.5, shift 23
    assert (p.mult, p.left_shift, p.radius) == (1 << 30, 23, math.floor(15 * 2 ** 27 / 2 ** 23))
    p = qp.logistic_params(0.1)
    f, e = math.frexp(0.1 * 2 ** 27)
    assert (p.mult, p.left_shift) == (qp.round_half_away(f * 2 ** 31), e)
    assert qp.calculate_input_radius(4, 23) == 240


# ---- MultiplyByQuantizedMultiplier: Python models, then the C runtime against them ------------------


def test_double_and_single_rounding_differ_on_a_tie() -> None:
    # x*m/2^31 = 1.5 exactly: SRDHM rounds it up to 2, then 2/4 = 0.5 rounds away to 1; single
    # rounding sees 0.375 and gives 0.
    assert qp.srdhm(3, 1 << 30) == 2
    assert qp.mbqm(3, 1 << 30, -2) == 1
    assert qp.mbqm(3, 1 << 30, -2, single_rounding=True) == 0
    # negative ties: RDBPOT rounds away from zero, single rounding rounds half up
    assert qp.rdbpot(-6, 2) == -2 and qp.rdbpot(-5, 1) == -3 and qp.rdbpot(5, 1) == 3
    assert qp.mbqm(-5, 1 << 30, 0) == -2  # SRDHM: floor(-2.5 + 0.5) = -2 (round half up)
    assert qp.srdhm(-(1 << 31), -(1 << 31)) == (1 << 31) - 1


def _vectors(n: int, seed: int) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    out = [(3, 1 << 30, -2), (-3, 1 << 30, -2), (5, 1 << 30, 0), (-5, 1 << 30, 0), (0, 0, 0),
           (-(1 << 31), (1 << 31) - 1, 0), ((1 << 31) - 1, (1 << 31) - 1, 0), (123, 1 << 30, -31)]
    for _ in range(n):
        m = int(rng.integers(1 << 30, 1 << 31))
        e = int(rng.integers(-31, 1))
        x = int(rng.integers(-(1 << 22), 1 << 22))
        out.append((x, m, e))
        # exact ties for the second rounding of the double-rounding path
        k = -e
        if 1 <= k <= 20:
            out.append((int(rng.integers(-(1 << 10), 1 << 10)), 1 << 30, e))
    for _ in range(n // 4):  # positive shifts with small x (MUL, MEAN, softmax, logistic)
        e = int(rng.integers(1, 12))
        out.append((int(rng.integers(-(1 << (30 - e)), 1 << (30 - e))), int(rng.integers(1 << 30, 1 << 31)), e))
    return out


def _c_program(single: bool) -> str:
    cc = shutil.which("cc") or "gcc"
    src = _cache_dir() / f"mbqm_test_{os.getpid()}_{int(single)}.c"
    src.write_text(
        '#include <stdio.h>\n#include "ef_kernels.h"\n'
        "int main(void) { long x, m, e; while (scanf(\"%ld %ld %ld\", &x, &m, &e) == 3) {\n"
        "  printf(\"%ld %ld %ld\\n\", (long)ef_mbqm((int32_t)x, (int32_t)m, (int32_t)e),\n"
        "         (long)ef_srdhm((int32_t)x, (int32_t)m), (long)ef_rdbpot((int32_t)x, (int32_t)(e <= 0 ? -e : 0))); }\n"
        "  return 0; }\n")
    exe = _cache_dir() / f"mbqm_test_{os.getpid()}_{int(single)}"
    subprocess.run([cc, *CFLAGS, f"-DEF_SINGLE_ROUNDING={int(single)}", "-I", str(RUNTIME), str(src), "-o",
                    str(exe)], check=True, capture_output=True, text=True)
    return str(exe)


@pytest.mark.parametrize("single", [False, True])
def test_c_mbqm_matches_python_model(single: bool) -> None:
    vecs = _vectors(3000, 7)
    exe = _c_program(single)
    stdin = "\n".join(f"{x} {m} {e}" for x, m, e in vecs) + "\n"
    out = subprocess.run([exe], input=stdin, capture_output=True, text=True, check=True).stdout.split("\n")
    differ = 0
    for (x, m, e), line in zip(vecs, out, strict=False):
        got = tuple(int(v) for v in line.split())
        want = (qp.mbqm(x, m, e, single), qp.srdhm(x, m), qp.rdbpot(x, -e if e <= 0 else 0))
        assert got == want, (x, m, e, got, want)
        differ += qp.mbqm(x, m, e, True) != qp.mbqm(x, m, e, False)
    assert differ > 50  # the vectors do separate the two modes
