/* Fuzzing stand-in for a native build's ef_model.h: a 40-byte int8 input, a 40-byte output, two ops with an op
 * table (so ef-ops and ef-dump run their real paths), small enough that the fuzzer completes uploads. */
#ifndef EF_MODEL_H_
#define EF_MODEL_H_
#include <stddef.h>
#include <stdint.h>
#define EF_MODEL_NUM_INPUTS 1
#define EF_MODEL_NUM_OUTPUTS 1
#define EF_MODEL_ARENA_BYTES 96
#define EF_MODEL_NUM_OPS 2
#define EF_MODEL_ROUNDING "double"
#define EF_MODEL_SHA256 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define EF_MODEL_TARGET "fuzz"
#define EF_MODEL_EDGEFORGE_VERSION "0.0.0"
/* input 0: int8 [1, 40], real = 1.0 * (q - 0) */
#define EF_MODEL_INPUT0_BYTES 40
/* output 0: int8 [1, 40], real = 0.00390625 * (q - -128) */
#define EF_MODEL_OUTPUT0_BYTES 40
typedef struct {
  const char* name;
  uint32_t offset;
  uint32_t bytes;
} ef_op_info;
extern const ef_op_info ef_model_ops[EF_MODEL_NUM_OPS];
const uint8_t* ef_model_arena(void);
void* ef_model_input(int index);
size_t ef_model_input_bytes(int index);
const void* ef_model_output(int index);
size_t ef_model_output_bytes(int index);
int ef_model_invoke(void);
#ifndef EF_OP_BEGIN
#define EF_OP_BEGIN(index)
#endif
#ifndef EF_OP_END
#define EF_OP_END(index)
#endif
#endif
