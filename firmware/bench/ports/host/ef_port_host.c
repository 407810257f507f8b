/* edgeforge bench firmware: host port ("host-sim" board). The serial link is stdin/stdout; the program exits 0
 * at the end of stdin. Writes are unbuffered (write(2) straight to fd 1), so every line the core finishes is
 * visible to the host at once; times come from clock_gettime(CLOCK_MONOTONIC). No cycle counter, no stack
 * paint (ef-mem reports -1 for both). */
#define _POSIX_C_SOURCE 199309L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ef_bench.h"
#include "ef_port.h"

static struct timespec t_start;
static unsigned char in_buf[4096];
static size_t in_len, in_pos;

void ef_port_init(void) { clock_gettime(CLOCK_MONOTONIC, &t_start); }

int ef_port_getc(void) {
  if (in_pos == in_len) {
    ssize_t n;
    do {
      n = read(0, in_buf, sizeof in_buf);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return -1;
    in_len = (size_t)n;
    in_pos = 0;
  }
  return in_buf[in_pos++];
}

void ef_port_write(const char* data, size_t n) {
  while (n > 0) {
    ssize_t k = write(1, data, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      exit(3); /* the host closed the pipe: nobody is listening any more */
    }
    data += k;
    n -= (size_t)k;
  }
}

uint32_t ef_port_time_us(void) {
  struct timespec t;
  int64_t us;
  clock_gettime(CLOCK_MONOTONIC, &t);
  us = (int64_t)(t.tv_sec - t_start.tv_sec) * 1000000 + (t.tv_nsec - t_start.tv_nsec) / 1000;
  return (uint32_t)us;
}

uint32_t ef_port_cycles(void) { return 0; }
const char* ef_port_timer_name(void) { return "clock_gettime"; }
const char* ef_port_cycles_name(void) { return "none"; }
uint32_t ef_port_cpu_hz(void) { return 0; }
int32_t ef_port_stack_hwm(void) { return -1; }
int32_t ef_port_stack_size(void) { return -1; }

void ef_port_reset(void) { exit(3); }

int main(void) { return ef_bench_run(); }
