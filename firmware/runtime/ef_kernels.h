/* edgeforge native runtime: int8 kernels, bit-exact with TensorFlow Lite Micro's reference kernels.
 *
 * Portable C99, NHWC layout, no dynamic allocation, no floating point on int8 paths
 * (only ef_quantize_f32_s8 / ef_dequantize_s8_f32 use float).
 *
 * Conventions
 *   - "mult"/"shift" are QuantizeMultiplier outputs (shift > 0 = left shift), applied with
 *     ef_mbqm() (double rounding by default; -DEF_SINGLE_ROUNDING=1 selects TFLM's single-rounding
 *     build, and the generator must then compute the multipliers with single_rounding=True too).
 *   - in_offset is -input_zero_point (0 when the code generator folded it into the bias),
 *     out_offset is output_zero_point; act_min/act_max is the fused-activation clamp range.
 *   - Packed int4 filters (the _s4 variants): two values per byte over the flattened filter,
 *     element 2i in the low nibble, sign-extended; multiplied from the packed bytes (Arm DSP extension) or
 *     unpacked a few rows / taps at a time to int8 on the stack, never as a whole.
 *   - Parameter structs are plain int32 fields so the generator can emit them as static const
 *     initialisers (flash).
 *   - CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED are blocked for speed with small fixed stack
 *     buffers; the tiling is compile-time (-DEF_NPIX, -DEF_KC, -DEF_OT, -DEF_DWV; for the sparse kernels
 *     -DEF_SNPIX, -DEF_SKC, -DEF_SOT; see ef_conv.c, ef_sparse.c), with defaults chosen per target class
 *     (vector hosts vs scalar MCUs). Every tiling gives the same bytes.
 *   - Pruned filters may come in the "sparse_rows" format (the _sparse variants): all-zero output channels
 *     and zero weights are neither stored nor multiplied; the result is the dense one, bit for bit.
 */
#ifndef EF_KERNELS_H
#define EF_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ef_fixedpoint.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EF_RUNTIME_VERSION 1

/* ---- CONV_2D / DEPTHWISE_CONV_2D ---------------------------------------------------------------- */

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t filter_in_c; /* conv: filter input depth (in_c / groups); depthwise: depth multiplier */
    int32_t stride_h, stride_w;
    int32_t dil_h, dil_w;
    int32_t pad_h, pad_w; /* padding before (top / left) */
    int32_t in_offset, out_offset;
    int32_t act_min, act_max;
} ef_conv_params;

/* filter [out_c, k_h, k_w, filter_in_c]; bias int32[out_c] or NULL; mult/shift int32[out_c]. */
void ef_conv2d_s8(const ef_conv_params* p, const int8_t* in, const int8_t* filter, const int32_t* bias,
                  const int32_t* mult, const int32_t* shift, int8_t* out);
void ef_conv2d_s4(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                  const int32_t* mult, const int32_t* shift, int8_t* out);

/* filter [1, k_h, k_w, out_c] with out_c = in_c * depth multiplier; out channel = ic * dm + m. */
void ef_dwconv2d_s8(const ef_conv_params* p, const int8_t* in, const int8_t* filter, const int32_t* bias,
                    const int32_t* mult, const int32_t* shift, int8_t* out);
void ef_dwconv2d_s4(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                    const int32_t* mult, const int32_t* shift, int8_t* out);

/* ---- FULLY_CONNECTED --------------------------------------------------------------------------- */

typedef struct {
    int32_t batches, in_depth, out_depth;
    int32_t per_channel; /* 0: mult[0]/shift[0] for every output */
    int32_t in_offset, out_offset;
    int32_t act_min, act_max;
} ef_fc_params;

/* filter [out_depth, in_depth]; input read as [batches, in_depth]. */
void ef_fc_s8(const ef_fc_params* p, const int8_t* in, const int8_t* filter, const int32_t* bias,
              const int32_t* mult, const int32_t* shift, int8_t* out);
void ef_fc_s4(const ef_fc_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
              const int32_t* mult, const int32_t* shift, int8_t* out);

/* ---- sparse filters (pruned weights): CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED -------------------------
 *
 * The same operations, bit-exact with the dense kernels, on a filter stored in the "sparse_rows" format (one
 * uint8_t array; layout in ef_sparse.c and edgeforge/native/sparse.py): per output channel a header byte (two when
 * the row is longer than 255), a bitmap of its nonzero elements and its nonzero values (int8, or int4 packed);
 * all-zero channels store nothing and cost no MACs, barely pruned ones stay dense rows. Zero weights are skipped. */
void ef_conv2d_s8_sparse(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                         const int32_t* mult, const int32_t* shift, int8_t* out);
void ef_conv2d_s4_sparse(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                         const int32_t* mult, const int32_t* shift, int8_t* out);
void ef_dwconv2d_s8_sparse(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                           const int32_t* mult, const int32_t* shift, int8_t* out);
void ef_dwconv2d_s4_sparse(const ef_conv_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                           const int32_t* mult, const int32_t* shift, int8_t* out);
void ef_fc_s8_sparse(const ef_fc_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                     const int32_t* mult, const int32_t* shift, int8_t* out);
void ef_fc_s4_sparse(const ef_fc_params* p, const int8_t* in, const uint8_t* filter, const int32_t* bias,
                     const int32_t* mult, const int32_t* shift, int8_t* out);

/* ---- AVERAGE_POOL_2D / MAX_POOL_2D ------------------------------------------------------------- */

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, channels;
    int32_t out_h, out_w;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;
    int32_t act_min, act_max;
} ef_pool_params;

void ef_avgpool_s8(const ef_pool_params* p, const int8_t* in, int8_t* out);
void ef_maxpool_s8(const ef_pool_params* p, const int8_t* in, int8_t* out);

/* ---- ADD / MUL with broadcasting (4-D, innermost last) -------------------------------------------- */

typedef struct {
    int32_t shape[4];   /* output shape */
    int32_t stride1[4]; /* element strides of input 1 (0 on broadcast dims) */
    int32_t stride2[4]; /* element strides of input 2 (0 on broadcast dims) */
    int32_t in1_offset, in2_offset, out_offset;
    int32_t left_shift;          /* ADD only: 20 for int8 */
    int32_t in1_mult, in1_shift; /* ADD only */
    int32_t in2_mult, in2_shift; /* ADD only */
    int32_t out_mult, out_shift;
    int32_t act_min, act_max;
} ef_binary_params;

void ef_add_s8(const ef_binary_params* p, const int8_t* in1, const int8_t* in2, int8_t* out);
void ef_mul_s8(const ef_binary_params* p, const int8_t* in1, const int8_t* in2, int8_t* out);

/* ---- SOFTMAX / LOGISTIC / TANH ----------------------------------------------------------------- */

/* Softmax over the last dimension; output scale 1/256, zero point -128. */
void ef_softmax_s8(const int8_t* in, int8_t* out, int32_t rows, int32_t depth, int32_t mult, int32_t left_shift,
                   int32_t diff_min);
/* Output scale 1/256, zero point -128. */
void ef_logistic_s8(const int8_t* in, int8_t* out, int32_t size, int32_t in_zp, int32_t mult, int32_t left_shift,
                    int32_t radius);
/* Output scale 1/128, zero point 0. */
void ef_tanh_s8(const int8_t* in, int8_t* out, int32_t size, int32_t in_zp, int32_t mult, int32_t left_shift,
                int32_t radius);

/* ---- MEAN ---------------------------------------------------------------------------------------- */

typedef struct {
    int32_t shape[4];  /* input shape, extended to 4-D */
    int32_t reduce[4]; /* 1 where the axis is reduced */
    int32_t in_zp_times_n; /* input zero point * number of reduced elements */
    int32_t mult, shift;   /* already divided by n (TFLM's folded 1/n) */
    int32_t out_zp;
} ef_mean_params;

void ef_mean_s8(const ef_mean_params* p, const int8_t* in, int8_t* out);

/* ---- PAD / PADV2 ----------------------------------------------------------------------------------- */

typedef struct {
    int32_t in_shape[4];
    int32_t out_shape[4];
    int32_t before[4];
    int32_t pad_value;
} ef_pad_params;

void ef_pad_s8(const ef_pad_params* p, const int8_t* in, int8_t* out);

/* ---- CONCATENATION (byte copy) --------------------------------------------------------------------- */

/* Copies `outer` chunks of `chunk` bytes from in to out, with out row pitch `out_pitch` bytes. */
void ef_copy_strided(uint8_t* out, const uint8_t* in, int32_t outer, int32_t chunk, int32_t out_pitch);

/* ---- QUANTIZE / DEQUANTIZE --------------------------------------------------------------------- */

void ef_quantize_f32_s8(const float* in, int8_t* out, int32_t size, float scale, int32_t zp);
void ef_requantize_s8(const int8_t* in, int8_t* out, int32_t size, int32_t in_zp, int32_t out_zp, int32_t mult,
                      int32_t shift);
void ef_dequantize_s8_f32(const int8_t* in, float* out, int32_t size, float scale, int32_t zp);

#ifdef __cplusplus
}
#endif

#endif /* EF_KERNELS_H */
