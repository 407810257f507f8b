/* edgeforge native runtime: integer fixed-point building blocks.
 *
 * Bit-exact restatements of the gemmlowp fixed-point primitives and of TFLite Micro's
 * MultiplyByQuantizedMultiplier, as specified in docs INT8_REFERENCE sections 4 and 8.
 * Portable C99, no floating point. Signed overflow is avoided by doing wrapping arithmetic
 * in uint32_t where the reference relies on two's-complement wrap-around.
 *
 * EF_SINGLE_ROUNDING (0 by default) mirrors TFLITE_SINGLE_ROUNDING / CMSIS_NN_USE_SINGLE_ROUNDING.
 */
#ifndef EF_FIXEDPOINT_H
#define EF_FIXEDPOINT_H

#include <stdint.h>

#include "ef_config.h"

#ifndef EF_SINGLE_ROUNDING
#define EF_SINGLE_ROUNDING 0
#endif

#define EF_INT32_MIN ((int32_t)(-2147483647 - 1))
#define EF_INT32_MAX ((int32_t)2147483647)

/* Wrapping int32 add / sub / shift-left (the reference's plain int32 arithmetic). */
static inline int32_t ef_wadd(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t ef_wsub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }
static inline int32_t ef_wshl(int32_t a, int32_t k) { return (int32_t)((uint32_t)a << k); }

static inline int32_t ef_clamp(int32_t x, int32_t lo, int32_t hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

/* SaturatingRoundingDoublingHighMul: round-half-up of a*b / 2^31, INT32_MIN^2 saturates.
 * (p + nudge) / 2^31 with C truncation equals floor((p + 2^30) / 2^31). */
static inline int32_t ef_srdhm(int32_t a, int32_t b) {
    int64_t ab;
    if (a == EF_INT32_MIN && b == EF_INT32_MIN) {
        return EF_INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    return (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
}

/* RoundingDivideByPOT: x / 2^k, ties away from zero, 0 <= k <= 31. */
static inline int32_t ef_rdbpot(int32_t x, int32_t k) {
    const int32_t mask = (int32_t)(((uint32_t)1 << k) - 1u);
    const int32_t rem = x & mask;
    const int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> k) + (rem > thr ? 1 : 0);
}

/* SaturatingRoundingMultiplyByPOT with a positive exponent: saturating x * 2^k, 0 < k < 31. */
static inline int32_t ef_sat_shl(int32_t x, int32_t k) {
    const int32_t thr = (int32_t)(((uint32_t)1 << (31 - k)) - 1u);
    if (x > thr) {
        return EF_INT32_MAX;
    }
    if (x < -thr) {
        return EF_INT32_MIN;
    }
    return ef_wshl(x, k);
}

/* MultiplyByQuantizedMultiplier(x, m, e): x * m * 2^(e - 31), e > 0 meaning a left shift.
 * Double rounding (default): RDBPOT(SRDHM(x * 2^max(e,0), m), max(-e,0)), the left shift in int32.
 * Single rounding: (x*m + 2^(t-1)) >> t with t = 31 - e, in int64. */
static inline int32_t ef_mbqm(int32_t x, int32_t m, int32_t e) {
#if EF_SINGLE_ROUNDING
    const int32_t t = 31 - e;
    const int64_t r = (int64_t)x * (int64_t)m + ((int64_t)1 << (t - 1));
    return (int32_t)(r >> t);
#else
    if (e < 0 && m != EF_INT32_MIN) {
        /* The common right-shift case, both roundings fused into one 64-bit step (exact):
         * v = floor((p + 2^30) / 2^31) and RDBPOT(v, k) = floor((v + 2^(k-1) - [v < 0]) / 2^k), and
         * nested floor divisions compose, so the result is floor((p + 2^30 + (2^(k-1) - [v < 0]) 2^31) / 2^(31+k))
         * with v < 0 <=> p < -2^30. |p| < 2^62, so nothing overflows. */
        const int64_t p = (int64_t)x * (int64_t)m;
        const int32_t s = 31 - e;
        const int64_t b = ((int64_t)1 << 30) + ((int64_t)1 << (s - 1)) -
                          (p < -((int64_t)1 << 30) ? ((int64_t)1 << 31) : 0);
        return (int32_t)((p + b) >> s);
    }
    return ef_rdbpot(ef_srdhm(ef_wshl(x, e > 0 ? e : 0), m), e > 0 ? 0 : -e);
#endif
}

/* MBQM with (m, e) prepared once and applied to many x: ef_rq_apply(ef_rq_prepare(m, e), x) == ef_mbqm(x, m, e)
 * for every x, unless `exact` is 0 (m == INT32_MIN, never produced by QuantizeMultiplier); ef_rq_mbqm covers
 * that case too. Every mode is floor((wshl(x, ls) * m + b) / 2^s) with b = bpos - cut when the product is
 * below -2^30 (double rounding, e < 0: RDBPOT's ties-away-from-zero correction, see ef_mbqm), else b = bpos. */
typedef struct {
    int64_t bpos;
    int32_t m;
    uint32_t cut; /* bneg = bpos - cut: 2^31 or 0 */
    int8_t e, s, ls, exact;
} ef_rq;

static inline ef_rq ef_rq_prepare(int32_t m, int32_t e) {
    ef_rq r;
    r.m = m;
    r.e = (int8_t)e;
    r.exact = (int8_t)(m != EF_INT32_MIN);
    r.cut = 0;
#if EF_SINGLE_ROUNDING
    r.ls = 0;
    r.s = (int8_t)(31 - e);
    r.bpos = (int64_t)1 << (r.s - 1);
#else
    if (e < 0) {
        r.ls = 0;
        r.s = (int8_t)(31 - e);
        r.bpos = ((int64_t)1 << 30) + ((int64_t)1 << (r.s - 1));
        r.cut = (uint32_t)1 << 31;
    } else {
        r.ls = (int8_t)e;
        r.s = 31;
        r.bpos = (int64_t)1 << 30;
    }
#endif
    return r;
}

static inline int32_t ef_rq_apply(const ef_rq* r, int32_t x) {
    const int64_t p = (int64_t)ef_wshl(x, r->ls) * (int64_t)r->m;
    return (int32_t)((p + (p < -((int64_t)1 << 30) ? r->bpos - (int64_t)r->cut : r->bpos)) >> r->s);
}

/* ef_mbqm(x, m, e) for the prepared (m, e), in every case. */
static inline int32_t ef_rq_mbqm(const ef_rq* r, int32_t x) {
    return r->exact ? ef_rq_apply(r, x) : ef_mbqm(x, r->m, r->e);
}

/* exp(x) for x in [-1/4, 0), Q0.31 in and out (gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl). */
static inline int32_t ef_exp_on_interval(int32_t a) {
    const int32_t c = 1895147668;      /* exp(-1/8) */
    const int32_t one_third = 715827883;
    const int32_t x = ef_wadd(a, (int32_t)1 << 28);
    const int32_t x2 = ef_srdhm(x, x);
    const int32_t x3 = ef_srdhm(x2, x);
    const int32_t x4 = ef_srdhm(x2, x2);
    const int32_t x4_over_4 = ef_rdbpot(x4, 2);
    const int32_t poly = ef_rdbpot(ef_wadd(ef_srdhm(ef_wadd(x4_over_4, x3), one_third), x2), 1);
    return ef_wadd(c, ef_srdhm(c, ef_wadd(x, poly)));
}

/* gemmlowp exp_on_negative_values for an input with `ib` integer bits (1..6); result Q0.31. */
static inline int32_t ef_exp_on_negative_values(int32_t a, int32_t ib) {
    static const int32_t k_mult[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t fb = 31 - ib;
    const int32_t quarter = (int32_t)1 << (fb - 2);
    const int32_t a_mod = ef_wsub(a & (quarter - 1), quarter);
    const int32_t rem = ef_wsub(a_mod, a);
    int32_t result = ef_exp_on_interval(ef_sat_shl(a_mod, ib));
    int32_t e;
    for (e = -2; e <= 4; ++e) {
        if (ib > e) {
            const int32_t bit = fb + e;
            if (bit >= 0 && bit < 31 && (rem & ((int32_t)1 << bit)) != 0) {
                result = ef_srdhm(result, k_mult[e + 2]);
            }
        }
    }
    if (ib > 5 && a < -((int32_t)1 << (36 - ib))) {
        result = 0;
    }
    if (a == 0) {
        result = EF_INT32_MAX;
    }
    return result;
}

/* RoundingHalfSum: (a + b) / 2 with ties away from zero, in 64 bits. */
static inline int32_t ef_rounding_half_sum(int32_t a, int32_t b) {
    const int64_t s = (int64_t)a + (int64_t)b;
    return (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
}

/* Newton-Raphson core shared by the two reciprocals: returns x ~ 2/(1+a) in Q2.29. */
static inline int32_t ef_nr_two_over_one_plus_x(int32_t a) {
    const int32_t hd = ef_rounding_half_sum(a, EF_INT32_MAX);
    int32_t x = ef_wadd(1515870810, ef_srdhm(hd, -1010580540));
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t hdx = ef_srdhm(hd, x);
        const int32_t one_minus = ef_wsub((int32_t)1 << 29, hdx);
        x = ef_wadd(x, ef_sat_shl(ef_srdhm(x, one_minus), 2));
    }
    return x;
}

/* 1/(1+a) for a in [0,1), Q0.31 in and out. */
static inline int32_t ef_one_over_one_plus_x(int32_t a) {
    return ef_sat_shl(ef_nr_two_over_one_plus_x(a), 1);
}

/* (1-a)/(1+a) for a in [0,1), Q0.31 in and out. */
static inline int32_t ef_one_minus_x_over_one_plus_x(int32_t a) {
    return ef_sat_shl(ef_wsub(ef_nr_two_over_one_plus_x(a), (int32_t)1 << 29), 2);
}

/* gemmlowp logistic for a Q4.27 input; result Q0.31. */
static inline int32_t ef_logistic_q4(int32_t a) {
    int32_t r;
    if (a == 0) {
        return (int32_t)1 << 30;
    }
    r = ef_one_over_one_plus_x(ef_exp_on_negative_values(a > 0 ? -a : a, 4));
    return a > 0 ? r : ef_wsub(EF_INT32_MAX, r);
}

/* gemmlowp tanh for a Q4.27 input; result Q0.31. */
static inline int32_t ef_tanh_q4(int32_t a) {
    int32_t t;
    if (a == 0) {
        return 0;
    }
    /* n = -|a| relabelled as Q5.26 (ExactMulByPot<1>: raw value unchanged). */
    t = ef_one_minus_x_over_one_plus_x(ef_exp_on_negative_values(a < 0 ? a : -a, 5));
    return a < 0 ? -t : t;
}

#endif /* EF_FIXEDPOINT_H */
