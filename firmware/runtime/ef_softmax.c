/* edgeforge native runtime: SOFTMAX int8 -> int8 (output 1/256, -128), bit-exact with TFLM's
 * reference_ops::Softmax (INT8_REFERENCE 7.9, gemmlowp pieces of section 8). */
#include "ef_kernels.h"

static int32_t ef_clz32(uint32_t x) {
    int32_t n = 0;
    if (x == 0) {
        return 32;
    }
    while ((x & 0x80000000u) == 0) {
        x <<= 1;
        ++n;
    }
    return n;
}

void ef_softmax_s8(const int8_t* in, int8_t* out, int32_t rows, int32_t depth, int32_t mult, int32_t left_shift,
                   int32_t diff_min) {
    int32_t r, c;
    for (r = 0; r < rows; ++r) {
        const int8_t* x = in + r * depth;
        int8_t* y = out + r * depth;
        int32_t mx = -128;
        int32_t sum = 0;
        int32_t headroom, nbou, shifted, inv, exponent;
        for (c = 0; c < depth; ++c) {
            mx = x[c] > mx ? x[c] : mx;
        }
        for (c = 0; c < depth; ++c) {
            const int32_t d = (int32_t)x[c] - mx;
            if (d >= diff_min) {
                const int32_t e = ef_exp_on_negative_values(ef_mbqm(d, mult, left_shift), 5);
                sum = ef_wadd(sum, ef_rdbpot(e, 12));
            }
        }
        headroom = ef_clz32((uint32_t)sum);
        nbou = 12 - headroom;
        shifted = (int32_t)(((uint32_t)sum << headroom) - 0x80000000u);
        inv = ef_one_over_one_plus_x(shifted);
        exponent = nbou + 31 - 8;
        for (c = 0; c < depth; ++c) {
            const int32_t d = (int32_t)x[c] - mx;
            if (d >= diff_min) {
                const int32_t e = ef_exp_on_negative_values(ef_mbqm(d, mult, left_shift), 5);
                const int32_t o = ef_rdbpot(ef_srdhm(inv, e), exponent) - 128;
                y[c] = (int8_t)ef_clamp(o, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}
