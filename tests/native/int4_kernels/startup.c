/* Bare-metal start-up for s4_vs_s8.c on QEMU's MPS2 boards (mps2-an386: Cortex-M4F, mps2-an385: Cortex-M3): vector
 * table, .data / .bss, FPU on; output and exit status through Arm semihosting (qemu-system-arm -semihosting). */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

static int ef_t_semihost(int op, const void* arg) {
    register int r0 __asm__("r0") = op;
    register const void* r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void ef_t_puts(const char* s) {
    ef_t_semihost(0x04, s); /* SYS_WRITE0 */
}

static void ef_t_exit(int code) {
    const uint32_t args[2] = {0x20026u, (uint32_t)code}; /* ADP_Stopped_ApplicationExit, status */
    ef_t_semihost(0x20, args);                            /* SYS_EXIT_EXTENDED */
    ef_t_semihost(0x18, (const void*)0x20026u);           /* SYS_EXIT (no status) where the former is missing */
    for (;;) {
    }
}

void Reset_Handler(void) {
    uint32_t* s = &_sidata;
    uint32_t* d = &_sdata;
#if defined(__ARM_FP)
    *(volatile uint32_t*)0xE000ED88u |= (0xFu << 20); /* CPACR: CP10/CP11 full access */
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
    while (d < &_edata) {
        *d++ = *s++;
    }
    for (d = &_sbss; d < &_ebss; ++d) {
        *d = 0;
    }
    ef_t_exit(main());
}

static void ef_t_fault(void) {
    ef_t_puts("FAULT\n");
    ef_t_exit(3);
}

__attribute__((section(".isr_vector"), used)) static const uintptr_t ef_t_vectors[16] = {
    (uintptr_t)&_estack,      (uintptr_t)Reset_Handler, (uintptr_t)ef_t_fault, (uintptr_t)ef_t_fault,
    (uintptr_t)ef_t_fault,    (uintptr_t)ef_t_fault,    (uintptr_t)ef_t_fault, 0,
    0,                        0,                        0,                     (uintptr_t)ef_t_fault,
    (uintptr_t)ef_t_fault,    0,                        (uintptr_t)ef_t_fault, (uintptr_t)ef_t_fault};
