/* edgeforge native runtime: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED on pruned filters stored sparse
 * (ef_*_sparse, see ef_kernels.h), bit-exact with the dense kernels of ef_conv.c and so with TFLM. */
#include "ef_kernels.h"
#include "ef_conv_common.h"

/* ---- sparse filters ("sparse_rows", written by edgeforge/native/sparse.py) -------------------------------------
 *
 * One uint8_t array per filter. The filter is R rows of K elements, one row per output channel (CONV_2D: the
 * OHWI row, K = k_h * k_w * filter_in_c; FC: the [out, in] row; DEPTHWISE_CONV_2D: row oc = taps (ky, kx) of
 * channel oc, K = k_h * k_w):
 *   1. header: per row its number e of stored values, 1 byte (K <= 255) or 2 bytes little-endian;
 *      e == 0: all-zero row (no bytes, no MACs); e == K: dense row (all K values); otherwise a bitmap row;
 *   2. the bitmaps of the bitmap rows in row order, (K + 7) / 8 bytes each, bit k % 8 of byte k / 8 = element k != 0;
 *   3. the values of all rows in row order (dense rows: K, bitmap rows: the nonzero ones), int8, or int4 packed
 *      two per byte over the whole stream (value i in the low nibble when i is even).
 *
 * CONV_2D / FC: the dense engine's im2col walk for EF_SNPIX output pixels at a time (4 on MCUs, 8 on vector
 * hosts), interleaved so that one weight meets the pixels' values side by side; a bitmap row is decoded one 32-bit
 * word at a time (count trailing zeros, clear the lowest bit: no division, no per-weight branch beyond the loop)
 * and each nonzero weight is applied to all those pixels, so the decode is shared; dense rows are plain dot
 * products; all-zero rows cost nothing but their requantisation. On a Cortex-M4 the decode loop takes 13
 * instructions per nonzero weight for 4 pixels (two 32-bit loads, four SMLABB/SMLABT: 3.25 per MAC) against ~2.75
 * per MAC in the dense inner loops, so bitmap rows (>= 37.5 % zeros, see sparse.py) are always the faster.
 * FC with fewer than EF_SNPIX batches (one pixel): bitmap rows at 8 instructions per nonzero weight, runs of 4
 * dense rows share the loads of x as in the dense engine.
 * int4 values: the values of a row chunk are unpacked to int8 once per pass (EF_SKC bytes of stack, shared by the
 * pass's pixels) and the int8 loops above run on them; bitmap rows of one pixel read the nibbles in place.
 * DEPTHWISE_CONV_2D: channel by channel, its nonzero taps decoded once; then per output column the taps whose
 * input column lies inside the image (weight, input offset), and per output row a plain sum over them (rows whose
 * window lies inside the image without checks, two rows per pass, the input offset folded into the sum of the
 * weights). Only zero terms of the integer sums are skipped, and TFLM's requantisation is unchanged: the outputs
 * are the dense kernels' (and TFLM's) bit for bit. */

#ifndef EF_SKC
#define EF_SKC (EF_VECTOR_HOST ? 128 : 64) /* sparse: im2col chunk per pixel, int16 elements; a multiple of 32 */
#endif
#ifndef EF_SOT
#define EF_SOT 16 /* sparse: output channels accumulated together */
#endif
#if EF_SKC < 32 || EF_SKC % 32 != 0 || EF_SOT < 1
#error "bad EF_SKC / EF_SOT"
#endif
#ifndef EF_SNPIX
#define EF_SNPIX (EF_VECTOR_HOST ? 8 : 4) /* sparse CONV/FC: output pixels per pass over a row (one decode each) */
#endif
#if EF_SNPIX < 1
#error "bad EF_SNPIX"
#endif
#define EF_SDW_MAXK 49  /* sparse DEPTHWISE: taps per channel at most, 7x7 (sparse.py: MAX_DW_TAPS) */

#if defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
/* no CLZ on Cortex-M0/M0+/M23 (__builtin_ctz would be a library call): de Bruijn multiply and lookup */
static const uint8_t ef_debruijn[32] = {0, 1, 28, 2, 29, 14, 24, 3, 30, 22, 20, 15, 25, 17, 4, 8,
                                        31, 27, 13, 23, 21, 19, 16, 7, 26, 12, 18, 6, 11, 5, 10, 9};
#define EF_CTZ(b) ((int32_t)ef_debruijn[(((b) & (0u - (b))) * 0x077CB531u) >> 27])
#elif defined(__GNUC__) || defined(__clang__)
#define EF_CTZ(b) ((int32_t)__builtin_ctz(b))
#endif
#if defined(__GNUC__) || defined(__clang__)
#define EF_INLINE static inline __attribute__((always_inline))
#define EF_NOINLINE static __attribute__((noinline)) /* a row kernel gets all the registers */
#define EF_ALIGN8 __attribute__((aligned(8)))
#else
#define EF_INLINE static inline
#define EF_NOINLINE static
#define EF_ALIGN8
#endif
#ifndef EF_CTZ
static int32_t ef_ctz(uint32_t b) {
    int32_t n = 0;
    while (!(b & 1u)) {
        b >>= 1;
        ++n;
    }
    return n;
}
#define EF_CTZ(b) ef_ctz(b)
#endif

/* Bits [0, min(n, 32)) of the bitmap at b (little-endian; no byte past the n-th bit is read). */
static uint32_t ef_bits_tail(const uint8_t* b, int32_t n) {
    uint32_t r = 0;
    int32_t i;
    for (i = 0; 8 * i < n; ++i) {
        r |= (uint32_t)b[i] << (8 * i);
    }
    return r;
}

EF_INLINE uint32_t ef_bits32(const uint8_t* b, int32_t n) {
    if (n >= 32) {
        return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    }
    return ef_bits_tail(b, n);
}

/* Packed int4 value i (sign-extended), inlined. */
EF_INLINE int32_t ef_nib(const uint8_t* v, int32_t i) {
    const int32_t b = v[i >> 1];
    return (i & 1) ? ef_s4_hi(b) : ef_s4_lo(b);
}

static inline int32_t ef_sp_entry(const uint8_t* hdr, int32_t wide, int32_t r) {
    return wide ? ((int32_t)hdr[2 * r] | (int32_t)hdr[2 * r + 1] << 8) : (int32_t)hdr[r];
}

/* Start of the bitmaps and of the values of a sparse filter of R rows of K. */
static const uint8_t* ef_sp_layout(const uint8_t* filter, int32_t R, int32_t K, const uint8_t** vals) {
    const int32_t wide = K > 255;
    const uint8_t* bits = filter + R * (wide ? 2 : 1);
    int32_t r, nbm = 0;
    for (r = 0; r < R; ++r) {
        const int32_t e = ef_sp_entry(filter, wide, r);
        nbm += e != 0 && e != K;
    }
    *vals = bits + nbm * ((K + 7) >> 3);
    return bits;
}

/* CONV_2D / FC: EF_SNPIX output pixels (4 on MCUs: "a quad"; 8 on vector hosts) at a time, their receptive
 * fields interleaved in xq: element k of pixel q at xq[EF_SNPIX * k + q], so one decoded weight meets adjacent
 * int16 values (on cores with the DSP extension two 32-bit loads and four 16 x 16 multiply-accumulates; one
 * vector multiply-add on vector hosts). Fewer output pixels than that in all (FC with a few batches): one pixel
 * at a time from a plain buffer. */
#if EF_SNPIX == 4 && defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__ARMEL__) && defined(__GNUC__)
#include <arm_acle.h>
#define EF_QDECL int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0
#define EF_QMAC(w, xp)                                 \
    do {                                               \
        uint32_t lo_, hi_;                             \
        memcpy(&lo_, (xp), 4);                         \
        memcpy(&hi_, (xp) + 2, 4);                     \
        s0 = __smlabb((w), (int32_t)lo_, s0);          \
        s1 = __smlabt((w), (int32_t)lo_, s1);          \
        s2 = __smlabb((w), (int32_t)hi_, s2);          \
        s3 = __smlabt((w), (int32_t)hi_, s3);          \
    } while (0)
#define EF_QADD(a)              \
    do {                        \
        (a)[0] += s0;           \
        (a)[EF_SOT] += s1;      \
        (a)[2 * EF_SOT] += s2;  \
        (a)[3 * EF_SOT] += s3;  \
    } while (0)
#else
#define EF_QDECL             \
    int32_t s[EF_SNPIX];     \
    int q_;                  \
    for (q_ = 0; q_ < EF_SNPIX; ++q_) s[q_] = 0
#define EF_QMAC(w, xp)                        \
    do {                                      \
        for (q_ = 0; q_ < EF_SNPIX; ++q_) {   \
            s[q_] += (w) * (xp)[q_];          \
        }                                     \
    } while (0)
#define EF_QADD(a)                            \
    do {                                      \
        for (q_ = 0; q_ < EF_SNPIX; ++q_) {   \
            (a)[q_ * EF_SOT] += s[q_];        \
        }                                     \
    } while (0)
#endif

/* A row of the current tile: its bitmap (NULL for a dense row), next value index, stored values (0: empty). */
typedef struct {
    const uint8_t* bits;
    int32_t v;
    int32_t e;
} ef_sprow;

/* a[0], a[EF_SOT], a[2 EF_SOT], ... (one per pixel) += bitmap row chunk (n elements, bits bm) . the interleaved
 * pixels xq; int8 values from v; returns the number of values used. One call per row keeps the decode loop's
 * variables in registers (13 instructions per nonzero weight and 4 pixels on a Cortex-M4). */
EF_NOINLINE int32_t ef_spq_s8(const uint8_t* restrict bm, int32_t n, const int8_t* restrict v,
                              const int16_t* restrict xq, int32_t* restrict a) {
    const int8_t* const v0 = v;
    int32_t t;
    EF_QDECL;
    for (t = 0; t < n; t += 32, xq += 32 * EF_SNPIX, bm += 4) {
        uint32_t b = ef_bits32(bm, n - t);
        if (b == 0) {
            continue;
        }
        do {
            const int16_t* xp = xq + EF_SNPIX * EF_CTZ(b);
            const int32_t w = *v++;
            b &= b - 1;
            EF_QMAC(w, xp);
        } while (b != 0);
    }
    EF_QADD(a);
    return (int32_t)(v - v0);
}

/* Dense row chunk (n int8 values from w) . the interleaved pixels xq. */
EF_NOINLINE void ef_spdq(const int8_t* restrict w, int32_t n, const int16_t* restrict xq, int32_t* restrict a) {
    int32_t k;
    EF_QDECL;
    for (k = 0; k < n; ++k, xq += EF_SNPIX) {
        const int32_t v = w[k];
        EF_QMAC(v, xq);
    }
    EF_QADD(a);
}

/* Number of set bits among the first n of the bitmap at b (its bits past the row's end are 0). */
static int32_t ef_bits_count(const uint8_t* b, int32_t n) {
    int32_t t, c = 0;
    for (t = 0; t < n; t += 32, b += 4) {
        uint32_t x = ef_bits32(b, n - t);
        x = x - ((x >> 1) & 0x55555555u);
        x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
        x = (x + (x >> 4)) & 0x0F0F0F0Fu;
        c += (int32_t)((x * 0x01010101u) >> 24);
    }
    return c;
}

/* One pixel: *a += bitmap row chunk . x; returns the number of values used. */
EF_NOINLINE int32_t ef_sp1_s8(const uint8_t* restrict bm, int32_t n, const int8_t* restrict v,
                              const int16_t* restrict x, int32_t* restrict a) {
    const int8_t* const v0 = v;
    int32_t s0 = 0, t;
    for (t = 0; t < n; t += 32, x += 32, bm += 4) {
        uint32_t b = ef_bits32(bm, n - t);
        if (b == 0) {
            continue;
        }
        do {
            s0 += (int32_t)*v++ * x[EF_CTZ(b)];
            b &= b - 1;
        } while (b != 0);
    }
    *a += s0;
    return (int32_t)(v - v0);
}

EF_NOINLINE int32_t ef_sp1_s4(const uint8_t* restrict bm, int32_t n, const uint8_t* restrict v, int32_t vi,
                              const int16_t* restrict x, int32_t* restrict a) {
    const int32_t vi0 = vi;
    int32_t s0 = 0, t;
    for (t = 0; t < n; t += 32, x += 32, bm += 4) {
        uint32_t b = ef_bits32(bm, n - t);
        if (b == 0) {
            continue;
        }
        do {
            s0 += ef_nib(v, vi) * x[EF_CTZ(b)];
            ++vi;
            b &= b - 1;
        } while (b != 0);
    }
    *a += s0;
    return vi - vi0;
}


/* acc[q * EF_SOT + i] += row i chunk [k0, k0 + n) . pixel q, for the tile's rows i < count: the quad xq (quad)
 * or pixel q < np of the plain buffer xv + q * kc. */
/* Four dense int8 rows at w[0..3] (anywhere in the value stream) . one pixel x: *a[0..3] += (shares the loads of x,
 * as the dense engine's four-row dot product does). */
static void ef_dot4p_s8(const int8_t* const* w, const int16_t* restrict x, int32_t n, int32_t* const* a) {
    const int8_t* restrict w0 = w[0];
    const int8_t* restrict w1 = w[1];
    const int8_t* restrict w2 = w[2];
    const int8_t* restrict w3 = w[3];
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, k;
    for (k = 0; k < n; ++k) {
        const int32_t v = x[k];
        s0 += w0[k] * v;
        s1 += w1[k] * v;
        s2 += w2[k] * v;
        s3 += w3[k] * v;
    }
    *a[0] += s0;
    *a[1] += s1;
    *a[2] += s2;
    *a[3] += s3;
}

/* int4 values: the chunk's values of a row are unpacked to int8 (vb) once per pass and the int8 row kernels used, so
 * the unpacking is shared by the EF_SNPIX pixels of a pass and stays out of the decode loop. */
static void ef_sp_tile(ef_sprow* rows, int32_t count, int32_t K, int32_t k0, int32_t n, const uint8_t* vals, int is4,
                       const int16_t* xv, int32_t kc, int quad, int32_t np, int32_t* acc) {
    const int8_t* dw[4]; /* one pixel, int8: pending dense rows, done four at a time */
    int32_t* da[4];
    int8_t vb[EF_SKC]; /* int4: the values of a row chunk (quad: n <= EF_SKC), or a slice of it */
    int32_t i, q, nd = 0;
    if (quad) {
        for (i = 0; i < count; ++i) {
            ef_sprow* r = &rows[i];
            if (r->e == 0) {
                continue;
            }
            if (r->bits == NULL) {
                if (is4) {
                    ef_unpack_s4(vb, vals, r->v, n);
                    ef_spdq(vb, n, xv, acc + i);
                } else {
                    ef_spdq((const int8_t*)vals + r->v, n, xv, acc + i);
                }
                r->v += n;
            } else if (is4) {
                const uint8_t* bm = r->bits + (k0 >> 3);
                const int32_t m = n == K ? r->e : ef_bits_count(bm, n); /* the row's values, or this chunk's */
                ef_unpack_s4(vb, vals, r->v, m);
                ef_spq_s8(bm, n, vb, xv, acc + i);
                r->v += m;
            } else {
                r->v += ef_spq_s8(r->bits + (k0 >> 3), n, (const int8_t*)vals + r->v, xv, acc + i);
            }
        }
        return;
    }
    for (i = 0; i < count; ++i) {
        ef_sprow* r = &rows[i];
        int32_t used = n;
        if (r->e == 0) {
            continue;
        }
        if (np == 1 && !is4 && r->bits == NULL) {
            dw[nd] = (const int8_t*)vals + r->v;
            da[nd] = acc + i;
            r->v += n;
            if (++nd == 4) {
                ef_dot4p_s8(dw, xv, n, da);
                nd = 0;
            }
            continue;
        }
        for (q = 0; q < np; ++q) {
            int32_t* a = acc + q * EF_SOT + i;
            const int16_t* x = xv + q * kc;
            if (r->bits == NULL && is4) {
                int32_t s;
                for (s = 0; s < n; s += EF_SKC) {
                    const int32_t len = n - s < EF_SKC ? n - s : EF_SKC;
                    ef_unpack_s4(vb, vals, r->v + s, len);
                    *a += ef_dot_s8(vb, x + s, len);
                }
            } else if (r->bits == NULL) {
                *a += ef_dot_s8((const int8_t*)vals + r->v, x, n);
            } else if (is4) {
                used = ef_sp1_s4(r->bits + (k0 >> 3), n, vals, r->v, x, a);
            } else {
                used = ef_sp1_s8(r->bits + (k0 >> 3), n, (const int8_t*)vals + r->v, x, a);
            }
        }
        r->v += used;
    }
    for (q = 0; q < nd; ++q) { /* the last 0-3 dense rows */
        *da[q] += ef_dot_s8(dw[q], xv, n);
    }
}

/* d[EF_SNPIX * j] = s[j] + off, or 0 (s == NULL), for j < n. */
static void ef_put_strided(int16_t* d, const int8_t* s, int32_t n, int32_t off) {
    int32_t j;
    if (s == NULL) {
        for (j = 0; j < n; ++j, d += EF_SNPIX) {
            *d = 0;
        }
        return;
    }
    for (j = 0; j < n; ++j, d += EF_SNPIX) {
        *d = (int16_t)(s[j] + off);
    }
}

/* Receptive-field elements [k0, k0 + n) of the EF_SNPIX pixels px[0..np) (input + in_offset, 0 outside the
 * image; pixels np.. all 0), interleaved into xq: element k of pixel q at xq[EF_SNPIX * (k - k0) + q]. The same
 * walk as ef_gather, writing with a stride: whole kernel rows at a time where they are contiguous in the input,
 * else one tap (filter_in_c channels) at a time. */
static void ef_gather_quad(const ef_conv_params* p, const ef_pixel* px, int32_t np, int32_t cbase, int32_t k0,
                           int32_t n, int16_t* xq) {
    const int32_t fic = p->filter_in_c;
    const int32_t rowlen = p->k_w * fic;
    const int contiguous = fic == p->in_c && p->dil_w == 1;
    const int32_t off = p->in_offset;
    const int32_t pitch = p->in_w * p->in_c;
    const int32_t ky0 = k0 / rowlen;
    const int32_t r00 = k0 - ky0 * rowlen;
    int32_t q;
    for (q = 0; q < EF_SNPIX; ++q) {
        int32_t ky = ky0, r0 = r00, k = 0;
        if (q >= np) {
            ef_put_strided(xq + q, NULL, n, 0);
            continue;
        }
        while (k < n) {
            const int32_t r1 = rowlen - r0 < n - k ? rowlen : r0 + (n - k);
            int16_t* d = xq + EF_SNPIX * k + q; /* row element r goes to d[EF_SNPIX * (r - r0)] */
            const int32_t iy = px[q].y0 + p->dil_h * ky;
            const int32_t x0 = px[q].x0;
            if (iy < 0 || iy >= p->in_h) {
                ef_put_strided(d, NULL, r1 - r0, 0);
            } else if (contiguous) {
                const int8_t* row = px[q].img + iy * pitch;
                int32_t lo = x0 < 0 ? -x0 * fic : 0;
                int32_t hi = (p->in_w - x0 < p->k_w ? p->in_w - x0 : p->k_w) * fic;
                lo = lo < r0 ? r0 : (lo > r1 ? r1 : lo);
                hi = hi < lo ? lo : (hi > r1 ? r1 : hi);
                ef_put_strided(d, NULL, lo - r0, 0);
                ef_put_strided(d + EF_SNPIX * (lo - r0), row + (x0 * fic + lo), hi - lo, off);
                ef_put_strided(d + EF_SNPIX * (hi - r0), NULL, r1 - hi, 0);
            } else {
                const int8_t* row = px[q].img + iy * pitch + cbase;
                int32_t kx = r0 / fic;
                int32_t r = r0;
                int32_t c = r0 - kx * fic;
                while (r < r1) {
                    const int32_t ix = x0 + p->dil_w * kx;
                    const int32_t run = fic - c < r1 - r ? fic - c : r1 - r;
                    ef_put_strided(d + EF_SNPIX * (r - r0), ix >= 0 && ix < p->in_w ? row + (ix * p->in_c + c) : NULL,
                                   run, off);
                    r += run;
                    c = 0;
                    ++kx;
                }
            }
            k += r1 - r0;
            r0 = 0;
            ++ky;
        }
    }
}

static void ef_sparse_engine(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, int is4,
                             const int32_t* bias, const int32_t* mult, const int32_t* shift, int32_t mstride,
                             int8_t* out) {
    const int32_t fic = p->filter_in_c;
    const int32_t K = p->k_h * p->k_w * fic;
    const int32_t wide = K > 255;
    const int32_t rowbytes = (K + 7) >> 3;
    const int32_t groups = p->in_c / fic;
    const int32_t per_group = p->out_c / groups;
    const int32_t pixels = p->batches * p->out_h * p->out_w;
    const int quad = pixels >= EF_SNPIX;
    const int32_t npb = quad ? EF_SNPIX : 1;
    const int32_t kc = quad ? EF_SKC : EF_SNPIX * EF_SKC; /* one pixel at a time: all the buffer for it */
    const int single = K <= kc;
    const uint8_t* vals;
    const uint8_t* gbits = ef_sp_layout(filter, p->out_c, K, &vals);
    int32_t gv = 0; /* value index of the group's first row */
    int16_t xv[EF_SNPIX * EF_SKC] EF_ALIGN8; /* word-aligned pixel pairs for the DSP loads */
    int32_t acc[EF_SNPIX * EF_SOT];
    ef_sprow rows[EF_SOT];
    ef_pixel px[EF_SNPIX];
    int32_t g, P0, q, i;
    for (g = 0; g < groups; ++g) {
        const int32_t oc_end = (g + 1) * per_group;
        const int32_t cbase = g * fic;
        const uint8_t* bp = gbits;
        int32_t v = gv;
        for (P0 = 0; P0 < pixels; P0 += npb) {
            const int32_t np = pixels - P0 < npb ? pixels - P0 : npb;
            int32_t oc0;
            for (q = 0; q < np; ++q) {
                ef_locate(p, in, P0 + q, &px[q]);
            }
            if (single) {
                if (quad) {
                    ef_gather_quad(p, px, np, cbase, 0, K, xv);
                } else {
                    ef_gather(p, px, 1, cbase, 0, K, xv, kc);
                }
            }
            bp = gbits;
            v = gv;
            for (oc0 = g * per_group; oc0 < oc_end; oc0 += EF_SOT) {
                const int32_t count = oc_end - oc0 < EF_SOT ? oc_end - oc0 : EF_SOT;
                for (i = 0; i < count; ++i) {
                    const int32_t e = ef_sp_entry(filter, wide, oc0 + i);
                    rows[i].e = e;
                    rows[i].v = v;
                    rows[i].bits = NULL;
                    if (e != 0 && e != K) {
                        rows[i].bits = bp;
                        bp += rowbytes;
                    }
                    v += e;
                }
                ef_tile_init(acc, EF_SOT, npb, count, bias != NULL ? bias + oc0 : NULL);
                if (single) {
                    ef_sp_tile(rows, count, K, 0, K, vals, is4, xv, kc, quad, np, acc);
                } else {
                    int32_t k0;
                    for (k0 = 0; k0 < K; k0 += kc) {
                        const int32_t n = K - k0 < kc ? K - k0 : kc;
                        if (quad) {
                            ef_gather_quad(p, px, np, cbase, k0, n, xv);
                        } else {
                            ef_gather(p, px, 1, cbase, k0, k0 + n, xv, kc);
                        }
                        ef_sp_tile(rows, count, K, k0, n, vals, is4, xv, kc, quad, np, acc);
                    }
                }
                ef_tile_store(p, acc, EF_SOT, np, count, mult + oc0 * mstride, shift + oc0 * mstride, mstride,
                              out + P0 * p->out_c + oc0);
            }
        }
        if (pixels == 0) { /* still step over the group's rows */
            for (i = g * per_group; i < oc_end; ++i) {
                const int32_t e = ef_sp_entry(filter, wide, i);
                bp += (e != 0 && e != K) ? rowbytes : 0;
                v += e;
            }
        }
        gbits = bp;
        gv = v;
    }
}

void ef_conv2d_s8_sparse(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                         const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_sparse_engine(p, in, filter, 0, bias, mult, shift, 1, out);
}

void ef_conv2d_s4_sparse(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                         const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_sparse_engine(p, in, filter, 1, bias, mult, shift, 1, out);
}

static void ef_fc_params_as_conv(const ef_fc_params* f, ef_conv_params* p) {
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

void ef_fc_s8_sparse(const ef_fc_params* f, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                     const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_conv_params p;
    ef_fc_params_as_conv(f, &p);
    ef_sparse_engine(&p, in, filter, 0, bias, mult, shift, f->per_channel ? 1 : 0, out);
}

void ef_fc_s4_sparse(const ef_fc_params* f, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                     const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_conv_params p;
    ef_fc_params_as_conv(f, &p);
    ef_sparse_engine(&p, in, filter, 1, bias, mult, shift, f->per_channel ? 1 : 0, out);
}

/* First output coordinate whose window starts inside the image and first one whose window ends outside it
 * (so [lo, hi) is the interior along that axis; empty when lo >= hi). */
static void ef_interior(int32_t in, int32_t out, int32_t k, int32_t stride, int32_t dil, int32_t pad, int32_t* lo,
                        int32_t* hi) {
    const int32_t last = in - 1 - (k - 1) * dil + pad; /* o * stride <= last */
    *lo = (pad + stride - 1) / stride;
    *hi = last < 0 ? 0 : last / stride + 1;
    if (*hi > out) {
        *hi = out;
    }
    if (*lo > *hi) {
        *lo = *hi;
    }
}

/* One output column of one channel of a sparse DEPTHWISE_CONV_2D: o[oy * ostep] for every output row oy, from the
 * m taps whose input column lies inside the image: weight cw[k], row offset cy[k] (ky * dil_h) and element offset
 * cd[k] of the input (from the start of the window's top row, column included). csum = in_offset * sum(cw). */
EF_NOINLINE void ef_dw_col(const ef_conv_params* p, const int8_t* img, const int8_t* cw, const int16_t* cy,
                           const int32_t* cd, int32_t m, int32_t b0, int32_t csum, int32_t oy_lo, int32_t oy_hi,
                           const ef_rq* rq, int8_t* o, int32_t ostep) {
    const int32_t pitch = p->in_w * p->in_c, in_h = p->in_h, sh = p->stride_h, off = p->in_offset;
    const int32_t out_offset = p->out_offset, lo = p->act_min, hi = p->act_max;
    int32_t oy, k;
    for (oy = 0; oy < p->out_h; ++oy, o += ostep) {
        const int32_t y0 = oy * sh - p->pad_h;
        int32_t a = b0;
        if (oy >= oy_lo && oy < oy_hi) {
            /* every tap inside: sum w * (x + off) = sum w * x + off * sum w */
            const int8_t* xa = img + y0 * pitch;
            a += csum;
            if (oy + 1 < oy_hi) { /* two rows per pass over the taps */
                const int8_t* xb = xa + sh * pitch;
                int32_t a2 = a;
                for (k = 0; k < m; ++k) {
                    const int32_t w = cw[k], d = cd[k];
                    a += w * xa[d];
                    a2 += w * xb[d];
                }
                *o = (int8_t)ef_clamp(ef_rq_mbqm(rq, a) + out_offset, lo, hi);
                ++oy;
                o += ostep;
                *o = (int8_t)ef_clamp(ef_rq_mbqm(rq, a2) + out_offset, lo, hi);
                continue;
            }
            for (k = 0; k < m; ++k) {
                a += cw[k] * xa[cd[k]];
            }
        } else {
            const int32_t row = y0 * pitch;
            for (k = 0; k < m; ++k) {
                if ((uint32_t)(y0 + cy[k]) < (uint32_t)in_h) {
                    a += cw[k] * ((int32_t)img[row + cd[k]] + off);
                }
            }
        }
        *o = (int8_t)ef_clamp(ef_rq_mbqm(rq, a) + out_offset, lo, hi);
    }
}

static void ef_dw_sparse(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, int is4,
                         const int32_t* bias, const int32_t* mult, const int32_t* shift, int8_t* out) {
    const int32_t K = p->k_h * p->k_w;
    const int32_t OC = p->out_c, C = p->in_c, dm = p->filter_in_c;
    const int32_t rowbytes = (K + 7) >> 3;
    const int32_t image = p->in_h * p->in_w * C;
    const int32_t pitch = p->in_w * C;
    const int32_t pixels = p->batches * p->out_h * p->out_w;
    const int32_t ostep = p->out_w * OC; /* next output row, same column and channel */
    const uint8_t* vals;
    const uint8_t* bits = ef_sp_layout(filter, OC, K, &vals);
    int32_t vi = 0;
    int32_t oy_lo, oy_hi;
    int8_t tw[EF_SDW_MAXK], cw[EF_SDW_MAXK];
    uint8_t tky[EF_SDW_MAXK], tkx[EF_SDW_MAXK];
    int16_t cy[EF_SDW_MAXK];
    int32_t cd[EF_SDW_MAXK];
    int32_t oc, b, ox, t;
    ef_interior(p->in_h, p->out_h, p->k_h, p->stride_h, p->dil_h, p->pad_h, &oy_lo, &oy_hi);
    for (oc = 0; oc < OC; ++oc) {
        const int32_t e = filter[oc]; /* K <= EF_SDW_MAXK: one-byte header */
        const int32_t b0 = bias != NULL ? bias[oc] : 0;
        const ef_rq rq = ef_rq_prepare(mult[oc], shift[oc]);
        const int8_t* base = in + oc / dm; /* input channel of this output channel */
        int32_t nt = 0;
        if (e != 0) { /* the channel's nonzero taps, once */
            const uint8_t* bm = e == K ? NULL : bits;
            int32_t ky = 0, kx = 0;
            if (bm != NULL) {
                bits += rowbytes;
            }
            for (t = 0; t < K; ++t) {
                if (bm == NULL || ((bm[t >> 3] >> (t & 7)) & 1)) {
                    const int32_t w = is4 ? ef_nib(vals, vi) : (int32_t)((const int8_t*)vals)[vi];
                    ++vi;
                    if (w != 0) {
                        tw[nt] = (int8_t)w;
                        tky[nt] = (uint8_t)ky;
                        tkx[nt] = (uint8_t)kx;
                        ++nt;
                    }
                }
                if (++kx == p->k_w) {
                    kx = 0;
                    ++ky;
                }
            }
        }
        if (nt == 0) { /* all-zero channel: the bias, requantised, everywhere */
            const int8_t y = (int8_t)ef_clamp(ef_rq_mbqm(&rq, b0) + p->out_offset, p->act_min, p->act_max);
            int8_t* o = out + oc;
            int32_t P;
            for (P = 0; P < pixels; ++P, o += OC) {
                *o = y;
            }
            continue;
        }
        for (ox = 0; ox < p->out_w; ++ox) {
            /* the taps of this output column whose input column is inside the image */
            const int32_t x0 = ox * p->stride_w - p->pad_w;
            int32_t m = 0, wsum = 0;
            for (t = 0; t < nt; ++t) {
                const int32_t ix = x0 + tkx[t] * p->dil_w;
                if ((uint32_t)ix < (uint32_t)p->in_w) {
                    cw[m] = tw[t];
                    cy[m] = (int16_t)(tky[t] * p->dil_h);
                    cd[m] = tky[t] * p->dil_h * pitch + ix * C;
                    wsum += tw[t];
                    ++m;
                }
            }
            for (b = 0; b < p->batches; ++b) {
                ef_dw_col(p, base + b * image, cw, cy, cd, m, b0, p->in_offset * wsum, oy_lo, oy_hi, &rq,
                          out + (b * p->out_h * p->out_w + ox) * OC + oc, ostep);
            }
        }
    }
}

void ef_dwconv2d_s8_sparse(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                           const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_dw_sparse(p, in, filter, 0, bias, mult, shift, out);
}

void ef_dwconv2d_s4_sparse(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                           const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_dw_sparse(p, in, filter, 1, bias, mult, shift, out);
}
