/* edgeforge native runtime: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (int8 activations,
 * int8 or packed int4 filters), bit-exact with TFLM's reference ConvPerChannel,
 * DepthwiseConvPerChannel and FullyConnected kernels (INT8_REFERENCE sections 7.1-7.3, 9). */
#include "ef_kernels.h"

/* Filter element readers: int8, and packed int4 (element 2i low nibble, 2i+1 high nibble). */
#define EF_W8(w, i) ((int32_t)((const int8_t*)(w))[(i)])
#define EF_W4(w, i) ef_s4_at((const uint8_t*)(w), (i))

static inline int32_t ef_s4_at(const uint8_t* w, int32_t i) {
    const int32_t b = w[i >> 1];
    const int32_t nib = (i & 1) ? (b >> 4) : (b & 0x0F);
    return (nib ^ 8) - 8;
}

static inline int8_t ef_requant_out(int32_t acc, int32_t m, int32_t e, int32_t out_offset, int32_t lo, int32_t hi) {
    return (int8_t)ef_clamp(ef_mbqm(acc, m, e) + out_offset, lo, hi);
}

#define EF_DEFINE_CONV(NAME, FTYPE, WGET)                                                                   \
    void NAME(const ef_conv_params* p, const int8_t* in, const FTYPE* filter, const int32_t* bias,        \
              const int32_t* mult, const int32_t* shift, int8_t* out) {                                    \
        const int32_t fic = p->filter_in_c;                                                                 \
        const int32_t groups = p->in_c / fic;                                                               \
        const int32_t per_group = p->out_c / groups;                                                        \
        int32_t b, oy, ox, oc, ky, kx, ic;                                                                  \
        for (b = 0; b < p->batches; ++b) {                                                                  \
            for (oy = 0; oy < p->out_h; ++oy) {                                                             \
                const int32_t y0 = oy * p->stride_h - p->pad_h;                                             \
                for (ox = 0; ox < p->out_w; ++ox) {                                                         \
                    const int32_t x0 = ox * p->stride_w - p->pad_w;                                         \
                    for (oc = 0; oc < p->out_c; ++oc) {                                                     \
                        const int32_t g = oc / per_group;                                                   \
                        int32_t acc = 0;                                                                    \
                        for (ky = 0; ky < p->k_h; ++ky) {                                                   \
                            const int32_t iy = y0 + p->dil_h * ky;                                          \
                            if (iy < 0 || iy >= p->in_h) {                                                  \
                                continue;                                                                   \
                            }                                                                               \
                            for (kx = 0; kx < p->k_w; ++kx) {                                               \
                                const int32_t ix = x0 + p->dil_w * kx;                                      \
                                const int8_t* ip;                                                           \
                                int32_t wi;                                                                 \
                                if (ix < 0 || ix >= p->in_w) {                                              \
                                    continue;                                                               \
                                }                                                                           \
                                ip = in + ((b * p->in_h + iy) * p->in_w + ix) * p->in_c + g * fic;          \
                                wi = ((oc * p->k_h + ky) * p->k_w + kx) * fic;                              \
                                for (ic = 0; ic < fic; ++ic) {                                              \
                                    acc += WGET(filter, wi + ic) * ((int32_t)ip[ic] + p->in_offset);        \
                                }                                                                           \
                            }                                                                               \
                        }                                                                                   \
                        if (bias != NULL) {                                                                 \
                            acc += bias[oc];                                                                \
                        }                                                                                   \
                        *out++ = ef_requant_out(acc, mult[oc], shift[oc], p->out_offset, p->act_min,        \
                                                p->act_max);                                                \
                    }                                                                                       \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
    }

EF_DEFINE_CONV(ef_conv2d_s8, int8_t, EF_W8)
EF_DEFINE_CONV(ef_conv2d_s4, uint8_t, EF_W4)

#define EF_DEFINE_DWCONV(NAME, FTYPE, WGET)                                                                 \
    void NAME(const ef_conv_params* p, const int8_t* in, const FTYPE* filter, const int32_t* bias,        \
              const int32_t* mult, const int32_t* shift, int8_t* out) {                                    \
        const int32_t dm = p->filter_in_c;                                                                  \
        int32_t b, oy, ox, ic, m, ky, kx;                                                                   \
        for (b = 0; b < p->batches; ++b) {                                                                  \
            for (oy = 0; oy < p->out_h; ++oy) {                                                             \
                const int32_t y0 = oy * p->stride_h - p->pad_h;                                             \
                for (ox = 0; ox < p->out_w; ++ox) {                                                         \
                    const int32_t x0 = ox * p->stride_w - p->pad_w;                                         \
                    for (ic = 0; ic < p->in_c; ++ic) {                                                      \
                        for (m = 0; m < dm; ++m) {                                                          \
                            const int32_t oc = ic * dm + m;                                                 \
                            int32_t acc = 0;                                                                \
                            for (ky = 0; ky < p->k_h; ++ky) {                                               \
                                const int32_t iy = y0 + p->dil_h * ky;                                      \
                                if (iy < 0 || iy >= p->in_h) {                                              \
                                    continue;                                                               \
                                }                                                                           \
                                for (kx = 0; kx < p->k_w; ++kx) {                                           \
                                    const int32_t ix = x0 + p->dil_w * kx;                                  \
                                    int32_t x;                                                              \
                                    if (ix < 0 || ix >= p->in_w) {                                          \
                                        continue;                                                           \
                                    }                                                                       \
                                    x = in[((b * p->in_h + iy) * p->in_w + ix) * p->in_c + ic];             \
                                    acc += WGET(filter, (ky * p->k_w + kx) * p->out_c + oc) *               \
                                           (x + p->in_offset);                                              \
                                }                                                                           \
                            }                                                                               \
                            if (bias != NULL) {                                                             \
                                acc += bias[oc];                                                            \
                            }                                                                               \
                            *out++ = ef_requant_out(acc, mult[oc], shift[oc], p->out_offset, p->act_min,    \
                                                    p->act_max);                                            \
                        }                                                                                   \
                    }                                                                                       \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
    }

EF_DEFINE_DWCONV(ef_dwconv2d_s8, int8_t, EF_W8)
EF_DEFINE_DWCONV(ef_dwconv2d_s4, uint8_t, EF_W4)

#define EF_DEFINE_FC(NAME, FTYPE, WGET)                                                                     \
    void NAME(const ef_fc_params* p, const int8_t* in, const FTYPE* filter, const int32_t* bias,          \
              const int32_t* mult, const int32_t* shift, int8_t* out) {                                    \
        int32_t b, oc, d;                                                                                   \
        for (b = 0; b < p->batches; ++b) {                                                                  \
            const int8_t* x = in + b * p->in_depth;                                                         \
            for (oc = 0; oc < p->out_depth; ++oc) {                                                         \
                const int32_t wi = oc * p->in_depth;                                                        \
                const int32_t ch = p->per_channel ? oc : 0;                                                 \
                int32_t acc = 0;                                                                            \
                for (d = 0; d < p->in_depth; ++d) {                                                         \
                    acc += WGET(filter, wi + d) * ((int32_t)x[d] + p->in_offset);                           \
                }                                                                                           \
                if (bias != NULL) {                                                                         \
                    acc += bias[oc];                                                                        \
                }                                                                                           \
                *out++ = ef_requant_out(acc, mult[ch], shift[ch], p->out_offset, p->act_min, p->act_max);   \
            }                                                                                               \
        }                                                                                                   \
    }

EF_DEFINE_FC(ef_fc_s8, int8_t, EF_W8)
EF_DEFINE_FC(ef_fc_s4, uint8_t, EF_W4)
