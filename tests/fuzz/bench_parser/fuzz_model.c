/* Fuzzing stand-in for a native build's ef_model.c (see ef_model.h): op 0 copies the input to the output,
 * op 1 clobbers the input in place, as arena reuse does. Compiled with the bench op hooks. After
 * fuzz_invoke_budget invocations it fails (E_INVOKE: that path is fuzzed too), so `infer 4000000000` ends. */
#include <string.h>

#include "ef_bench_hooks.h"
#include "ef_model.h"

static uint8_t arena[EF_MODEL_ARENA_BYTES];
const ef_op_info ef_model_ops[EF_MODEL_NUM_OPS] = {{"COPY", 48u, 40u}, {"XOR", 0u, 40u}};
const uint8_t* ef_model_arena(void) { return arena; }
void* ef_model_input(int index) { return index == 0 ? arena : NULL; }
size_t ef_model_input_bytes(int index) { return index == 0 ? 40u : 0u; }
const void* ef_model_output(int index) { return index == 0 ? arena + 48 : NULL; }
size_t ef_model_output_bytes(int index) { return index == 0 ? 40u : 0u; }
unsigned fuzz_invoke_budget;

int ef_model_invoke(void) {
  if (fuzz_invoke_budget == 0u) return -7;
  --fuzz_invoke_budget;
  EF_OP_BEGIN(0);
  memcpy(arena + 48, arena, 40);
  EF_OP_END(0);
  EF_OP_BEGIN(1);
  arena[0] ^= 0xFF;
  EF_OP_END(1);
  return 0;
}
