/* edgeforge native runtime: AVERAGE_POOL_2D and MAX_POOL_2D (int8), bit-exact with TFLM's
 * reference_integer_ops::AveragePool / MaxPool (INT8_REFERENCE section 7.4). */
#include "ef_kernels.h"

static void ef_pool_window(const ef_pool_params* p, int32_t oy, int32_t ox, int32_t* ys, int32_t* ye, int32_t* xs,
                           int32_t* xe, int32_t* y0, int32_t* x0) {
    *y0 = oy * p->stride_h - p->pad_h;
    *x0 = ox * p->stride_w - p->pad_w;
    *ys = *y0 < 0 ? -*y0 : 0;
    *ye = p->in_h - *y0 < p->k_h ? p->in_h - *y0 : p->k_h;
    *xs = *x0 < 0 ? -*x0 : 0;
    *xe = p->in_w - *x0 < p->k_w ? p->in_w - *x0 : p->k_w;
}

#define EF_POOLV 16 /* channels per step */

void ef_avgpool_s8(const ef_pool_params* p, const int8_t* in, int8_t* out) {
    const int32_t C = p->channels;
    const int32_t lo = p->act_min, hi = p->act_max;
    int32_t b, oy, ox, c0, ky, kx;
    int j;
    for (b = 0; b < p->batches; ++b) {
        const int8_t* img = in + b * p->in_h * p->in_w * C;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int32_t ys, ye, xs, xe, y0, x0, n;
                ef_pool_window(p, oy, ox, &ys, &ye, &xs, &xe, &y0, &x0);
                n = ye > ys && xe > xs ? (ye - ys) * (xe - xs) : 0;
                for (c0 = 0; c0 < C; c0 += EF_POOLV) {
                    const int32_t w = C - c0 < EF_POOLV ? C - c0 : EF_POOLV;
                    int32_t acc[EF_POOLV];
                    for (j = 0; j < EF_POOLV; ++j) {
                        acc[j] = 0;
                    }
                    for (ky = ys; ky < ye; ++ky) {
                        const int8_t* x = img + ((y0 + ky) * p->in_w + x0 + xs) * C + c0;
                        for (kx = xs; kx < xe; ++kx, x += C) {
                            if (w == EF_POOLV) {
                                for (j = 0; j < EF_POOLV; ++j) {
                                    acc[j] += x[j];
                                }
                            } else {
                                for (j = 0; j < w; ++j) {
                                    acc[j] += x[j];
                                }
                            }
                        }
                    }
                    for (j = 0; j < w; ++j) {
                        int32_t v = acc[j];
                        if (n <= 0) {
                            v = 0; /* TFLM fails the op here; never reached for valid models */
                        } else {
                            v = v > 0 ? (v + n / 2) / n : (v - n / 2) / n;
                        }
                        *out++ = (int8_t)ef_clamp(v, lo, hi);
                    }
                }
            }
        }
    }
}

void ef_maxpool_s8(const ef_pool_params* p, const int8_t* in, int8_t* out) {
    const int32_t C = p->channels;
    const int32_t lo = p->act_min, hi = p->act_max;
    int32_t b, oy, ox, c0, ky, kx;
    int j;
    for (b = 0; b < p->batches; ++b) {
        const int8_t* img = in + b * p->in_h * p->in_w * C;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int32_t ys, ye, xs, xe, y0, x0;
                ef_pool_window(p, oy, ox, &ys, &ye, &xs, &xe, &y0, &x0);
                for (c0 = 0; c0 < C; c0 += EF_POOLV) {
                    const int32_t w = C - c0 < EF_POOLV ? C - c0 : EF_POOLV;
                    int8_t mx[EF_POOLV];
                    for (j = 0; j < EF_POOLV; ++j) {
                        mx[j] = -128;
                    }
                    for (ky = ys; ky < ye; ++ky) {
                        const int8_t* x = img + ((y0 + ky) * p->in_w + x0 + xs) * C + c0;
                        for (kx = xs; kx < xe; ++kx, x += C) {
                            for (j = 0; j < w; ++j) {
                                mx[j] = x[j] > mx[j] ? x[j] : mx[j];
                            }
                        }
                    }
                    for (j = 0; j < w; ++j) {
                        *out++ = (int8_t)ef_clamp(mx[j], lo, hi);
                    }
                }
            }
        }
    }
}
