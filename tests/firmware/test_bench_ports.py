"""The ports that cannot be built here (no Arduino or ESP-IDF toolchains): the Arduino sketch folder that
``make arduino`` assembles is compiled on the host with the host port in place of the Arduino one (checks the
config header and the hook include trick end to end), and both framework ports are syntax-checked against
minimal stand-in headers written below (declarations only, following the frameworks' public APIs). That catches
typos, not API drift: a real build on each framework is still needed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from benchdut import BENCH, ROOT, build_native, firmware, host_process, make_firmware

pytestmark = pytest.mark.skipif(shutil.which("cc") is None or shutil.which("make") is None,
                                reason="needs a host C compiler and make")


@pytest.fixture(scope="module")
def tiny_native(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = build_native(ROOT / "tests" / "fixtures" / "tiny_int8.tflite", tmp_path_factory.mktemp("tiny") / "b")
    return build / "native"


def test_arduino_sketch_folder_builds_and_behaves_like_the_host_image(tiny_native: Path, tmp_path: Path) -> None:
    proc = make_firmware(tiny_native, tmp_path, "arduino", MODEL_NAME="tiny01")
    assert proc.returncode == 0, proc.stderr
    sketch = tmp_path / "ef_bench_arduino"
    assert (sketch / "ef_bench_arduino.ino").is_file() and (sketch / "ef_port_arduino.cpp").is_file()
    assert not (sketch / "ef_model.c").exists()  # compiled once, through ef_model_bench.c
    exe = tmp_path / "sketch_sim"
    cc = subprocess.run(["cc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-I", str(sketch), "-o", str(exe),
                         *map(str, sorted(sketch.glob("*.c"))), str(BENCH / "ports" / "host" / "ef_port_host.c")],
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    ref = firmware(tiny_native, tmp_path / "ref", "host", MODEL_NAME="tiny01")
    data = bytes(range(0, 256, 4))
    answers = []
    for image in (exe, ref):
        with host_process(image) as (d, _):
            d.boot()
            d.upload(data)
            d.infer(2, 1)
            answers.append((d.ok("profile"), d.info(), d.raw_output(), [ln.split(",")[1] for ln in d.ok("ef-ops")[:5]],
                            d.dump(2)))
    assert answers[0] == answers[1]
    assert answers[0][0][1] == "m-model-[tiny01]"


_ARDUINO_H = """#pragma once
#include <stddef.h>
#include <stdint.h>
class HardwareSerial {
 public:
  void begin(unsigned long);
  int available();
  int read();
  size_t write(const uint8_t*, size_t);
  void flush();
  explicit operator bool() const;
};
extern HardwareSerial Serial;
unsigned long micros();
"""

_IDF = {
    "driver/uart.h": """#pragma once
#include <stddef.h>
#include <stdint.h>
#include "freertos/FreeRTOS.h"
typedef int uart_port_t;
typedef int esp_err_t;
#define UART_NUM_0 0
typedef enum { UART_DATA_8_BITS = 3 } uart_word_length_t;
typedef enum { UART_PARITY_DISABLE = 0 } uart_parity_t;
typedef enum { UART_STOP_BITS_1 = 1 } uart_stop_bits_t;
typedef enum { UART_HW_FLOWCTRL_DISABLE = 0 } uart_hw_flowcontrol_t;
typedef enum { UART_SCLK_DEFAULT = 4, UART_SCLK_APB = 4 } uart_sclk_t;
typedef struct { int baud_rate; uart_word_length_t data_bits; uart_parity_t parity; uart_stop_bits_t stop_bits;
  uart_hw_flowcontrol_t flow_ctrl; uint8_t rx_flow_ctrl_thresh; uart_sclk_t source_clk; } uart_config_t;
typedef void* QueueHandle_t;
esp_err_t uart_driver_install(uart_port_t, int, int, int, QueueHandle_t*, int);
esp_err_t uart_param_config(uart_port_t, const uart_config_t*);
int uart_read_bytes(uart_port_t, void*, uint32_t, TickType_t);
int uart_write_bytes(uart_port_t, const void*, size_t);
esp_err_t uart_wait_tx_done(uart_port_t, TickType_t);
#define ESP_ERROR_CHECK(x) ((void)(x))
""",
    "esp_idf_version.h": """#pragma once
#define ESP_IDF_VERSION_VAL(major, minor, patch) (((major) << 16) | ((minor) << 8) | (patch))
#define ESP_IDF_VERSION ESP_IDF_VERSION_VAL(5, 2, 0)
""",
    "esp_log.h": """#pragma once
typedef enum { ESP_LOG_NONE = 0 } esp_log_level_t;
void esp_log_level_set(const char*, esp_log_level_t);
""",
    "esp_system.h": "#pragma once\nvoid esp_restart(void);\n",
    "esp_timer.h": "#pragma once\n#include <stdint.h>\nint64_t esp_timer_get_time(void);\n",
    "esp_cpu.h": "#pragma once\n#include <stdint.h>\ntypedef uint32_t esp_cpu_cycle_count_t;\n"
                 "esp_cpu_cycle_count_t esp_cpu_get_cycle_count(void);\n",
    "sdkconfig.h": "#pragma once\n#define CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ 240\n",
    "freertos/FreeRTOS.h": """#pragma once
#include <stdint.h>
typedef uint32_t TickType_t;
typedef int BaseType_t;
typedef unsigned int UBaseType_t;
typedef uint8_t StackType_t;
#define portMAX_DELAY ((TickType_t)0xffffffffUL)
#define portNUM_PROCESSORS 2
""",
    "freertos/task.h": """#pragma once
#include "freertos/FreeRTOS.h"
typedef void* TaskHandle_t;
typedef void (*TaskFunction_t)(void*);
BaseType_t xTaskCreatePinnedToCore(TaskFunction_t, const char*, uint32_t, void*, UBaseType_t, TaskHandle_t*,
                                   BaseType_t);
UBaseType_t uxTaskGetStackHighWaterMark(TaskHandle_t);
void vTaskDelete(TaskHandle_t);
""",
}


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.skipif(shutil.which("c++") is None, reason="needs a host C++ compiler")
def test_arduino_port_syntax_against_stub_headers(tiny_native: Path, tmp_path: Path) -> None:
    stubs = _write(tmp_path / "stubs", {"Arduino.h": _ARDUINO_H})
    for src in ["ef_port_arduino.cpp", "ef_bench_arduino.ino"]:
        proc = subprocess.run(["c++", "-std=c++11", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-x", "c++",
                               "-I", str(stubs), "-I", str(BENCH), "-I", str(tiny_native),
                               str(BENCH / "ports" / "arduino" / src)], capture_output=True, text=True)
        assert proc.returncode == 0, (src, proc.stderr)


def test_esp32_port_syntax_against_stub_headers(tiny_native: Path, tmp_path: Path) -> None:
    stubs = _write(tmp_path / "stubs", _IDF)
    proc = subprocess.run(["cc", "-std=gnu99", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-I", str(stubs),
                           "-I", str(BENCH), "-I", str(tiny_native),
                           str(BENCH / "ports" / "esp32" / "main" / "ef_port_esp32.c")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    cmake = (BENCH / "ports" / "esp32" / "main" / "CMakeLists.txt").read_text()
    assert "ef_bench_hooks.h" in cmake and "idf_component_register" in cmake
