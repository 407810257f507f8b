/* The int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED kernels (firmware/runtime/ef_conv.c) against a direct
 * transcription of TFLM's reference loops (ConvPerChannel, DepthwiseConvPerChannel, FullyConnected: INT8_REFERENCE
 * 7.1-7.3, one output at a time, taps outside the image skipped, ef_mbqm for the requantisation) on random shapes
 * (tests/native/test_native_int8_kernels.py); where the weights are int4 values, the packed int4 kernels too. Built for this machine (portable C) and for Cortex-M on QEMU
 * (../int4_kernels/startup.c): on mps2-an386 (Cortex-M4) the Arm DSP-extension paths run (SXTB16 / SMLAD rows,
 * 4-channel depthwise blocks with the offset folded into the bias, ef_rq32 requantisation, SSAT clamps), on
 * mps2-an385 (Cortex-M3) the portable ones. Shapes cover odd and small channel counts (the overlapping last
 * depthwise block, fewer than 4 channels), padding larger than the kernel, strides, dilations, more taps than a
 * block holds, grouped convolutions, rows longer than a chunk, positive shifts, INT32_MIN multipliers, biases near
 * the int32 limits and partial activation ranges. Prints "cases N fails M"; exits non-zero on a mismatch. */
#include <stdint.h>
#include <string.h>
#include "ef_kernels.h"

#ifdef EF_T_HOST
#include <stdio.h>
static void ef_t_puts(const char* s) { fputs(s, stdout); }
#else
void ef_t_puts(const char* s);
#endif

#ifndef EF_T_SEED
#define EF_T_SEED 0x2545F491u
#endif
static uint32_t rs = EF_T_SEED;
static uint32_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 17;
    rs ^= rs << 5;
    return rs;
}
static int32_t ri(int32_t lo, int32_t hi) { return lo + (int32_t)(rnd() % (uint32_t)(hi - lo + 1)); }

static void put_int(int32_t v) {
    char b[16];
    int i = 15, neg = v < 0;
    uint32_t u = neg ? 0u - (uint32_t)v : (uint32_t)v;
    b[i] = 0;
    do {
        b[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (neg) b[--i] = '-';
    ef_t_puts(b + i);
}

#ifndef EF_T_ITER
#define EF_T_ITER 100
#endif
#define MAXIN 16000
#define MAXW 24000
#define MAXOUT 24000
#define MAXC 512
static int8_t in[MAXIN];
static int8_t w8[MAXW];
static int32_t bias[MAXC], mult[MAXC], shift[MAXC];
static int8_t out_ref[MAXOUT], out_got[MAXOUT];
static int fails = 0, cases = 0;

static int32_t requant(int32_t acc, int32_t oc, int32_t out_offset, int32_t lo, int32_t hi) {
    const int32_t v = ef_mbqm(acc, mult[oc], shift[oc]) + out_offset;
    return v < lo ? lo : (v > hi ? hi : v);
}

static void ref_conv(const ef_conv_params* p, const int32_t* bp) {
    const int32_t fic = p->filter_in_c, groups = p->in_c / fic, per_group = p->out_c / groups;
    int32_t b, oy, ox, oc, ky, kx, ic;
    for (b = 0; b < p->batches; ++b)
        for (oy = 0; oy < p->out_h; ++oy)
            for (ox = 0; ox < p->out_w; ++ox)
                for (oc = 0; oc < p->out_c; ++oc) {
                    const int32_t g = oc / per_group;
                    uint32_t acc = 0; /* int32 arithmetic, wrapping as the reference's sums on two's complement */
                    for (ky = 0; ky < p->k_h; ++ky)
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int32_t iy = oy * p->stride_h - p->pad_h + p->dil_h * ky;
                            const int32_t ix = ox * p->stride_w - p->pad_w + p->dil_w * kx;
                            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) continue;
                            for (ic = 0; ic < fic; ++ic) {
                                const int32_t x = in[((b * p->in_h + iy) * p->in_w + ix) * p->in_c + g * fic + ic];
                                const int32_t w = w8[((oc * p->k_h + ky) * p->k_w + kx) * fic + ic];
                                acc += (uint32_t)(w * (x + p->in_offset));
                            }
                        }
                    if (bp) acc += (uint32_t)bp[oc];
                    out_ref[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                        (int8_t)requant((int32_t)acc, oc, p->out_offset, p->act_min, p->act_max);
                }
}

static void ref_dw(const ef_conv_params* p, const int32_t* bp) {
    const int32_t dm = p->filter_in_c;
    int32_t b, oy, ox, oc, ky, kx;
    for (b = 0; b < p->batches; ++b)
        for (oy = 0; oy < p->out_h; ++oy)
            for (ox = 0; ox < p->out_w; ++ox)
                for (oc = 0; oc < p->out_c; ++oc) {
                    uint32_t acc = 0;
                    for (ky = 0; ky < p->k_h; ++ky)
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int32_t iy = oy * p->stride_h - p->pad_h + p->dil_h * ky;
                            const int32_t ix = ox * p->stride_w - p->pad_w + p->dil_w * kx;
                            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) continue;
                            acc += (uint32_t)((int32_t)w8[(ky * p->k_w + kx) * p->out_c + oc] *
                                              (in[((b * p->in_h + iy) * p->in_w + ix) * p->in_c + oc / dm] +
                                               p->in_offset));
                        }
                    if (bp) acc += (uint32_t)bp[oc];
                    out_ref[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                        (int8_t)requant((int32_t)acc, oc, p->out_offset, p->act_min, p->act_max);
                }
}

static void ref_fc(const ef_fc_params* f, const int32_t* bp) {
    int32_t b, o, i;
    for (b = 0; b < f->batches; ++b)
        for (o = 0; o < f->out_depth; ++o) {
            uint32_t acc = 0;
            for (i = 0; i < f->in_depth; ++i)
                acc += (uint32_t)((int32_t)w8[o * f->in_depth + i] * (in[b * f->in_depth + i] + f->in_offset));
            if (bp) acc += (uint32_t)bp[o];
            out_ref[b * f->out_depth + o] =
                (int8_t)requant((int32_t)acc, f->per_channel ? o : 0, f->out_offset, f->act_min, f->act_max);
        }
}

static void check(const char* what, int32_t n) {
    int32_t i;
    ++cases;
    for (i = 0; i < n; ++i) {
        if (out_ref[i] != out_got[i]) {
            ++fails;
            if (fails < 20) {
                ef_t_puts("MISMATCH ");
                ef_t_puts(what);
                ef_t_puts(" case ");
                put_int(cases);
                ef_t_puts(" at ");
                put_int(i);
                ef_t_puts(" want ");
                put_int(out_ref[i]);
                ef_t_puts(" got ");
                put_int(out_got[i]);
                ef_t_puts("\n");
            }
            return;
        }
    }
}

/* weights: full int8 range, sometimes sparse, or int4 values (returns 1: then w4 holds them packed) */
static uint8_t w4[MAXW / 2 + 1];
static int rand_weights(int32_t n) {
    const int kind = ri(0, 3);
    int32_t i;
    for (i = 0; i < n; ++i)
        w8[i] = (int8_t)(kind == 0 ? ri(-8, 7) : kind == 1 && ri(0, 1) ? 0 : ri(kind == 3 ? -128 : -127, 127));
    if (kind != 0) return 0;
    for (i = 0; i < (n + 1) / 2; ++i) w4[i] = 0;
    for (i = 0; i < n; ++i) w4[i >> 1] |= (uint8_t)((w8[i] & 0xF) << (4 * (i & 1)));
    return 1;
}

static void rand_q(int32_t n, int per_tensor) {
    const int big_bias = ri(0, 9) == 0;
    int32_t i;
    for (i = 0; i < n; ++i) {
        bias[i] = big_bias ? (int32_t)rnd() : ri(-30000, 30000);
        if (per_tensor && i) {
            mult[i] = mult[0];
            shift[i] = shift[0];
            continue;
        }
        mult[i] = (int32_t)(1073741824u + (rnd() % 1073741823u));
        /* shift >= 0: the left-shift and no-right-shift cases; down to -31, the longest right shift */
        shift[i] = ri(0, 7) ? ri(-12, -1) : ri(0, 1) ? ri(0, 3) : ri(-31, -13);
        if (ri(0, 199) == 0) mult[i] = ri(0, 1) ? 0 : (int32_t)0x80000000u; /* edge multipliers */
    }
}

static void rand_act(int32_t* lo, int32_t* hi) {
    const int k = ri(0, 3);
    *lo = k == 1 ? ri(-128, 0) : -128;
    *hi = k == 2 ? ri(0, 127) : 127;
    if (k == 3) {
        *lo = ri(-128, 10);
        *hi = ri(*lo, 127);
    }
}

static int rand_conv(ef_conv_params* p, int dw) {
    const int kws = ri(0, 5) == 0; /* the shapes of the MLPerf models' layers */
    int32_t groups = 1, per_group;
    p->batches = ri(0, 5) ? 1 : 2;
    p->in_h = ri(1, 12);
    p->in_w = ri(1, 12);
    p->k_h = ri(1, dw ? 8 : 4);
    p->k_w = ri(1, dw ? 8 : 4);
    p->stride_h = ri(0, 2) ? 1 : ri(2, 3);
    p->stride_w = ri(0, 2) ? 1 : ri(2, 3);
    p->dil_h = ri(0, 4) ? 1 : 2;
    p->dil_w = ri(0, 4) ? 1 : 2;
    p->pad_h = ri(0, p->k_h);
    p->pad_w = ri(0, p->k_w);
    if (kws) {
        p->in_h = ri(3, 25);
        p->in_w = ri(3, 5);
        p->k_h = p->k_w = dw ? 3 : 1;
        p->stride_h = p->stride_w = 1;
        p->dil_h = p->dil_w = 1;
        p->pad_h = p->pad_w = dw ? 1 : 0;
    }
    p->out_h = (p->in_h + 2 * p->pad_h - p->dil_h * (p->k_h - 1) - 1) / p->stride_h + 1;
    p->out_w = (p->in_w + 2 * p->pad_w - p->dil_w * (p->k_w - 1) - 1) / p->stride_w + 1;
    if (p->out_h < 1 || p->out_w < 1) return 0;
    if (dw) {
        const int32_t cs[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 64};
        p->in_c = kws ? 64 : cs[ri(0, 12)];
        p->filter_in_c = ri(0, 5) ? 1 : ri(2, 3);
        p->out_c = p->in_c * p->filter_in_c;
    } else {
        p->in_c = kws ? ri(1, 4) * 16 : ri(1, 40);
        if (!kws && ri(0, 5) == 0) {
            groups = ri(2, 3);
            p->in_c = groups * ri(1, 12);
        }
        per_group = kws ? 64 : ri(1, 24);
        p->out_c = groups * per_group;
        p->filter_in_c = p->in_c / groups;
    }
    p->in_offset = ri(0, 3) ? ri(-128, 127) : 0;
    p->out_offset = ri(-128, 127);
    rand_act(&p->act_min, &p->act_max);
    return p->batches * p->in_h * p->in_w * p->in_c <= MAXIN &&
           p->batches * p->out_h * p->out_w * p->out_c <= MAXOUT && p->out_c <= MAXC &&
           p->out_c * p->k_h * p->k_w * p->filter_in_c <= MAXW;
}

int main(void) {
    int it;
    int32_t i;
    for (it = 0; it < EF_T_ITER; ++it) {
        ef_conv_params p;
        ef_fc_params f;
        const int32_t* bp;
        int dw, small;
        for (dw = 0; dw < 2; ++dw) {
            while (!rand_conv(&p, dw)) {
            }
            for (i = 0; i < p.batches * p.in_h * p.in_w * p.in_c; ++i) in[i] = (int8_t)ri(-128, 127);
            small = rand_weights(p.out_c * p.k_h * p.k_w * p.filter_in_c);
            rand_q(p.out_c, 0);
            bp = ri(0, 4) ? bias : NULL;
            if (dw) {
                ref_dw(&p, bp);
                ef_dwconv2d_s8(&p, in, w8, bp, mult, shift, out_got);
            } else {
                ref_conv(&p, bp);
                ef_conv2d_s8(&p, in, w8, bp, mult, shift, out_got);
            }
            check(dw ? "dw_s8" : "conv_s8", p.batches * p.out_h * p.out_w * p.out_c);
            if (small) { /* the packed int4 kernels on the same values */
                if (dw) {
                    ef_dwconv2d_s4(&p, in, w4, bp, mult, shift, out_got);
                } else {
                    ef_conv2d_s4(&p, in, w4, bp, mult, shift, out_got);
                }
                check(dw ? "dw_s4" : "conv_s4", p.batches * p.out_h * p.out_w * p.out_c);
            }
        }
        do {
            f.batches = ri(0, 2) ? 1 : ri(2, 6);
            f.in_depth = ri(0, 3) ? ri(1, 300) : ri(300, 2000);
            f.out_depth = ri(1, 40);
        } while (f.in_depth * f.out_depth > MAXW || f.batches * f.in_depth > MAXIN);
        f.per_channel = ri(0, 1);
        f.in_offset = ri(0, 3) ? ri(-128, 127) : 0;
        f.out_offset = ri(-128, 127);
        rand_act(&f.act_min, &f.act_max);
        for (i = 0; i < f.batches * f.in_depth; ++i) in[i] = (int8_t)ri(-128, 127);
        small = rand_weights(f.in_depth * f.out_depth);
        rand_q(f.out_depth, !f.per_channel);
        bp = ri(0, 4) ? bias : NULL;
        ref_fc(&f, bp);
        ef_fc_s8(&f, in, w8, bp, mult, shift, out_got);
        check("fc_s8", f.batches * f.out_depth);
        if (small) {
            ef_fc_s4(&f, in, w4, bp, mult, shift, out_got);
            check("fc_s4", f.batches * f.out_depth);
        }
    }
    ef_t_puts("cases ");
    put_int(cases);
    ef_t_puts(" fails ");
    put_int(fails);
    ef_t_puts("\n");
    return fails != 0;
}
