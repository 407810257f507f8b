/* edgeforge native runtime: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (int8 activations,
 * int8 or packed int4 filters), bit-exact with TFLM's reference ConvPerChannel,
 * DepthwiseConvPerChannel and FullyConnected kernels (INT8_REFERENCE sections 7.1-7.3, 9).
 *
 * How they are fast, in portable C99 (no allocation, no floating point; int4 on cores with the Arm DSP extension
 * uses its ACLE intrinsics):
 *
 *  - CONV_2D and FULLY_CONNECTED are one engine (FC = 1x1 conv over `batches` pixels). The receptive field
 *    of an output pixel is gathered into a small int16 buffer on the stack ("im2col"), with the input offset
 *    already added and out-of-image taps set to 0 (TFLM skips them: same sum), whole kernel rows at a time
 *    when they are contiguous in the input. The filter row of an output channel is contiguous and in the
 *    same (ky, kx, ic) order, so each output is a plain dot product int8 x int16 -> int32 of length
 *    K = k_h * k_w * filter_in_c, without bounds checks or index arithmetic.
 *  - The dot products use fixed-length blocks (64/16/8) that compilers vectorise at -O2 (a widening
 *    multiply-add per 8 pairs with SSE2/NEON; a tight loop on Cortex-M), and share loads: 4 output pixels
 *    per pass over a filter row (EF_NPIX = 4, vector hosts), or 4 filter rows per pass over one pixel
 *    (FC with one batch, and EF_NPIX = 1, the scalar-MCU default). The buffer is zero-padded to a multiple
 *    of 8, so a row may read up to 7 filter bytes past its end where these still lie inside the filter
 *    array (their products are 0); the last rows never do.
 *  - K larger than the buffer is done in chunks, with a tile of accumulators per pixel.
 *  - DEPTHWISE_CONV_2D (multiplier 1, int8) runs EF_DWV channels at a time over the whole output:
 *    acc[c] += w[c] * (x[c] + off) for each in-image tap, vectorised across channels; out-of-image taps are
 *    skipped once per tap, not per channel.
 *  - Requantisation once per output, with the channel's multiplier prepared once (ef_rq, ef_fixedpoint.h).
 *  - int4 filters (as fast as int8 or faster): the same engine, instantiated apart (an int8-only firmware links
 *    none of the int4 code). On cores with the DSP extension the packed rows are multiplied in place, 8 nibbles
 *    per 32-bit load (SXTB16 + SMLAD against a reordered pixel buffer: ef_rows_s4); elsewhere 4 rows at a time are
 *    unpacked to int8 on the stack (EF_KC elements each) for the int8 dot products. DEPTHWISE_CONV_2D unpacks a
 *    block of EF_DW4V channels' taps once for the whole output (ef_dw4_blocks). The packed array itself is never
 *    unpacked as a whole.
 *  - Cortex-M cores with the DSP extension (EF_DSP8; M4, M7, M33, M55), int8 and int4 filters: the pixel buffers
 *    are reordered so that SXTB16 of one 32-bit filter load pairs with them for SMLAD (ef_rows_dsp), two rows x two
 *    pixels per pass (ef_dot2r2p_dsp, hand-scheduled: GCC spills there) or four rows x one pixel; DEPTHWISE_CONV_2D
 *    runs 4-channel blocks with the taps expanded once per block, the accumulators in registers, SMLABB/SMLATT, and
 *    the input offset folded into the bias for pixels whose window lies inside the image (ef_dw8_blocks; int4
 *    filters unpacked into the same blocks); requantisation in 32-bit steps (ef_rqn) and SSAT clamps. About 2.8
 *    instructions per MAC on KWS (QEMU mps2-an386), against 5.9 for the portable paths on the same core. The
 *    portable paths stay as they were for every other core (EF_DSP8=0).
 *
 * Integer sums are exact, so the summation order does not matter (INT8_REFERENCE 7.1). */
#include "ef_kernels.h"
#include "ef_conv_common.h"

/* Cortex-M cores with the DSP extension (M4, M7, M33, M55): the int8 DSP paths below by default. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__ARMEL__) && defined(__GNUC__) && \
    defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M'
#define EF_DSP_MCU 1
#else
#define EF_DSP_MCU 0
#endif

/* Tiling, compile-time (override with -D; tests/native/test_native_tiling.py runs several). Stack: about
 * EF_NPIX * (2 * EF_KC + 4 * EF_OT) bytes for CONV/FC, 28 * EF_DWV for DEPTHWISE (MCU defaults: ~0.6 KB); int4:
 * DEPTHWISE EF_DW4V * (EF_DW4K + 32) (MCU: ~0.3 KB, the frame ~0.5 KB at -Os against 0.36 KB for int8), CONV/FC
 * nothing more with the DSP extension, else 4 * EF_KC for the unpacked rows.
 * Cores with vector units (SSE2, NEON) gain most from 4 pixels per filter pass and long chunks; scalar MCUs
 * (Cortex-M) default to one pixel, four filter rows per pass, and a small stack; with the DSP extension two pixels
 * (two rows x two pixels per SMLAD pass) and 32 output channels per tile (~0.5 KB for CONV/FC; the depthwise
 * blocks keep 8 * EF_DW4K bytes of expanded taps). */
#ifndef EF_KC
#define EF_KC (EF_VECTOR_HOST ? 128 : 64) /* im2col chunk per pixel, int16 elements; a multiple of 8 */
#endif
#ifndef EF_NPIX
#define EF_NPIX (EF_VECTOR_HOST ? 4 : EF_DSP_MCU ? 2 : 1) /* output pixels per filter pass: 1, 2 or 4 */
#endif
#ifndef EF_OT
#define EF_OT (EF_VECTOR_HOST ? 32 : EF_DSP_MCU ? 32 : 16) /* output channels accumulated together */
#endif
#ifndef EF_DWV
#define EF_DWV (EF_VECTOR_HOST ? 16 : 8) /* depthwise: channels per step */
#endif
#if EF_KC < 8 || EF_KC % 8 != 0 || (EF_NPIX != 1 && EF_NPIX != 2 && EF_NPIX != 4) || EF_OT < 1 || EF_DWV < 1
#error "bad EF_KC / EF_NPIX / EF_OT / EF_DWV"
#endif
#ifndef EF_DW4V
#define EF_DW4V (EF_VECTOR_HOST ? 16 : 4) /* depthwise int4: channels per step (accumulators in registers on MCUs) */
#endif
#ifndef EF_DW4K
#define EF_DW4K 49 /* depthwise int4: taps per channel unpacked to the stack at most (7x7); more: read in place */
#endif
#if EF_DW4V < 1 || EF_DW4K < 1
#error "bad EF_DW4V / EF_DW4K"
#endif
/* int4 CONV_2D / FC on cores with the DSP extension (Cortex-M4/M7/M33/M55, little-endian): the packed nibbles are
 * multiplied in place, 8 per 32-bit load (SXTB16 + SMLAD); elsewhere rows are unpacked to int8 on the stack. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__ARMEL__) && defined(__GNUC__)
#define EF_ARM_DSP 1
#else
#define EF_ARM_DSP 0
#endif
#ifndef EF_S4_DSP
#define EF_S4_DSP EF_ARM_DSP
#endif
/* int8 DEPTHWISE_CONV_2D / CONV_2D / FC with the DSP extension: SXTB16 + SMLAD / SMLABB (-DEF_DSP8=0: portable) */
#ifndef EF_DSP8
#define EF_DSP8 EF_DSP_MCU /* not on A-profile cores: they have NEON */
#endif
#if (EF_S4_DSP || EF_DSP8) && !EF_ARM_DSP
#error "EF_S4_DSP / EF_DSP8 need the Arm DSP extension"
#endif
#if EF_S4_DSP || EF_DSP8
#include <arm_acle.h>

static inline uint32_t ef_ld32(const void* p) {
    uint32_t u;
    memcpy(&u, p, 4);
    return u;
}

/* SXTB16 of bytes 1 and 3 (GCC does not fold the rotation into the instruction by itself). */
static inline int32_t ef_sxtb16_hi(uint32_t x) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* a + SXTB16 of bytes 1 and 3 of x, lane by lane. */
static inline int32_t ef_sxtab16_hi(int32_t a, uint32_t x) {
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
#endif
#if defined(__GNUC__) || defined(__clang__)
#define EF_INLINE static inline __attribute__((always_inline))
#define EF_NOINLINE static __attribute__((noinline))
#else
#define EF_INLINE static inline
#define EF_NOINLINE static
#endif

static inline int8_t ef_requant_out(int32_t acc, int32_t m, int32_t e, int32_t out_offset, int32_t lo, int32_t hi) {
    return (int8_t)ef_clamp(ef_mbqm(acc, m, e) + out_offset, lo, hi);
}

#if EF_NPIX == 4
/* Four dot products of one filter row with the four pixel buffers x, x + EF_KC, ...: a[0], a[EF_OT], ... += */
EF_INLINE void ef_dot4_s8(const int8_t* restrict w, const int16_t* restrict x, int32_t n, int32_t* restrict a) {
    const int16_t* restrict x1 = x + EF_KC;
    const int16_t* restrict x2 = x + 2 * EF_KC;
    const int16_t* restrict x3 = x + 3 * EF_KC;
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int32_t k = 0;
    int j;
    for (; k + 64 <= n; k += 64) {
        for (j = 0; j < 64; ++j) {
            const int32_t v = w[k + j];
            s0 += v * x[k + j];
            s1 += v * x1[k + j];
            s2 += v * x2[k + j];
            s3 += v * x3[k + j];
        }
    }
    for (; k + 16 <= n; k += 16) {
        for (j = 0; j < 16; ++j) {
            const int32_t v = w[k + j];
            s0 += v * x[k + j];
            s1 += v * x1[k + j];
            s2 += v * x2[k + j];
            s3 += v * x3[k + j];
        }
    }
    for (; k + 8 <= n; k += 8) {
        for (j = 0; j < 8; ++j) {
            const int32_t v = w[k + j];
            s0 += v * x[k + j];
            s1 += v * x1[k + j];
            s2 += v * x2[k + j];
            s3 += v * x3[k + j];
        }
    }
    for (; k < n; ++k) {
        const int32_t v = w[k];
        s0 += v * x[k];
        s1 += v * x1[k];
        s2 += v * x2[k];
        s3 += v * x3[k];
    }
    a[0] += s0;
    a[EF_OT] += s1;
    a[2 * EF_OT] += s2;
    a[3 * EF_OT] += s3;
}
#endif

/* Four dot products of the filter rows w, w + K, w + 2K, w + 3K with one buffer x: a[0..3] += */
EF_INLINE void ef_dot4r_s8(const int8_t* restrict w, int32_t K, const int16_t* restrict x, int32_t n,
                        int32_t* restrict a) {
    const int8_t* restrict w1 = w + K;
    const int8_t* restrict w2 = w + 2 * K;
    const int8_t* restrict w3 = w + 3 * K;
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int32_t k = 0;
    int j;
    for (; k + 128 <= n; k += 128) {
        for (j = 0; j < 128; ++j) {
            const int32_t v = x[k + j];
            s0 += w[k + j] * v;
            s1 += w1[k + j] * v;
            s2 += w2[k + j] * v;
            s3 += w3[k + j] * v;
        }
    }
    for (; k + 64 <= n; k += 64) {
        for (j = 0; j < 64; ++j) {
            const int32_t v = x[k + j];
            s0 += w[k + j] * v;
            s1 += w1[k + j] * v;
            s2 += w2[k + j] * v;
            s3 += w3[k + j] * v;
        }
    }
    for (; k + 16 <= n; k += 16) {
        for (j = 0; j < 16; ++j) {
            const int32_t v = x[k + j];
            s0 += w[k + j] * v;
            s1 += w1[k + j] * v;
            s2 += w2[k + j] * v;
            s3 += w3[k + j] * v;
        }
    }
    for (; k < n; ++k) {
        const int32_t v = x[k];
        s0 += w[k] * v;
        s1 += w1[k] * v;
        s2 += w2[k] * v;
        s3 += w3[k] * v;
    }
    a[0] += s0;
    a[1] += s1;
    a[2] += s2;
    a[3] += s3;
}

#if !EF_DSP8
/* acc[q * ot + i] += dot(filter row oc0 + i from element k0, buffer xv + q * kc of pixel q) for q < np,
 * i < count; n valid elements, n8 with the zero padding (used where the row may read past its end). */
static void ef_rows(const int8_t* filter, int32_t K, int32_t total, int32_t oc0, int32_t count, int32_t k0,
                    const int16_t* xv, int32_t kc, int32_t ot, int32_t np, int32_t n, int32_t n8, int32_t* acc) {
    int32_t i = 0, q;
    if (np == 1) {
        /* one pixel: four rows at a time share the loads of x */
        for (; i + 4 <= count; i += 4) {
            const int32_t start = (oc0 + i) * K + k0;
            ef_dot4r_s8(filter + start, K, xv, start + 3 * K + n8 <= total ? n8 : n, acc + i);
        }
    }
    for (; i < count; ++i) {
        const int32_t start = (oc0 + i) * K + k0;
        const int8_t* w = filter + start;
        const int32_t len = start + n8 <= total ? n8 : n;
#if EF_NPIX == 4
        if (np == 4) { /* then kc == EF_KC and ot == EF_OT */
            ef_dot4_s8(w, xv, len, acc + i);
            continue;
        }
#endif
        for (q = 0; q < np; ++q) {
            acc[q * ot + i] += ef_dot_s8(w, xv + q * kc, len);
        }
    }
}
#endif

/* ---- int8 rows with the DSP extension (ef_rows_dsp, same contract as ef_rows) ------------------------------------
 * The pixel buffers are reordered once per gather, every group x0 x1 x2 x3 to x0 x2 x1 x3 (ef_perm4), so that one
 * 32-bit load of 4 filter bytes, SXTB16 of it and of its bytes 1 and 3 ((w0, w2), (w1, w3)) and two SMLAD against
 * the int16 pairs (x0, x2), (x1, x3) make 4 MACs: four rows per pass share the loads of x, about 1.4 instructions
 * per MAC on a Cortex-M4, against 4.5 in the portable loop. */
#if EF_DSP8
static void ef_perm4(int16_t* xv, int32_t np, int32_t kc, int32_t n8) {
    int32_t q, g;
    for (q = 0; q < np; ++q) {
        int16_t* x = xv + q * kc;
        for (g = 0; g < n8; g += 4, x += 4) {
            const uint32_t a = ef_ld32(x), b = ef_ld32(x + 2);
            const uint32_t p0 = (a & 0xFFFFu) | (b << 16), p1 = (a >> 16) | (b & 0xFFFF0000u);
            memcpy(x, &p0, 4);
            memcpy(x + 2, &p1, 4);
        }
    }
}

#define EF_DSP8_GROUP(s, u, xa, xb)                            \
    do {                                                       \
        s = __smlad((int32_t)__sxtb16((int32_t)(u)), (xa), s); \
        s = __smlad(ef_sxtb16_hi(u), (xb), s);                 \
    } while (0)

/* Rows w, w + K, w + 2K, w + 3K against the reordered buffer x over g groups of 4: a[0..3] += */
EF_NOINLINE void ef_dot4r_dsp(const int8_t* w, int32_t K, const int16_t* x, int32_t g, int32_t* a) {
    const int8_t* w1 = w + K;
    const int8_t* w2 = w + 2 * K;
    const int8_t* w3 = w + 3 * K;
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    if (g > 0) {
        /* in assembly: GCC spills in this loop (14 live registers); 24 instructions per 16 MACs */
        uint32_t xa, xb, t, u;
        __asm__ volatile(
            "1:\n\t"
            "ldr %[xa], [%[x]], #4\n\t"
            "ldr %[xb], [%[x]], #4\n\t"
            "ldr %[t], [%[w0]], #4\n\t"
            "sxtb16 %[u], %[t]\n\t"
            "smlad %[s0], %[u], %[xa], %[s0]\n\t"
            "sxtb16 %[u], %[t], ror #8\n\t"
            "smlad %[s0], %[u], %[xb], %[s0]\n\t"
            "ldr %[t], [%[w1]], #4\n\t"
            "sxtb16 %[u], %[t]\n\t"
            "smlad %[s1], %[u], %[xa], %[s1]\n\t"
            "sxtb16 %[u], %[t], ror #8\n\t"
            "smlad %[s1], %[u], %[xb], %[s1]\n\t"
            "ldr %[t], [%[w2]], #4\n\t"
            "sxtb16 %[u], %[t]\n\t"
            "smlad %[s2], %[u], %[xa], %[s2]\n\t"
            "sxtb16 %[u], %[t], ror #8\n\t"
            "smlad %[s2], %[u], %[xb], %[s2]\n\t"
            "ldr %[t], [%[w3]], #4\n\t"
            "sxtb16 %[u], %[t]\n\t"
            "smlad %[s3], %[u], %[xa], %[s3]\n\t"
            "sxtb16 %[u], %[t], ror #8\n\t"
            "smlad %[s3], %[u], %[xb], %[s3]\n\t"
            "subs %[g], %[g], #1\n\t"
            "bne 1b\n\t"
            : [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2), [s3] "+r"(s3), [w0] "+r"(w), [w1] "+r"(w1),
              [w2] "+r"(w2), [w3] "+r"(w3), [x] "+r"(x), [g] "+r"(g), [xa] "=&r"(xa), [xb] "=&r"(xb),
              [t] "=&r"(t), [u] "=&r"(u)
            :
            : "cc", "memory");
    }
    a[0] += s0;
    a[1] += s1;
    a[2] += s2;
    a[3] += s3;
}

#if EF_NPIX > 1
/* Rows w, w + K against the reordered buffers x (pixel 0) and x + EF_KC (pixel 1) over g groups of 4: a[0], a[1]
 * (pixel 0) and a[ot], a[ot + 1] (pixel 1) += ; each weight word expanded once feeds both pixels: 18 instructions per
 * 16 MACs. */
EF_INLINE void ef_dot2r2p_dsp_t(const int8_t* w, int32_t K, const int16_t* x, int32_t g, int32_t* a, int32_t ot) {
    const int8_t* w1 = w + K;
    int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0;
    if (g > 0) {
        uint32_t xa0, xb0, xa1, xb1, t, u;
        __asm__ volatile(
            "1:\n\t"
            "ldr %[xa1], [%[x], %[o0]]\n\t"
            "ldr %[xb1], [%[x], %[o1]]\n\t"
            "ldr %[xb0], [%[x], #4]\n\t"
            "ldr %[xa0], [%[x]], #8\n\t"
            "ldr %[t], [%[w0]], #4\n\t"
            "sxtb16 %[u], %[t]\n\t"
            "smlad %[s00], %[u], %[xa0], %[s00]\n\t"
            "smlad %[s10], %[u], %[xa1], %[s10]\n\t"
            "sxtb16 %[t], %[t], ror #8\n\t"
            "smlad %[s00], %[t], %[xb0], %[s00]\n\t"
            "smlad %[s10], %[t], %[xb1], %[s10]\n\t"
            "ldr %[t], [%[w1]], #4\n\t"
            "sxtb16 %[u], %[t]\n\t"
            "smlad %[s01], %[u], %[xa0], %[s01]\n\t"
            "smlad %[s11], %[u], %[xa1], %[s11]\n\t"
            "sxtb16 %[t], %[t], ror #8\n\t"
            "smlad %[s01], %[t], %[xb0], %[s01]\n\t"
            "smlad %[s11], %[t], %[xb1], %[s11]\n\t"
            "subs %[g], %[g], #1\n\t"
            "bne 1b\n\t"
            : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11), [w0] "+r"(w), [w1] "+r"(w1),
              [x] "+r"(x), [g] "+r"(g), [xa0] "=&r"(xa0), [xb0] "=&r"(xb0), [xa1] "=&r"(xa1), [xb1] "=&r"(xb1),
              [t] "=&r"(t), [u] "=&r"(u)
            : [o0] "i"(2 * EF_KC), [o1] "i"(2 * EF_KC + 4)
            : "cc", "memory");
    }
    a[0] += s00;
    a[1] += s01;
    a[ot] += s10;
    a[ot + 1] += s11;
}

/* np2 consecutive pairs of rows (w, w + K), (w + 2K, w + 3K), ... into a[0..2 np2), a[ot..ot + 2 np2): one call per
 * tile, not per pair. */
EF_NOINLINE void ef_dot2r2p_dsp(const int8_t* w, int32_t K, int32_t np2, const int16_t* x, int32_t g, int32_t* a,
                                int32_t ot) {
    for (; np2 > 0; --np2, w += 2 * K, a += 2) {
        ef_dot2r2p_dsp_t(w, K, x, g, a, ot);
    }
}
#endif

/* One row w against the reordered buffer x over g groups of 4: *a += */
EF_NOINLINE void ef_dot1_dsp(const int8_t* w, const int16_t* x, int32_t g, int32_t* a) {
    int32_t s0 = 0, s1 = 0;
    for (; g >= 2; g -= 2, w += 8, x += 8) {
        EF_DSP8_GROUP(s0, ef_ld32(w), (int32_t)ef_ld32(x), (int32_t)ef_ld32(x + 2));
        EF_DSP8_GROUP(s1, ef_ld32(w + 4), (int32_t)ef_ld32(x + 4), (int32_t)ef_ld32(x + 6));
    }
    if (g > 0) {
        EF_DSP8_GROUP(s0, ef_ld32(w), (int32_t)ef_ld32(x), (int32_t)ef_ld32(x + 2));
    }
    *a += s0 + s1;
}

/* Elements 0 .. m-1 of row w against the reordered buffer x (from a group start). */
static int32_t ef_tail_dsp(const int8_t* w, const int16_t* x, int32_t m) {
    int32_t a = 0, j;
    for (j = 0; j < m; ++j) {
        a += (int32_t)w[j] * x[(j & ~3) + 2 * (j & 1) + ((j >> 1) & 1)];
    }
    return a;
}

/* Rows read whole groups up to the padded length n8 where these lie inside the filter (total elements); the last
 * rows stop at their last whole group and finish element by element. */
static void ef_rows_dsp(const int8_t* filter, int32_t K, int32_t total, int32_t oc0, int32_t count, int32_t k0,
                        const int16_t* xv, int32_t kc, int32_t ot, int32_t np, int32_t n, int32_t n8, int32_t* acc) {
    (void)ef_tile_store; /* ef_conv_common.h's, shared with the sparse kernels: maybe unused here */
    (void)ef_dot_s8;
    int32_t q = 0, i, r;
#if EF_NPIX > 1
    /* pairs of pixels (then kc == EF_KC): pairs of rows share the expanded weights */
    for (; q + 2 <= np; q += 2) {
        const int16_t* x = xv + q * kc;
        int32_t* a = acc + q * ot;
        /* rows oc0 + i, i < full, read their n8 elements inside the filter: (oc0 + i) * K + k0 + n8 <= total */
        const int32_t t = total - n8 - k0;
        int32_t full = t < 0 ? 0 : t / K + 1 - oc0;
        full = full < 0 ? 0 : (full > count ? count : full);
        i = full & ~1;
        ef_dot2r2p_dsp(filter + oc0 * K + k0, K, i >> 1, x, n8 >> 2, a, ot);
        for (; i < count; i += 2) {
            const int32_t start = (oc0 + i) * K + k0;
            const int32_t nr = count - i < 2 ? 1 : 2;
            const int32_t len = start + (nr - 1) * K + n8 <= total ? n8 : n;
            const int32_t g = len >> 2;
            int32_t qq;
            if (nr == 2) {
                ef_dot2r2p_dsp(filter + start, K, 1, x, g, a + i, ot);
            } else {
                ef_dot1_dsp(filter + start, x, g, a + i);
                ef_dot1_dsp(filter + start, x + kc, g, a + ot + i);
            }
            if (4 * g < len) {
                for (qq = 0; qq < 2; ++qq) {
                    for (r = 0; r < nr; ++r) {
                        a[qq * ot + i + r] +=
                            ef_tail_dsp(filter + start + r * K + 4 * g, x + qq * kc + 4 * g, len - 4 * g);
                    }
                }
            }
        }
    }
#endif
    for (; q < np; ++q) {
        const int16_t* x = xv + q * kc;
        int32_t* a = acc + q * ot;
        for (i = 0; i + 4 <= count; i += 4) {
            const int32_t start = (oc0 + i) * K + k0;
            const int32_t len = start + 3 * K + n8 <= total ? n8 : n;
            const int32_t g = len >> 2;
            ef_dot4r_dsp(filter + start, K, x, g, a + i);
            if (4 * g < len) {
                for (r = 0; r < 4; ++r) {
                    a[i + r] += ef_tail_dsp(filter + start + r * K + 4 * g, x + 4 * g, len - 4 * g);
                }
            }
        }
        for (; i < count; ++i) {
            const int32_t start = (oc0 + i) * K + k0;
            const int32_t len = start + n8 <= total ? n8 : n;
            const int32_t g = len >> 2;
            ef_dot1_dsp(filter + start, x, g, a + i);
            if (4 * g < len) {
                a[i] += ef_tail_dsp(filter + start + 4 * g, x + 4 * g, len - 4 * g);
            }
        }
    }
}
#endif

#if EF_DSP8 && !EF_SINGLE_ROUNDING
/* ef_tile_store with ef_rqn (no 64-bit variable shifts) for right shifts, and SSAT when the activation range is the
 * whole of int8; the same bytes. */
EF_INLINE void ef_tile_store_dsp_t(const ef_conv_params* p, const int32_t* acc, int32_t ot, int32_t np,
                                   int32_t count, const int32_t* mult, const int32_t* shift, int32_t mstride,
                                   int8_t* out, const int full) {
    const int32_t pitch = p->out_c, out_offset = p->out_offset, lo = p->act_min, hi = p->act_max;
    int32_t i, q;
    for (i = 0; i < count; ++i) {
        const int32_t* a = acc + i;
        int8_t* o = out + i;
        const int32_t m = mult[i * mstride], e = shift[i * mstride];
        if ((uint32_t)(e + 31) <= 30u && m != EF_INT32_MIN) { /* -31 <= e <= -1 */
            const int32_t km1 = -e - 1, half = (int32_t)((uint32_t)1 << km1);
            for (q = 0; q < np; ++q, a += ot, o += pitch) {
                const int32_t v = ef_rqn(*a, m, half, km1) + out_offset;
                *o = (int8_t)(full ? __ssat(v, 8) : ef_clamp(v, lo, hi));
            }
        } else {
            for (q = 0; q < np; ++q, a += ot, o += pitch) {
                *o = (int8_t)ef_clamp(ef_mbqm(*a, m, e) + out_offset, lo, hi);
            }
        }
    }
}

/* ef_mbqm out of line: keeps the registers of the loop below free */
EF_NOINLINE int32_t ef_mbqm_call(int32_t x, int32_t m, int32_t e) { return ef_mbqm(x, m, e); }

/* Two pixels, the whole int8 range: one pass over the channels with few live values. */
static void ef_tile_store2_full(const int32_t* acc, int32_t ot, int32_t count, const int32_t* mult,
                                const int32_t* shift, int32_t mstride, int8_t* out, int32_t pitch, int32_t out_offset) {
    for (; count > 0; --count, ++acc, ++out, mult += mstride, shift += mstride) {
        const int32_t m = *mult, e = *shift;
        int32_t v0, v1;
        if ((uint32_t)(e + 31) <= 30u && m != EF_INT32_MIN) { /* -31 <= e <= -1 */
            const int32_t km1 = -e - 1, half = (int32_t)((uint32_t)1 << km1);
            v0 = ef_rqn(acc[0], m, half, km1);
            v1 = ef_rqn(acc[ot], m, half, km1);
        } else {
            v0 = ef_mbqm_call(acc[0], m, e);
            v1 = ef_mbqm_call(acc[ot], m, e);
        }
        out[0] = (int8_t)__ssat(v0 + out_offset, 8);
        out[pitch] = (int8_t)__ssat(v1 + out_offset, 8);
    }
}

static void ef_tile_store_dsp(const ef_conv_params* p, const int32_t* acc, int32_t ot, int32_t np, int32_t count,
                              const int32_t* mult, const int32_t* shift, int32_t mstride, int8_t* out) {
    if (np == 2 && p->act_min <= -128 && p->act_max >= 127) {
        ef_tile_store2_full(acc, ot, count, mult, shift, mstride, out, p->out_c, p->out_offset);
    } else if (p->act_min <= -128 && p->act_max >= 127) {
        ef_tile_store_dsp_t(p, acc, ot, np, count, mult, shift, mstride, out, 1);
    } else {
        ef_tile_store_dsp_t(p, acc, ot, np, count, mult, shift, mstride, out, 0);
    }
}
#define EF_TILE_STORE ef_tile_store_dsp
#else
#define EF_TILE_STORE ef_tile_store
#endif

/* ---- packed int4 rows (ef_rows_s4, same contract as ef_rows) ---------------------------------------------------- */
#if EF_S4_DSP
/* With the DSP extension, no unpacking. A 32-bit word holds 8 elements (n0 in its low nibble): E = (u << 4) &
 * 0xF0F0F0F0 holds 16 * n0, n2, n4, n6 and O = u & 0xF0F0F0F0 holds 16 * n1, n3, n5, n7, one per byte, so SXTB16 of
 * E, O and of their bytes 1 and 3 gives the int16 pairs (n0, n4), (n1, n5), (n2, n6), (n3, n7), times 16; the pixel
 * buffers are reordered to match once per gather (ef_s4_perm), and SMLAD adds two products at a time. The sum, a
 * multiple of 16, is shifted back exactly (|sum| < 2^31: at most 16 * 8 * 255 per element of a chunk). A row that
 * starts mid-byte (odd K) reads its words shifted by a nibble. Two rows per pass (even K): about 1.8 instructions
 * per MAC on a Cortex-M4, against 2.75 in the int8 loop. */

/* In each of the np pixel buffers (n8 elements, a multiple of 8) every group x0..x7 becomes x0 x4 x1 x5 x2 x6 x3 x7. */
static void ef_s4_perm(int16_t* xv, int32_t np, int32_t kc, int32_t n8) {
    int32_t q, g;
    for (q = 0; q < np; ++q) {
        int16_t* x = xv + q * kc;
        for (g = 0; g < n8; g += 8, x += 8) {
            const uint32_t a = ef_ld32(x), b = ef_ld32(x + 2), c = ef_ld32(x + 4), d = ef_ld32(x + 6);
            const uint32_t p0 = (a & 0xFFFFu) | (c << 16), p1 = (a >> 16) | (c & 0xFFFF0000u);
            const uint32_t p2 = (b & 0xFFFFu) | (d << 16), p3 = (b >> 16) | (d & 0xFFFF0000u);
            memcpy(x, &p0, 4);
            memcpy(x + 2, &p1, 4);
            memcpy(x + 4, &p2, 4);
            memcpy(x + 6, &p3, 4);
        }
    }
}

#define EF_S4_GROUP(s, u, x0, x1, x2, x3)                     \
    do {                                                      \
        const uint32_t e_ = ((u) << 4) & 0xF0F0F0F0u;         \
        const uint32_t o_ = (u) & 0xF0F0F0F0u;                \
        s = __smlad((int32_t)__sxtb16((int32_t)e_), (x0), s); \
        s = __smlad((int32_t)__sxtb16((int32_t)o_), (x1), s); \
        s = __smlad(ef_sxtb16_hi(e_), (x2), s);               \
        s = __smlad(ef_sxtb16_hi(o_), (x3), s);               \
    } while (0)

/* np2 pairs of rows starting on a byte: row 2j at w + j * K, row 2j + 1 at w + j * K + K / 2 (K even), . x over g
 * groups of 8: a[2j], a[2j + 1] += (one call per tile; the two rows of a pass share the loads of x). */
EF_NOINLINE void ef_dot2_s4(const uint8_t* w, int32_t K, int32_t np2, const int16_t* x, int32_t g, int32_t* a) {
    for (; np2 > 0; --np2, w += K, a += 2) {
        const uint8_t* w0 = w;
        const uint8_t* w1 = w + (K >> 1);
        const int16_t* xp = x;
        int32_t s0 = 0, s1 = 0, k;
        for (k = g; k > 0; --k, w0 += 4, w1 += 4, xp += 8) {
            const int32_t x0 = (int32_t)ef_ld32(xp), x1 = (int32_t)ef_ld32(xp + 2);
            const int32_t x2 = (int32_t)ef_ld32(xp + 4), x3 = (int32_t)ef_ld32(xp + 6);
            const uint32_t u = ef_ld32(w0), v = ef_ld32(w1);
            EF_S4_GROUP(s0, u, x0, x1, x2, x3);
            EF_S4_GROUP(s1, v, x0, x1, x2, x3);
        }
        a[0] += s0 >> 4;
        a[1] += s1 >> 4;
    }
}

/* One row from the byte w (odd: from its high nibble; the word of a group then takes the low nibble of the byte
 * after it, which holds the group's last element) . x over g groups: *a += . */
EF_INLINE void ef_dot1_s4_t(const uint8_t* w, int odd, const int16_t* x, int32_t g, int32_t* a) {
    int32_t s0 = 0;
    for (; g > 0; --g, w += 4, x += 8) {
        const uint32_t u = odd ? (ef_ld32(w) >> 4) | ((uint32_t)w[4] << 28) : ef_ld32(w);
        EF_S4_GROUP(s0, u, (int32_t)ef_ld32(x), (int32_t)ef_ld32(x + 2), (int32_t)ef_ld32(x + 4),
                    (int32_t)ef_ld32(x + 6));
    }
    *a += s0 >> 4;
}

EF_NOINLINE void ef_dot1_s4e(const uint8_t* w, const int16_t* x, int32_t g, int32_t* a) {
    ef_dot1_s4_t(w, 0, x, g, a);
}

EF_NOINLINE void ef_dot1_s4o(const uint8_t* w, const int16_t* x, int32_t g, int32_t* a) {
    ef_dot1_s4_t(w, 1, x, g, a);
}

/* Elements s .. s+m-1 of the filter against the reordered buffer x (from a group start). */
static int32_t ef_tail_s4(const uint8_t* filter, int32_t s, const int16_t* x, int32_t m) {
    int32_t a = 0, j;
    for (j = 0; j < m; ++j) {
        a += ef_s4_at(filter, s + j) * x[(j & ~7) + 2 * (j & 3) + ((j >> 2) & 1)];
    }
    return a;
}

/* The buffers are reordered (ef_s4_perm). A row reads whole words up to its padded length n8 where they lie inside
 * the filter (total elements); the last rows stop at their last whole group and finish element by element. */
static void ef_rows_s4(const uint8_t* filter, int32_t K, int32_t total, int32_t oc0, int32_t count, int32_t k0,
                       const int16_t* xv, int32_t kc, int32_t ot, int32_t np, int32_t n, int32_t n8, int32_t* acc) {
    /* rows oc0 + i, i < full, read their n8 elements inside the filter: (oc0 + i) * K + k0 + n8 <= total */
    const int32_t t = total - n8 - k0;
    int32_t full = t < 0 ? 0 : t / K + 1 - oc0;
    int32_t q, i;
    full = full < 0 ? 0 : (full > count ? count : full);
    for (q = 0; q < np; ++q) {
        const int16_t* x = xv + q * kc;
        int32_t* a = acc + q * ot;
        i = 0;
        if (!(K & 1)) { /* every row starts on a byte: pairs */
            i = full & ~1;
            ef_dot2_s4(filter + ((oc0 * K + k0) >> 1), K, i >> 1, x, n8 >> 3, a);
        }
        for (; i < count; ++i) {
            const int32_t s = (oc0 + i) * K + k0;
            const int32_t g = i < full ? n8 >> 3 : n >> 3;
            if (s & 1) {
                ef_dot1_s4o(filter + (s >> 1), x, g, a + i);
            } else {
                ef_dot1_s4e(filter + (s >> 1), x, g, a + i);
            }
            if (8 * g < n) {
                a[i] += ef_tail_s4(filter, s + 8 * g, x + 8 * g, n - 8 * g);
            }
        }
    }
}

#else
/* Elsewhere the rows are unpacked to int8 on the stack (EF_KC elements of four rows at a time) and multiplied by the
 * int8 dot products: the unpacking is shared by the np pixels and stays off the MAC loops. */
static void ef_rows_s4(const uint8_t* filter, int32_t K, int32_t total, int32_t oc0, int32_t count, int32_t k0,
                       const int16_t* xv, int32_t kc, int32_t ot, int32_t np, int32_t n, int32_t n8, int32_t* acc) {
    int8_t wb[4 * EF_KC];
    int32_t i = 0, q, s, j;
    (void)total;
    (void)n8;
    if (np == 1) {
        for (; i + 4 <= count; i += 4) {
            for (s = 0; s < n; s += EF_KC) {
                const int32_t len = n - s < EF_KC ? n - s : EF_KC;
                const int32_t len8 = (len + 7) & ~7; /* x is 0 from n to the multiple of 8 */
                for (j = 0; j < 4; ++j) {
                    ef_unpack_s4(wb + j * EF_KC, filter, (oc0 + i + j) * K + k0 + s, len);
                    memset(wb + j * EF_KC + len, 0, (size_t)(len8 - len));
                }
                ef_dot4r_s8(wb, EF_KC, xv + s, len8, acc + i);
            }
        }
    }
    for (; i < count; ++i) {
        for (s = 0; s < n; s += EF_KC) {
            const int32_t len = n - s < EF_KC ? n - s : EF_KC;
            const int32_t len8 = (len + 7) & ~7;
            ef_unpack_s4(wb, filter, (oc0 + i) * K + k0 + s, len);
            memset(wb + len, 0, (size_t)(len8 - len));
#if EF_NPIX == 4
            if (np == 4) { /* then kc == EF_KC: one slice, and ot == EF_OT */
                ef_dot4_s8(wb, xv, len8, acc + i);
                continue;
            }
#endif
            for (q = 0; q < np; ++q) {
                acc[q * ot + i] += ef_dot_s8(wb, xv + q * kc + s, len8);
            }
        }
    }
}
#endif

/* The CONV_2D / FC engine, instantiated for int8 (ef_conv_engine) and int4 filters (ef_conv4_engine): is4 is a
 * constant, so neither copy holds the other's code, and a firmware without int4 layers links none of it.
 * mstride: 1 for per-channel mult/shift, 0 for one per-tensor pair. */
EF_INLINE void ef_conv_engine_t(const ef_conv_params* p, const int8_t* in, const void* filter, const int is4,
                                const int32_t* bias, const int32_t* mult, const int32_t* shift, int32_t mstride,
                                int8_t* out) {
    const int32_t fic = p->filter_in_c;
    const int32_t K = p->k_h * p->k_w * fic;
    const int32_t groups = p->in_c / fic;
    const int32_t per_group = p->out_c / groups;
    const int32_t total = p->out_c * K;
    const int32_t pixels = p->batches * p->out_h * p->out_w;
    /* Fewer pixels than a block (FC with one batch): one pixel at a time with all the buffer space. */
    const int32_t npb = pixels < EF_NPIX ? 1 : EF_NPIX;
    const int32_t kc = EF_KC * (EF_NPIX / npb);
    const int32_t ot = EF_OT * (EF_NPIX / npb);
    const int single = K <= kc; /* one gather per pixel serves every output channel */
    int16_t xv[EF_NPIX * EF_KC];
    int32_t acc[EF_NPIX * EF_OT];
    ef_pixel px[EF_NPIX];
    int32_t g, P0, q;
    for (g = 0; g < groups; ++g) {
        const int32_t oc_end = (g + 1) * per_group;
        const int32_t cbase = g * fic;
        for (P0 = 0; P0 < pixels; P0 += npb) {
            const int32_t np = pixels - P0 < npb ? pixels - P0 : npb;
            int32_t oc0, n8 = 0;
            for (q = 0; q < np; ++q) {
                ef_locate(p, in, P0 + q, &px[q]);
            }
            if (single) {
                n8 = ef_gather(p, px, np, cbase, 0, K, xv, kc);
#if EF_S4_DSP
                if (is4) {
                    ef_s4_perm(xv, np, kc, n8);
                }
#endif
#if EF_DSP8
                if (!is4) {
                    ef_perm4(xv, np, kc, n8);
                }
#endif
            }
            for (oc0 = g * per_group; oc0 < oc_end; oc0 += ot) {
                const int32_t count = oc_end - oc0 < ot ? oc_end - oc0 : ot;
                ef_tile_init(acc, ot, np, count, bias != NULL ? bias + oc0 : NULL);
                if (single) {
                    if (is4) {
                        ef_rows_s4((const uint8_t*)filter, K, total, oc0, count, 0, xv, kc, ot, np, K, n8, acc);
                    } else {
#if EF_DSP8
                        ef_rows_dsp((const int8_t*)filter, K, total, oc0, count, 0, xv, kc, ot, np, K, n8, acc);
#else
                        ef_rows((const int8_t*)filter, K, total, oc0, count, 0, xv, kc, ot, np, K, n8, acc);
#endif
                    }
                } else {
                    int32_t k0;
                    for (k0 = 0; k0 < K; k0 += kc) {
                        const int32_t n = K - k0 < kc ? K - k0 : kc;
                        const int32_t m8 = ef_gather(p, px, np, cbase, k0, k0 + n, xv, kc);
                        if (is4) {
#if EF_S4_DSP
                            ef_s4_perm(xv, np, kc, m8);
#endif
                            ef_rows_s4((const uint8_t*)filter, K, total, oc0, count, k0, xv, kc, ot, np, n, m8, acc);
                        } else {
#if EF_DSP8
                            ef_perm4(xv, np, kc, m8);
                            ef_rows_dsp((const int8_t*)filter, K, total, oc0, count, k0, xv, kc, ot, np, n, m8, acc);
#else
                            ef_rows((const int8_t*)filter, K, total, oc0, count, k0, xv, kc, ot, np, n, m8, acc);
#endif
                        }
                    }
                }
                EF_TILE_STORE(p, acc, ot, np, count, mult + oc0 * mstride, shift + oc0 * mstride, mstride,
                              out + P0 * p->out_c + oc0);
            }
        }
    }
}

static void ef_conv_engine(const ef_conv_params* p, const int8_t* in, const int8_t* filter, const int32_t* bias,
                           const int32_t* mult, const int32_t* shift, int32_t mstride, int8_t* out) {
    ef_conv_engine_t(p, in, filter, 0, bias, mult, shift, mstride, out);
}

static void ef_conv4_engine(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                            const int32_t* mult, const int32_t* shift, int32_t mstride, int8_t* out) {
    ef_conv_engine_t(p, in, filter, 1, bias, mult, shift, mstride, out);
}

void ef_conv2d_s8(const ef_conv_params* p, const int8_t* in, const int8_t* filter, const int32_t* bias,
                  const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_conv_engine(p, in, filter, bias, mult, shift, 1, out);
}

void ef_conv2d_s4(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                  const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_conv4_engine(p, in, filter, bias, mult, shift, 1, out);
}

/* FULLY_CONNECTED = 1x1 conv over a 1 x batches image of in_depth channels. */
static void ef_fc_as_conv(const ef_fc_params* f, ef_conv_params* p) {
    p->batches = 1;
    p->in_h = 1;
    p->in_w = f->batches;
    p->in_c = f->in_depth;
    p->out_h = 1;
    p->out_w = f->batches;
    p->out_c = f->out_depth;
    p->k_h = 1;
    p->k_w = 1;
    p->filter_in_c = f->in_depth;
    p->stride_h = 1;
    p->stride_w = 1;
    p->dil_h = 1;
    p->dil_w = 1;
    p->pad_h = 0;
    p->pad_w = 0;
    p->in_offset = f->in_offset;
    p->out_offset = f->out_offset;
    p->act_min = f->act_min;
    p->act_max = f->act_max;
}

void ef_fc_s8(const ef_fc_params* p, const int8_t* in, const int8_t* filter, const int32_t* bias,
              const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_conv_params c;
    ef_fc_as_conv(p, &c);
    ef_conv_engine(&c, in, filter, bias, mult, shift, p->per_channel ? 1 : 0, out);
}

void ef_fc_s4(const ef_fc_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
              const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_conv_params c;
    ef_fc_as_conv(p, &c);
    ef_conv4_engine(&c, in, filter, bias, mult, shift, p->per_channel ? 1 : 0, out);
}

/* ---- DEPTHWISE_CONV_2D ----------------------------------------------------------------------------------- */


static void ef_dw_engine(const ef_conv_params* p, const int8_t* in, const void* filter, int is4, const int32_t* bias,
                         const int32_t* mult, const int32_t* shift, int8_t* out) {
    const int32_t dm = p->filter_in_c;
    const int32_t C = p->in_c;
    const int32_t OC = p->out_c;
    const int32_t off = p->in_offset;
    const int32_t out_offset = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int32_t image = p->in_h * p->in_w * C;
    const int32_t vec_end = (dm == 1 && !is4) ? C - C % EF_DWV : 0;
    const int8_t* w8 = (const int8_t*)filter;
    const uint8_t* w4 = (const uint8_t*)filter;
    int32_t b, oy, ox, ky, kx, oc, c0;
    int j;
    /* 16 channels at a time over the whole output, their requantisation prepared once */
    for (c0 = 0; c0 < vec_end; c0 += EF_DWV) {
        ef_rq rq[EF_DWV];
        int8_t* o = out + c0;
        for (j = 0; j < EF_DWV; ++j) {
            rq[j] = ef_rq_prepare(mult[c0 + j], shift[c0 + j]);
        }
        for (b = 0; b < p->batches; ++b) {
            const int8_t* img = in + b * image + c0;
            for (oy = 0; oy < p->out_h; ++oy) {
                const int32_t y0 = oy * p->stride_h - p->pad_h;
                for (ox = 0; ox < p->out_w; ++ox, o += OC) {
                    const int32_t x0 = ox * p->stride_w - p->pad_w;
                    int32_t acc[EF_DWV];
                    for (j = 0; j < EF_DWV; ++j) {
                        acc[j] = bias != NULL ? bias[c0 + j] : 0;
                    }
                    for (ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = y0 + p->dil_h * ky;
                        const int8_t* row;
                        const int8_t* wrow;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        row = img + iy * p->in_w * C;
                        wrow = w8 + ky * p->k_w * OC + c0;
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = x0 + p->dil_w * kx;
                            const int8_t* xp;
                            const int8_t* wp;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            xp = row + ix * C;
                            wp = wrow + kx * OC;
                            for (j = 0; j < EF_DWV; ++j) {
                                acc[j] += (int32_t)(int16_t)wp[j] * (int16_t)(xp[j] + off);
                            }
                        }
                    }
                    for (j = 0; j < EF_DWV; ++j) {
                        o[j] = (int8_t)ef_clamp(ef_rq_mbqm(&rq[j], acc[j]) + out_offset, lo, hi);
                    }
                }
            }
        }
    }
    if (vec_end == OC) {
        return;
    }
    /* remaining channels (and depth multiplier > 1, int4): one output at a time */
    for (b = 0; b < p->batches; ++b) {
        const int8_t* img = in + b * image;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int8_t* o = out + ((b * p->out_h + oy) * p->out_w + ox) * OC;
                for (oc = vec_end; oc < OC; ++oc) {
                    const int32_t ic = oc / dm;
                    int32_t a = bias != NULL ? bias[oc] : 0;
                    for (ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = y0 + p->dil_h * ky;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = x0 + p->dil_w * kx;
                            const int32_t wi = (ky * p->k_w + kx) * OC + oc;
                            int32_t x;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            x = (int32_t)img[(iy * p->in_w + ix) * C + ic] + off;
                            a += (is4 ? ef_s4_at(w4, wi) : (int32_t)w8[wi]) * x;
                        }
                    }
                    o[oc] = ef_requant_out(a, mult[oc], shift[oc], out_offset, lo, hi);
                }
            }
        }
    }
}


/* ---- DEPTHWISE_CONV_2D, packed int4 filter ----------------------------------------------------------------
 * Multiplier 1: EF_DW4V channels at a time over the whole output (as the int8 engine), their k_h * k_w taps unpacked
 * once to int8 on the stack (EF_DW4K * EF_DW4V bytes), so the per-pixel loop is an int8 one: per output pixel the
 * taps inside the image are a rectangle [ky0, ky1) x [kx0, kx1) (no per-tap checks), the accumulators stay in
 * registers (4 channels on MCUs) or vectorise (16 on vector hosts), and for pixels whose window lies inside the image
 * the input offset is folded into the bias (sum w * (x + off) = sum w * x + off * sum w, exact in int32). A channel
 * count that is not a multiple of EF_DW4V ends with a block overlapping the one before. Depth multiplier > 1, fewer
 * than EF_DW4V channels or more than EF_DW4K taps: ef_dw_engine, one output at a time from the nibbles in place. */

/* a[j] += sum over rows r < nr and columns c < nc of the tap rectangle of wp[c * EF_DW4V + j] * (xp[c * xstep + j] +
 * off), the next row at xp + ystep, wp + wstep; the offset only when add_off (a constant: two copies). */
#if EF_DW4V == 4
/* four channels: the accumulators in registers (-O2 does not unroll the channel loop for them) */
EF_INLINE void ef_dw4_taps(const int8_t* xp, int32_t ystep, int32_t xstep, const int8_t* wp, int32_t wstep,
                           int32_t nr, int32_t nc, int add_off, int32_t off, int32_t* restrict a) {
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    int32_t r, c;
#if EF_S4_DSP
    const int32_t off2 = (int32_t)(((uint32_t)off & 0xFFFFu) * 0x10001u);
#endif
    for (r = 0; r < nr; ++r) {
        for (c = 0; c < nc; ++c) {
            const int8_t* x = xp + r * ystep + c * xstep;
            const int8_t* w = wp + r * wstep + c * 4;
#if EF_S4_DSP
            /* SXTB16: channels 0 and 2 (1 and 3 after a shift by a byte) as int16 pairs; SMLABB / SMLATT */
            const uint32_t xw = ef_ld32(x), ww = ef_ld32(w);
            int32_t x02 = (int32_t)__sxtb16((int32_t)xw), x13 = ef_sxtb16_hi(xw);
            const int32_t w02 = (int32_t)__sxtb16((int32_t)ww), w13 = ef_sxtb16_hi(ww);
            if (add_off) { /* |x + off| <= 255: no lane overflows */
                x02 = (int32_t)__sadd16(x02, off2);
                x13 = (int32_t)__sadd16(x13, off2);
            }
            a0 = __smlabb(w02, x02, a0);
            a2 = __smlatt(w02, x02, a2);
            a1 = __smlabb(w13, x13, a1);
            a3 = __smlatt(w13, x13, a3);
#else
            const int32_t o = add_off ? off : 0;
            a0 += (int32_t)w[0] * ((int32_t)x[0] + o);
            a1 += (int32_t)w[1] * ((int32_t)x[1] + o);
            a2 += (int32_t)w[2] * ((int32_t)x[2] + o);
            a3 += (int32_t)w[3] * ((int32_t)x[3] + o);
#endif
        }
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}
#else
EF_INLINE void ef_dw4_taps(const int8_t* xp, int32_t ystep, int32_t xstep, const int8_t* wp, int32_t wstep,
                           int32_t nr, int32_t nc, int add_off, int32_t off, int32_t* restrict a) {
    const int32_t o = add_off ? off : 0;
    int32_t r, c, j;
    for (r = 0; r < nr; ++r) {
        for (c = 0; c < nc; ++c) {
            const int8_t* x = xp + r * ystep + c * xstep;
            const int8_t* w = wp + r * wstep + c * EF_DW4V;
            for (j = 0; j < EF_DW4V; ++j) {
                a[j] += (int32_t)w[j] * ((int32_t)x[j] + o);
            }
        }
    }
}
#endif

/* First and end tap k with 0 <= o + d * k < n, for k in [0, kn). */
static inline void ef_dw4_range(int32_t o, int32_t d, int32_t n, int32_t kn, int32_t* k0, int32_t* k1) {
    int32_t lo = o < 0 ? (d - 1 - o) / d : 0;
    int32_t hi = n - o <= 0 ? 0 : (n - o + d - 1) / d;
    hi = hi > kn ? kn : hi;
    *k0 = lo > hi ? hi : lo;
    *k1 = hi;
}

/* Multiplier 1, at least EF_DW4V channels, at most EF_DW4K taps: blocks of EF_DW4V channels, the last one ending at
 * the last channel (it may overlap the one before: a few outputs are computed twice, the same). */
static void ef_dw4_blocks(const ef_conv_params* p, const int8_t* in, const uint8_t* w4, const int32_t* bias,
                             const int32_t* mult, const int32_t* shift, int8_t* out) {
    const int32_t K = p->k_h * p->k_w;
    const int32_t C = p->in_c, OC = p->out_c;
    const int32_t end = C - EF_DW4V; /* the last block's start */
    const int32_t off = p->in_offset, out_offset = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int32_t image = p->in_h * p->in_w * C, pitch = p->in_w * C;
    const int32_t ystep = p->dil_h * pitch, xstep = p->dil_w * C, wstep = p->k_w * EF_DW4V;
    int8_t wb[EF_DW4K * EF_DW4V]; /* wb[tap * EF_DW4V + j]: tap (ky, kx) of channel c0 + j */
    int32_t b0[EF_DW4V], bf[EF_DW4V];
    ef_rq rq[EF_DW4V];
    int32_t c0, b, oy, ox, t, j;
    for (c0 = 0; c0 <= end; c0 = c0 < end && c0 + EF_DW4V > end ? end : c0 + EF_DW4V) {
        int8_t* o = out + c0;
        for (t = 0; t < K; ++t) {
            ef_unpack_s4(wb + t * EF_DW4V, w4, t * OC + c0, EF_DW4V);
        }
        for (j = 0; j < EF_DW4V; ++j) {
            int32_t sum = 0;
            for (t = 0; t < K; ++t) {
                sum += wb[t * EF_DW4V + j];
            }
            b0[j] = bias != NULL ? bias[c0 + j] : 0;
            bf[j] = b0[j] + off * sum;
            rq[j] = ef_rq_prepare(mult[c0 + j], shift[c0 + j]);
        }
        for (b = 0; b < p->batches; ++b) {
            const int8_t* img = in + b * image + c0;
            for (oy = 0; oy < p->out_h; ++oy) {
                const int32_t y0 = oy * p->stride_h - p->pad_h;
                int32_t ky0, ky1;
                ef_dw4_range(y0, p->dil_h, p->in_h, p->k_h, &ky0, &ky1);
                for (ox = 0; ox < p->out_w; ++ox, o += OC) {
                    const int32_t x0 = ox * p->stride_w - p->pad_w;
                    int32_t a[EF_DW4V];
                    int32_t kx0, kx1;
                    ef_dw4_range(x0, p->dil_w, p->in_w, p->k_w, &kx0, &kx1);
                    if (ky0 == 0 && ky1 == p->k_h && kx0 == 0 && kx1 == p->k_w) {
                        for (j = 0; j < EF_DW4V; ++j) {
                            a[j] = bf[j];
                        }
                        ef_dw4_taps(img + y0 * pitch + x0 * C, ystep, xstep, wb, wstep, p->k_h, p->k_w, 0, 0, a);
                    } else {
                        for (j = 0; j < EF_DW4V; ++j) {
                            a[j] = b0[j];
                        }
                        if (ky0 < ky1 && kx0 < kx1) {
                            ef_dw4_taps(img + (y0 + p->dil_h * ky0) * pitch + (x0 + p->dil_w * kx0) * C, ystep, xstep,
                                        wb + (ky0 * p->k_w + kx0) * EF_DW4V, wstep, ky1 - ky0, kx1 - kx0, 1, off, a);
                        }
                    }
                    for (j = 0; j < EF_DW4V; ++j) {
                        o[j] = (int8_t)ef_clamp(ef_rq_mbqm(&rq[j], a[j]) + out_offset, lo, hi);
                    }
                }
            }
        }
    }
}

/* ---- DEPTHWISE_CONV_2D, int8 filter, Arm DSP extension ------------------------------------------------------
 * Multiplier 1, at least 4 channels, at most EF_DW4K taps: blocks of 4 channels over the whole output (the last
 * block ends at the last channel and may overlap the one before, as ef_dw4_blocks). The block's taps are expanded
 * once to int16 pairs on the stack (SXTB16: channels 0 and 2 in one word, 1 and 3 in the next), one 32-bit load of
 * the input gives the 4 channels of a tap, SXTB16 splits them the same way and SMLABB / SMLATT accumulate, the four
 * accumulators in registers. Pixels whose window lies inside the image start from the bias with the input offset
 * folded in (sum w * (x + off) = sum w * x + off * sum w, exact modulo 2^32 as the reference's int32 sums); the
 * others add the offset to the expanded input (SXTAB16) over the taps inside the image only. */
#if EF_DSP8 && !EF_SINGLE_ROUNDING

/* a[0..3] += the taps of rows r < nr, columns c < nc: input xp + r * ystep + c * xstep, expanded weights
 * wx + 2 * (r * wstep + c); the input offset (both lanes of off2) added when add_off (a constant). */
EF_INLINE void ef_dw8_taps(const int8_t* xp, int32_t ystep, int32_t xstep, const int32_t* wx, int32_t wstep,
                           int32_t nr, int32_t nc, int add_off, int32_t off2, int32_t* restrict pa0,
                           int32_t* restrict pa1, int32_t* restrict pa2, int32_t* restrict pa3) {
    int32_t a0 = *pa0, a1 = *pa1, a2 = *pa2, a3 = *pa3;
    int32_t r, c;
    for (r = nr; r > 0; --r, xp += ystep, wx += 2 * wstep) {
        const int8_t* x = xp;
        const int32_t* w = wx;
        if (nc == 3) { /* the common 3x3 kernel: one row without a loop */
            const uint32_t xa = ef_ld32(x), xb = ef_ld32(x + xstep), xc = ef_ld32(x + 2 * xstep);
            int32_t x02 = add_off ? (int32_t)__sxtab16(off2, (int32_t)xa) : (int32_t)__sxtb16((int32_t)xa);
            int32_t x13 = add_off ? ef_sxtab16_hi(off2, xa) : ef_sxtb16_hi(xa);
            a0 = __smlabb(w[0], x02, a0);
            a2 = __smlatt(w[0], x02, a2);
            a1 = __smlabb(w[1], x13, a1);
            a3 = __smlatt(w[1], x13, a3);
            x02 = add_off ? (int32_t)__sxtab16(off2, (int32_t)xb) : (int32_t)__sxtb16((int32_t)xb);
            x13 = add_off ? ef_sxtab16_hi(off2, xb) : ef_sxtb16_hi(xb);
            a0 = __smlabb(w[2], x02, a0);
            a2 = __smlatt(w[2], x02, a2);
            a1 = __smlabb(w[3], x13, a1);
            a3 = __smlatt(w[3], x13, a3);
            x02 = add_off ? (int32_t)__sxtab16(off2, (int32_t)xc) : (int32_t)__sxtb16((int32_t)xc);
            x13 = add_off ? ef_sxtab16_hi(off2, xc) : ef_sxtb16_hi(xc);
            a0 = __smlabb(w[4], x02, a0);
            a2 = __smlatt(w[4], x02, a2);
            a1 = __smlabb(w[5], x13, a1);
            a3 = __smlatt(w[5], x13, a3);
            continue;
        }
        for (c = nc; c > 0; --c, x += xstep, w += 2) {
            const uint32_t xw = ef_ld32(x);
            const int32_t x02 = add_off ? (int32_t)__sxtab16(off2, (int32_t)xw) : (int32_t)__sxtb16((int32_t)xw);
            const int32_t x13 = add_off ? ef_sxtab16_hi(off2, xw) : ef_sxtb16_hi(xw);
            a0 = __smlabb(w[0], x02, a0);
            a2 = __smlatt(w[0], x02, a2);
            a1 = __smlabb(w[1], x13, a1);
            a3 = __smlatt(w[1], x13, a3);
        }
    }
    *pa0 = a0;
    *pa1 = a1;
    *pa2 = a2;
    *pa3 = a3;
}

/* A channel's requantisation: ef_rqn's parameters when its shift is in [-31, -1] (fast), else ef_mbqm's. */
typedef struct {
    int32_t m, half, km1, e;
} ef_dw8_rq;

/* The four outputs of a block at o: requantised, offset, clamped (SSAT when the range is the whole of int8). */
EF_INLINE void ef_dw8_out(int8_t* o, int32_t a0, int32_t a1, int32_t a2, int32_t a3, const ef_dw8_rq* rq, int fast,
                          int32_t out_offset, int32_t lo, int32_t hi, int full) {
    int32_t v0, v1, v2, v3;
    if (fast) {
        v0 = ef_rqn(a0, rq[0].m, rq[0].half, rq[0].km1) + out_offset;
        v1 = ef_rqn(a1, rq[1].m, rq[1].half, rq[1].km1) + out_offset;
        v2 = ef_rqn(a2, rq[2].m, rq[2].half, rq[2].km1) + out_offset;
        v3 = ef_rqn(a3, rq[3].m, rq[3].half, rq[3].km1) + out_offset;
    } else {
        v0 = ef_mbqm(a0, rq[0].m, rq[0].e) + out_offset;
        v1 = ef_mbqm(a1, rq[1].m, rq[1].e) + out_offset;
        v2 = ef_mbqm(a2, rq[2].m, rq[2].e) + out_offset;
        v3 = ef_mbqm(a3, rq[3].m, rq[3].e) + out_offset;
    }
    if (full) {
        o[0] = (int8_t)__ssat(v0, 8);
        o[1] = (int8_t)__ssat(v1, 8);
        o[2] = (int8_t)__ssat(v2, 8);
        o[3] = (int8_t)__ssat(v3, 8);
    } else {
        o[0] = (int8_t)ef_clamp(v0, lo, hi);
        o[1] = (int8_t)ef_clamp(v1, lo, hi);
        o[2] = (int8_t)ef_clamp(v2, lo, hi);
        o[3] = (int8_t)ef_clamp(v3, lo, hi);
    }
}

/* First and end output index whose window [o * s - pad, o * s - pad + d * (kn - 1)] lies inside [0, n). */
static void ef_dw8_inside(int32_t s, int32_t pad, int32_t d, int32_t kn, int32_t n, int32_t outn, int32_t* a,
                          int32_t* b) {
    const int32_t last = n - 1 - d * (kn - 1) + pad; /* o * s <= last */
    int32_t lo = (pad + s - 1) / s, hi = last < 0 ? 0 : last / s + 1;
    hi = hi > outn ? outn : hi;
    lo = lo > hi ? hi : lo;
    *a = lo;
    *b = hi;
}

EF_INLINE void ef_dw8_blocks_t(const ef_conv_params* p, const int8_t* in, const void* filter, const int is4,
                                const int32_t* bias, const int32_t* mult, const int32_t* shift, int8_t* out) {
    const int32_t K = p->k_h * p->k_w, kw = p->k_w, kh = p->k_h;
    const int32_t C = p->in_c, OC = p->out_c;
    const int32_t end = C - 4; /* the last block's start */
    const int32_t off = p->in_offset, out_offset = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int full = lo <= -128 && hi >= 127;
    const int32_t off2 = (int32_t)(((uint32_t)off & 0xFFFFu) * 0x10001u);
    const int32_t image = p->in_h * p->in_w * C, pitch = p->in_w * C;
    const int32_t ystep = p->dil_h * pitch, xstep = p->dil_w * C, pxstep = p->stride_w * C;
    int32_t wx[2 * EF_DW4K]; /* tap t: wx[2t] = (w0, w2), wx[2t + 1] = (w1, w3) as int16 pairs */
    int32_t b0[4], bf[4];
    ef_dw8_rq rq[4];
    int fast;
    int32_t c0, b, oy, ox, t, j, oxa, oxb, oya, oyb;
    ef_dw8_inside(p->stride_w, p->pad_w, p->dil_w, kw, p->in_w, p->out_w, &oxa, &oxb);
    ef_dw8_inside(p->stride_h, p->pad_h, p->dil_h, kh, p->in_h, p->out_h, &oya, &oyb);
    for (c0 = 0; c0 <= end; c0 = c0 < end && c0 + 4 > end ? end : c0 + 4) {
        int32_t sum[4] = {0, 0, 0, 0};
        for (t = 0; t < K; ++t) {
            int8_t w[4];
            uint32_t ww;
            if (is4) {
                ef_unpack_s4(w, (const uint8_t*)filter, t * OC + c0, 4);
            } else {
                memcpy(w, (const int8_t*)filter + t * OC + c0, 4);
            }
            ww = ef_ld32(w);
            wx[2 * t] = (int32_t)__sxtb16((int32_t)ww);
            wx[2 * t + 1] = ef_sxtb16_hi(ww);
            for (j = 0; j < 4; ++j) {
                sum[j] += w[j];
            }
        }
        for (j = 0; j < 4; ++j) {
            b0[j] = bias != NULL ? bias[c0 + j] : 0;
            bf[j] = ef_wadd(b0[j], off * sum[j]);
            rq[j].m = mult[c0 + j];
            rq[j].e = shift[c0 + j];
            rq[j].km1 = -rq[j].e - 1;
            rq[j].half = rq[j].e <= -1 && rq[j].e >= -31 ? (int32_t)((uint32_t)1 << rq[j].km1) : 0;
        }
        fast = 1;
        for (j = 0; j < 4; ++j) {
            fast &= rq[j].e <= -1 && rq[j].e >= -31 && rq[j].m != EF_INT32_MIN;
        }
        for (b = 0; b < p->batches; ++b) {
            const int8_t* img = in + b * image + c0;
            for (oy = 0; oy < p->out_h; ++oy) {
                const int32_t y0 = oy * p->stride_h - p->pad_h;
                int8_t* orow = out + ((b * p->out_h + oy) * p->out_w) * OC + c0;
                int32_t ky0, ky1, xa = 0, xb = 0;
                ef_dw4_range(y0, p->dil_h, p->in_h, kh, &ky0, &ky1);
                if (oy >= oya && oy < oyb) { /* whole rows: the columns [oxa, oxb) are inside the image */
                    xa = oxa;
                    xb = oxb;
                }
                for (ox = 0; ox < p->out_w; ++ox) {
                    int32_t a0, a1, a2, a3;
                    if (ox == xa && xa < xb) { /* the inside run: offset folded, no range checks */
                        const int8_t* xp = img + y0 * pitch + (xa * p->stride_w - p->pad_w) * C;
                        int8_t* o = orow + xa * OC;
                        for (; ox < xb; ++ox, xp += pxstep, o += OC) {
                            a0 = bf[0];
                            a1 = bf[1];
                            a2 = bf[2];
                            a3 = bf[3];
                            ef_dw8_taps(xp, ystep, xstep, wx, kw, kh, kw, 0, 0, &a0, &a1, &a2, &a3);
                            ef_dw8_out(o, a0, a1, a2, a3, rq, fast, out_offset, lo, hi, full);
                        }
                        if (ox >= p->out_w) {
                            break;
                        }
                    }
                    {
                        const int32_t x0 = ox * p->stride_w - p->pad_w;
                        int32_t kx0, kx1;
                        ef_dw4_range(x0, p->dil_w, p->in_w, kw, &kx0, &kx1);
                        a0 = b0[0];
                        a1 = b0[1];
                        a2 = b0[2];
                        a3 = b0[3];
                        if (ky0 < ky1 && kx0 < kx1) {
                            ef_dw8_taps(img + (y0 + p->dil_h * ky0) * pitch + (x0 + p->dil_w * kx0) * C, ystep, xstep,
                                        wx + 2 * (ky0 * kw + kx0), kw, ky1 - ky0, kx1 - kx0, 1, off2, &a0, &a1, &a2,
                                        &a3);
                        }
                        ef_dw8_out(orow + ox * OC, a0, a1, a2, a3, rq, fast, out_offset, lo, hi, full);
                    }
                }
            }
        }
    }
}

EF_NOINLINE void ef_dw8_blocks(const ef_conv_params* p, const int8_t* in, const int8_t* w8, const int32_t* bias,
                               const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_dw8_blocks_t(p, in, w8, 0, bias, mult, shift, out);
}

EF_NOINLINE void ef_dw8_blocks4(const ef_conv_params* p, const int8_t* in, const uint8_t* w4, const int32_t* bias,
                                const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_dw8_blocks_t(p, in, w4, 1, bias, mult, shift, out);
}
#endif

void ef_dwconv2d_s8(const ef_conv_params* p, const int8_t* in, const int8_t* filter, const int32_t* bias,
                    const int32_t* mult, const int32_t* shift, int8_t* out) {
#if EF_DSP8 && !EF_SINGLE_ROUNDING
    if (p->filter_in_c == 1 && p->in_c >= 4 && p->k_h * p->k_w <= EF_DW4K) {
        ef_dw8_blocks(p, in, filter, bias, mult, shift, out);
        return;
    }
#endif
    ef_dw_engine(p, in, filter, 0, bias, mult, shift, out);
}

void ef_dwconv2d_s4(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                    const int32_t* mult, const int32_t* shift, int8_t* out) {
#if EF_DSP8 && !EF_SINGLE_ROUNDING
    if (p->filter_in_c == 1 && p->in_c >= 4 && p->k_h * p->k_w <= EF_DW4K) {
        ef_dw8_blocks4(p, in, filter, bias, mult, shift, out); /* the int8 blocks, on the nibbles expanded */
        return;
    }
#endif
    if (p->filter_in_c != 1 || p->in_c < EF_DW4V || p->k_h * p->k_w > EF_DW4K) {
        ef_dw_engine(p, in, filter, 1, bias, mult, shift, out); /* one output at a time, nibbles read in place */
        return;
    }
    ef_dw4_blocks(p, in, filter, bias, mult, shift, out);
}
