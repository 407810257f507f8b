/* edgeforge bench firmware: MLPerf Tiny device-under-test protocol core plus edgeforge's extensions
 * (shared/docs/BENCH_PROTOCOL.md sections 1-5, 8, 13, 14). Portable C99, no dynamic allocation; the board is
 * reached through ef_port.h. See README.md for the command and line formats.
 *
 * Compile-time configuration (all optional; the Makefile derives most of them from the build's ef_model.h):
 *   EF_BENCH_MODEL_NAME     string printed by `profile` as m-model-[...]                 default "unknown"
 *   EF_BENCH_VENDOR_NAME    string printed by `name` as m-name-dut-[...]                 default "edgeforge"
 *   EF_BENCH_OUT_SCALE      output 0 scale for m-results (real = scale * (q - zp))       default 1.0
 *   EF_BENCH_OUT_ZP         output 0 zero point                                          default 0
 *   EF_BENCH_OUT_DTYPE      EF_DT_int8 / EF_DT_uint8 / EF_DT_int16 / EF_DT_int32 / EF_DT_float32
 *                                                                                        default EF_DT_int8
 *   EF_BENCH_MAX_INPUT      db buffer bytes (MAX_DB_INPUT_SIZE)         default the model's input 0 bytes
 *   EF_BENCH_MAX_OUTPUT     bytes kept from output 0 after each inference  default the model's output 0 bytes
 *   EF_BENCH_RESULT_DECIMALS  digits after the point in m-results                         default 6
 *   EF_BENCH_DB_CHUNK       bytes per `db <hex>` line accepted (announced in ef-info)     default 256
 *   EF_BENCH_BACKEND        kernel backend reported by ef-info                          default "reference"
 *   EF_BENCH_HAVE_OP_INFO   1 when ef_model.h declares ef_model_ops[] / ef_model_arena()
 *                                                      default: 1 when ef_model.h defines EF_MODEL_SHA256
 *   EF_BENCH_ENERGY_MODE    must stay 0: only performance mode (m-lap-us timestamps) is implemented */
#ifndef EF_BENCH_H_
#define EF_BENCH_H_

#include <stddef.h>
#include <stdint.h>

/* Frameworks that cannot pass -D flags (the Arduino IDE) get the configuration from a generated header
 * (`make arduino` writes it next to the sketch). */
#if defined(__has_include)
#if __has_include("ef_bench_config.h")
#include "ef_bench_config.h"
#endif
#endif

#include "ef_model.h"

/* 2: every m-ef- line is checked ("|<seq>|<crc32>"), commands may carry "#<seq>" and then end with a checked
 * m-ef-done-[status=...] line, db lines up to EF_BENCH_DB_CHUNK bytes (announced as db_chunk= in ef-info). */
#define EF_BENCH_PROTO_VERSION 2
/* Command characters accepted per line, '%' not counted (the reference's EE_CMD_SIZE). */
#define EE_CMD_SIZE 80
/* Bytes per `db <hex>` line the firmware accepts (and announces in ef-info): a `db` line may be up to
 * EF_BENCH_LINE_MAX characters ("db ", the hex digits, " #<seq>"); other commands stay within EE_CMD_SIZE. */
#ifndef EF_BENCH_DB_CHUNK
#define EF_BENCH_DB_CHUNK 256
#endif
#if EF_BENCH_DB_CHUNK < 38
#error "EF_BENCH_DB_CHUNK must be at least 38 (an 80-character db line)"
#endif
#define EF_BENCH_LINE_MAX (3 + 2 * (EF_BENCH_DB_CHUNK) + 12)

/* Output element types (values of EF_BENCH_OUT_DTYPE). */
#define EF_DT_int8 1
#define EF_DT_uint8 2
#define EF_DT_int16 3
#define EF_DT_int32 4
#define EF_DT_float32 5
#define EF_DT_bool 2

#ifndef EF_BENCH_MODEL_NAME
#define EF_BENCH_MODEL_NAME "unknown"
#endif
#ifndef EF_BENCH_VENDOR_NAME
#define EF_BENCH_VENDOR_NAME "edgeforge"
#endif
#ifndef EF_BENCH_OUT_SCALE
#define EF_BENCH_OUT_SCALE 1.0
#endif
#ifndef EF_BENCH_OUT_ZP
#define EF_BENCH_OUT_ZP 0
#endif
#ifndef EF_BENCH_OUT_DTYPE
#define EF_BENCH_OUT_DTYPE EF_DT_int8
#endif
#ifndef EF_BENCH_MAX_INPUT
#define EF_BENCH_MAX_INPUT EF_MODEL_INPUT0_BYTES
#endif
#ifndef EF_BENCH_MAX_OUTPUT
#define EF_BENCH_MAX_OUTPUT EF_MODEL_OUTPUT0_BYTES
#endif
#ifndef EF_BENCH_RESULT_DECIMALS
#define EF_BENCH_RESULT_DECIMALS 6
#endif
#ifndef EF_BENCH_BACKEND
#define EF_BENCH_BACKEND "reference"
#endif
#ifndef EF_BENCH_HAVE_OP_INFO
#ifdef EF_MODEL_SHA256
#define EF_BENCH_HAVE_OP_INFO 1
#else
#define EF_BENCH_HAVE_OP_INFO 0
#endif
#endif
#if defined(EF_BENCH_ENERGY_MODE) && EF_BENCH_ENERGY_MODE
#error "energy mode (GPIO timestamps) is not implemented: build with EF_BENCH_ENERGY_MODE=0"
#endif

/* Identity strings: from ef_model.h when the build provides them. */
#ifndef EF_MODEL_SHA256
#define EF_MODEL_SHA256 "unknown"
#endif
#ifndef EF_MODEL_TARGET
#define EF_MODEL_TARGET "unknown"
#endif
#ifndef EF_MODEL_ROUNDING
#if defined(EF_MODEL_SINGLE_ROUNDING) && EF_MODEL_SINGLE_ROUNDING
#define EF_MODEL_ROUNDING "single"
#else
#define EF_MODEL_ROUNDING "double"
#endif
#endif
#ifndef EF_MODEL_EDGEFORGE_VERSION
#define EF_MODEL_EDGEFORGE_VERSION "unknown"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Initialises the port and prints the boot banner (m-timestamp-mode-performance, m-lap-us-<n>,
 * m-ef-info-[...], m-init-done, m-ready). */
void ef_bench_boot(void);

/* Feeds one received byte to the line parser; runs the command when it is '%'. For event-driven ports
 * (Arduino's loop()). */
void ef_bench_feed(int c);

/* ef_bench_boot(), then feeds ef_port_getc() until it returns -1; returns 0. For ports with a main(). */
int ef_bench_run(void);

/* Per-op hooks: ef_model.c calls them when compiled with -include ef_bench_hooks.h (or with
 * -DEF_OP_BEGIN(i)=ef_bench_op_begin(i) -DEF_OP_END(i)=ef_bench_op_end(i) and a prototype in scope). */
void ef_bench_op_begin(int index);
void ef_bench_op_end(int index);

/* CRC-32 (IEEE 802.3 / zlib polynomial, reflected, init and final xor 0xffffffff): crc = 0 to start,
 * chainable like zlib.crc32(data, crc). */
uint32_t ef_bench_crc32(uint32_t crc, const uint8_t* data, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* EF_BENCH_H_ */
