/* edgeforge native runtime, internal: what the dense (ef_conv.c) and the sparse (ef_sparse.c) CONV_2D /
 * DEPTHWISE_CONV_2D / FULLY_CONNECTED kernels share: int4 nibbles, dot products, the im2col gather, accumulator
 * tiles and their requantisation. Static definitions, compiled into each of the two files, so that each engine
 * gets its own copies, inlined as the compiler sees fit for it alone (the dense kernels compile exactly as they
 * did before the sparse ones existed). Not part of the API: include ef_kernels.h. */
#ifndef EF_CONV_COMMON_H
#define EF_CONV_COMMON_H

#include "ef_kernels.h"

#if defined(__SSE2__) || defined(__ARM_NEON) || defined(__aarch64__) || defined(__VSX__) || defined(__riscv_vector)
#define EF_VECTOR_HOST 1
#else
#define EF_VECTOR_HOST 0
#endif

static inline int32_t ef_s4_lo(int32_t b) { return ((b & 0x0F) ^ 8) - 8; }
static inline int32_t ef_s4_hi(int32_t b) { return (((b >> 4) & 0x0F) ^ 8) - 8; }

static inline int32_t ef_s4_at(const uint8_t* w, int32_t i) {
    const int32_t b = w[i >> 1];
    return (i & 1) ? ef_s4_hi(b) : ef_s4_lo(b);
}

/* d[0..n) = packed int4 elements i .. i+n-1 (flattened index), sign-extended to int8, so that the int8 loops run on
 * them. Four bytes (8 values) at a time: the nibbles spread to bytes and sign-extended in parallel (SWAR, 32-bit,
 * byte order spelled out: the compiler merges the byte loads / stores on little-endian cores). Reads only the bytes
 * holding elements i .. i+n-1. */
static void ef_unpack_s4(int8_t* restrict d, const uint8_t* restrict w, int32_t i, int32_t n) {
    uint8_t* db = (uint8_t*)d;
    int32_t k = 0;
    const uint8_t* b;
    if (n > 0 && (i & 1)) {
        d[0] = (int8_t)ef_s4_hi(w[i >> 1]);
        k = 1;
    }
    b = w + ((i + k) >> 1);
    for (; k + 8 <= n; k += 8, b += 4) {
        const uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        uint32_t lo = u & 0xFFFFu, hi = u >> 16;
        lo = (lo | lo << 8) & 0x00FF00FFu; /* byte j of the half to byte 2j */
        hi = (hi | hi << 8) & 0x00FF00FFu;
        lo = (lo | lo << 4) & 0x0F0F0F0Fu; /* nibble j to byte j */
        hi = (hi | hi << 4) & 0x0F0F0F0Fu;
        lo = ((lo ^ 0x08080808u) + 0x78787878u) ^ 0x80808080u; /* each byte v in [0, 16) to v - 16 * (v >= 8) */
        hi = ((hi ^ 0x08080808u) + 0x78787878u) ^ 0x80808080u;
        /* int8_t is two's complement (C99 7.18.1.1): its bytes written as uint8_t are these values */
        db[k] = (uint8_t)lo;
        db[k + 1] = (uint8_t)(lo >> 8);
        db[k + 2] = (uint8_t)(lo >> 16);
        db[k + 3] = (uint8_t)(lo >> 24);
        db[k + 4] = (uint8_t)hi;
        db[k + 5] = (uint8_t)(hi >> 8);
        db[k + 6] = (uint8_t)(hi >> 16);
        db[k + 7] = (uint8_t)(hi >> 24);
    }
    for (; k + 2 <= n; k += 2, ++b) {
        d[k] = (int8_t)ef_s4_lo(*b);
        d[k + 1] = (int8_t)ef_s4_hi(*b);
    }
    if (k < n) {
        d[k] = (int8_t)ef_s4_lo(*b);
    }
}

/* ---- dot products: int8 filter x int16 activations ------------------------------------------------- */

static inline int32_t ef_dot64(const int8_t* restrict w, const int16_t* restrict x) {
    int32_t s = 0;
    int j;
    for (j = 0; j < 64; ++j) {
        s += (int32_t)w[j] * x[j];
    }
    return s;
}

static inline int32_t ef_dot16(const int8_t* restrict w, const int16_t* restrict x) {
    int32_t s = 0;
    int j;
    for (j = 0; j < 16; ++j) {
        s += (int32_t)w[j] * x[j];
    }
    return s;
}

static inline int32_t ef_dot8(const int8_t* restrict w, const int16_t* restrict x) {
    int32_t s = 0;
    int j;
    for (j = 0; j < 8; ++j) {
        s += (int32_t)w[j] * x[j];
    }
    return s;
}

static int32_t ef_dot_s8(const int8_t* restrict w, const int16_t* restrict x, int32_t n) {
    int32_t acc = 0;
    int32_t k = 0;
    for (; k + 64 <= n; k += 64) {
        acc += ef_dot64(w + k, x + k);
    }
    for (; k + 16 <= n; k += 16) {
        acc += ef_dot16(w + k, x + k);
    }
    for (; k + 8 <= n; k += 8) {
        acc += ef_dot8(w + k, x + k);
    }
    for (; k < n; ++k) {
        acc += (int32_t)w[k] * x[k];
    }
    return acc;
}

/* d[i] = s[i] + off (|s + off| <= 255 fits int16). */
static void ef_widen(int16_t* restrict d, const int8_t* restrict s, int32_t n, int32_t off) {
    int32_t k = 0;
    int j;
    for (; k + 16 <= n; k += 16) {
        for (j = 0; j < 16; ++j) {
            d[k + j] = (int16_t)(s[k + j] + off);
        }
    }
    for (; k < n; ++k) {
        d[k] = (int16_t)(s[k] + off);
    }
}

/* ---- CONV_2D / FULLY_CONNECTED engine ---------------------------------------------------------------- */

/* The output pixel with flat index P (b, oy, ox): its image and the top-left of its window. */
typedef struct {
    const int8_t* img;
    int32_t y0, x0;
} ef_pixel;

static void ef_locate(const ef_conv_params* p, const int8_t* in, int32_t P, ef_pixel* px) {
    const int32_t per_image = p->out_h * p->out_w;
    const int32_t b = P / per_image;
    const int32_t r = P - b * per_image;
    const int32_t oy = r / p->out_w;
    px->img = in + b * (p->in_h * p->in_w * p->in_c);
    px->y0 = oy * p->stride_h - p->pad_h;
    px->x0 = (r - oy * p->out_w) * p->stride_w - p->pad_w;
}

/* Receptive-field elements [k0, k1) of the np pixels px[] into xv + q * kc (input + in_offset, 0 outside the
 * image), each zero-padded to a multiple of 8, which is returned. Element k is at row ky = k / (k_w * fic) and,
 * within the row, tap kx and channel c (filter order); whole rows are contiguous in the input when the conv is
 * not grouped and not dilated in x. */
static int32_t ef_gather(const ef_conv_params* p, const ef_pixel* px, int32_t np, int32_t cbase, int32_t k0,
                         int32_t k1, int16_t* xv, int32_t kc) {
    const int32_t fic = p->filter_in_c;
    const int32_t rowlen = p->k_w * fic;
    const int32_t contiguous = fic == p->in_c && p->dil_w == 1;
    const int32_t off = p->in_offset;
    const int32_t n8 = (k1 - k0 + 7) & ~7;
    const int32_t pitch = p->in_w * p->in_c;
    int32_t ky = k0 / rowlen;
    int32_t r0 = k0 - ky * rowlen;
    int32_t k = k0;
    int32_t q, j;
    while (k < k1) {
        const int32_t r1 = rowlen - r0 < k1 - k ? rowlen : r0 + (k1 - k);
        for (q = 0; q < np; ++q) {
            int16_t* d = xv + q * kc + (k - k0); /* row element r goes to d[r - r0] */
            const int32_t iy = px[q].y0 + p->dil_h * ky;
            const int32_t x0 = px[q].x0;
            if (iy < 0 || iy >= p->in_h) {
                for (j = 0; j < r1 - r0; ++j) {
                    d[j] = 0;
                }
            } else if (contiguous) {
                /* taps with 0 <= x0 + kx < in_w are the elements [lo, hi) of the row */
                const int8_t* row = px[q].img + iy * pitch;
                int32_t lo = x0 < 0 ? -x0 * fic : 0;
                int32_t hi = (p->in_w - x0 < p->k_w ? p->in_w - x0 : p->k_w) * fic;
                lo = lo < r0 ? r0 : (lo > r1 ? r1 : lo);
                hi = hi < lo ? lo : (hi > r1 ? r1 : hi);
                for (j = r0; j < lo; ++j) {
                    d[j - r0] = 0;
                }
                ef_widen(d + (lo - r0), row + (x0 * fic + lo), hi - lo, off);
                for (j = hi; j < r1; ++j) {
                    d[j - r0] = 0;
                }
            } else {
                const int8_t* row = px[q].img + iy * pitch + cbase;
                int32_t kx = r0 / fic;
                int32_t r = r0;
                int32_t c = r0 - kx * fic;
                while (r < r1) {
                    const int32_t ix = x0 + p->dil_w * kx;
                    const int32_t run = fic - c < r1 - r ? fic - c : r1 - r;
                    if (ix >= 0 && ix < p->in_w) {
                        ef_widen(d + (r - r0), row + (ix * p->in_c + c), run, off);
                    } else {
                        for (j = 0; j < run; ++j) {
                            d[r - r0 + j] = 0;
                        }
                    }
                    r += run;
                    c = 0;
                    ++kx;
                }
            }
        }
        k += r1 - r0;
        r0 = 0;
        ++ky;
    }
    for (q = 0; q < np; ++q) {
        for (j = k1 - k0; j < n8; ++j) {
            xv[q * kc + j] = 0;
        }
    }
    return n8;
}

/* Accumulator tile acc[q * ot + i] (pixel q < np, channel i < count) = bias[i] or 0. */
static void ef_tile_init(int32_t* acc, int32_t ot, int32_t np, int32_t count, const int32_t* bias) {
    int32_t q, i;
    for (q = 0; q < np; ++q, acc += ot) {
        for (i = 0; i < count; ++i) {
            acc[i] = bias != NULL ? bias[i] : 0;
        }
    }
}

/* Requantises the tile and stores channel i of pixel q at out[q * out_c + i]; mult/shift of channel i at
 * [i * mstride]. */
static void ef_tile_store(const ef_conv_params* p, const int32_t* acc, int32_t ot, int32_t np, int32_t count,
                          const int32_t* mult, const int32_t* shift, int32_t mstride, int8_t* out) {
    const int32_t pitch = p->out_c, out_offset = p->out_offset, lo = p->act_min, hi = p->act_max;
    ef_rq rq = ef_rq_prepare(mult[0], shift[0]);
    int32_t i, q;
    for (i = 0; i < count; ++i) {
        const int32_t* a = acc + i;
        int8_t* o = out + i;
        if (mstride != 0) {
            rq = ef_rq_prepare(mult[i], shift[i]);
        }
        if (rq.exact) {
            for (q = 0; q < np; ++q, a += ot, o += pitch) {
                *o = (int8_t)ef_clamp(ef_rq_apply(&rq, *a) + out_offset, lo, hi);
            }
        } else {
            for (q = 0; q < np; ++q, a += ot, o += pitch) {
                *o = (int8_t)ef_clamp(ef_mbqm(*a, rq.m, rq.e) + out_offset, lo, hi);
            }
        }
    }
}

/* ef_mbqm(x, m, e) in double-rounding mode for a right shift, -31 <= e <= -1, k = -e, and m != INT32_MIN, in seven
 * 32-bit instructions on a Cortex-M (SMLAL, then a 64-bit add and a shift) where ef_rq_apply shifts a 64-bit value by
 * a variable amount. t = x * m + 2^30 gives SRDHM's v = floor(t / 2^31); RDBPOT(v, k) = floor((v + c) / 2^k) with
 * c = 2^(k-1) - [v < 0] (INT8_REFERENCE 4), and nested floor divisions compose, so the result is
 * floor((t + c * 2^31) / 2^(31 + k)), the high word of that sum shifted right by k - 1 (|t + c * 2^31| < 2^63).
 * half = 2^(k-1), km1 = k - 1. */
static inline int32_t ef_rqn(int32_t x, int32_t m, int32_t half, int32_t km1) {
    const uint64_t t = (uint64_t)((int64_t)x * (int64_t)m + ((int64_t)1 << 30));
    const uint32_t c = (uint32_t)half - (uint32_t)(t >> 63); /* 0 <= c <= 2^30 */
    return (int32_t)(uint32_t)((t + ((uint64_t)c << 31)) >> 32) >> km1;
}

#endif /* EF_CONV_COMMON_H */
