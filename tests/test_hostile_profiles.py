"""Hostile target profiles (issue 14 items 2, 9, 10; issue 15): profiles auto-load from ./.edgeforge/targets/, so
every value that reaches a compiler, make, ssh or a generated INI file is checked against a safe grammar, and a bad
profile is one exit-2 error naming its file and field, before anything runs or is written."""

from __future__ import annotations

import configparser
import json
import shutil
from pathlib import Path

import pytest

from conftest import assert_clean_error
from edgeforge.errors import TargetError
from edgeforge.target import load_registry


def _profile(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, name: str = "evil") -> Path:
    """A profile in the working directory's .edgeforge/targets/, where edgeforge finds it by itself."""
    monkeypatch.chdir(tmp_path)
    return _profile(tmp_path / ".edgeforge" / "targets", name, text)


def _error(folder: Path, name: str) -> TargetError:
    with pytest.raises(TargetError) as exc:
        load_registry([folder]).get(name)
    assert exc.value.exit_code == 2
    return exc.value


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_cflags_wrapper_runs_nothing_in_a_native_build(cli, tiny: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "PWNED"
    path = _project(tmp_path, monkeypatch, 'id = "evil"\nextends = "cortex-m4"\n[toolchain]\n'
                    f'cflags = ["-mthumb", "-wrapper", "/bin/sh,-c,touch {marker};exec \\"$0\\" \\"$@\\""]\n')
    r = cli("build", tiny, "--target", "evil", "--runtime", "native", "--out", tmp_path / "out")
    assert_clean_error(r, 2)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    assert str(path) in r.err and "toolchain.cflags.1" in r.err and "'-wrapper'" in r.err


@pytest.mark.parametrize("flag", [
    "-wrapper", "-B/tmp/evil", "-specs=/tmp/evil.specs", "@/tmp/flags", "-fplugin=/tmp/evil.so",
    "-fplugin-arg-x-y=1", "-Wl,-plugin,/tmp/evil.so", "-Wa,--defsym,x=1", "-Wp,-include,/etc/passwd",
    "-include", "-o", "/tmp/x", "-DX=$(shell touch PWNED)", "-DX=`id`", "-DX=a b", "-D1X", "-fprofile-generate=/tmp",
    "-fdump-rtl-all", "-x", "--sysroot=/tmp", "-iprefix/tmp", "-std=c99;id", "-O2\n", "-O2 -B/tmp",
])
def test_unsafe_compiler_flags_are_refused(tmp_path: Path, flag: str) -> None:
    path = _profile(tmp_path, "evil", 'id = "evil"\nextends = "cortex-m4"\n'
                    f'[toolchain]\ncflags = [{json.dumps(flag)}]\n[platformio]\nbuild_flags = ["-DOK"]\n')
    err = _error(tmp_path, "evil")
    assert str(path) in err.message and "toolchain.cflags.0" in err.message
    path.write_text(f'id = "evil"\nextends = "cortex-m4"\n[platformio]\nbuild_flags = [{json.dumps(flag)}]\n')
    err = _error(tmp_path, "evil")
    assert str(path) in err.message and "platformio.build_flags.0" in err.message


def test_every_bundled_flag_fits_the_grammar() -> None:
    """The grammar is not so tight that the project's own profiles (or usual flags) fail."""
    for t in load_registry().all():
        assert t.id
    from jsonschema import Draft202012Validator

    from edgeforge.target.schema import COMPILER_FLAG
    for flag in ["-O2", "-Os", "-Ofast", "-mcpu=cortex-m55", "-march=armv8.1-m.main+mve", "-mfpu=fpv5-d16",
                 "-mlongcalls", "-ffunction-sections", "-fno-exceptions", "-DEF_X", "-DN=3", "-DV=1.5e-3",
                 "-UNDEBUG", "-Wall", "-Wno-unused-parameter", "-std=gnu++17", "-g3", "-ggdb"]:
        assert Draft202012Validator(COMPILER_FLAG).is_valid(flag), flag


@pytest.mark.parametrize("field,value", [
    ("name", "Evil\nextra_scripts = pre:/tmp/evil.py"),
    ("platformio.board", "esp32dev\nextra_scripts = pre:/tmp/evil.py"),
    ("platformio.build_flags", ["-DX\nextra_scripts = pre:/tmp/evil.py"]),
    ("platformio.lib_deps", ["x/y\nextra_scripts = pre:/tmp/evil.py"]),
    ("platformio.env", "esp32\n[env:evil]"),
    ("platformio.upload_protocol", "esptool\nextra_scripts = pre:/tmp/evil.py"),
    ("platformio.monitor_filters", ["default\rextra_scripts = pre:/tmp/evil.py"]),
    ("platformio.board_build_partitions", "huge_app.csv\nextra_scripts = x"),
    ("platformio.tflm_header", "x.h>\n#include <evil.h"),
    ("description", "tab\there"),
])
def test_newlines_never_reach_platformio_ini(cli, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              field: str, value: object) -> None:
    section, _, key = field.rpartition(".")
    body = f"{key} = {json.dumps(value)}\n"
    text = 'id = "evil"\nextends = "esp32"\n' + (body if not section else f"[{section}]\n{body}")
    path = _project(tmp_path, monkeypatch, text)
    r = cli("build", tiny, "--target", "evil", "--out", tmp_path / "out")
    assert_clean_error(r, 2)
    assert str(path) in r.err and field in r.err
    assert not (tmp_path / "out").exists()


def test_a_good_custom_profile_still_renders_a_parseable_ini(tmp_path: Path) -> None:
    from edgeforge.emit.mcu import platformio

    _profile(tmp_path, "mine", 'id = "mine"\nextends = "esp32"\nname = "My ESP32 (rev. 3, 4 MB)"\n'
             '[platformio]\nboard = "esp32-s3-devkitc-1"\nplatform = "espressif32@6.5.0"\n'
             'build_flags = ["-DEF_MINE=1", "-Os", "-Wno-unused"]\n'
             'lib_deps = ["tanakamasayuki/TensorFlowLite_ESP32 @ ^1.0.0", '
             '"https://github.com/tensorflow/tflite-micro-arduino-examples.git#abc123"]\n')
    t = load_registry([tmp_path]).get("mine")
    io = {"index": 0, "name": "t", "dtype": "int8", "shape": [1, 4], "bytes": 4, "count": 4, "scale": "0.5",
          "zero_point": 0, "ctype": "int8_t", "member": "int8"}  # main.cpp needs the model's I/O
    ctx = {"version": "x", "target": {**t.data}, "symbol": "g_model", "ops": [], "runtime": "tflm",
           "tensors": [{**io, "role": "input"}, {**io, "role": "output"}],
           "model": {"name": "m", "sha256": "0", "bytes": 1, "hex_rows": ["0x00,"]},
           "arena": {"measured": 1, "emitted": 16, "margin_percent": 10}}
    parser = configparser.ConfigParser()
    parser.read_string(platformio(ctx)["platformio.ini"].decode())
    env = parser[f"env:{t.platformio['env']}"]
    assert env["platform"] == "espressif32@6.5.0" and "-DEF_MINE=1" in env["build_flags"].split()


@pytest.mark.parametrize("remote", ["-oProxyCommand=touch PWNED", "x;touch PWNED", "a b", "$(id)", "x\ny"])
def test_remote_dir_is_a_plain_path(tmp_path: Path, remote: str) -> None:
    path = _profile(tmp_path, "pi", f'id = "pi"\nextends = "rpi4"\n[flash]\nremote_dir = {json.dumps(remote)}\n')
    err = _error(tmp_path, "pi")
    assert str(path) in err.message and "flash.remote_dir" in err.message


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "5e-324", "0", "1e300"])
def test_absurd_clock_is_a_profile_error(cli, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         value: str) -> None:
    path = _project(tmp_path, monkeypatch, f'id = "evil"\nextends = "esp32"\n[hardware]\nclock_mhz = {value}\n')
    r = cli("build", tiny, "--target", "evil", "--out", tmp_path / "out")
    assert_clean_error(r, 2)
    assert str(path) in r.err and "hardware.clock_mhz" in r.err
    assert not (tmp_path / "out").exists()


def test_nan_anywhere_is_refused(tmp_path: Path) -> None:
    _profile(tmp_path, "evil", 'id = "evil"\nextends = "cortex-m4"\n[perf.ops.native]\nconv_2d = nan\n')
    assert "perf.ops.native.conv_2d" in _error(tmp_path, "evil").message


def test_the_error_names_the_file_that_sets_the_field(tmp_path: Path) -> None:
    """A bad value inherited from a user's own base is reported at that base, not at the child."""
    base = _profile(tmp_path, "base", 'id = "base"\nextends = "cortex-m4"\n[toolchain]\ncflags = ["-B/tmp"]\n')
    _profile(tmp_path, "child", 'id = "child"\nextends = "base"\nname = "child"\n')
    err = _error(tmp_path, "child")
    assert str(base) in err.message and "toolchain.cflags.0" in err.message


def test_a_deep_extends_chain_is_a_clean_error(cli, tmp_path: Path) -> None:
    """1,500 levels: deeper than Python's recursion limit (the old loader died with RecursionError, exit 70)."""
    _profile(tmp_path, "p0", 'id = "p0"\nextends = "cortex-m4"\n')
    for i in range(1, 1500):
        _profile(tmp_path, f"p{i}", f'id = "p{i}"\nextends = "p{i - 1}"\n')
    r = cli("targets", "show", "p1499", "--targets-dir", tmp_path)
    assert_clean_error(r, 2)
    assert "deeper than" in r.err and "p1499.toml" in r.err
    # a chain of reasonable length still works
    assert load_registry([tmp_path]).get("p20").hardware["cpu"] == "Cortex-M4F"


def test_a_new_id_does_not_inherit_aliases(cli, tmp_path: Path) -> None:
    _profile(tmp_path, "m4-lowpower", 'id = "m4-lowpower"\nextends = "cortex-m4"\n[budget]\nlatency_ms = 50.0\n')
    r = cli("targets", "--targets-dir", tmp_path)
    assert r.code == 0, r.err
    row = next(ln for ln in r.out.splitlines() if ln.startswith("m4-lowpower"))
    assert "nucleo_l4r5zi" not in row
    assert load_registry([tmp_path]).get("nucleo_l4r5zi").id == "cortex-m4"


def test_an_override_keeps_the_aliases(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `edgeforge calibrate` writes (extends = its own id) must not make the target's aliases unknown."""
    _project(tmp_path, monkeypatch, 'id = "cortex-m4"\nextends = "cortex-m4"\n[perf]\ncycles_per_mac = 3.0\n',
             name="cortex-m4")
    r = cli("targets", "show", "nucleo_l4r5zi", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["id"] == "cortex-m4" and doc["perf"]["cycles_per_mac"] == 3.0
    assert "nucleo_l4r5zi" in doc["aliases"]
    assert cli("targets").code == 0
