// edgeforge bench firmware: Arduino port (STM32duino first; Arduino-ESP32 and other cores where noted).
//
// Serial: EF_ARDUINO_SERIAL (default Serial: the ST-LINK virtual COM port on Nucleo boards) at EF_ARDUINO_BAUD
// (115200 8N1); every write is followed by flush(), so no TX interrupt work is left pending inside a timed
// window. Time: micros(). Cycles: the DWT cycle counter (DWT->CYCCNT) on Cortex-M3/M4/M7/M33 cores whose CMSIS
// headers define DWT (STM32duino), ESP.getCycleCount() on Arduino-ESP32, else 0.
// Stack: on STM32duino the linker script's reserved stack (_estack - _Min_Stack_Size .. _estack) is painted in
// ef_port_init(); ef-mem reports the deepest unpainted byte (a stack that grew past the reserved size reads as
// the full size). Elsewhere -1.
// Reset: NVIC_SystemReset() (CMSIS) or ESP.restart().
// Not compiled in this repository (no Arduino toolchains here).
#include <Arduino.h>

extern "C" {
#include "ef_bench.h"
#include "ef_port.h"
}

#ifndef EF_ARDUINO_SERIAL
#define EF_ARDUINO_SERIAL Serial
#endif
#ifndef EF_ARDUINO_BAUD
#define EF_ARDUINO_BAUD 115200
#endif

#if defined(ARDUINO_ARCH_STM32) && defined(DWT) && defined(CoreDebug) && defined(DWT_CTRL_CYCCNTENA_Msk)
#define EF_HAVE_DWT 1
#else
#define EF_HAVE_DWT 0
#endif

#if defined(ARDUINO_ARCH_STM32)
#define EF_HAVE_STACK_PAINT 1
#define EF_STACK_PAINT 0xC5C5C5C5u
extern "C" {
extern uint32_t _estack;          // top of RAM (initial SP), from STM32duino's ldscript.ld
extern uint32_t _Min_Stack_Size;  // an absolute symbol: its address is the reserved stack size
}
static uint32_t* stack_bottom(void) { return (uint32_t*)((uintptr_t)&_estack - (uintptr_t)&_Min_Stack_Size); }
#else
#define EF_HAVE_STACK_PAINT 0
#endif

static uint32_t t_start;

extern "C" void ef_port_init(void) {
  EF_ARDUINO_SERIAL.begin(EF_ARDUINO_BAUD);
  while (!EF_ARDUINO_SERIAL) {
    // boards with native USB: wait until the host opens the port, so it sees the boot banner
  }
#if EF_HAVE_DWT
  CoreDebug->DEMCR |= CoreDebug_DEMCR_TRCENA_Msk;
  DWT->CYCCNT = 0;
  DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk;
#endif
#if EF_HAVE_STACK_PAINT
  {
    uint32_t here;
    uint32_t* p = stack_bottom();
    uint32_t* limit = &here - 32;  // keep 128 bytes below the current frame untouched
    while (p < limit) *p++ = EF_STACK_PAINT;
  }
#endif
  t_start = micros();
}

// Non-blocking read for loop(): a byte or -1.
extern "C" int ef_arduino_read(void) { return EF_ARDUINO_SERIAL.available() > 0 ? EF_ARDUINO_SERIAL.read() : -1; }

extern "C" int ef_port_getc(void) {
  int c;
  while ((c = ef_arduino_read()) < 0) {
  }
  return c;
}

extern "C" void ef_port_write(const char* data, size_t n) {
  EF_ARDUINO_SERIAL.write(reinterpret_cast<const uint8_t*>(data), n);
  EF_ARDUINO_SERIAL.flush();
}

extern "C" uint32_t ef_port_time_us(void) { return (uint32_t)(micros() - t_start); }

extern "C" uint32_t ef_port_cycles(void) {
#if EF_HAVE_DWT
  return DWT->CYCCNT;
#elif defined(ARDUINO_ARCH_ESP32)
  return ESP.getCycleCount();
#else
  return 0;
#endif
}

extern "C" const char* ef_port_timer_name(void) { return "micros"; }

extern "C" const char* ef_port_cycles_name(void) {
#if EF_HAVE_DWT
  return "dwt_cyccnt";
#elif defined(ARDUINO_ARCH_ESP32)
  return "ccount";
#else
  return "none";
#endif
}

extern "C" uint32_t ef_port_cpu_hz(void) {
#if defined(ARDUINO_ARCH_STM32)
  return SystemCoreClock;
#elif defined(ARDUINO_ARCH_ESP32)
  return (uint32_t)ESP.getCpuFreqMHz() * 1000000u;
#elif defined(F_CPU)
  return (uint32_t)F_CPU;
#else
  return 0;
#endif
}

extern "C" int32_t ef_port_stack_size(void) {
#if EF_HAVE_STACK_PAINT
  return (int32_t)(uintptr_t)&_Min_Stack_Size;
#else
  return -1;
#endif
}

extern "C" int32_t ef_port_stack_hwm(void) {
#if EF_HAVE_STACK_PAINT
  const uint32_t* p = stack_bottom();
  while (p < &_estack && *p == EF_STACK_PAINT) ++p;
  return (int32_t)((uintptr_t)&_estack - (uintptr_t)p);
#else
  return -1;
#endif
}

extern "C" void ef_port_reset(void) {
#if defined(ARDUINO_ARCH_ESP32)
  ESP.restart();
#elif defined(__ARM_ARCH)
  NVIC_SystemReset();
#endif
  for (;;) {
  }
}
