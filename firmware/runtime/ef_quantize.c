/* edgeforge native runtime: QUANTIZE (float32 -> int8, and int8 -> int8 requantize) and DEQUANTIZE
 * (int8 -> float32), bit-exact with TFLM's reference AffineQuantize / Requantize / Dequantize.
 * The only kernels of the library that use floating point (and no libm). */
#include "ef_kernels.h"

/* static_cast<int32_t>(roundf(q)) as the x86-64 host oracle computes it: ties away from zero;
 * NaN and out-of-range values give INT32_MIN (cvttss2si). No libm needed. */
static int32_t ef_round_f32_to_i32(float q) {
    int32_t t;
    float frac;
    if (!(q > -2147483648.0f && q < 2147483648.0f)) {
        return EF_INT32_MIN;
    }
    if (q >= 8388608.0f || q <= -8388608.0f) {
        return (int32_t)q; /* already an integer */
    }
    t = (int32_t)q;        /* truncation */
    frac = q - (float)t;   /* exact */
    if (frac >= 0.5f) {
        t += 1;
    } else if (frac <= -0.5f) {
        t -= 1;
    }
    return t;
}

void ef_quantize_f32_s8(const float* in, int8_t* out, int32_t size, float scale, int32_t zp) {
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t r = ef_wadd(ef_round_f32_to_i32(in[i] / scale), zp);
        out[i] = (int8_t)ef_clamp(r, -128, 127);
    }
}

void ef_requantize_s8(const int8_t* in, int8_t* out, int32_t size, int32_t in_zp, int32_t out_zp, int32_t mult,
                      int32_t shift) {
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t r = ef_mbqm((int32_t)in[i] - in_zp, mult, shift) + out_zp;
        out[i] = (int8_t)ef_clamp(r, -128, 127);
    }
}

void ef_dequantize_s8_f32(const int8_t* in, float* out, int32_t size, float scale, int32_t zp) {
    int32_t i;
    for (i = 0; i < size; ++i) {
        /* TFLM forms scale * (q - z) in double; the product is exact there, so one float rounding
         * of the float product gives the same value. */
        out[i] = scale * (float)((int32_t)in[i] - zp);
    }
}
