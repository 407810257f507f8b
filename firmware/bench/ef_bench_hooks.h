/* Force-included when compiling a build's ef_model.c for the bench firmware:
 *   cc ... -include firmware/bench/ef_bench_hooks.h -c ef_model.c
 * It routes ef_model.c's per-op hooks EF_OP_BEGIN(i) / EF_OP_END(i) (empty unless defined before ef_model.h is
 * read) to the bench core, which uses them for `ef-ops` (per-op timing) and `ef-dump` (capturing op K's output
 * right after op K, before the arena is reused). Outside those two commands the hooks return at once. */
#ifndef EF_BENCH_HOOKS_H_
#define EF_BENCH_HOOKS_H_

#ifdef __cplusplus
extern "C" {
#endif
void ef_bench_op_begin(int index);
void ef_bench_op_end(int index);
#ifdef __cplusplus
}
#endif

#define EF_OP_BEGIN(index) ef_bench_op_begin(index)
#define EF_OP_END(index) ef_bench_op_end(index)

#endif /* EF_BENCH_HOOKS_H_ */
