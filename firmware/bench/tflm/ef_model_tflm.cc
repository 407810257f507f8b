/* edgeforge bench firmware: the ef_model.h interface (what the protocol core ef_bench.c calls) implemented
 * over TensorFlow Lite Micro, for --runtime tflm builds. Compiled with the build's tflm/ folder on the include
 * path (model_data.cc/.h, op_resolver.h and model_settings.h, unmodified) and the ef_model.h that edgeforge
 * generates for the build from its manifest (sizes, identity, op names).
 *
 * Per-op hooks without touching TFLM: TFLM's own profiler hooks are compiled out by its release flags
 * (TF_LITE_STRIP_ERROR_STRINGS), so the library stays exactly TFLM's release build and, instead, each
 * registration the resolver holds gets its invoke function wrapped (EF_TFLM_HOOKS=1, the default): the wrapper
 * numbers the ops in execution order, records where op i's output lies in the arena (for ef-dump) and calls
 * ef_bench_op_begin/ef_bench_op_end around the kernel. With EF_TFLM_HOOKS=0 the interpreter runs the
 * kernels directly (the instruction counts are then TFLM's alone). */
#include "ef_model.h"

#include <stdint.h>
#include <string.h>

#include <new>
#include <utility>

#include "model_data.h"
#include "model_settings.h"
#include "op_resolver.h"
#include "tensorflow/lite/micro/memory_helpers.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "tensorflow/lite/schema/schema_utils.h"

#ifndef EF_TFLM_HOOKS
#define EF_TFLM_HOOKS 1
#endif

extern "C" void ef_bench_op_begin(int index);
extern "C" void ef_bench_op_end(int index);

extern "C" {
ef_op_info ef_model_ops[EF_MODEL_NUM_OPS > 0 ? EF_MODEL_NUM_OPS : 1] = EF_MODEL_OPS_INIT;
}

namespace {

alignas(16) uint8_t g_arena[kTensorArenaSize];
/* Constructed in place at the first use: no static constructor or destructor (bare-metal, nothing exits). */
alignas(EdgeforgeOpResolver) uint8_t g_resolver_mem[sizeof(EdgeforgeOpResolver)];
EdgeforgeOpResolver* g_resolver = nullptr;
alignas(tflite::MicroInterpreter) uint8_t g_interp_mem[sizeof(tflite::MicroInterpreter)];
tflite::MicroInterpreter* g_interp = nullptr;
int g_ready = 0;

#if EF_TFLM_HOOKS
using InvokeFn = TfLiteStatus (*)(TfLiteContext*, TfLiteNode*);
InvokeFn g_kernel[kEdgeforgeNumOps];
int g_op = 0;

void record_output(int index, const TfLiteNode* node) {
  if (index < 0 || index >= EF_MODEL_NUM_OPS || node->outputs == nullptr || node->outputs->size < 1) return;
  const TfLiteEvalTensor* t = g_interp->GetTensor(node->outputs->data[0]);
  size_t bytes = 0;
  if (t == nullptr || t->data.raw == nullptr || tflite::TfLiteEvalTensorByteLength(t, &bytes) != kTfLiteOk) return;
  ef_model_ops[index].offset = static_cast<uint32_t>(reinterpret_cast<const uint8_t*>(t->data.raw) - g_arena);
  ef_model_ops[index].bytes = static_cast<uint32_t>(bytes);
}

template <int K>
TfLiteStatus hooked(TfLiteContext* context, TfLiteNode* node) {
  const int index = g_op++;
  ef_bench_op_begin(index);
  const TfLiteStatus status = g_kernel[K](context, node);
  record_output(index, node);
  ef_bench_op_end(index);
  return status;
}

template <typename Seq>
struct HookTable;
template <int... K>
struct HookTable<std::integer_sequence<int, K...>> {
  static constexpr InvokeFn fns[] = {hooked<K>...};
};

/* Wraps every registration the model's operators use (each kind once; at most kEdgeforgeNumOps kinds). */
void hook_kernels(const tflite::Model* model) {
  const InvokeFn* hooks = HookTable<std::make_integer_sequence<int, kEdgeforgeNumOps>>::fns;
  const TFLMRegistration* seen[kEdgeforgeNumOps] = {};
  int kinds = 0;
  const auto* codes = model->operator_codes();
  for (flatbuffers::uoffset_t i = 0; codes != nullptr && i < codes->size(); ++i) {
    const TFLMRegistration* reg = g_resolver->FindOp(tflite::GetBuiltinCode(codes->Get(i)));
    bool known = reg == nullptr;
    for (int k = 0; k < kinds && !known; ++k) known = seen[k] == reg;
    if (known || kinds == kEdgeforgeNumOps) continue;
    TFLMRegistration* mutable_reg = const_cast<TFLMRegistration*>(reg);  // the resolver's own copy
    g_kernel[kinds] = mutable_reg->invoke;
    mutable_reg->invoke = hooks[kinds];
    seen[kinds++] = reg;
  }
}
#endif

int setup(void) {
  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) return 1;
  g_resolver = new (g_resolver_mem) EdgeforgeOpResolver();
  if (EdgeforgeRegisterOps(*g_resolver) != kTfLiteOk) return 2;
#if EF_TFLM_HOOKS
  hook_kernels(model);
#endif
  g_interp = new (g_interp_mem) tflite::MicroInterpreter(model, *g_resolver, g_arena, kTensorArenaSize);
  if (g_interp->AllocateTensors() != kTfLiteOk) return 3;
  return 0;
}

}  // namespace

extern "C" {

static int ensure_ready(void) {
  if (g_ready == 0) g_ready = setup() == 0 ? 1 : -1;
  return g_ready;
}

void* ef_model_input(int index) {
  return ensure_ready() > 0 ? g_interp->input(static_cast<size_t>(index))->data.raw : nullptr;
}

size_t ef_model_input_bytes(int index) {
  return ensure_ready() > 0 ? g_interp->input(static_cast<size_t>(index))->bytes : 0;
}

const void* ef_model_output(int index) {
  return ensure_ready() > 0 ? g_interp->output(static_cast<size_t>(index))->data.raw : nullptr;
}

size_t ef_model_output_bytes(int index) {
  return ensure_ready() > 0 ? g_interp->output(static_cast<size_t>(index))->bytes : 0;
}

int ef_model_invoke(void) {
  if (ensure_ready() < 0) return -1;
#if EF_TFLM_HOOKS
  g_op = 0;
#endif
  return g_interp->Invoke() == kTfLiteOk ? 0 : -2;
}

const uint8_t* ef_model_arena(void) { return g_arena; }

size_t ef_model_arena_used_bytes(void) { return ensure_ready() > 0 ? g_interp->arena_used_bytes() : 0; }

}  // extern "C"
