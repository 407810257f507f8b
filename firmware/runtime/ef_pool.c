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

void ef_avgpool_s8(const ef_pool_params* p, const int8_t* in, int8_t* out) {
    int32_t b, oy, ox, c, ky, kx;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int32_t ys, ye, xs, xe, y0, x0;
                ef_pool_window(p, oy, ox, &ys, &ye, &xs, &xe, &y0, &x0);
                for (c = 0; c < p->channels; ++c) {
                    int32_t acc = 0;
                    int32_t n = 0;
                    for (ky = ys; ky < ye; ++ky) {
                        for (kx = xs; kx < xe; ++kx) {
                            acc += in[((b * p->in_h + y0 + ky) * p->in_w + x0 + kx) * p->channels + c];
                            ++n;
                        }
                    }
                    if (n == 0) {
                        acc = 0; /* TFLM fails the op here; never reached for valid models */
                    } else {
                        acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
                    }
                    *out++ = (int8_t)ef_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void ef_maxpool_s8(const ef_pool_params* p, const int8_t* in, int8_t* out) {
    int32_t b, oy, ox, c, ky, kx;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int32_t ys, ye, xs, xe, y0, x0;
                ef_pool_window(p, oy, ox, &ys, &ye, &xs, &xe, &y0, &x0);
                for (c = 0; c < p->channels; ++c) {
                    int32_t mx = -128;
                    for (ky = ys; ky < ye; ++ky) {
                        for (kx = xs; kx < xe; ++kx) {
                            const int32_t v = in[((b * p->in_h + y0 + ky) * p->in_w + x0 + kx) * p->channels + c];
                            mx = v > mx ? v : mx;
                        }
                    }
                    *out++ = (int8_t)ef_clamp(mx, p->act_min, p->act_max);
                }
            }
        }
    }
}
