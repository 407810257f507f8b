/* edgeforge native runtime: element-wise int8 kernels, bit-exact with TFLM's reference kernels:
 * ADD / MUL with NumPy-style broadcasting (INT8_REFERENCE 7.5, 7.6), LOGISTIC (7.10), TANH (7.11).
 * No floating point. */
#include "ef_kernels.h"

void ef_add_s8(const ef_binary_params* p, const int8_t* in1, const int8_t* in2, int8_t* out) {
    const ef_rq r1 = ef_rq_prepare(p->in1_mult, p->in1_shift);
    const ef_rq r2 = ef_rq_prepare(p->in2_mult, p->in2_shift);
    const ef_rq ro = ef_rq_prepare(p->out_mult, p->out_shift);
    const int32_t off1 = p->in1_offset, off2 = p->in2_offset, out_offset = p->out_offset;
    const int32_t ls = p->left_shift, lo = p->act_min, hi = p->act_max;
    const int32_t n = p->shape[3], st1 = p->stride1[3], st2 = p->stride2[3];
    const int fast = r1.exact && r2.exact && ro.exact;
    int32_t i0, i1, i2, i3;
    for (i0 = 0; i0 < p->shape[0]; ++i0) {
        for (i1 = 0; i1 < p->shape[1]; ++i1) {
            for (i2 = 0; i2 < p->shape[2]; ++i2) {
                const int8_t* a = in1 + i0 * p->stride1[0] + i1 * p->stride1[1] + i2 * p->stride1[2];
                const int8_t* b = in2 + i0 * p->stride2[0] + i1 * p->stride2[1] + i2 * p->stride2[2];
                if (fast) {
                    for (i3 = 0; i3 < n; ++i3, a += st1, b += st2) {
                        /* (q - z) * 2^20 fits int32 (|q - z| <= 255), as in the reference */
                        const int32_t s1 = ef_rq_apply(&r1, ((int32_t)*a + off1) * ((int32_t)1 << ls));
                        const int32_t s2 = ef_rq_apply(&r2, ((int32_t)*b + off2) * ((int32_t)1 << ls));
                        *out++ = (int8_t)ef_clamp(ef_rq_apply(&ro, s1 + s2) + out_offset, lo, hi);
                    }
                } else {
                    for (i3 = 0; i3 < n; ++i3, a += st1, b += st2) {
                        const int32_t s1 = ef_rq_mbqm(&r1, ((int32_t)*a + off1) * ((int32_t)1 << ls));
                        const int32_t s2 = ef_rq_mbqm(&r2, ((int32_t)*b + off2) * ((int32_t)1 << ls));
                        *out++ = (int8_t)ef_clamp(ef_rq_mbqm(&ro, s1 + s2) + out_offset, lo, hi);
                    }
                }
            }
        }
    }
}

void ef_mul_s8(const ef_binary_params* p, const int8_t* in1, const int8_t* in2, int8_t* out) {
    const ef_rq ro = ef_rq_prepare(p->out_mult, p->out_shift);
    const int32_t off1 = p->in1_offset, off2 = p->in2_offset, out_offset = p->out_offset;
    const int32_t lo = p->act_min, hi = p->act_max;
    const int32_t n = p->shape[3], st1 = p->stride1[3], st2 = p->stride2[3];
    int32_t i0, i1, i2, i3;
    for (i0 = 0; i0 < p->shape[0]; ++i0) {
        for (i1 = 0; i1 < p->shape[1]; ++i1) {
            for (i2 = 0; i2 < p->shape[2]; ++i2) {
                const int8_t* a = in1 + i0 * p->stride1[0] + i1 * p->stride1[1] + i2 * p->stride1[2];
                const int8_t* b = in2 + i0 * p->stride2[0] + i1 * p->stride2[1] + i2 * p->stride2[2];
                for (i3 = 0; i3 < n; ++i3, a += st1, b += st2) {
                    const int32_t x1 = (int32_t)*a + off1;
                    const int32_t x2 = (int32_t)*b + off2;
                    *out++ = (int8_t)ef_clamp(ef_rq_mbqm(&ro, x1 * x2) + out_offset, lo, hi);
                }
            }
        }
    }
}

void ef_logistic_s8(const int8_t* in, int8_t* out, int32_t size, int32_t in_zp, int32_t mult, int32_t left_shift,
                    int32_t radius) {
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t x = (int32_t)in[i] - in_zp;
        if (x <= -radius) {
            out[i] = -128;
        } else if (x >= radius) {
            out[i] = 127;
        } else {
            const int32_t y = ef_logistic_q4(ef_mbqm(x, mult, left_shift));
            out[i] = (int8_t)ef_clamp(ef_rdbpot(y, 23) - 128, -128, 127);
        }
    }
}

void ef_tanh_s8(const int8_t* in, int8_t* out, int32_t size, int32_t in_zp, int32_t mult, int32_t left_shift,
                int32_t radius) {
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t x = (int32_t)in[i] - in_zp;
        if (x <= -radius) {
            out[i] = -128;
        } else if (x >= radius) {
            out[i] = 127;
        } else {
            const int32_t y = ef_tanh_q4(ef_mbqm(x, mult, left_shift));
            out[i] = (int8_t)ef_clamp(ef_rdbpot(y, 24), -128, 127);
        }
    }
}
