/* edgeforge native runtime: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (int8 activations,
 * int8 or packed int4 filters), bit-exact with TFLM's reference ConvPerChannel,
 * DepthwiseConvPerChannel and FullyConnected kernels (INT8_REFERENCE sections 7.1-7.3, 9).
 *
 * How they are fast, in portable C99 (no intrinsics, no allocation, no floating point):
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
 *  - int4 filters use the same engines with a dot product that reads the packed nibbles in place.
 *
 * Integer sums are exact, so the summation order does not matter (INT8_REFERENCE 7.1). */
#include "ef_kernels.h"
#include "ef_conv_common.h"

/* Tiling, compile-time (override with -D; tests/native/test_native_tiling.py runs several). Stack: about
 * EF_NPIX * (2 * EF_KC + 4 * EF_OT) bytes for CONV/FC, 28 * EF_DWV for DEPTHWISE (MCU defaults: ~0.6 KB).
 * Cores with vector units (SSE2, NEON) gain most from 4 pixels per filter pass and long chunks; scalar MCUs
 * (Cortex-M) default to one pixel, four filter rows per pass, and a small stack. */
#ifndef EF_KC
#define EF_KC (EF_VECTOR_HOST ? 128 : 64) /* im2col chunk per pixel, int16 elements; a multiple of 8 */
#endif
#ifndef EF_NPIX
#define EF_NPIX (EF_VECTOR_HOST ? 4 : 1) /* output pixels per filter pass: 1 or 4 */
#endif
#ifndef EF_OT
#define EF_OT (EF_VECTOR_HOST ? 32 : 16) /* output channels accumulated together */
#endif
#ifndef EF_DWV
#define EF_DWV (EF_VECTOR_HOST ? 16 : 8) /* depthwise: channels per step */
#endif
#if EF_KC < 8 || EF_KC % 8 != 0 || (EF_NPIX != 1 && EF_NPIX != 4) || EF_OT < 1 || EF_DWV < 1
#error "bad EF_KC / EF_NPIX / EF_OT / EF_DWV"
#endif

static inline int8_t ef_requant_out(int32_t acc, int32_t m, int32_t e, int32_t out_offset, int32_t lo, int32_t hi) {
    return (int8_t)ef_clamp(ef_mbqm(acc, m, e) + out_offset, lo, hi);
}

#if EF_NPIX == 4
/* Four dot products of one filter row with the four pixel buffers x, x + EF_KC, ...: a[0], a[EF_OT], ... += */
static void ef_dot4_s8(const int8_t* restrict w, const int16_t* restrict x, int32_t n, int32_t* restrict a) {
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
static void ef_dot4r_s8(const int8_t* restrict w, int32_t K, const int16_t* restrict x, int32_t n,
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

/* acc[q * ot + i] += dot(filter row oc0 + i from element k0, buffer xv + q * kc of pixel q) for q < np,
 * i < count; n valid elements, n8 with the zero padding (used where the row may read past its end). */
static void ef_rows(const void* filter, int is4, int32_t K, int32_t total, int32_t oc0, int32_t count, int32_t k0,
                    const int16_t* xv, int32_t kc, int32_t ot, int32_t np, int32_t n, int32_t n8, int32_t* acc) {
    int32_t i = 0, q;
    if (np == 1 && !is4) {
        /* one pixel: four rows at a time share the loads of x */
        for (; i + 4 <= count; i += 4) {
            const int32_t start = (oc0 + i) * K + k0;
            ef_dot4r_s8((const int8_t*)filter + start, K, xv, start + 3 * K + n8 <= total ? n8 : n, acc + i);
        }
    }
    for (; i < count; ++i) {
        const int32_t start = (oc0 + i) * K + k0;
        if (is4) {
            for (q = 0; q < np; ++q) {
                acc[q * ot + i] += ef_dot_s4((const uint8_t*)filter, start, xv + q * kc, n);
            }
        } else {
            const int8_t* w = (const int8_t*)filter + start;
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
}

/* mstride: 1 for per-channel mult/shift, 0 for one per-tensor pair. */
static void ef_conv_engine(const ef_conv_params* p, const int8_t* in, const void* filter, int is4,
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
            }
            for (oc0 = g * per_group; oc0 < oc_end; oc0 += ot) {
                const int32_t count = oc_end - oc0 < ot ? oc_end - oc0 : ot;
                ef_tile_init(acc, ot, np, count, bias != NULL ? bias + oc0 : NULL);
                if (single) {
                    ef_rows(filter, is4, K, total, oc0, count, 0, xv, kc, ot, np, K, n8, acc);
                } else {
                    int32_t k0;
                    for (k0 = 0; k0 < K; k0 += kc) {
                        const int32_t n = K - k0 < kc ? K - k0 : kc;
                        const int32_t m8 = ef_gather(p, px, np, cbase, k0, k0 + n, xv, kc);
                        ef_rows(filter, is4, K, total, oc0, count, k0, xv, kc, ot, np, n, m8, acc);
                    }
                }
                ef_tile_store(p, acc, ot, np, count, mult + oc0 * mstride, shift + oc0 * mstride, mstride,
                              out + P0 * p->out_c + oc0);
            }
        }
    }
}

void ef_conv2d_s8(const ef_conv_params* p, const int8_t* in, const int8_t* filter, const int32_t* bias,
                  const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_conv_engine(p, in, filter, 0, bias, mult, shift, 1, out);
}

void ef_conv2d_s4(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                  const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_conv_engine(p, in, filter, 1, bias, mult, shift, 1, out);
}

/* FULLY_CONNECTED = 1x1 conv over a 1 x batches image of in_depth channels. */
static void ef_fc_engine(const ef_fc_params* f, const int8_t* in, const void* filter, int is4, const int32_t* bias,
                         const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_conv_params p;
    p.batches = 1;
    p.in_h = 1;
    p.in_w = f->batches;
    p.in_c = f->in_depth;
    p.out_h = 1;
    p.out_w = f->batches;
    p.out_c = f->out_depth;
    p.k_h = 1;
    p.k_w = 1;
    p.filter_in_c = f->in_depth;
    p.stride_h = 1;
    p.stride_w = 1;
    p.dil_h = 1;
    p.dil_w = 1;
    p.pad_h = 0;
    p.pad_w = 0;
    p.in_offset = f->in_offset;
    p.out_offset = f->out_offset;
    p.act_min = f->act_min;
    p.act_max = f->act_max;
    ef_conv_engine(&p, in, filter, is4, bias, mult, shift, f->per_channel ? 1 : 0, out);
}

void ef_fc_s8(const ef_fc_params* p, const int8_t* in, const int8_t* filter, const int32_t* bias,
              const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_fc_engine(p, in, filter, 0, bias, mult, shift, out);
}

void ef_fc_s4(const ef_fc_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
              const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_fc_engine(p, in, filter, 1, bias, mult, shift, out);
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

void ef_dwconv2d_s8(const ef_conv_params* p, const int8_t* in, const int8_t* filter, const int32_t* bias,
                    const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_dw_engine(p, in, filter, 0, bias, mult, shift, out);
}

void ef_dwconv2d_s4(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                    const int32_t* mult, const int32_t* shift, int8_t* out) {
    ef_dw_engine(p, in, filter, 1, bias, mult, shift, out);
}
