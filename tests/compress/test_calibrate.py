"""`edgeforge calibrate`: probe models, the NNLS fit, the override file, errors; and measured latency on the
emulated Cortex-M4 (QEMU -icount: deterministic instruction counts)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, FULL, assert_clean_error

from edgeforge.compress.calibrate import ProbeTiming, fit, write_override
from edgeforge.cost.latency import FEATURES, LatencyModel, observed_choices
from edgeforge.compress.probes import PROBES, QUICK, probe_model
from edgeforge.device.boards import qemu_available
from edgeforge.model.tflite import read_tflite
from edgeforge.native.toolchain import arm_available
from edgeforge.target import load_registry

needs_qemu = pytest.mark.skipif(not (qemu_available() and arm_available()),
                                reason="qemu-system-arm and arm-none-eabi-gcc are needed (make toolchain)")
#: Each probe's whole-invoke latency, predicted from the table fitted to the per-op timings, lies within this of
#: its measurement on qemu-cortex-m4 (observed: within 3 % for the two quick probes, 10 % for the full set).
PROBE_TOLERANCE = 0.15 if FULL else 0.10


def test_probes_are_valid_deterministic_int8_models() -> None:
    from edgeforge.arena import measure_arena
    from edgeforge.native.emit import prepare_native

    assert set(QUICK) <= {p.name for p in PROBES}
    for p in PROBES:
        model = probe_model(p.name)
        info = read_tflite(model)
        assert info.is_int8 and len(info.ops) == len(p.layers)
        assert info.input_tensors()[0].nbytes <= 1024  # uploads stay quick
        assert [c.op for c in prepare_native(info, model).calls] == [o.op for o in info.ops]
        assert measure_arena(model, info).total > 0  # TFLM runs it too
    kinds = {(c.bits, c.density < 1, c.channel_density < 1) for p in QUICK
             for c in observed_choices(read_tflite(probe_model(p)), probe_model(p)).values()}
    assert {(8, False, False), (4, False, False), (8, True, False), (8, True, True)} <= kinds


def _synthetic(truth: dict[str, float]) -> list[ProbeTiming]:
    """Per-op timings that follow ``truth`` exactly (features of the real probes)."""
    from edgeforge.compress.calibrate import OpTiming

    target = load_registry().get("cortex-m4")
    base = LatencyModel.for_target(target, "native")
    coef = np.array([truth.get(k, 0.0) for k in FEATURES])
    out = []
    for p in PROBES:
        model = probe_model(p.name)
        info = read_tflite(model)
        fm = base.prepare(info).feature_matrix(observed_choices(info, model))
        ops = tuple(OpTiming(p.name, (i,), op.op, float(fm[i] @ coef), tuple(fm[i])) for i, op in enumerate(info.ops))
        out.append(ProbeTiming(p.name, float(fm.sum(axis=0) @ coef), ops, tuple(fm.sum(axis=0))))
    return out


def test_fit_recovers_known_coefficients() -> None:
    truth = {"conv_2d": 4.0, "depthwise_conv_2d": 6.0, "fully_connected": 3.5, "output": 80.0, "elementwise": 90.0,
             "pool": 11.0, "per_op": 60.0, "sparse_scan": 0.7, "int4_unpack": 3.0, "int4_unpack_depthwise": 20.0}
    cal = fit(load_registry().get("cortex-m4"), "native", "synthetic", True, _synthetic(truth))
    for k, v in truth.items():
        assert cal.table[k] == pytest.approx(v, rel=0.01), k
    assert cal.kept == ("int4_unpack_weight",) and cal.max_residual < 0.002
    assert cal.table.source == f"calibrated with edgeforge calibrate on board synthetic: {len(PROBES)} probes, " \
                               "max residual 0.0%"


def test_override_merges_into_a_users_own_profile(tmp_path: Path) -> None:
    truth = {"conv_2d": 4.0, "depthwise_conv_2d": 6.0, "fully_connected": 3.5, "output": 80.0, "elementwise": 90.0,
             "per_op": 60.0}
    cal = fit(load_registry().get("cortex-m4"), "native", "synthetic", True, _synthetic(truth))
    path = tmp_path / "targets" / "cortex-m4.toml"
    path.parent.mkdir()
    path.write_text('id = "cortex-m4"\nextends = "cortex-m4"\n\n[budget]\nlatency_ms = 50.0\n\n'
                    '[perf.ops.native]\nconv_2d = 99.0\n')
    write_override(cal, path)
    data = tomllib.loads(path.read_text())
    assert data["budget"]["latency_ms"] == 50.0 and data["perf"]["ops"]["native"]["conv_2d"] == 4.0
    t = load_registry([path.parent], cwd=tmp_path).get("cortex-m4")
    assert t.budget.latency_ms == 50.0 and LatencyModel.for_target(t, "native").calibrated
    write_override(cal, path)  # again: same content, no second table
    text = path.read_text()
    assert text.count("\n[perf.ops.native]\n") == 1 and text.count("written by edgeforge calibrate") == 1


def test_unknown_board_is_a_usage_error(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEFORGE_RIG", raising=False)
    r = cli("calibrate", "--board", "stm32-on-my-desk", "--target", "cortex-m4")
    assert_clean_error(r, 2)
    assert "unknown board 'stm32-on-my-desk'" in r.err and "qemu-cortex-m4" in r.err
    assert not (tmp_path / ".edgeforge").exists()


@pytest.mark.parametrize("args, words", [
    (("--board", "host-sim", "--target", "cortex-m4"), "times this machine"),
    (("--board", "qemu-cortex-m4", "--target", "rpi4"), "not a microcontroller"),
    (("--board", "qemu-cortex-m4", "--target", "cortex-m4", "--probes", "nope"), "unknown probe"),
    (("--board", "qemu-cortex-m4", "--target", "cortex-m99"), "unknown target"),
])
def test_calibrate_refuses_what_it_cannot_measure(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  args: tuple[str, ...], words: str) -> None:
    monkeypatch.chdir(tmp_path)
    r = cli("calibrate", *args)
    assert_clean_error(r, 2)
    assert words in r.err


@needs_qemu
@pytest.mark.slow  # `make test`: the two quick probes (~15 s); `make test-all`: the full probe set
def test_calibrate_on_the_emulated_cortex_m4(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["calibrate", "--board", "qemu-cortex-m4", "--target", "m4", "--json"]
    r = cli(*args, *([] if FULL else ["--quick"]))
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    n = len(PROBES) if FULL else len(QUICK)
    assert [p["name"] for p in doc["probes"]] == ([p.name for p in PROBES] if FULL else list(QUICK))
    for p in doc["probes"]:
        assert abs(p["residual"]) <= PROBE_TOLERANCE, p
    assert len(doc["ops"]) == sum(len(p.layers) for p in PROBES if FULL or p.name in QUICK)
    assert doc["emulated"] and doc["kept_from_profile"] == ["int4_unpack_weight"]
    path = tmp_path / ".edgeforge" / "targets" / "cortex-m4.toml"
    assert doc["written"] == str(path)
    text = path.read_text()
    assert not re.search(r"\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d", text)  # no timestamps
    # the project folder's override is what every later command loads
    target = load_registry(cwd=tmp_path).get("cortex-m4")
    native = target.data["perf"]["ops"]["native"]
    assert native["source"] == (f"calibrated with edgeforge calibrate on board qemu-cortex-m4: {n} probes, "
                                f"max residual {doc['max_residual'] * 100:.1f}%")
    model = LatencyModel.for_target(target, "native")
    assert model.calibrated and model.basis == native["source"]
    assert target.data["perf"]["ops"]["tflm"] == load_registry().get("cortex-m4").data["perf"]["ops"]["tflm"]
    for k in ("conv_2d", "depthwise_conv_2d", "fully_connected", "output", "sparse_scan"):
        assert native[k] > 0, k
    assert native["int4_unpack"] >= 0  # on the Cortex-M4 int4 costs about what int8 does (packed-nibble MACs)


@needs_qemu
def test_calibration_is_reproducible_and_measure_matches_it(tmp_path: Path) -> None:
    """The library path: the file is a pure function of the timings; measure_latency_ms on a native build."""
    from edgeforge.build import BuildOptions, build
    from edgeforge.compress.calibrate import calibrate
    from edgeforge.compress.measure import measure_latency, measure_latency_ms

    out = tmp_path / "cal.toml"
    cal, path = calibrate("cortex-m4", "qemu-cortex-m4", "native", out, ["dense-a"])
    assert path == out and out.read_text() == cal.override_toml()
    again = fit(load_registry().get("cortex-m4"), "native", "qemu-cortex-m4", True, cal.timings)
    assert again.override_toml() == cal.override_toml()
    target = load_registry([tmp_path]).get("cortex-m4")
    assert LatencyModel.for_target(target, "native").basis.startswith("calibrated with edgeforge calibrate")

    b = tmp_path / "tiny"
    build(FIXTURES / "tiny_int8.tflite", load_registry().get("cortex-m4"), BuildOptions(out_dir=b, runtime="native"))
    m = measure_latency(b, "qemu-cortex-m4", None, runs=1)
    assert m.emulated and m.instructions and m.ms == pytest.approx(m.instructions / 120e3)
    assert "emulated instructions" in m.basis
    # instruction counts are deterministic; the invoke timer reads whole microseconds (1000 instructions), so
    # two readings may differ by one tick at each end
    assert measure_latency_ms(b, "qemu-cortex-m4", None, runs=1) == pytest.approx(m.ms, abs=2 * 1000 / 120e3)


def test_rig_boards(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rig board that QEMU emulates is measured like qemu-cortex-m4; one on a serial port is refused (no flasher
    for native builds yet), before anything is built."""
    from edgeforge.compress.measure import resolve_board

    rig = tmp_path / "edgeforge-rig.toml"
    rig.write_text('[boards.lab-qemu]\ntarget = "cortex-m4"\nflasher = "qemu"\n\n'
                   '[boards.nucleo]\nport = "loop://"\ntarget = "cortex-m4"\nflasher = "platformio"\n')
    monkeypatch.setenv("EDGEFORGE_RIG", str(rig))
    monkeypatch.chdir(tmp_path)
    with resolve_board("lab-qemu") as b:
        assert (b.board, b.port, b.emulated) == ("qemu-cortex-m4", None, True)
    r = cli("calibrate", "--board", "nucleo", "--target", "cortex-m4")
    assert_clean_error(r, 2)
    assert "real board" in r.err
    assert_clean_error(cli("calibrate", "--board", "nucle", "--target", "cortex-m4"), 2)  # not in the rig
