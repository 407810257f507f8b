"""TensorFlow Lite Micro builds on the emulated boards: where the TFLM sources come from (exit 69 when nowhere),
which sources one model needs, the cached per-board library, and `edgeforge flash` + `edgeforge bench` of the
MLPerf Tiny KWS int8 model with TFLM's reference and CMSIS-NN kernels on qemu-cortex-m4: outputs byte-identical to
the tflite-micro interpreter on the host, and the instruction counts the shared tree's README verified
(43,019,725 reference / 7,701,442 CMSIS-NN per Invoke). The TFLM objects are cached in the user cache
(edgeforge/bench/tflm_lib.py): a cold cache costs one framework compile per core plus the kernels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchdut import ROOT
from conftest import FULL, assert_clean_error

from edgeforge.bench import tflm_src
from edgeforge.bench.tflm_lib import Toolchain, build_library, kernel_sources, registrations
from edgeforge.device.boards import EMULATED, EMULATED_BY_NAME

SHARED_TFLM = ROOT.parent / "shared" / "third_party" / "tflite-micro"
# Verified in the shared tree's README: guest instructions per Invoke() of KWS on mps2-an386, tst_000000_Stop_7.
README_INSTRUCTIONS = {"reference": 43_019_725, "cmsis_nn": 7_701_442}


def _tflm_tree() -> Path:
    if not tflm_src.is_tflm_tree(SHARED_TFLM):
        pytest.skip("../shared/third_party/tflite-micro is absent (only the project's own machines have it)")
    return SHARED_TFLM


def _needs(board: str) -> None:
    why = EMULATED_BY_NAME[board].missing_tools()
    if why:
        pytest.skip(why)


# ------------------------------------------------------------------------------------------ source lookup
def test_tflm_sources_missing_everywhere_is_exit_69_saying_where(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(tflm_src.ENV, raising=False)
    monkeypatch.setattr(tflm_src, "_REPO", tmp_path / "repo")  # no ../shared beside it
    monkeypatch.chdir(tmp_path)
    build = tmp_path / "b"
    res = cli("build", ROOT / "tests" / "fixtures" / "tiny_int8.tflite", "--target", "cortex-m4", "--runtime", "tflm",
              "--out", build, "-q")
    assert res.code == 0, res.err
    if EMULATED_BY_NAME["qemu-cortex-m4"].missing_tools():
        pytest.skip("the Cortex-M4 toolchain is missing (checked before the sources)")
    res = cli("flash", build, "--board", "qemu-cortex-m4")
    assert_clean_error(res, 69)
    assert "TensorFlow Lite Micro sources not found" in res.err and "--tflm-src" in res.err
    assert "EDGEFORGE_TFLM_SRC" in res.err
    assert not (build / "firmware" / "ef_bench_an386.elf").exists()


def test_tflm_source_order_and_a_named_tree_that_is_not_one(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "tree"
    (fake / "tensorflow/lite/micro").mkdir(parents=True)
    (fake / "tensorflow/lite/micro/micro_interpreter.h").write_text("")
    (fake / "third_party/flatbuffers/include").mkdir(parents=True)
    pio = tmp_path / "build" / "platformio" / ".pio" / "libdeps" / "env" / "Arduino_TensorFlowLite" / "src"
    (pio / "tensorflow/lite/micro").mkdir(parents=True)
    (pio / "tensorflow/lite/micro/micro_interpreter.h").write_text("")
    (pio / "third_party/flatbuffers/include").mkdir(parents=True)
    monkeypatch.setattr(tflm_src, "_REPO", tmp_path / "nowhere" / "repo")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(tflm_src.ENV, raising=False)
    assert tflm_src.find_tflm_src(None, tmp_path / "build") == pio.resolve()  # the project's own library
    monkeypatch.setenv(tflm_src.ENV, str(fake))
    assert tflm_src.find_tflm_src(None, tmp_path / "build") == fake.resolve()  # the environment wins
    assert tflm_src.find_tflm_src(fake, None) == fake.resolve()
    from edgeforge.errors import ToolMissingError

    with pytest.raises(ToolMissingError, match="is not a TensorFlow Lite Micro source tree"):
        tflm_src.find_tflm_src(tmp_path / "build", None)  # named explicitly: an error, not skipped


# ------------------------------------------------------------------------------------------ source sets
def test_only_the_resolvers_kernels_are_compiled() -> None:
    root = _tflm_tree()
    mutable = (root / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    emitted = ("resolver.AddConv2D()  resolver.AddFullyConnected(tflite::Register_FULLY_CONNECTED_INT8())  "
               "resolver.AddMean()")
    regs = registrations(emitted, mutable)
    assert regs == ["Register_CONV_2D", "Register_FULLY_CONNECTED_INT8", "Register_MEAN"]
    cc, c = kernel_sources(root, "reference", regs)
    k = "tensorflow/lite/micro/kernels/"
    assert sorted(cc) == sorted(k + f for f in ("kernel_util.cc", "conv.cc", "conv_common.cc", "fully_connected.cc",
                                               "fully_connected_common.cc", "reduce.cc", "reduce_common.cc"))
    assert c == []
    cc, c = kernel_sources(root, "cmsis_nn", regs)
    assert k + "cmsis_nn/conv.cc" in cc and k + "cmsis_nn/fully_connected.cc" in cc and k + "conv.cc" not in cc
    assert k + "reduce.cc" in cc  # no CMSIS-NN variant: the reference kernel
    dirs = {Path(p).parent.name for p in c}
    assert dirs == {"NNSupportFunctions", "ConvolutionFunctions", "FullyConnectedFunctions"}
    _, c = kernel_sources(root, "cmsis_nn", ["Register_DEPTHWISE_CONV_2D_INT8"])
    assert "TransposeFunctions" in {Path(p).parent.name for p in c}  # the MVE depthwise wrapper calls arm_transpose_s8


# ------------------------------------------------------------------------------------------ KWS on the M4
@pytest.fixture(scope="module")
def kws_tflm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeforge.cli.main import main

    mlperf = ROOT.parent / "shared" / "models" / "mlperf_tiny"
    if not mlperf.is_dir():
        pytest.skip("../shared/models/mlperf_tiny is absent")
    out = tmp_path_factory.mktemp("kws") / "build"
    assert main(["build", str(mlperf / "kws" / "kws_ref_model_int8.tflite"), "--target", "cortex-m4", "--runtime",
                 "tflm", "--out", str(out), "-q"]) == 0
    return out


@pytest.mark.mlperf
@pytest.mark.parametrize("kernels", ["reference", "cmsis_nn"])
def test_kws_tflm_on_qemu_cortex_m4_matches_the_interpreter(kernels: str, kws_tflm: Path, cli,
                                                            tmp_path: Path) -> None:
    _tflm_tree()
    _needs("qemu-cortex-m4")
    res = cli("flash", kws_tflm, "--board", "qemu-cortex-m4", "--tflm-kernels", kernels)
    assert res.code == 0, res.err
    samples = ROOT.parent / "shared" / "models" / "mlperf_tiny" / "samples" / "kws01"
    res = cli("bench", kws_tflm, "--board", "qemu-cortex-m4", "--input", samples, "--count", 3, "--runs", 1,
              "--json")
    assert res.code == 0, res.out + res.err
    doc = json.loads(res.out)
    assert doc["identity"]["backend"] == f"tflm-{kernels.replace('_', '-')}"
    assert doc["outputs"]["byte_identical"] and doc["outputs"]["accepted"]
    assert doc["outputs"]["required"] == "byte-identical (tflm build)"
    # the first kws01 file is tst_000000_Stop_7.bin, the README's input; the per-op hooks add a few hundred
    # instructions per inference, and the timer resolves 1 us = 1000 instructions
    got = doc["latencies_us"][0] * 1000
    assert abs(got - README_INSTRUCTIONS[kernels]) <= 5000, (got, README_INSTRUCTIONS[kernels])
    ops = doc["ops"]
    assert [o["op"] for o in ops][:3] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D"] and len(ops) == 13
    assert sum(o["us"] for o in ops) <= doc["latencies_us"][0] + 1 and min(o["us"] for o in ops) >= 0
    mem = doc["memory"]
    # arena_used_bytes() of the device (32-bit) below the host-measured kTensorArenaSize
    manifest = json.loads((kws_tflm / "manifest.json").read_text())
    assert 16000 < mem["arena"] <= manifest["arena"]["emitted_bytes"] and 0 < mem["stack_hwm"] < mem["stack_size"]


@pytest.mark.mlperf
def test_second_tflm_library_build_is_served_from_the_cache(kws_tflm: Path, tmp_path: Path) -> None:
    root = _tflm_tree()
    _needs("qemu-cortex-m4")
    b = EMULATED_BY_NAME["qemu-cortex-m4"]
    tc = Toolchain(b.cross, b.cpu_flags, b.cmsis_device, b.libc_specs)
    first = build_library(root, tc, "reference", kws_tflm / "tflm" / "op_resolver.h")  # warm after the test above
    again = build_library(root, tc, "reference", kws_tflm / "tflm" / "op_resolver.h")
    assert again.compiled == 0 and again.archive == first.archive and again.archive.is_file()
    assert first.sources < 80  # the framework and six kernels, not TFLM's ~160 sources


# ------------------------------------------------------------------------------------------ other boards
def _tflm_matrix() -> list[tuple[str, str]]:
    """Every board x kernel set (make test-all); make test runs the M0+ (reference) besides the M4 above."""
    full = [(b.name, k) for b in EMULATED for k in b.kernels if b.name != "qemu-cortex-m4"]
    return full if FULL else [("qemu-cortex-m0plus", "reference")]


@pytest.mark.slow
@pytest.mark.parametrize(("board", "kernels"), _tflm_matrix())
def test_tflm_on_other_boards(board: str, kernels: str, cli, tmp_path: Path) -> None:
    _tflm_tree()
    _needs(board)
    profile = EMULATED_BY_NAME[board].stands_in_for[0]
    from edgeforge.target import load_registry

    if profile not in load_registry().ids:
        profile = "cortex-m4"
    build = tmp_path / "b"
    res = cli("build", ROOT / "tests" / "fixtures" / "tiny_int8.tflite", "--target", profile, "--runtime", "tflm",
              "--out", build, "-q")
    assert res.code == 0, res.err
    res = cli("flash", build, "--board", board, "--tflm-kernels", kernels)
    assert res.code == 0, res.err
    res = cli("bench", build, "--board", board, "--count", 3, "--runs", 1, "--json")
    assert res.code == 0, res.out + res.err
    doc = json.loads(res.out)
    assert doc["outputs"]["byte_identical"] and doc["identity"]["backend"] == f"tflm-{kernels.replace('_', '-')}"
    assert doc["latency"]["instructions_median"] > 0 and [o["op"] for o in doc["ops"]][0] == "CONV_2D"


def test_riscv_board_refuses_tflm_with_exit_69(cli, tmp_path: Path) -> None:
    _needs("qemu-riscv32")
    build = tmp_path / "b"
    assert cli("build", ROOT / "tests" / "fixtures" / "tiny_int8.tflite", "--target", "cortex-m4", "--runtime",
               "tflm", "--out", build, "-q").code == 0
    res = cli("flash", build, "--board", "qemu-riscv32")
    assert_clean_error(res, 69)
    assert "C++ standard library" in res.err


@pytest.mark.mlperf
def test_int8_only_registrations_shrink_the_cmsis_nn_image(kws_tflm: Path, cli, tmp_path: Path) -> None:
    """The emitted resolver's Register_*_INT8() (targets/_runtimes/tflm.toml) against the generic registrations,
    same model, same TFLM library: ~30 KB less code with CMSIS-NN, the same outputs (checked by the test above)."""
    import re
    import shutil
    import subprocess

    _tflm_tree()
    _needs("qemu-cortex-m4")
    resolver = (kws_tflm / "tflm" / "op_resolver.h").read_text()
    assert "tflite::Register_CONV_2D_INT8()" in resolver and "tflite::Register_SOFTMAX_INT8()" in resolver
    generic = tmp_path / "generic"
    shutil.copytree(kws_tflm, generic, ignore=shutil.ignore_patterns("firmware", "bench*"))
    (generic / "tflm" / "op_resolver.h").write_text(re.sub(r"\(tflite::Register_\w+\(\)\)", "()", resolver))
    sizes = {}
    for name, build in (("int8", kws_tflm), ("generic", generic)):
        assert cli("flash", build, "--board", "qemu-cortex-m4", "--tflm-kernels", "cmsis_nn").code == 0
        out = subprocess.run(["arm-none-eabi-size", str(build / "firmware" / "ef_bench_an386.elf")],
                             capture_output=True, text=True, check=True).stdout
        sizes[name] = int(out.splitlines()[1].split()[0])
    assert sizes["generic"] - sizes["int8"] > 25_000, sizes


def test_calibrate_the_tflm_table_on_the_emulated_m4(cli, tmp_path: Path, monkeypatch) -> None:
    """`edgeforge calibrate --runtime tflm` (was refused: the bench firmware ran native builds only): the quick
    probes as TFLM builds, each op timed on qemu-cortex-m4, `[perf.ops.tflm]` fitted and written; the native table
    stays the profile's."""
    _tflm_tree()
    _needs("qemu-cortex-m4")
    from edgeforge.compress.probes import QUICK
    from edgeforge.target import load_registry

    monkeypatch.chdir(tmp_path)
    res = cli("calibrate", "--board", "qemu-cortex-m4", "--target", "cortex-m4", "--runtime", "tflm", "--quick",
              "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["runtime"] == "tflm" and [p["name"] for p in doc["probes"]] == list(QUICK)
    assert all(abs(p["residual"]) <= 0.25 for p in doc["probes"]), doc["probes"]
    target = load_registry(cwd=tmp_path).get("cortex-m4")
    tflm = target.data["perf"]["ops"]["tflm"]
    assert tflm["source"].startswith("calibrated with edgeforge calibrate on board qemu-cortex-m4")
    assert tflm["conv_2d"] > 0 and tflm["fully_connected"] > 0
    assert target.data["perf"]["ops"]["native"] == load_registry().get("cortex-m4").data["perf"]["ops"]["native"]
