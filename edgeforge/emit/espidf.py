"""ESP-IDF emitter (``espidf``): a project for ``idf.py build`` on Espressif's ``esp-tflite-micro`` component
(ESP-NN kernels) or, for ``--runtime native`` builds, on edgeforge's generated C as the ``edgeforge_model``
component (with the bench firmware as a build option).

Everything that varies per chip comes from the profile's ``[espidf]`` table; this module decides only what
follows from the model: where the arena lives (internal RAM or PSRAM) and how large the app partition is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeforge.emit.mcu import carray
from edgeforge.emit.render import render
from edgeforge.resources import data_dir

Files = dict[str, bytes]

#: Partition table offset (CONFIG_PARTITION_TABLE_OFFSET) and the first app's offset: ESP-IDF's defaults.
PARTITION_TABLE_OFFSET = 0x8000
APP_OFFSET = 0x10000
#: nvs and phy_init between the partition table and the app, as in ESP-IDF's "Single factory app" table.
_DATA_PARTITIONS = (("nvs", "data", "nvs", 0x9000, 0x6000), ("phy_init", "data", "phy", 0xF000, 0x1000))
#: Room in the app partition for everything but the model: ESP-IDF's startup, drivers, newlib and the
#: interpreter + ESP-NN kernels (esp-tflite-micro examples link to ~0.4-0.6 MiB without Wi-Fi), with slack
#: for the user's own code. ESP-IDF's default factory partition is 1 MiB; we never go below it.
FIRMWARE_ALLOWANCE = 0x100000
MIN_APP = 0x100000
ALIGN = 0x10000  # app partitions must be 64 KiB aligned
#: The bench firmware's sources, copied into native projects (EDGEFORGE_BENCH=1 builds them).
BENCH_FILES = ("ef_bench.c", "ef_bench.h", "ef_port.h", "ef_bench_hooks.h")
BENCH_PORT = "ports/esp32/main/ef_port_esp32.c"


@dataclass(frozen=True)
class Image:
    """One file esptool writes, and where."""

    offset: int
    path: str  # relative to the project folder

    def to_json(self) -> dict[str, Any]:
        return {"offset": f"0x{self.offset:x}", "path": self.path}


def flash_size_name(nbytes: int) -> str:
    """``4194304`` -> ``4MB``: esptool's --flash-size and the CONFIG_ESPTOOLPY_FLASHSIZE_* suffix."""
    mib = nbytes // (1024 * 1024)
    if mib < 1 or nbytes % (1024 * 1024) or mib & (mib - 1):
        raise ValueError(f"flash size {nbytes} B is not a power-of-two number of MiB")
    return f"{mib}MB"


def app_partition_bytes(model_bytes: int, flash_bytes: int) -> int:
    """The factory app partition: the model + FIRMWARE_ALLOWANCE rounded up to 64 KiB, at least 1 MiB, at most
    what the flash holds after APP_OFFSET (a model that does not fit fails the flash budget on its own)."""
    size = max(MIN_APP, -(-(model_bytes + FIRMWARE_ALLOWANCE) // ALIGN) * ALIGN)
    return min(size, (flash_bytes - APP_OFFSET) // ALIGN * ALIGN)


def arena_in_psram(arena_bytes: int, idf: dict[str, Any]) -> bool:
    """PSRAM only when the arena does not fit the internal budget and the board has PSRAM that holds it."""
    return arena_bytes > idf["internal_arena_bytes"] and idf["psram_bytes"] >= arena_bytes


def images(chip_idf: dict[str, Any], project: str = "edgeforge_app") -> tuple[Image, ...]:
    """What ``idf.py build`` writes and where esptool puts each (bootloader offset per chip)."""
    return (Image(int(chip_idf["bootloader_offset"]), "build/bootloader/bootloader.bin"),
            Image(PARTITION_TABLE_OFFSET, "build/partition_table/partition-table.bin"),
            Image(APP_OFFSET, f"build/{project}.bin"))


def _partitions(app_bytes: int) -> list[dict[str, str]]:
    rows = [{"name": n, "type": t, "subtype": s, "offset": f"0x{o:x}", "size": f"0x{z:x}"}
            for n, t, s, o, z in _DATA_PARTITIONS]
    rows.append({"name": "factory", "type": "app", "subtype": "factory", "offset": f"0x{APP_OFFSET:x}",
                 "size": f"0x{app_bytes:x}"})
    return rows


def _context(ctx: dict[str, Any], model_bytes: int, arena_bytes: int, runtime: str) -> dict[str, Any]:
    target = ctx["target"]
    idf = target["espidf"]
    hw = target["hardware"]
    app = app_partition_bytes(model_bytes, int(hw["flash_bytes"]))
    return {**ctx, "idf": idf, "runtime": runtime, "cpu_mhz": int(hw["clock_mhz"]),
            "flash_size": flash_size_name(int(hw["flash_bytes"])), "psram": arena_in_psram(arena_bytes, idf),
            "arena_bytes": arena_bytes, "partitions": _partitions(app), "app_bytes": app,
            "model_flash_bytes": model_bytes, "firmware_allowance": FIRMWARE_ALLOWANCE,
            "partition_table_offset": f"0x{PARTITION_TABLE_OFFSET:x}",
            "images": [i.to_json() for i in images(idf)]}


def tflm_project(ctx: dict[str, Any]) -> Files:
    """The project for the TFLM runtime: the C arrays and a harness in ``main/``, esp-tflite-micro from the
    component registry."""
    pctx = _context(ctx, int(ctx["model"]["bytes"]), int(ctx["arena"]["emitted"]), "tflm")
    files = _common(pctx)
    files["main/CMakeLists.txt"] = render("espidf/main/CMakeLists.txt.j2", pctx)
    files["main/idf_component.yml"] = render("espidf/main/idf_component.yml.j2", pctx)
    files["main/main.cc"] = render("espidf/main/main.cc.j2", pctx)
    for name, data in carray(ctx).items():
        files[f"main/{name}"] = data
    return files


def native_project(ctx: dict[str, Any], native_files: Files, model_bytes: int, arena_bytes: int,
                   model_name: str) -> Files:
    """The project for ``--runtime native``: the generated C as the ``edgeforge_model`` component, a harness in
    ``main/``, and the bench firmware (``idf.py -DEDGEFORGE_BENCH=1 build``) in ``bench/``."""
    runtime = sorted(k for k in native_files if k.startswith("runtime/"))
    pctx = {**_context(ctx, model_bytes, arena_bytes, "native"), "runtime_srcs":
            [k for k in runtime if k.endswith(".c")], "bench_model_name": model_name}
    files = _common(pctx)
    files["main/CMakeLists.txt"] = render("espidf/main/CMakeLists.txt.j2", pctx)
    files["main/main.c"] = render("espidf/main/main_native.c.j2", pctx)
    comp = "components/edgeforge_model"
    files[f"{comp}/CMakeLists.txt"] = render("espidf/components/edgeforge_model/CMakeLists.txt.j2", pctx)
    for rel in ("ef_model.c", "ef_model.h", *runtime):
        files[f"{comp}/{rel}"] = native_files[rel]
    bench = data_dir("firmware") / "bench"
    for name in BENCH_FILES:
        files[f"bench/{name}"] = (bench / name).read_bytes()
    files["bench/ef_port_esp32.c"] = (bench / BENCH_PORT).read_bytes()
    return files


def _common(pctx: dict[str, Any]) -> Files:
    return {"CMakeLists.txt": render("espidf/CMakeLists.txt.j2", pctx),
            "sdkconfig.defaults": render("espidf/sdkconfig.defaults.j2", pctx),
            "partitions.csv": render("espidf/partitions.csv.j2", pctx),
            "README.md": render("espidf/README.md.j2", pctx)}


def manifest_entry(target: dict[str, Any], model_bytes: int) -> dict[str, Any]:
    """What ``edgeforge flash`` needs: chip, flash settings, and each image's offset (``Manifest.espidf``);
    ``model_bytes`` as given to the project emitter (it sizes the app partition)."""
    idf = target["espidf"]
    flash = int(target["hardware"]["flash_bytes"])
    return {"project": "espidf", "chip": idf["chip"], "kernels": idf["kernels"],
            "flash_mode": idf["flash_mode"], "flash_freq": idf["flash_freq"], "flash_size": flash_size_name(flash),
            "baud": idf["flash_baud"], "app_partition_bytes": app_partition_bytes(model_bytes, flash),
            "images": [i.to_json() for i in images(idf)]}
