// edgeforge bench firmware: Arduino sketch (STM32duino, Arduino-ESP32, other Arduino cores).
// Assemble the sketch folder with `make -C firmware/bench arduino NATIVE=<build>/native MODEL_NAME=kws01`
// (it copies this file, the port, the protocol core and the native model, and writes ef_bench_config.h), then
// open <OUT>/ef_bench_arduino/ef_bench_arduino.ino in the Arduino IDE or compile it with arduino-cli.
#include "ef_bench.h"

extern "C" int ef_arduino_read(void);

void setup() { ef_bench_boot(); }

void loop() {
  int c;
  while ((c = ef_arduino_read()) >= 0) ef_bench_feed(c);
}
