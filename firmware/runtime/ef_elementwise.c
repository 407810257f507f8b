/* edgeforge native runtime: element-wise int8 kernels, bit-exact with TFLM's reference kernels:
 * ADD / MUL with NumPy-style broadcasting (INT8_REFERENCE 7.5, 7.6), LOGISTIC (7.10), TANH (7.11).
 * No floating point. */
#include "ef_kernels.h"

void ef_add_s8(const ef_binary_params* p, const int8_t* in1, const int8_t* in2, int8_t* out) {
    int32_t i0, i1, i2, i3;
    for (i0 = 0; i0 < p->shape[0]; ++i0) {
        for (i1 = 0; i1 < p->shape[1]; ++i1) {
            for (i2 = 0; i2 < p->shape[2]; ++i2) {
                const int8_t* a = in1 + i0 * p->stride1[0] + i1 * p->stride1[1] + i2 * p->stride1[2];
                const int8_t* b = in2 + i0 * p->stride2[0] + i1 * p->stride2[1] + i2 * p->stride2[2];
                for (i3 = 0; i3 < p->shape[3]; ++i3) {
                    const int32_t x1 = ((int32_t)a[i3 * p->stride1[3]] + p->in1_offset) * ((int32_t)1 << p->left_shift);
                    const int32_t x2 = ((int32_t)b[i3 * p->stride2[3]] + p->in2_offset) * ((int32_t)1 << p->left_shift);
                    const int32_t s1 = ef_mbqm(x1, p->in1_mult, p->in1_shift);
                    const int32_t s2 = ef_mbqm(x2, p->in2_mult, p->in2_shift);
                    const int32_t r = ef_mbqm(s1 + s2, p->out_mult, p->out_shift) + p->out_offset;
                    *out++ = (int8_t)ef_clamp(r, p->act_min, p->act_max);
                }
            }
        }
    }
}

void ef_mul_s8(const ef_binary_params* p, const int8_t* in1, const int8_t* in2, int8_t* out) {
    int32_t i0, i1, i2, i3;
    for (i0 = 0; i0 < p->shape[0]; ++i0) {
        for (i1 = 0; i1 < p->shape[1]; ++i1) {
            for (i2 = 0; i2 < p->shape[2]; ++i2) {
                const int8_t* a = in1 + i0 * p->stride1[0] + i1 * p->stride1[1] + i2 * p->stride1[2];
                const int8_t* b = in2 + i0 * p->stride2[0] + i1 * p->stride2[1] + i2 * p->stride2[2];
                for (i3 = 0; i3 < p->shape[3]; ++i3) {
                    const int32_t x1 = (int32_t)a[i3 * p->stride1[3]] + p->in1_offset;
                    const int32_t x2 = (int32_t)b[i3 * p->stride2[3]] + p->in2_offset;
                    const int32_t r = ef_mbqm(x1 * x2, p->out_mult, p->out_shift) + p->out_offset;
                    *out++ = (int8_t)ef_clamp(r, p->act_min, p->act_max);
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
