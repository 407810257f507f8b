/* edgeforge bench firmware: ESP-IDF port (ESP32, ESP32-S2/S3, C3...; ESP-IDF 4.4 or 5.x).
 *
 * Serial: UART0 (the USB-UART bridge / console pins) through the ESP-IDF UART driver at EF_ESP32_BAUD
 * (115200 8N1); blocking reads; every write waits until the bytes have left the TX FIFO, so no UART interrupt
 * work is pending inside a timed window. ESP-IDF logging is switched off (sdkconfig.defaults + at run time).
 * Time: esp_timer_get_time() (64-bit microseconds since boot). Cycles: esp_cpu_get_cycle_count() (5.x) or
 * cpu_hal_get_cycle_count() (4.4): the CPU's CCOUNT register, per core.
 * Stack: the bench runs in its own FreeRTOS task of EF_ESP32_STACK_BYTES, pinned to the second core on dual-core
 * chips; ef-mem reports FreeRTOS's painted-stack high-water mark of that task.
 * Reset: esp_restart(). Not compiled here (no ESP-IDF toolchain in this repository's CI). */
#include <stdint.h>

#include "driver/uart.h"
#include "esp_idf_version.h"
#include "esp_log.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "sdkconfig.h"
#if ESP_IDF_VERSION >= ESP_IDF_VERSION_VAL(5, 0, 0)
#include "esp_cpu.h"
#else
#include "hal/cpu_hal.h"
#endif

#include "ef_bench.h"
#include "ef_port.h"

#ifndef EF_ESP32_UART
#define EF_ESP32_UART UART_NUM_0
#endif
#ifndef EF_ESP32_BAUD
#define EF_ESP32_BAUD 115200
#endif
#ifndef EF_ESP32_STACK_BYTES
#define EF_ESP32_STACK_BYTES 16384
#endif
#ifndef EF_ESP32_PRIORITY
#define EF_ESP32_PRIORITY 5
#endif

static int64_t t_start;

void ef_port_init(void) {
  uart_config_t cfg = {
      .baud_rate = EF_ESP32_BAUD,
      .data_bits = UART_DATA_8_BITS,
      .parity = UART_PARITY_DISABLE,
      .stop_bits = UART_STOP_BITS_1,
      .flow_ctrl = UART_HW_FLOWCTRL_DISABLE,
#if ESP_IDF_VERSION >= ESP_IDF_VERSION_VAL(5, 0, 0)
      .source_clk = UART_SCLK_DEFAULT,
#else
      .source_clk = UART_SCLK_APB,
#endif
  };
  esp_log_level_set("*", ESP_LOG_NONE);
  /* RX ring buffer of 2 KiB (> the 128-byte hardware FIFO, as the driver requires); no TX ring buffer, so
   * uart_write_bytes() returns only once the bytes are in the FIFO. */
  ESP_ERROR_CHECK(uart_driver_install(EF_ESP32_UART, 2048, 0, 0, NULL, 0));
  ESP_ERROR_CHECK(uart_param_config(EF_ESP32_UART, &cfg));
  t_start = esp_timer_get_time();
}

int ef_port_getc(void) {
  uint8_t c;
  for (;;) {
    if (uart_read_bytes(EF_ESP32_UART, &c, 1, portMAX_DELAY) == 1) return c;
  }
}

void ef_port_write(const char* data, size_t n) {
  uart_write_bytes(EF_ESP32_UART, data, n);
  uart_wait_tx_done(EF_ESP32_UART, portMAX_DELAY);
}

uint32_t ef_port_time_us(void) { return (uint32_t)(esp_timer_get_time() - t_start); }

uint32_t ef_port_cycles(void) {
#if ESP_IDF_VERSION >= ESP_IDF_VERSION_VAL(5, 0, 0)
  return (uint32_t)esp_cpu_get_cycle_count();
#else
  return (uint32_t)cpu_hal_get_cycle_count();
#endif
}

const char* ef_port_timer_name(void) { return "esp_timer"; }
const char* ef_port_cycles_name(void) { return "ccount"; }

uint32_t ef_port_cpu_hz(void) {
#ifdef CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ
  return (uint32_t)CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ * 1000000u;
#else
  return 0;
#endif
}

int32_t ef_port_stack_size(void) { return EF_ESP32_STACK_BYTES; }

int32_t ef_port_stack_hwm(void) {
  /* ESP-IDF's StackType_t is one byte, so the "words" FreeRTOS reports are bytes; multiply anyway. */
  UBaseType_t free_min = uxTaskGetStackHighWaterMark(NULL) * sizeof(StackType_t);
  return (int32_t)(EF_ESP32_STACK_BYTES - (int32_t)free_min);
}

void ef_port_reset(void) { esp_restart(); }

static void bench_task(void* arg) {
  (void)arg;
  ef_bench_run(); /* never returns: a UART does not end */
  vTaskDelete(NULL);
}

void app_main(void) {
#if portNUM_PROCESSORS > 1
  const BaseType_t core = 1; /* APP CPU: away from the system tasks on PRO CPU */
#else
  const BaseType_t core = 0;
#endif
  xTaskCreatePinnedToCore(bench_task, "ef_bench", EF_ESP32_STACK_BYTES, NULL, EF_ESP32_PRIORITY, NULL, core);
}
