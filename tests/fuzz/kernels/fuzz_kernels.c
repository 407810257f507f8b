/* libFuzzer harness for the native runtime's kernels (firmware/runtime/): CONV_2D, DEPTHWISE_CONV_2D and
 * FULLY_CONNECTED (int8 and packed-int4 filters) and AVERAGE/MAX_POOL_2D on random shapes and parameters, each
 * checked element by element against a plain reference written here (the loops of TFLite Micro's reference
 * kernels, no tiling). Every tensor is its own exact-size heap block, so ASan sees any read or write outside it;
 * UBSan sees overflow and bad shifts. The requantisation primitive (ef_mbqm) is shared: it is checked against
 * TFLite Micro elsewhere (tests/native); here the question is the kernels' indexing, tiling and edges. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef_kernels.h"

/* ------------------------------------------------------------------------------ input decoding */
typedef struct {
  const uint8_t* p;
  size_t n;
  uint64_t rng;
} src_t;

static uint32_t next_byte(src_t* s) {
  if (s->n > 0) {
    --s->n;
    return *s->p++;
  }
  s->rng += 0x9E3779B97F4A7C15ull; /* splitmix64 once the fuzzer's bytes run out */
  {
    uint64_t z = s->rng;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) & 0xFFu);
  }
}

static int32_t pick(src_t* s, int32_t lo, int32_t hi) { /* lo..hi inclusive, hi - lo < 65536 */
  uint32_t v = next_byte(s) | next_byte(s) << 8;
  return lo + (int32_t)(v % (uint32_t)(hi - lo + 1));
}

static int8_t* tensor_s8(src_t* s, size_t n, int lo, int hi) {
  int8_t* t = (int8_t*)malloc(n ? n : 1);
  size_t i;
  for (i = 0; i < n; ++i) t[i] = (int8_t)pick(s, lo, hi);
  return t;
}

static int32_t* tensor_s32(src_t* s, size_t n, int32_t lo, int32_t hi) {
  int32_t* t = (int32_t*)malloc((n ? n : 1) * sizeof *t);
  size_t i;
  for (i = 0; i < n; ++i) t[i] = lo + (int32_t)((next_byte(s) | next_byte(s) << 8 | next_byte(s) << 16) %
                                                 (uint32_t)(hi - lo + 1));
  return t;
}

/* Packed int4: element 2i in the low nibble of byte i, 2i+1 in the high nibble. */
static uint8_t* pack_s4(const int8_t* v, size_t n) {
  uint8_t* t = (uint8_t*)calloc((n + 1) / 2 ? (n + 1) / 2 : 1, 1);
  size_t i;
  for (i = 0; i < n; ++i) t[i / 2] |= (uint8_t)((v[i] & 0xF) << (i % 2 ? 4 : 0));
  return t;
}

static void quant(src_t* s, int32_t n, int32_t** mult, int32_t** shift) {
  int32_t i;
  *mult = (int32_t*)malloc((size_t)n * sizeof(int32_t));
  *shift = (int32_t*)malloc((size_t)n * sizeof(int32_t));
  for (i = 0; i < n; ++i) {
    (*mult)[i] = (int32_t)(0x40000000u + ((uint32_t)(next_byte(s) | next_byte(s) << 8 | next_byte(s) << 16) << 6));
    (*shift)[i] = pick(s, -14, 1);
  }
}

static void check(const char* what, const int8_t* got, const int8_t* want, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) {
    if (got[i] != want[i]) {
      fprintf(stderr, "%s: element %zu is %d, the reference gives %d\n", what, i, got[i], want[i]);
      abort();
    }
  }
}

static int8_t requant(int32_t acc, int32_t m, int32_t e, int32_t out_offset, int32_t lo, int32_t hi) {
  return (int8_t)ef_clamp(ef_wadd(ef_mbqm(acc, m, e), out_offset), lo, hi);
}

/* Output size and leading pad of TFLite's SAME / VALID padding. */
static void spatial(src_t* s, int32_t in, int32_t k_eff, int32_t stride, int32_t* out, int32_t* pad) {
  if (next_byte(s) & 1) { /* SAME */
    int32_t total;
    *out = (in + stride - 1) / stride;
    total = (*out - 1) * stride + k_eff - in;
    *pad = total > 0 ? total / 2 : 0;
  } else {
    *out = in >= k_eff ? (in - k_eff) / stride + 1 : 0;
    *pad = 0;
  }
}

static void activation(src_t* s, int32_t* lo, int32_t* hi) {
  *lo = pick(s, -128, 0);
  *hi = pick(s, *lo, 127);
  if (next_byte(s) & 1) {
    *lo = -128;
    *hi = 127;
  }
}

/* ------------------------------------------------------------------------------ CONV_2D / DEPTHWISE */
static int fuzz_conv(src_t* s, int depthwise, int int4) {
  ef_conv_params p;
  int32_t groups, dm = 1, kh_eff, kw_eff, *bias, *mult, *shift, b, oy, ox, oc, ky, kx, ic;
  size_t n_in, n_f, n_out;
  int8_t *in, *filter, *got, *want;
  uint8_t* packed = NULL;
  memset(&p, 0, sizeof p);
  p.batches = pick(s, 1, 2);
  p.in_h = pick(s, 1, 10);
  p.in_w = pick(s, 1, 10);
  p.k_h = pick(s, 1, 5);
  p.k_w = pick(s, 1, 5);
  p.stride_h = pick(s, 1, 3);
  p.stride_w = pick(s, 1, 3);
  p.dil_h = pick(s, 1, 2);
  p.dil_w = pick(s, 1, 2);
  if (depthwise) {
    p.in_c = pick(s, 1, 24);
    dm = pick(s, 1, 3);
    p.out_c = p.in_c * dm;
    p.filter_in_c = dm;
    groups = p.in_c;
  } else {
    groups = pick(s, 1, 3);
    p.filter_in_c = pick(s, 1, 12);
    p.in_c = groups * p.filter_in_c;
    p.out_c = groups * pick(s, 1, 10);
  }
  kh_eff = (p.k_h - 1) * p.dil_h + 1;
  kw_eff = (p.k_w - 1) * p.dil_w + 1;
  spatial(s, p.in_h, kh_eff, p.stride_h, &p.out_h, &p.pad_h);
  spatial(s, p.in_w, kw_eff, p.stride_w, &p.out_w, &p.pad_w);
  if (p.out_h == 0 || p.out_w == 0) return 0;
  p.in_offset = pick(s, -127, 128);
  p.out_offset = pick(s, -128, 127);
  activation(s, &p.act_min, &p.act_max);
  n_in = (size_t)p.batches * p.in_h * p.in_w * p.in_c;
  n_f = (size_t)p.k_h * p.k_w * (depthwise ? p.out_c : p.out_c * p.filter_in_c);
  n_out = (size_t)p.batches * p.out_h * p.out_w * p.out_c;
  in = tensor_s8(s, n_in, -128, 127);
  filter = int4 ? tensor_s8(s, n_f, -8, 7) : tensor_s8(s, n_f, -127, 127);
  bias = (next_byte(s) & 3) ? tensor_s32(s, (size_t)p.out_c, -(1 << 20), 1 << 20) : NULL;
  quant(s, p.out_c, &mult, &shift);
  got = (int8_t*)malloc(n_out);
  want = (int8_t*)malloc(n_out);
  for (b = 0; b < p.batches; ++b)
    for (oy = 0; oy < p.out_h; ++oy)
      for (ox = 0; ox < p.out_w; ++ox)
        for (oc = 0; oc < p.out_c; ++oc) {
          int32_t acc = bias ? bias[oc] : 0;
          int32_t g = depthwise ? oc / dm : oc / (p.out_c / groups);
          for (ky = 0; ky < p.k_h; ++ky)
            for (kx = 0; kx < p.k_w; ++kx) {
              int32_t iy = oy * p.stride_h - p.pad_h + ky * p.dil_h, ix = ox * p.stride_w - p.pad_w + kx * p.dil_w;
              if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) continue;
              if (depthwise) {
                int32_t x = in[((b * p.in_h + iy) * p.in_w + ix) * p.in_c + g];
                acc += (x + p.in_offset) * filter[(ky * p.k_w + kx) * p.out_c + oc];
              } else {
                for (ic = 0; ic < p.filter_in_c; ++ic) {
                  int32_t x = in[((b * p.in_h + iy) * p.in_w + ix) * p.in_c + g * p.filter_in_c + ic];
                  acc += (x + p.in_offset) * filter[((oc * p.k_h + ky) * p.k_w + kx) * p.filter_in_c + ic];
                }
              }
            }
          want[((b * p.out_h + oy) * p.out_w + ox) * p.out_c + oc] =
              requant(acc, mult[oc], shift[oc], p.out_offset, p.act_min, p.act_max);
        }
  if (int4) {
    packed = pack_s4(filter, n_f);
    if (depthwise) ef_dwconv2d_s4(&p, in, packed, bias, mult, shift, got);
    else ef_conv2d_s4(&p, in, packed, bias, mult, shift, got);
  } else {
    if (depthwise) ef_dwconv2d_s8(&p, in, filter, bias, mult, shift, got);
    else ef_conv2d_s8(&p, in, filter, bias, mult, shift, got);
  }
  check(depthwise ? (int4 ? "dwconv2d_s4" : "dwconv2d_s8") : (int4 ? "conv2d_s4" : "conv2d_s8"), got, want, n_out);
  free(in), free(filter), free(bias), free(mult), free(shift), free(got), free(want), free(packed);
  return 0;
}

/* ------------------------------------------------------------------------------ FULLY_CONNECTED */
static int fuzz_fc(src_t* s, int int4) {
  ef_fc_params p;
  int32_t *bias, *mult, *shift, b, o, i;
  size_t n_f, n_out;
  int8_t *in, *filter, *got, *want;
  uint8_t* packed = NULL;
  p.batches = pick(s, 1, 3);
  p.in_depth = pick(s, 1, 300);
  p.out_depth = pick(s, 1, 40);
  p.per_channel = (int32_t)(next_byte(s) & 1);
  p.in_offset = pick(s, -127, 128);
  p.out_offset = pick(s, -128, 127);
  activation(s, &p.act_min, &p.act_max);
  n_f = (size_t)p.in_depth * p.out_depth;
  n_out = (size_t)p.batches * p.out_depth;
  in = tensor_s8(s, (size_t)p.batches * p.in_depth, -128, 127);
  filter = int4 ? tensor_s8(s, n_f, -8, 7) : tensor_s8(s, n_f, -127, 127);
  bias = (next_byte(s) & 3) ? tensor_s32(s, (size_t)p.out_depth, -(1 << 20), 1 << 20) : NULL;
  quant(s, p.per_channel ? p.out_depth : 1, &mult, &shift);
  got = (int8_t*)malloc(n_out);
  want = (int8_t*)malloc(n_out);
  for (b = 0; b < p.batches; ++b)
    for (o = 0; o < p.out_depth; ++o) {
      int32_t acc = bias ? bias[o] : 0, q = p.per_channel ? o : 0;
      for (i = 0; i < p.in_depth; ++i) acc += (in[b * p.in_depth + i] + p.in_offset) * filter[o * p.in_depth + i];
      want[b * p.out_depth + o] = requant(acc, mult[q], shift[q], p.out_offset, p.act_min, p.act_max);
    }
  if (int4) {
    packed = pack_s4(filter, n_f);
    ef_fc_s4(&p, in, packed, bias, mult, shift, got);
  } else {
    ef_fc_s8(&p, in, filter, bias, mult, shift, got);
  }
  check(int4 ? "fc_s4" : "fc_s8", got, want, n_out);
  free(in), free(filter), free(bias), free(mult), free(shift), free(got), free(want), free(packed);
  return 0;
}

/* ------------------------------------------------------------------------------ AVERAGE / MAX POOL */
static int fuzz_pool(src_t* s, int max) {
  ef_pool_params p;
  int32_t b, oy, ox, c, ky, kx;
  size_t n_out;
  int8_t *in, *got, *want;
  p.batches = pick(s, 1, 2);
  p.in_h = pick(s, 1, 12);
  p.in_w = pick(s, 1, 12);
  p.channels = pick(s, 1, 40);
  p.k_h = pick(s, 1, 6);
  p.k_w = pick(s, 1, 6);
  p.stride_h = pick(s, 1, 3);
  p.stride_w = pick(s, 1, 3);
  spatial(s, p.in_h, p.k_h, p.stride_h, &p.out_h, &p.pad_h);
  spatial(s, p.in_w, p.k_w, p.stride_w, &p.out_w, &p.pad_w);
  if (p.out_h == 0 || p.out_w == 0) return 0;
  activation(s, &p.act_min, &p.act_max);
  n_out = (size_t)p.batches * p.out_h * p.out_w * p.channels;
  in = tensor_s8(s, (size_t)p.batches * p.in_h * p.in_w * p.channels, -128, 127);
  got = (int8_t*)malloc(n_out);
  want = (int8_t*)malloc(n_out);
  for (b = 0; b < p.batches; ++b)
    for (oy = 0; oy < p.out_h; ++oy)
      for (ox = 0; ox < p.out_w; ++ox)
        for (c = 0; c < p.channels; ++c) {
          int32_t acc = max ? -128 : 0, n = 0, v;
          for (ky = 0; ky < p.k_h; ++ky)
            for (kx = 0; kx < p.k_w; ++kx) {
              int32_t iy = oy * p.stride_h - p.pad_h + ky, ix = ox * p.stride_w - p.pad_w + kx, x;
              if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) continue;
              x = in[((b * p.in_h + iy) * p.in_w + ix) * p.channels + c];
              acc = max ? (x > acc ? x : acc) : acc + x;
              ++n;
            }
          v = max ? acc : n == 0 ? 0 : acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
          want[((b * p.out_h + oy) * p.out_w + ox) * p.channels + c] = (int8_t)ef_clamp(v, p.act_min, p.act_max);
        }
  if (max) ef_maxpool_s8(&p, in, got);
  else ef_avgpool_s8(&p, in, got);
  check(max ? "maxpool_s8" : "avgpool_s8", got, want, n_out);
  free(in), free(got), free(want);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  src_t s;
  uint32_t kind;
  size_t i;
  s.p = data;
  s.n = size;
  s.rng = 0x243F6A8885A308D3ull;
  for (i = 0; i < size; ++i) s.rng = (s.rng ^ data[i]) * 0x100000001B3ull; /* the fill depends on every byte */
  kind = next_byte(&s) % 8u;
  switch (kind) {
    case 0: return fuzz_conv(&s, 0, 0);
    case 1: return fuzz_conv(&s, 0, 1);
    case 2: return fuzz_conv(&s, 1, 0);
    case 3: return fuzz_conv(&s, 1, 1);
    case 4: return fuzz_fc(&s, 0);
    case 5: return fuzz_fc(&s, 1);
    case 6: return fuzz_pool(&s, 0);
    default: return fuzz_pool(&s, 1);
  }
}
