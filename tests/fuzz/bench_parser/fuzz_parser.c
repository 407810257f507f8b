/* libFuzzer harness for the bench firmware's protocol core (firmware/bench/ef_bench.c): every input is a byte
 * stream from the host after a fresh boot. Besides ASan/UBSan's checks it asserts the wire rules the host relies
 * on (firmware/bench/README.md), aborting on any violation:
 *   - every line the firmware prints ends with CR LF and starts with "m-" or "e-", and fits a host's buffer;
 *   - every "m-ef-" line ends with "|<seq>|<crc32>" and passes its CRC-32;
 *   - exactly one "m-ready" per '%' received (plus the boot banner's), none inside a line, nothing after the last
 *     byte's answer is left half-written. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef_bench.h"
#include "ef_port.h"

#define LINE_MAX_CHARS 1024

static char line[LINE_MAX_CHARS];
static size_t line_len;
static size_t ready_lines;
static uint32_t fake_us;
extern unsigned fuzz_invoke_budget; /* fuzz_model.c */

static void fail(const char* why) {
  fprintf(stderr, "wire rule broken: %s: '%.*s'\n", why, (int)line_len, line);
  abort();
}

static void check_line(void) {
  /* line holds the text before CR LF */
  if (line_len < 2 || !((line[0] == 'm' || line[0] == 'e') && line[1] == '-')) fail("line prefix");
  if (line_len == 7 && memcmp(line, "m-ready", 7) == 0) {
    ++ready_lines;
    return;
  }
  if (line_len >= 5 && memcmp(line, "m-ef-", 5) == 0) {
    size_t bar = line_len, bar2;
    uint32_t want = 0;
    size_t i;
    while (bar > 0 && line[bar - 1] != '|') --bar;
    if (bar == 0 || line_len - bar != 8) fail("no crc32 suffix");
    for (i = bar; i < line_len; ++i) {
      char c = line[i];
      int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (v < 0) fail("crc32 suffix not lowercase hex");
      want = want << 4 | (uint32_t)v;
    }
    bar2 = bar - 1;
    while (bar2 > 0 && line[bar2 - 1] != '|') --bar2;
    if (bar2 == 0 || bar2 == bar - 1) fail("no request number");
    if (ef_bench_crc32(0u, (const uint8_t*)line, bar - 1) != want) fail("crc32 mismatch");
  }
}

void ef_port_init(void) {}
int ef_port_getc(void) { return -1; }

void ef_port_write(const char* data, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) {
    char c = data[i];
    if (c == '\n') {
      if (line_len == 0 || line[line_len - 1] != '\r') fail("LF without CR");
      --line_len;
      check_line();
      line_len = 0;
      continue;
    }
    if (line_len == LINE_MAX_CHARS) fail("line too long");
    line[line_len++] = c;
  }
}

uint32_t ef_port_time_us(void) { return fake_us += 7u; }
uint32_t ef_port_cycles(void) { return fake_us * 3u; }
const char* ef_port_timer_name(void) { return "fuzz"; }
const char* ef_port_cycles_name(void) { return "fuzz"; }
uint32_t ef_port_cpu_hz(void) { return 1000000u; }
int32_t ef_port_stack_hwm(void) { return -1; }
int32_t ef_port_stack_size(void) { return -1; }
void ef_port_reset(void) { abort(); }

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t i, commands = 0;
  line_len = 0;
  ready_lines = 0;
  fuzz_invoke_budget = 64u;
  ef_bench_boot();
  for (i = 0; i < size; ++i) {
    ef_bench_feed(data[i]);
    if (data[i] == '%') ++commands;
    if (ready_lines != commands + 1u) fail("not exactly one m-ready per command");
  }
  if (line_len != 0) fail("a half-written line");
  return 0;
}
