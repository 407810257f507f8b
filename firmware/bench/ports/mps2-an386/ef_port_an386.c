/* edgeforge bench firmware: bare-metal Cortex-M4 port for the Arm MPS2+ AN386 FPGA image as emulated by
 *   qemu-system-arm -M mps2-an386 -nographic -icount shift=0 -kernel ef_bench_an386.elf -serial <chardev>
 * The same port serves the other Arm boards with a CMSDK APB UART and SysTick (edgeforge/device/boards.py passes
 * EF_UART0_BASE, EF_AN386_SYSCLK_HZ and the core flags): MPS2 AN385 (ARMv6-M code), AN500 (Cortex-M7),
 * AN505 (Cortex-M33) and MPS3 AN547 (Cortex-M55).
 *
 * Serial: CMSDK APB UART0 at 0x40004000 (DATA, STATE, CTRL, BAUDDIV), polled, TX and RX enabled, BAUDDIV for
 * 115200 baud from the 25 MHz sysclk (QEMU does not model the baud rate; a real AN386 would).
 * Time: SysTick on the processor clock (CLKSOURCE = 1; QEMU feeds it the AN386's 25 MHz sysclk), counting down
 * from 0xFFFFFF; its wrap interrupt extends it to 64 bits. microseconds = ticks / (SYSCLK_HZ / 1e6); "cycles" =
 * the low 32 bits of the SysTick tick count, i.e. processor-clock cycles of the modelled 25 MHz clock. Under
 * QEMU's -icount shift=0 every instruction takes 1 ns of virtual time, so 1 us = 1000 instructions and one
 * SysTick cycle = 40 instructions: the figures are emulated instruction counts, not a real M4's timing.
 * The DWT cycle counter is not used: QEMU does not model it.
 * Stack: startup_an386.c paints the stack region (linker symbols _sstack.._estack) at reset; ef-mem reports the
 * deepest unpainted word. */
#include <stdint.h>

#include "ef_bench.h"
#include "ef_port.h"

#ifndef EF_AN386_SYSCLK_HZ
#define EF_AN386_SYSCLK_HZ 25000000u
#endif
#ifndef EF_UART_PCLK_HZ
#define EF_UART_PCLK_HZ EF_AN386_SYSCLK_HZ
#endif
#ifndef EF_AN386_BAUD
#define EF_AN386_BAUD 115200u
#endif
#define EF_STACK_PAINT 0xC5C5C5C5u

#define REG32(a) (*(volatile uint32_t*)(a))

/* CMSDK APB UART0 */
/* UART0's base: 0x40004000 on the MPS2 AN385/AN386/AN500 images (the default); other CMSDK boards pass theirs
 * (AN505: 0x40200000, AN547: 0x49303000). */
#ifndef EF_UART0_BASE
#define EF_UART0_BASE 0x40004000u
#endif
#define UART0_BASE EF_UART0_BASE
#define UART_DATA REG32(UART0_BASE + 0x000u)
#define UART_STATE REG32(UART0_BASE + 0x004u)
#define UART_CTRL REG32(UART0_BASE + 0x008u)
#define UART_INTSTATUS REG32(UART0_BASE + 0x00Cu)
#define UART_BAUDDIV REG32(UART0_BASE + 0x010u)
#define UART_STATE_TXFULL 0x1u
#define UART_STATE_RXFULL 0x2u
#define UART_STATE_OVERRUNS 0xCu
#define UART_CTRL_TXEN 0x1u
#define UART_CTRL_RXEN 0x2u

/* SysTick and SCB */
#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_AIRCR REG32(0xE000ED0Cu)
#define SCB_SHPR3 REG32(0xE000ED20u)
#define ICSR_PENDSTSET (1u << 26)
#define SYST_RELOAD 0xFFFFFFu

extern uint32_t _sstack, _estack;

static volatile uint32_t systick_wraps;

void SysTick_Handler(void) { ++systick_wraps; }

static uint64_t ticks(void) {
  uint32_t w1, w2, v;
  do {
    w1 = systick_wraps;
    v = SYST_CVR;
    w2 = systick_wraps;
  } while (w1 != w2);
  /* Wrapped, but the exception not taken yet: the count already restarted from the top. */
  if ((SCB_ICSR & ICSR_PENDSTSET) != 0u && v > (SYST_RELOAD >> 1)) ++w1;
  return (uint64_t)w1 * ((uint64_t)SYST_RELOAD + 1u) + (uint64_t)(SYST_RELOAD - v);
}

void ef_port_init(void) {
  UART_CTRL = 0;
  UART_BAUDDIV = EF_UART_PCLK_HZ / EF_AN386_BAUD;
  UART_STATE = UART_STATE_OVERRUNS; /* write 1 to clear the overrun flags */
  UART_INTSTATUS = 0xFu;
  UART_CTRL = UART_CTRL_TXEN | UART_CTRL_RXEN;

  systick_wraps = 0;
  SCB_SHPR3 = (SCB_SHPR3 & 0x00FFFFFFu) | 0x00000000u; /* SysTick at the highest priority */
  SYST_CSR = 0;
  SYST_RVR = SYST_RELOAD;
  SYST_CVR = 0; /* any write clears it */
  SYST_CSR = 0x7u; /* ENABLE | TICKINT | CLKSOURCE = processor clock */
}

int ef_port_getc(void) {
  uint32_t s;
  while (((s = UART_STATE) & UART_STATE_RXFULL) == 0u) {
  }
  if (s & UART_STATE_OVERRUNS) UART_STATE = UART_STATE_OVERRUNS;
  return (int)(UART_DATA & 0xFFu);
}

void ef_port_write(const char* data, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) {
    while (UART_STATE & UART_STATE_TXFULL) {
    }
    UART_DATA = (uint8_t)data[i];
  }
}

uint32_t ef_port_time_us(void) { return (uint32_t)(ticks() / (EF_AN386_SYSCLK_HZ / 1000000u)); }
uint32_t ef_port_cycles(void) { return (uint32_t)ticks(); }
const char* ef_port_timer_name(void) { return "systick"; }
const char* ef_port_cycles_name(void) { return "systick"; }
uint32_t ef_port_cpu_hz(void) { return EF_AN386_SYSCLK_HZ; }

int32_t ef_port_stack_size(void) { return (int32_t)((uintptr_t)&_estack - (uintptr_t)&_sstack); }

int32_t ef_port_stack_hwm(void) {
  const uint32_t* p = &_sstack;
  while (p < &_estack && *p == EF_STACK_PAINT) ++p;
  return (int32_t)((uintptr_t)&_estack - (uintptr_t)p);
}

void ef_port_reset(void) {
  __asm volatile("dsb" ::: "memory");
  SCB_AIRCR = 0x05FA0004u; /* VECTKEY | SYSRESETREQ */
  __asm volatile("dsb" ::: "memory");
  for (;;) {
  }
}

/* Called by the fault handlers: one error line (the host sees it, then the new boot banner), then a reset. */
void ef_an386_fault(const char* what) {
  static const char pre[] = "\r\ne-[E_FAULT:";
  static const char post[] = "]\r\n";
  const char* s = what;
  size_t n = 0;
  while (s[n] != '\0') ++n;
  ef_port_write(pre, sizeof pre - 1u);
  ef_port_write(what, n);
  ef_port_write(post, sizeof post - 1u);
  ef_port_reset();
}

int main(void) { return ef_bench_run(); }
