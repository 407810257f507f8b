"""The ESP-IDF emitter (edgeforge/emit/espidf.py), the ESP32-family profiles and esptool flashing, checked offline:
ESP-IDF itself is not installed here, so each emitted file is checked against what can be checked without it -
sdkconfig.defaults against ESP-IDF's Kconfig symbols (tests/fixtures/espidf/kconfig_symbols.txt: the symbols of
v5.1, v5.3 and master), idf_component.yml against the IDF Component Manager's manifest keys, the CMake files by
configuring them with CMake against a stand-in for $IDF_PATH/tools/cmake/project.cmake that checks every
idf_component_register() call (sources and include folders exist, requirements are real ESP-IDF components of
that version, tests/fixtures/espidf/components.txt), the harnesses with the host compiler against the real TFLite
Micro headers (../shared/third_party/tflite-micro) and minimal stand-ins for the ESP-IDF headers they include,
and the flash command line with esptool's own parser."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from conftest import FIXTURES, ROOT, assert_clean_error

TFLM = ROOT.parent / "shared" / "third_party" / "tflite-micro"
ESPIDF_FIXTURES = FIXTURES / "espidf"
CHIPS = {"esp32": (240, "DIO", "40M", "4MB", "0x1000"), "esp32s3": (240, "QIO", "80M", "8MB", "0x0"),
         "esp32c3": (160, "QIO", "80M", "4MB", "0x0"), "esp32c6": (160, "QIO", "80M", "8MB", "0x0")}


def _build(cli, model: Path, target: str, out: Path, *extra: object) -> dict:
    r = cli("build", model, "--target", target, "--out", out, *extra)
    assert r.code == 0, r.err
    return json.loads((out / "manifest.json").read_text())


def _kconfig() -> set[str]:
    lines = (ESPIDF_FIXTURES / "kconfig_symbols.txt").read_text().splitlines()
    return {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


def _sdkconfig(path: Path) -> dict[str, str]:
    pairs = {}
    for ln in path.read_text().splitlines():
        if ln.strip() and not ln.startswith("#"):
            key, _, value = ln.partition("=")
            pairs[key] = value
    return pairs


@pytest.mark.parametrize("chip", sorted(CHIPS))
def test_sdkconfig_sets_only_real_kconfig_symbols_from_the_profile(cli, tiny: Path, tmp_path: Path, chip: str) -> None:
    manifest = _build(cli, tiny, chip, tmp_path / chip)
    cfg = _sdkconfig(tmp_path / chip / "espidf" / "sdkconfig.defaults")
    known = _kconfig()
    assert all(k.startswith("CONFIG_") for k in cfg)
    assert sorted(k for k in cfg if k[len("CONFIG_"):] not in known) == []
    mhz, mode, freq, size, boot = CHIPS[chip]
    assert cfg["CONFIG_IDF_TARGET"] == f'"{chip}"'
    assert cfg[f"CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_{mhz}"] == "y"
    assert cfg[f"CONFIG_ESPTOOLPY_FLASHMODE_{mode}"] == "y" and cfg[f"CONFIG_ESPTOOLPY_FLASHFREQ_{freq}"] == "y"
    assert cfg[f"CONFIG_ESPTOOLPY_FLASHSIZE_{size}"] == "y"
    assert cfg["CONFIG_NN_OPTIMIZED"] == "y" and "CONFIG_SPIRAM" not in cfg  # ESP-NN on; a tiny arena stays inside
    assert cfg["CONFIG_PARTITION_TABLE_CUSTOM_FILENAME"] == '"partitions.csv"'
    images = {i["path"].rsplit("/", 1)[-1]: i["offset"] for i in manifest["espidf"]["images"]}
    assert images == {"bootloader.bin": boot, "partition-table.bin": "0x8000", "edgeforge_app.bin": "0x10000"}
    assert manifest["target"]["kernels"] == "esp-nn" and "esp-nn kernels" in manifest["budgets"][2]["basis"]


def test_sdkconfig_check_rejects_a_misspelt_symbol() -> None:
    known = _kconfig()
    assert "ESPTOOLPY_FLASHSIZE_4MB" in known and "ESPTOOLPY_FLASHSIZE_4M" not in known
    assert "ESP_DEFAULT_CPU_FREQ_MHZ_240" in known and "ESP32_DEFAULT_CPU_FREQ_240" not in known  # 4.x spelling


def _partitions(path: Path) -> list[dict[str, str]]:
    rows = [r for r in csv.reader(io.StringIO(path.read_text())) if r and not r[0].startswith("#")]
    return [dict(zip(["name", "type", "subtype", "offset", "size"], (c.strip() for c in r))) for r in rows]


def test_partition_table_is_contiguous_aligned_and_sized_for_the_model(cli, tiny: Path, tmp_path: Path) -> None:
    manifest = _build(cli, tiny, "esp32", tmp_path / "b")
    rows = _partitions(tmp_path / "b" / "espidf" / "partitions.csv")
    assert [r["name"] for r in rows] == ["nvs", "phy_init", "factory"]
    end = 0x9000  # partition table at 0x8000, one 4 KiB sector
    for r in rows:
        assert int(r["offset"], 16) == end, r
        end = int(r["offset"], 16) + int(r["size"], 16)
    app = rows[-1]
    assert app["type"] == "app" and int(app["offset"], 16) % 0x10000 == 0 and int(app["size"], 16) % 0x10000 == 0
    assert int(app["size"], 16) >= manifest["model"]["bytes"] + 0x100000 and end <= 4 * 1024 * 1024
    assert manifest["espidf"]["app_partition_bytes"] == int(app["size"], 16)


def test_partition_grows_with_the_model_and_stops_at_the_flash_end() -> None:
    from edgeforge.emit.espidf import app_partition_bytes

    assert app_partition_bytes(1000, 4 << 20) == 0x110000
    assert app_partition_bytes(0x180001, 4 << 20) == 0x290000
    assert app_partition_bytes(10 << 20, 4 << 20) == (4 << 20) - 0x10000


#: The IDF Component Manager's manifest (idf-component-manager docs/en/reference/manifest_file.rst).
_DEPENDENCY = {"type": "object", "additionalProperties": False, "properties": {
    "version": {"type": "string", "minLength": 1}, "pre_release": {"type": "boolean"},
    "require": {"enum": ["private", "public", "no"]}, "public": {"type": "boolean"},
    "matches": {"type": "array"}, "rules": {"type": "array"}, "override_path": {"type": "string"},
    "path": {"type": "string"}, "git": {"type": "string"}, "registry_url": {"type": "string"},
    "service_url": {"type": "string"}}}
MANIFEST_SCHEMA = {"type": "object", "additionalProperties": False, "properties": {
    "dependencies": {"type": "object", "additionalProperties": _DEPENDENCY,
                     "propertyNames": {"pattern": r"^(idf|[a-z0-9_.-]+/[a-z0-9_.-]+|[a-z0-9_.-]+)$"}},
    **{k: {} for k in ("targets", "version", "maintainers", "description", "license", "tags", "files", "examples",
                       "url", "repository", "repository_info", "documentation", "issues", "discussion")}}}


def test_component_manifest_depends_on_esp_tflite_micro(cli, tiny: Path, tmp_path: Path) -> None:
    import yaml  # PyYAML: a dependency of esptool (and tflite-micro)
    _build(cli, tiny, "esp32s3", tmp_path / "b")
    doc = yaml.safe_load((tmp_path / "b" / "espidf" / "main" / "idf_component.yml").read_text())
    jsonschema.validate(doc, MANIFEST_SCHEMA)
    deps = doc["dependencies"]
    assert deps["espressif/esp-tflite-micro"]["version"] == "^1.4.0" and deps["idf"]["version"] == ">=5.1"
    with pytest.raises(jsonschema.ValidationError):  # the check is not vacuous
        jsonschema.validate({"dependencies": {"espressif/esp-tflite-micro": {"verison": "1"}}}, MANIFEST_SCHEMA)


_PROJECT_CMAKE = r"""# Stand-in for $IDF_PATH/tools/cmake/project.cmake (tests/test_espidf.py): project() configures the
# project's components - main/ and components/*/ - and idf_component_register() checks its arguments.
set(IDF_VERSION_MAJOR @MAJOR@)
set(IDF_VERSION_MINOR @MINOR@)
set(EF_IDF_COMPONENTS @COMPONENTS@)
function(idf_component_register)
  cmake_parse_arguments(A "WHOLE_ARCHIVE" "KCONFIG;KCONFIG_PROJBUILD"
    "SRCS;SRC_DIRS;EXCLUDE_SRCS;INCLUDE_DIRS;PRIV_INCLUDE_DIRS;REQUIRES;PRIV_REQUIRES;LDFRAGMENTS;REQUIRED_IDF_TARGETS;EMBED_FILES;EMBED_TXTFILES" ${ARGN})
  if(A_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "idf_component_register: unknown arguments ${A_UNPARSED_ARGUMENTS}")
  endif()
  set(srcs)
  foreach(src IN LISTS A_SRCS)
    get_filename_component(abs "${src}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_LIST_DIR}")
    if(NOT EXISTS "${abs}")
      message(FATAL_ERROR "idf_component_register: no source ${abs}")
    endif()
    list(APPEND srcs "${abs}")
  endforeach()
  foreach(dir IN LISTS A_INCLUDE_DIRS)
    get_filename_component(abs "${dir}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_LIST_DIR}")
    if(NOT IS_DIRECTORY "${abs}")
      message(FATAL_ERROR "idf_component_register: no include folder ${abs}")
    endif()
  endforeach()
  foreach(req IN LISTS A_REQUIRES A_PRIV_REQUIRES)
    if(NOT req IN_LIST EF_IDF_COMPONENTS AND NOT req IN_LIST EF_PROJECT_COMPONENTS)
      message(FATAL_ERROR "idf_component_register: ${req} is no component of ESP-IDF ${IDF_VERSION_MAJOR}.${IDF_VERSION_MINOR}")
    endif()
  endforeach()
  get_filename_component(name "${CMAKE_CURRENT_LIST_DIR}" NAME)
  if(srcs)
    add_library(__idf_${name} STATIC ${srcs})
  else()
    add_library(__idf_${name} INTERFACE)
  endif()
  set(COMPONENT_LIB __idf_${name} PARENT_SCOPE)
  message(STATUS "component ${name}: ${srcs}")
endfunction()
macro(project name)
  _project(${name} C CXX)
  file(GLOB EF_COMPONENT_DIRS LIST_DIRECTORIES true "${CMAKE_SOURCE_DIR}/components/*")
  set(EF_PROJECT_COMPONENTS main)
  foreach(dir IN LISTS EF_COMPONENT_DIRS)
    get_filename_component(comp "${dir}" NAME)
    list(APPEND EF_PROJECT_COMPONENTS ${comp})
  endforeach()
  include("${CMAKE_SOURCE_DIR}/main/CMakeLists.txt")
  foreach(dir IN LISTS EF_COMPONENT_DIRS)
    include("${dir}/CMakeLists.txt")
  endforeach()
endmacro()
"""


def _idf_versions() -> dict[str, list[str]]:
    rows = [ln.split() for ln in (ESPIDF_FIXTURES / "components.txt").read_text().splitlines()
            if ln and not ln.startswith("#")]
    return {r[0]: r[1:] for r in rows}


def cmake_configure(project: Path, tmp: Path, version: str, *defs: str) -> subprocess.CompletedProcess[str]:
    """Configure ``project`` with CMake against the stand-in IDF of ``version``."""
    major, minor = version.split(".")
    idf = tmp / f"idf-{version}"
    (idf / "tools" / "cmake").mkdir(parents=True, exist_ok=True)
    (idf / "tools" / "cmake" / "project.cmake").write_text(
        _PROJECT_CMAKE.replace("@MAJOR@", major).replace("@MINOR@", minor)
        .replace("@COMPONENTS@", " ".join(_idf_versions()[version])))
    build = tmp / f"cmake-{version}-{len(defs)}"
    return subprocess.run(["cmake", "-S", str(project), "-B", str(build), *defs], capture_output=True, text=True,
                          env={"IDF_PATH": str(idf), "PATH": "/usr/bin:/bin"})


needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake (make toolchain installs it)")


@needs_cmake
@pytest.mark.parametrize("version", ["5.1", "6.2"])
def test_tflm_project_cmake_configures_against_each_idf_version(cli, tiny: Path, tmp_path: Path,
                                                               version: str) -> None:
    _build(cli, tiny, "esp32", tmp_path / "b")
    proc = cmake_configure(tmp_path / "b" / "espidf", tmp_path, version)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "component main: " in proc.stdout and "main.cc" in proc.stdout and "model_data.cc" in proc.stdout


@needs_cmake
def test_cmake_stand_in_rejects_a_component_that_idf_does_not_have(cli, tiny: Path, tmp_path: Path) -> None:
    _build(cli, tiny, "esp32", tmp_path / "b")
    main = tmp_path / "b" / "espidf" / "main" / "CMakeLists.txt"
    main.write_text(main.read_text().replace("${EF_UART_COMPONENT}", "esp_driver_uart"))
    proc = cmake_configure(tmp_path / "b" / "espidf", tmp_path, "5.1")  # esp_driver_uart arrived in 5.3
    assert proc.returncode != 0 and "esp_driver_uart is no component of ESP-IDF 5.1" in proc.stderr


_IDF_HEADERS = {
    "driver/uart.h": """#pragma once
#include <stddef.h>
#include <stdint.h>
#include "freertos/FreeRTOS.h"
typedef int uart_port_t;
typedef int esp_err_t;
#define UART_NUM_0 0
typedef void* QueueHandle_t;
esp_err_t uart_driver_install(uart_port_t, int, int, int, QueueHandle_t*, int);
int uart_read_bytes(uart_port_t, void*, uint32_t, TickType_t);
#define ESP_ERROR_CHECK(x) ((void)(x))
""",
    # as ESP-IDF's esp_attr.h with CONFIG_SPIRAM_ALLOW_BSS_SEG_EXTERNAL_MEMORY (_SECTION_ATTR_IMPL)
    "esp_attr.h": '#pragma once\n#define EXT_RAM_BSS_ATTR __attribute__((section(".ext_ram.bss.0")))\n',
    "esp_timer.h": "#pragma once\n#include <stdint.h>\nint64_t esp_timer_get_time(void);\n",
    "freertos/FreeRTOS.h": """#pragma once
#include <stdint.h>
typedef uint32_t TickType_t;
#define pdMS_TO_TICKS(ms) ((TickType_t)(ms))
""",
    "freertos/task.h": '#pragma once\n#include "freertos/FreeRTOS.h"\nvoid vTaskDelay(TickType_t);\n',
}
_TFLM_FLAGS = ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON",
               "-DNDEBUG", "-DTF_LITE_STRIP_ERROR_STRINGS"]


def _stubs(root: Path) -> Path:
    for name, text in _IDF_HEADERS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def syntax_check_tflm_harness(main_dir: Path, tmp: Path, *names: str) -> subprocess.CompletedProcess[str]:
    inc = [f"-I{p}" for p in (TFLM, TFLM / "third_party" / "flatbuffers" / "include", TFLM / "third_party" / "gemmlowp",
                              TFLM / "third_party" / "ruy")]
    return subprocess.run(["g++", *_TFLM_FLAGS, "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
                           f"-I{_stubs(tmp / 'idf')}", f"-I{main_dir}", *inc,
                           *(str(main_dir / n) for n in names or ("main.cc", "model_data.cc"))],
                          capture_output=True, text=True)


needs_tflm = pytest.mark.skipif(not (TFLM / "tensorflow").is_dir() or shutil.which("g++") is None,
                                reason="needs ../shared/third_party/tflite-micro and g++")


@needs_tflm
def test_tflm_harness_compiles_against_tflite_micro_headers(cli, tiny: Path, tmp_path: Path) -> None:
    _build(cli, tiny, "esp32", tmp_path / "b")
    main = tmp_path / "b" / "espidf" / "main"
    proc = syntax_check_tflm_harness(main, tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (main / "main.cc").read_text()
    assert "EXT_RAM_BSS_ATTR" not in text.split("namespace {")[1].split("constexpr")[0]  # internal RAM
    broken = main / "main.cc"
    broken.write_text(text.replace("interpreter.arena_used_bytes()", "interpreter.arena_used_byte()"))
    assert syntax_check_tflm_harness(main, tmp_path, "main.cc").returncode != 0  # the check sees the TFLM API


def _psram_profile(tmp: Path) -> Path:
    folder = tmp / "targets"
    folder.mkdir()
    (folder / "esp32s3-psram.toml").write_text(
        'id = "esp32s3-psram"\nname = "ESP32-S3 N8R8 (test)"\nextends = "esp32s3"\n'
        "[budget]\nmodel_ram_bytes = 4194304\n"
        '[espidf]\ninternal_arena_bytes = 1024\npsram_bytes = 8388608\npsram_mode = "oct"\n')
    return folder


@needs_tflm
def test_arena_over_the_internal_budget_goes_to_psram(cli, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    r = cli("build", tiny, "--target", "esp32s3-psram", "--out", out, "--targets-dir", _psram_profile(tmp_path))
    assert r.code == 0, r.err
    cfg = _sdkconfig(out / "espidf" / "sdkconfig.defaults")
    assert cfg["CONFIG_SPIRAM"] == "y" and cfg["CONFIG_SPIRAM_MODE_OCT"] == "y"
    assert cfg["CONFIG_SPIRAM_ALLOW_BSS_SEG_EXTERNAL_MEMORY"] == "y"
    assert set(k[len("CONFIG_"):] for k in cfg) <= _kconfig()
    main = out / "espidf" / "main"
    assert "EXT_RAM_BSS_ATTR alignas(16) uint8_t g_tensor_arena[kTensorArenaSize];" in (main / "main.cc").read_text()
    proc = syntax_check_tflm_harness(main, tmp_path, "main.cc")
    assert proc.returncode == 0, proc.stderr


@needs_cmake
def test_native_project_is_an_idf_component_with_the_bench_as_an_option(cli, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    _build(cli, tiny, "esp32", out, "--runtime", "native")
    proj = out / "espidf"
    comp = proj / "components" / "edgeforge_model"
    assert (comp / "ef_model.c").read_bytes() == (out / "native" / "ef_model.c").read_bytes()
    assert not (proj / "main" / "idf_component.yml").exists()  # no TFLM to fetch
    cfg = _sdkconfig(proj / "sdkconfig.defaults")
    assert "CONFIG_NN_OPTIMIZED" not in cfg and {k[len("CONFIG_"):] for k in cfg} <= _kconfig()
    assert cfg["CONFIG_LOG_DEFAULT_LEVEL_NONE"] == "y"  # the bench protocol owns UART0
    dry = cli("flash", out, "--port", "/dev/ttyUSB0", "--dry-run", "--json")
    assert dry.code == 0 and json.loads(dry.out)["commands"][0][-2:] == ["-DEDGEFORGE_BENCH=1", "build"]
    harness = cmake_configure(proj, tmp_path, "6.2")
    assert harness.returncode == 0, harness.stdout + harness.stderr
    assert "component main: " in harness.stdout and "main.c" in harness.stdout and "ef_bench.c" not in harness.stdout
    bench = cmake_configure(proj, tmp_path, "5.1", "-DEDGEFORGE_BENCH=1")
    assert bench.returncode == 0, bench.stdout + bench.stderr
    assert "ef_port_esp32.c" in bench.stdout and "ef_bench.c" in bench.stdout
    assert re.search(r"component edgeforge_model: .*ef_model\.c", bench.stdout)
    stubs = _stubs(tmp_path / "idf")
    cc = subprocess.run(["cc", "-std=gnu99", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", f"-I{stubs}",
                         f"-I{comp}", str(proj / "main" / "main.c")], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr


def test_emitter_choice_sets_the_kernel_set_the_estimate_assumes(cli, tiny: Path, tmp_path: Path) -> None:
    idf = _build(cli, tiny, "esp32", tmp_path / "idf")
    pio = _build(cli, tiny, "esp32", tmp_path / "pio", "--emitter", "platformio")
    assert (tmp_path / "pio" / "platformio" / "platformio.ini").is_file()
    assert not (tmp_path / "pio" / "espidf").exists() and not (tmp_path / "idf" / "platformio").exists()
    assert (idf["target"]["kernels"], pio["target"]["kernels"]) == ("esp-nn", "reference")
    assert "espidf" not in pio and "reference kernels" in pio["budgets"][2]["basis"]
    assert pio["estimates"]["latency_ms"] > 5 * idf["estimates"]["latency_ms"]
    r = cli("build", tiny, "--target", "esp32c6", "--out", tmp_path / "c6", "--emitter", "platformio")
    assert_clean_error(r, 2)
    assert "esp32c6 does not offer --emitter platformio" in r.err and not (tmp_path / "c6").exists()


def test_kws_int8_meets_the_esp32_latency_budget_only_with_esp_nn(cli, mlperf: Path, tmp_path: Path) -> None:
    """The issue's regression: TFLM reference kernels (the old PlatformIO-only output) miss 1,000 ms on KWS."""
    model = mlperf / "kws" / "kws_ref_model_int8.tflite"
    r = cli("build", model, "--target", "esp32", "--out", tmp_path / "idf")
    assert r.code == 0, r.err
    assert "[estimated, esp-nn kernels]" in r.out
    idf = json.loads((tmp_path / "idf" / "manifest.json").read_text())
    assert idf["estimates"]["latency_ms"] < 1000.0 and idf["target"]["emitter"] == "espidf"
    r = cli("build", model, "--target", "esp32", "--out", tmp_path / "pio", "--emitter", "platformio")
    assert r.code == 3 and "budget missed: latency_ms" in r.err


def _placeholder_images(build: Path, manifest: dict) -> None:
    for image in manifest["espidf"]["images"]:
        path = build / "espidf" / image["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xe9" + bytes(15))


@pytest.mark.parametrize("chip", ["esp32", "esp32c3"])
def test_flash_dry_run_is_a_command_line_esptool_accepts(cli, tiny: Path, tmp_path: Path, chip: str) -> None:
    pytest.importorskip("esptool")
    from edgeforge.bench.esptool_flash import validate_with_esptool

    out = tmp_path / "b"
    manifest = _build(cli, tiny, chip, out)
    _placeholder_images(out, manifest)  # as `idf.py build` would leave them
    r = cli("flash", out, "--port", "/dev/ttyUSB0", "--dry-run", "--json")
    assert r.code == 0, r.err
    (cmd,) = json.loads(r.out)["commands"]
    program = 3 if cmd[1:3] == ["-m", "esptool"] else 1
    parsed = validate_with_esptool(cmd[program:])
    mhz, mode, freq, size, boot = CHIPS[chip]
    assert parsed["esptool"]["chip"] == chip and parsed["esptool"]["port"] == "/dev/ttyUSB0"
    assert parsed["command"] == "write-flash"
    assert (parsed["options"]["flash_mode"], parsed["options"]["flash_freq"], parsed["options"]["flash_size"]) == \
        (mode.lower(), freq.lower(), size)
    assert [(hex(a), Path(p).name) for a, p in parsed["images"]] == \
        [(boot, "bootloader.bin"), ("0x8000", "partition-table.bin"), ("0x10000", "edgeforge_app.bin")]
    human = cli("flash", out, "--port", "/dev/ttyUSB0", "--dry-run")
    assert human.code == 0 and "would run: " in human.out and "write-flash" in human.out


def test_esptool_parser_check_rejects_what_esptool_would(tmp_path: Path) -> None:
    pytest.importorskip("esptool")
    import click

    from edgeforge.bench.esptool_flash import validate_with_esptool

    image = tmp_path / "a.bin"
    image.write_bytes(b"\0")
    ok = ["--chip", "esp32", "write-flash", "--flash-mode", "dio", "0x1000", str(image)]
    assert validate_with_esptool(ok)["images"] == [(0x1000, str(image))]
    for bad in (["--chip", "esp33", *ok[2:]], [*ok[:4], "dual", *ok[5:]], ok[:-1]):
        with pytest.raises(click.ClickException):
            validate_with_esptool(bad)


def test_flash_without_esp_idf_says_so_cleanly(cli, tiny: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("IDF_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "b"
    _build(cli, tiny, "esp32", out)
    dry = cli("flash", out, "--port", "/dev/ttyUSB0", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    doc = json.loads(dry.out)
    assert doc["commands"][0][-3:] == ["-C", str(out / "espidf"), "build"] and "ESP-IDF is not installed" in doc["summary"]
    r = cli("flash", out, "--port", "/dev/ttyUSB0")
    assert_clean_error(r, 69)
    assert "is not built and ESP-IDF is not installed" in r.err and not (out / "flash.json").exists()


def test_build_without_esp_idf_warns_once(cli, tiny: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("IDF_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    r = cli("build", tiny, "--target", "esp32", "--out", tmp_path / "b")
    assert r.code == 0 and r.err.count("ESP-IDF is not installed") == 1
    assert "ESP-IDF is not installed" in " ".join(json.loads((tmp_path / "b" / "manifest.json").read_text())["warnings"])


def test_doctor_reports_tools_and_what_each_target_misses(cli, tmp_path: Path, monkeypatch) -> None:
    r = cli("doctor", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert {"arm-none-eabi-gcc", "esp-idf", "esptool", "platformio", "tflm-sources", "qemu-system-riscv32"} <= \
        set(doc["tools"])
    assert "esp-idf" in doc["targets"]["esp32"]["needs"] and "riscv-gcc" in doc["targets"]["esp32c3"]["needs"]
    assert "arm-none-eabi-gcc" in doc["targets"]["cortex-m4"]["needs"]
    for tid, row in doc["targets"].items():
        assert row["missing"] == [n for n in row["needs"] if not doc["tools"][n]["present"]], tid
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("IDF_PATH", raising=False)
    bare = json.loads(cli("doctor", "--json", "-t", "cortex-m4", "-t", "esp32").out)
    assert not bare["tools"]["arm-none-eabi-gcc"]["present"] and not bare["tools"]["esp-idf"]["present"]
    assert "arm-none-eabi-gcc" in bare["targets"]["cortex-m4"]["missing"]
    assert "esp-idf" in bare["targets"]["esp32"]["missing"] and set(bare["targets"]) == {"cortex-m4", "esp32"}
    human = cli("doctor", "-t", "esp32")
    assert human.code == 0 and re.search(r"^esp32\s+no\s+.*esp-idf", human.out, re.M)


def test_flash_runs_esptool_and_reports_a_missing_board_as_a_device_error(cli, tiny: Path, tmp_path: Path) -> None:
    pytest.importorskip("esptool")
    out = tmp_path / "b"
    manifest = _build(cli, tiny, "esp32", out)
    _placeholder_images(out, manifest)
    r = cli("flash", out, "--port", str(tmp_path / "no-such-port"))
    assert_clean_error(r, 4)
    assert "esptool write-flash failed" in r.err and "no-such-port" in r.err
    assert not (out / "flash.json").exists()
