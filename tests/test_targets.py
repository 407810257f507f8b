"""Contract tests over the target-profile data, and the `targets` command."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import pytest

from edgeforge.errors import TargetError
from edgeforge.resources import data_dir
from edgeforge.target import load_registry

REQUIRED = {"esp32", "esp32s3", "cortex-m4", "cortex-m7", "rp2040", "cortex-m55", "android-arm64", "rpi4", "rpi5"}


def test_every_builtin_target_validates_and_is_unambiguous() -> None:
    reg = load_registry()
    targets = {t.id: t for t in reg.all()}
    assert REQUIRED <= set(targets)
    for t in targets.values():
        hw = t.hardware
        assert t.budget.model_flash_bytes <= hw["flash_bytes"], t.id
        assert t.budget.model_ram_bytes <= hw["ram_bytes"], t.id
        if t.is_mcu:
            assert t.runtime == "tflm" and t.quantization[0] == "int8", t.id
        else:
            assert "bundle" in t.emit and t.runtime == "litert", t.id
        if "platformio" in t.emit:
            assert t.platformio, t.id


def test_every_hardware_number_names_its_source() -> None:
    """Sources disagree on memory sizes, so each profile says which one it used."""
    for path in sorted(data_dir("targets").glob("*.toml")):
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines):
            if re.match(r"(clock_mhz|flash_bytes|ram_bytes|cores)\s*=", line):
                near = " ".join(lines[max(0, n - 4): n + 4]).lower()
                assert "source" in near, f"{path.name}:{n + 1}: {line.strip()} has no source comment"


def test_aliases_and_case_resolve_to_the_profile() -> None:
    reg = load_registry()
    assert reg.get("nucleo_l4r5zi").id == "cortex-m4"
    assert reg.get("ESP32").id == "esp32"
    assert reg.get("pico").id == "rp2040"


def test_unknown_target_suggests_close_ids() -> None:
    with pytest.raises(TargetError) as exc:
        load_registry().get("esp3")
    assert "esp32" in exc.value.hint


def test_user_profile_overrides_a_budget_through_extends_self(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "esp32.toml").write_text('id = "esp32"\nextends = "esp32"\n[budget]\nmodel_ram_bytes = 4096\n')
    monkeypatch.setenv("EDGEFORGE_TARGETS_PATH", str(tmp_path))
    t = load_registry().get("esp32")
    assert t.budget.model_ram_bytes == 4096
    assert t.hardware["clock_mhz"] == 240  # everything else inherited
    assert t.source == str(tmp_path / "esp32.toml")


def test_project_folder_adds_a_new_target(tmp_path: Path) -> None:
    folder = tmp_path / ".edgeforge" / "targets"
    folder.mkdir(parents=True)
    (folder / "my-board.toml").write_text(
        'id = "my-board"\nextends = "cortex-m7"\nname = "My board"\naliases = ["mine"]\n'
        '[hardware]\nram_bytes = 131072\n[budget]\nmodel_ram_bytes = 65536\n')
    reg = load_registry(cwd=tmp_path)
    t = reg.get("mine")
    assert (t.id, t.hardware["ram_bytes"], t.platformio["board"]) == ("my-board", 131072, "nucleo_f746zg")
    assert t.profile_hash != reg.get("cortex-m7").profile_hash


def test_invalid_profile_is_a_usage_error_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('id = "bad"\nextends = "esp32"\n[budget]\nmodel_ram_bytes = "lots"\n')
    reg = load_registry([tmp_path])
    with pytest.raises(TargetError) as exc:
        reg.get("bad")
    assert "budget.model_ram_bytes" in exc.value.message and exc.value.exit_code == 2


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('id = "a"\nextends = "b"\n')
    (tmp_path / "b.toml").write_text('id = "b"\nextends = "a"\n')
    with pytest.raises(TargetError, match="cycle"):
        load_registry([tmp_path]).get("a")


def test_platformio_sections_render_valid_ini(tmp_path: Path) -> None:
    """Each [platformio] section gives an INI that configparser accepts (PlatformIO's own check is in
    test_emit_golden)."""
    from edgeforge.emit.mcu import platformio

    for t in load_registry().all():
        if not t.platformio:
            continue
        io = {"index": 0, "name": "t", "dtype": "int8", "shape": [1, 4], "bytes": 4, "count": 4, "scale": "0.5",
              "zero_point": 0, "ctype": "int8_t", "member": "int8"}
        ctx = {"version": "x", "target": {**t.data}, "symbol": "g_model", "ops": [], "runtime": "tflm",
               "tensors": [{**io, "role": "input"}, {**io, "role": "output"}],
               "model": {"name": "m", "sha256": "0", "bytes": 1, "hex_rows": ["0x00,"]},
               "arena": {"measured": 1, "emitted": 16, "margin_percent": 10}}
        ini = platformio(ctx)["platformio.ini"].decode()
        parser = configparser.ConfigParser()
        parser.read_string(ini)
        env = parser[f"env:{t.platformio['env']}"]
        assert env["board"] == t.platformio["board"] and env["platform"] == t.platformio["platform"]


def test_targets_json_lists_every_profile(cli) -> None:
    r = cli("targets", "--json")
    assert r.code == 0
    doc = json.loads(r.out)
    assert REQUIRED <= {t["id"] for t in doc["targets"]}
    assert all(len(t["profile_sha256"]) == 64 for t in doc["targets"])


def test_targets_show_human_and_json(cli) -> None:
    r = cli("targets", "show", "nucleo-f746zg")
    assert r.code == 0 and "cortex-m7" in r.out and "nucleo_f746zg" in r.out
    r = cli("targets", "show", "rpi5", "--json")
    assert json.loads(r.out)["kind"] == "sbc"


def test_targets_show_unknown_exits_2(cli) -> None:
    from conftest import assert_clean_error

    assert_clean_error(cli("targets", "show", "esp8266"), 2)
