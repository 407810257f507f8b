# One-command set-up: `make demo` and `make test` create .venv and install everything they need.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := build/examples/digits
PYTEST_ARGS ?=

.PHONY: setup toolchain demo test test-all bench golden fuzz clean

$(STAMP): pyproject.toml constraints.txt
	@if ! $(PYTHON) -m venv --help >/dev/null 2>&1 || ! $(PYTHON) -c 'import ensurepip' 2>/dev/null; then \
	  echo "python venv support missing: installing python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's cross-compilers and emulators for the emulated boards (`edgeforge boards`): gcc-arm-none-eabi + newlib
# (Cortex-M images, exact sizes of native builds), qemu-system-arm (M0+/M4/M7/M33/M55 boards),
# gcc-riscv64-unknown-elf + picolibc (rv32imc images) and qemu-system-misc (qemu-system-riscv32); CMake (offline
# checks of the emitted ESP-IDF projects); g++ and libstdc++-arm-none-eabi-newlib (tests/test_firmware_compile.py
# compiles the generated PlatformIO main.cpp); clang (libFuzzer harnesses of `make fuzz` and their smoke tests).
# Installed when missing and possible (root with apt); otherwise the tests that need them skip.
TOOLCHAIN_PKGS := gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm \
  gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc g++ cmake clang
TOOLCHAIN_CMDS := arm-none-eabi-gcc qemu-system-arm riscv64-unknown-elf-gcc qemu-system-riscv32 g++ cmake clang
toolchain:
	@missing=""; for c in $(TOOLCHAIN_CMDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -z "$$missing" ] && [ -d /usr/lib/picolibc/riscv64-unknown-elf ] && \
	  echo '#include <cstdint>' | arm-none-eabi-g++ -x c++ -fsyntax-only - 2>/dev/null; then \
	  echo "$(TOOLCHAIN_CMDS), picolibc, Arm libstdc++: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && apt-get install -y -qq $(TOOLCHAIN_PKGS) >/dev/null && \
	  echo "$(TOOLCHAIN_PKGS): installed"; \
	else echo "missing:$$missing: sudo apt-get install $(TOOLCHAIN_PKGS) (tests needing them will skip)"; fi

# The whole loop on the bundled example: train, build (native runtime) for a Cortex-M4, flash the emulated
# board (QEMU when installed, the host simulation otherwise), benchmark it over serial.
demo: setup
	$(BIN)/python examples/digits/train.py --out $(DEMO)
	$(BIN)/edgeforge build $(DEMO)/model.keras --target cortex-m4 --runtime native --data $(DEMO)/calib.npz \
	  --val $(DEMO)/val.npz --out build/demo/cortex-m4
	@board=host-sim; if command -v qemu-system-arm >/dev/null 2>&1 && command -v arm-none-eabi-gcc >/dev/null 2>&1; \
	  then board=qemu-cortex-m4; fi; \
	  $(BIN)/edgeforge flash build/demo/cortex-m4 --board $$board && \
	  $(BIN)/edgeforge bench build/demo/cortex-m4 --board $$board --input $(DEMO)/val.npz --count 5 --runs 5

# The suite in its CI form: exhaustive checks run reduced (see tests/conftest.py).
test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Everything, unreduced.
test-all: setup
	EDGEFORGE_FULL_TESTS=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The native runtime against TFLite Micro on the MLPerf Tiny models, as ratios measured in one run; the emulated
# boards (instructions, arena, stack, image flash of native and TFLM builds).
bench: setup
	$(BIN)/python benchmarks/bench_native.py
	$(BIN)/python benchmarks/bench_search.py
	$(BIN)/python benchmarks/bench_boards.py

# Fuzzing: libFuzzer harnesses with ASan/UBSan (clang: make toolchain) for the bench firmware's command parser
# and the native runtime's kernels, FUZZ_SECONDS each, fixed seed, corpus kept in build/fuzz (grown across runs).
# `make test` runs a bounded smoke of each (tests/firmware/test_fuzz_smoke.py).
FUZZ_SECONDS ?= 300
fuzz: setup
	@command -v clang >/dev/null 2>&1 || { echo "clang is missing: make toolchain"; exit 1; }
	$(MAKE) -C tests/fuzz run FUZZ_SECONDS=$(FUZZ_SECONDS) OUT=$(CURDIR)/build/fuzz
	@# the .tflite reader and the CLI's input loaders, in-process (reproducers saved under build/fuzz/)
	$(BIN)/python tests/fuzz/fuzz_inputs.py --seconds $(FUZZ_SECONDS) --seed 1

# Rewrite the golden files under tests/golden/ from the current templates.
golden: setup
	EDGEFORGE_UPDATE_GOLDEN=1 $(BIN)/python -m pytest -q tests/test_emit_golden.py

clean:
	rm -rf build dist .pytest_cache
