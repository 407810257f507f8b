/* edgeforge bench firmware: bare-metal RISC-V port for QEMU's virt machine,
 *   qemu-system-riscv32 -M virt -bios none -nographic -icount shift=0 -kernel ef_bench_rv32.elf -serial <chardev>
 * standing in for rv32imc MCUs (ESP32-C3/C6 class): the code is compiled for rv32imc (ISA spec 2.2, whose I includes the CSR instructions).
 *
 * Serial: the NS16550A UART at 0x10000000, polled (LSR bit 0: byte received, bit 5: transmitter empty).
 * Time: the CLINT's mtime at 0x0200BFF8, 10 MHz on virt: microseconds = mtime / 10. Under -icount shift=0 every
 * instruction takes 1 ns of virtual time, so 1 us = 1000 instructions: emulated instruction counts, not an
 * ESP32-C3's timing. "Cycles" = the mcycle CSR (low 32 bits).
 * Stack: startup_rv32.c paints the stack region at reset; ef-mem reports the deepest unpainted word.
 * Reset: the virt machine's test device (0x100000), value 0x7777. */
#include <stdint.h>

#include "ef_bench.h"
#include "ef_port.h"

#define REG8(a) (*(volatile uint8_t*)(a))
#define REG32(a) (*(volatile uint32_t*)(a))
#define UART_BASE 0x10000000u
#define UART_RBR REG8(UART_BASE + 0u)
#define UART_THR REG8(UART_BASE + 0u)
#define UART_IER REG8(UART_BASE + 1u)
#define UART_FCR REG8(UART_BASE + 2u)
#define UART_LCR REG8(UART_BASE + 3u)
#define UART_LSR REG8(UART_BASE + 5u)
#define LSR_DR 0x01u
#define LSR_THRE 0x20u
#define MTIME_LO REG32(0x0200BFF8u)
#define MTIME_HI REG32(0x0200BFFCu)
#define MTIME_HZ 10000000u
#define TEST_DEVICE REG32(0x00100000u)
#define EF_STACK_PAINT 0xC5C5C5C5u

extern uint32_t _sstack, _estack;

static uint64_t mtime(void) {
  uint32_t hi, lo;
  do {
    hi = MTIME_HI;
    lo = MTIME_LO;
  } while (hi != MTIME_HI);
  return ((uint64_t)hi << 32) | lo;
}

void ef_port_init(void) {
  UART_IER = 0x00u;
  UART_LCR = 0x03u; /* 8N1 */
  UART_FCR = 0x07u; /* FIFOs on and cleared */
}

int ef_port_getc(void) {
  while ((UART_LSR & LSR_DR) == 0u) {
  }
  return (int)UART_RBR;
}

void ef_port_write(const char* data, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) {
    while ((UART_LSR & LSR_THRE) == 0u) {
    }
    UART_THR = (uint8_t)data[i];
  }
}

uint32_t ef_port_time_us(void) { return (uint32_t)(mtime() / (MTIME_HZ / 1000000u)); }

uint32_t ef_port_cycles(void) {
  uint32_t c;
  __asm volatile("csrr %0, mcycle" : "=r"(c));
  return c;
}

const char* ef_port_timer_name(void) { return "mtime"; }
const char* ef_port_cycles_name(void) { return "mcycle"; }
uint32_t ef_port_cpu_hz(void) { return 0u; /* QEMU virt has no fixed CPU clock */ }

int32_t ef_port_stack_size(void) { return (int32_t)((uintptr_t)&_estack - (uintptr_t)&_sstack); }

int32_t ef_port_stack_hwm(void) {
  const uint32_t* p = &_sstack;
  while (p < &_estack && *p == EF_STACK_PAINT) ++p;
  return (int32_t)((uintptr_t)&_estack - (uintptr_t)p);
}

void ef_port_reset(void) {
  TEST_DEVICE = 0x7777u;
  for (;;) {
  }
}

void ef_rv32_fault(const char* what) {
  static const char pre[] = "\r\ne-[E_FAULT:";
  static const char post[] = "]\r\n";
  size_t n = 0;
  while (what[n] != '\0') ++n;
  ef_port_write(pre, sizeof pre - 1u);
  ef_port_write(what, n);
  ef_port_write(post, sizeof post - 1u);
  ef_port_reset();
}

int main(void) { return ef_bench_run(); }
