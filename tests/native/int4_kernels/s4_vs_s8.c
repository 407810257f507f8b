/* Differential test of the int4 kernels (tests/native/test_native_int4_kernels.py): on random shapes, every packed
 * int4 kernel, dense and sparse (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED), gives the bytes of the int8 kernel run
 * on the same values (the int8 kernels are checked against tflite-micro elsewhere). Built for this machine
 * (-DEF_T_HOST: exact-size heap copies of the filter and input, so a sanitizer sees any read past their ends) and
 * for Cortex-M on QEMU (startup.c; the copies end where an MPU no-access region begins, so such a read faults):
 * that is where the DSP-extension paths run. Prints "cases N fails M"; exits non-zero on a mismatch. */
#include <stdint.h>
#include <string.h>
#include "ef_kernels.h"

#ifdef EF_T_HOST
#include <stdio.h>
#include <stdlib.h>
static void ef_t_puts(const char* s) { fputs(s, stdout); }
/* exact-size heap copies: ASan catches any read past the end */
static const void* guarded(const void* src, size_t n, int slot) {
    static void* held[2];
    free(held[slot]);
    held[slot] = malloc(n ? n : 1);
    memcpy(held[slot], src, n);
    return held[slot];
}
#else
void ef_t_puts(const char* s);
/* the copy ends where an MPU no-access region begins: a read past the end faults */
static uint8_t arena[2][65536] __attribute__((aligned(65536)));
#define GUARD_OFF 32768
static void mpu_setup(void) {
    volatile uint32_t* CTRL = (volatile uint32_t*)0xE000ED94u;
    volatile uint32_t* RNR = (volatile uint32_t*)0xE000ED98u;
    volatile uint32_t* RBAR = (volatile uint32_t*)0xE000ED9Cu;
    volatile uint32_t* RASR = (volatile uint32_t*)0xE000EDA0u;
    int k;
    for (k = 0; k < 2; ++k) {
        *RNR = (uint32_t)k;
        *RBAR = (uint32_t)(uintptr_t)(arena[k] + GUARD_OFF);
        *RASR = (1u << 28) | (0u << 24) | (4u << 1) | 1u; /* XN, no access, 32 bytes, enabled */
    }
    *(volatile uint32_t*)0xE000ED24u |= (1u << 16); /* MemManage fault enabled */
    *CTRL = 1u | 4u;                                /* MPU on, default map for the rest */
    __asm__ volatile("dsb\n isb" ::: "memory");
}
static const void* guarded(const void* src, size_t n, int slot) {
    uint8_t* d = arena[slot] + GUARD_OFF - n;
    memcpy(d, src, n);
    return d;
}
#endif

#ifndef EF_T_SEED
#define EF_T_SEED 0x9E3779B9u
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
#define EF_T_ITER 200
#endif
#define MAXIN 12000
#define MAXW 24000
#define MAXOUT 24000
static int8_t in[MAXIN];
static int8_t w8[MAXW], wr[MAXW];
static uint8_t w4[MAXW / 2 + 8];
static uint8_t blob[MAXW * 2 + 1024];
static int32_t bias[512], mult[512], shift[512];
static int8_t out_ref[MAXOUT], out_got[MAXOUT];
static int fails = 0, cases = 0;

static void pack4(const int8_t* v, int32_t n, uint8_t* d) {
    int32_t i;
    memset(d, 0, (size_t)((n + 1) / 2));
    for (i = 0; i < n; ++i) d[i >> 1] |= (uint8_t)((v[i] & 0xF) << (4 * (i & 1)));
}

/* sparse_rows of R rows of K values v (row-major); bits 4 or 8; returns the byte count */
static int32_t sp_encode(const int8_t* v, int32_t R, int32_t K, int bits, uint8_t* out) {
    static int32_t e[512];
    const int wide = K > 255;
    int32_t r, k, pos, nv;
    uint8_t* p;
    for (r = 0; r < R; ++r) {
        int32_t nnz = 0;
        for (k = 0; k < K; ++k) nnz += v[r * K + k] != 0;
        if (nnz == 0) e[r] = ri(0, 3) ? 0 : K;
        else if (nnz == K) e[r] = K;
        else e[r] = ri(0, 4) ? nnz : K;
    }
    p = out;
    for (r = 0; r < R; ++r) {
        if (wide) { *p++ = (uint8_t)(e[r] & 0xFF); *p++ = (uint8_t)(e[r] >> 8); }
        else *p++ = (uint8_t)e[r];
    }
    for (r = 0; r < R; ++r) {
        if (e[r] != 0 && e[r] != K) {
            memset(p, 0, (size_t)((K + 7) >> 3));
            for (k = 0; k < K; ++k) if (v[r * K + k]) p[k >> 3] |= (uint8_t)(1u << (k & 7));
            p += (K + 7) >> 3;
        }
    }
    pos = 0;
    {
        static int8_t vals[MAXW];
        for (r = 0; r < R; ++r) {
            if (e[r] == 0) continue;
            for (k = 0; k < K; ++k) {
                if (e[r] == K || v[r * K + k]) vals[pos++] = v[r * K + k];
            }
        }
        nv = pos;
        if (bits == 8) { memcpy(p, vals, (size_t)nv); p += nv; }
        else { pack4(vals, nv, p); p += (nv + 1) / 2; }
    }
    return (int32_t)(p - out);
}

static void rand_values(int8_t* v, int32_t n, int zeros) {
    int32_t i;
    for (i = 0; i < n; ++i) v[i] = (int8_t)(ri(0, 99) < zeros ? 0 : ri(-8, 7));
}

static void rand_q(int32_t n, int per_tensor) {
    int32_t i;
    for (i = 0; i < n; ++i) {
        bias[i] = ri(-20000, 20000);
        mult[i] = per_tensor && i ? mult[0] : (int32_t)(1073741824u + (rnd() % 1073741823u));
        shift[i] = per_tensor && i ? shift[0] : ri(-11, 1);
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
                ef_t_puts("\n");
            }
            return;
        }
    }
}

static int rand_conv(ef_conv_params* p, int dw) {
    int32_t groups = 1, per_group;
    p->batches = ri(1, 2);
    p->in_h = ri(1, 9);
    p->in_w = ri(1, 9);
    p->k_h = ri(1, dw ? 8 : 4);
    p->k_w = ri(1, dw ? 8 : 4);
    p->stride_h = ri(1, 3);
    p->stride_w = ri(1, 3);
    p->dil_h = ri(0, 3) ? 1 : 2;
    p->dil_w = ri(0, 3) ? 1 : 2;
    p->pad_h = ri(0, p->k_h);
    p->pad_w = ri(0, p->k_w);
    p->out_h = (p->in_h + 2 * p->pad_h - p->dil_h * (p->k_h - 1) - 1) / p->stride_h + 1;
    p->out_w = (p->in_w + 2 * p->pad_w - p->dil_w * (p->k_w - 1) - 1) / p->stride_w + 1;
    if (p->out_h < 1) p->out_h = ri(1, 2);
    if (p->out_w < 1) p->out_w = ri(1, 2);
    if (dw) {
        p->in_c = ri(1, 40);
        p->filter_in_c = ri(0, 5) ? 1 : ri(2, 3);
        p->out_c = p->in_c * p->filter_in_c;
    } else {
        p->in_c = ri(1, 40);
        if (ri(0, 4) == 0) { groups = ri(2, 3); p->in_c = groups * ri(1, 12); }
        per_group = ri(1, 24);
        p->out_c = groups * per_group;
        p->filter_in_c = p->in_c / groups;
        if (ri(0, 3) == 0) p->dil_w = 1;
    }
    p->in_offset = ri(0, 3) ? ri(-128, 127) : 0;
    p->out_offset = ri(-128, 127);
    p->act_min = ri(0, 2) ? -128 : ri(-128, 0);
    p->act_max = ri(0, 2) ? 127 : ri(0, 127);
    return p->batches * p->in_h * p->in_w * p->in_c <= MAXIN &&
           p->batches * p->out_h * p->out_w * p->out_c <= MAXOUT && p->out_c <= 512;
}

int main(void) {
    int it, zeros;
    int32_t i, n;
#ifndef EF_T_HOST
    mpu_setup();
#endif
    for (it = 0; it < EF_T_ITER; ++it) {
        ef_conv_params p;
        ef_fc_params f;
        const int32_t* bp;
        /* ---- CONV_2D */
        if (!rand_conv(&p, 0)) { --it; continue; }
        n = p.out_c * p.k_h * p.k_w * p.filter_in_c;
        if (n > MAXW) { --it; continue; }
        for (i = 0; i < p.batches * p.in_h * p.in_w * p.in_c; ++i) in[i] = (int8_t)ri(-128, 127);
        zeros = ri(0, 2) ? ri(0, 30) : ri(40, 95);
        rand_values(w8, n, zeros);
        rand_q(p.out_c, 0);
        bp = ri(0, 4) ? bias : NULL;
        pack4(w8, n, w4);
        ef_conv2d_s8(&p, in, w8, bp, mult, shift, out_ref);
        ef_conv2d_s4(&p, (const int8_t*)guarded(in, (size_t)(p.batches * p.in_h * p.in_w * p.in_c), 1),
                     (const uint8_t*)guarded(w4, (size_t)((n + 1) / 2), 0), bp, mult, shift, out_got);
        check("conv_s4", p.batches * p.out_h * p.out_w * p.out_c);
        {
            const int32_t K = p.k_h * p.k_w * p.filter_in_c;
            if (K <= 65535) {
                const int32_t bn = sp_encode(w8, p.out_c, K, 4, blob);
                ef_conv2d_s4_sparse(&p, in, (const uint8_t*)guarded(blob, (size_t)bn, 0), bp, mult, shift, out_got);
                check("conv_s4_sparse", p.batches * p.out_h * p.out_w * p.out_c);
            }
        }
        /* ---- DEPTHWISE_CONV_2D */
        if (!rand_conv(&p, 1)) { --it; continue; }
        {
            const int32_t K = p.k_h * p.k_w, OC = p.out_c;
            int32_t t, oc;
            n = K * OC;
            for (i = 0; i < p.batches * p.in_h * p.in_w * p.in_c; ++i) in[i] = (int8_t)ri(-128, 127);
            zeros = ri(0, 2) ? ri(0, 30) : ri(40, 95);
            rand_values(w8, n, zeros);
            rand_q(OC, 0);
            bp = ri(0, 4) ? bias : NULL;
            pack4(w8, n, w4);
            ef_dwconv2d_s8(&p, in, w8, bp, mult, shift, out_ref);
            ef_dwconv2d_s4(&p, (const int8_t*)guarded(in, (size_t)(p.batches * p.in_h * p.in_w * p.in_c), 1),
                           (const uint8_t*)guarded(w4, (size_t)((n + 1) / 2), 0), bp, mult, shift, out_got);
            check("dw_s4", p.batches * p.out_h * p.out_w * OC);
            if (K <= 49) {
                int32_t bn;
                for (oc = 0; oc < OC; ++oc)
                    for (t = 0; t < K; ++t) wr[oc * K + t] = w8[t * OC + oc];
                bn = sp_encode(wr, OC, K, 4, blob);
                ef_dwconv2d_s4_sparse(&p, in, (const uint8_t*)guarded(blob, (size_t)bn, 0), bp, mult, shift, out_got);
                check("dw_s4_sparse", p.batches * p.out_h * p.out_w * OC);
            }
        }
        /* ---- FULLY_CONNECTED */
        f.batches = ri(1, 6);
        f.in_depth = ri(0, 3) ? ri(1, 300) : ri(300, 1400);
        f.out_depth = ri(1, 40);
        f.per_channel = ri(0, 1);
        f.in_offset = ri(0, 3) ? ri(-128, 127) : 0;
        f.out_offset = ri(-128, 127);
        f.act_min = -128;
        f.act_max = 127;
        n = f.in_depth * f.out_depth;
        if (n > MAXW || f.batches * f.in_depth > MAXIN) { --it; continue; }
        for (i = 0; i < f.batches * f.in_depth; ++i) in[i] = (int8_t)ri(-128, 127);
        zeros = ri(0, 2) ? ri(0, 30) : ri(40, 95);
        rand_values(w8, n, zeros);
        rand_q(f.out_depth, !f.per_channel);
        bp = ri(0, 4) ? bias : NULL;
        pack4(w8, n, w4);
        ef_fc_s8(&f, in, w8, bp, mult, shift, out_ref);
        ef_fc_s4(&f, (const int8_t*)guarded(in, (size_t)(f.batches * f.in_depth), 1),
                 (const uint8_t*)guarded(w4, (size_t)((n + 1) / 2), 0), bp, mult, shift, out_got);
        check("fc_s4", f.batches * f.out_depth);
        {
            const int32_t bn = sp_encode(w8, f.out_depth, f.in_depth, 4, blob);
            ef_fc_s4_sparse(&f, in, (const uint8_t*)guarded(blob, (size_t)bn, 0), bp, mult, shift, out_got);
            check("fc_s4_sparse", f.batches * f.out_depth);
        }
    }
    ef_t_puts("cases ");
    put_int(cases);
    ef_t_puts(" fails ");
    put_int(fails);
    ef_t_puts("\n");
    return fails != 0;
}
