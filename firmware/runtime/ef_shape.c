/* edgeforge native runtime: MEAN (INT8_REFERENCE 7.7), PAD / PADV2 and the strided copy used by
 * CONCATENATION; bit-exact with TFLM's reference kernels. */
#include "ef_kernels.h"

void ef_mean_s8(const ef_mean_params* p, const int8_t* in, int8_t* out) {
    int32_t st[4], od[4], rd[4];
    int32_t o0, o1, o2, o3, r0, r1, r2, r3, i;
    st[3] = 1;
    st[2] = p->shape[3];
    st[1] = p->shape[2] * st[2];
    st[0] = p->shape[1] * st[1];
    for (i = 0; i < 4; ++i) {
        od[i] = p->reduce[i] ? 1 : p->shape[i];
        rd[i] = p->reduce[i] ? p->shape[i] : 1;
    }
    for (o0 = 0; o0 < od[0]; ++o0) {
        for (o1 = 0; o1 < od[1]; ++o1) {
            for (o2 = 0; o2 < od[2]; ++o2) {
                for (o3 = 0; o3 < od[3]; ++o3) {
                    const int8_t* base = in + o0 * st[0] + o1 * st[1] + o2 * st[2] + o3;
                    int32_t sum = 0;
                    for (r0 = 0; r0 < rd[0]; ++r0) {
                        for (r1 = 0; r1 < rd[1]; ++r1) {
                            for (r2 = 0; r2 < rd[2]; ++r2) {
                                const int8_t* q = base + r0 * st[0] + r1 * st[1] + r2 * st[2];
                                for (r3 = 0; r3 < rd[3]; ++r3) {
                                    sum += q[r3];
                                }
                            }
                        }
                    }
                    *out++ = (int8_t)ef_clamp(ef_mbqm(ef_wsub(sum, p->in_zp_times_n), p->mult, p->shift) + p->out_zp,
                                              -128, 127);
                }
            }
        }
    }
}

void ef_pad_s8(const ef_pad_params* p, const int8_t* in, int8_t* out) {
    const int32_t* is = p->in_shape;
    const int32_t* os = p->out_shape;
    const int32_t* bf = p->before;
    const int pad = (int)(uint8_t)(int8_t)p->pad_value;
    int32_t b, y, x;
    for (b = 0; b < os[0]; ++b) {
        const int32_t ib = b - bf[0];
        for (y = 0; y < os[1]; ++y) {
            const int32_t iy = y - bf[1];
            for (x = 0; x < os[2]; ++x) {
                const int32_t ix = x - bf[2];
                int8_t* row = out + ((b * os[1] + y) * os[2] + x) * os[3];
                if (ib < 0 || ib >= is[0] || iy < 0 || iy >= is[1] || ix < 0 || ix >= is[2]) {
                    memset(row, pad, (size_t)os[3]);
                } else {
                    const int32_t after = os[3] - bf[3] - is[3];
                    memset(row, pad, (size_t)bf[3]);
                    memcpy(row + bf[3], in + ((ib * is[1] + iy) * is[2] + ix) * is[3], (size_t)is[3]);
                    memset(row + bf[3] + is[3], pad, (size_t)after);
                }
            }
        }
    }
}

void ef_copy_strided(uint8_t* out, const uint8_t* in, int32_t outer, int32_t chunk, int32_t out_pitch) {
    int32_t o;
    for (o = 0; o < outer; ++o) {
        memcpy(out + o * out_pitch, in + o * chunk, (size_t)chunk);
    }
}
