/* edgeforge bench firmware: reset, trap vector and stack paint for the RISC-V port (QEMU virt, -bios none: the
 * hart starts at the first DRAM address, where rv32.ld puts .text.init). */
#include <stdint.h>

#define EF_STACK_PAINT 0xC5C5C5C5u

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);
int main(void);
void ef_rv32_fault(const char* what);
void ef_rv32_reset(void);

/* Global and stack pointers first (no C before them), then C. */
__attribute__((naked, section(".text.init"))) void _start(void) {
  __asm volatile(
      ".option push\n .option norelax\n la gp, __global_pointer$\n .option pop\n"
      "la sp, _estack\n"
      "j ef_rv32_reset\n");
}

/* Every trap is a fault here (the port polls; no interrupt is enabled). */
__attribute__((interrupt("machine"), aligned(4))) static void trap_handler(void) { ef_rv32_fault("trap"); }

void ef_rv32_reset(void) {
  uint32_t* src = &_sidata;
  uint32_t* dst = &_sdata;
  uint32_t* sp;
  __asm volatile("csrw mtvec, %0" ::"r"((uintptr_t)trap_handler));
  while (dst < &_edata) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss; ++dst) *dst = 0;
  /* Paint the stack below the current frame (keep 64 bytes of margin) for ef-mem's high-water mark. */
  __asm volatile("mv %0, sp" : "=r"(sp));
  for (dst = &_sstack; dst < sp - 16; ++dst) *dst = EF_STACK_PAINT;
  {
    void (**ctor)(void); /* static constructors (none in a native image) */
    for (ctor = __init_array_start; ctor < __init_array_end; ++ctor) (*ctor)();
  }
  main();
  for (;;) {
  }
}
