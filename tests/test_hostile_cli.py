"""Hostile command-line input (issue 14 items 3, 9, 10; issue 15): no option injection into ssh/scp/PlatformIO,
no make expansion of a folder name, bad option values are usage errors (exit 2) checked before anything is
written, argparse errors in edgeforge's one error format."""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pytest

from conftest import assert_clean_error
from edgeforge.resources import data_dir

EVIL_NAME = "my build $(shell touch MAKE_PWNED)"


@pytest.fixture(scope="module")
def evil_native_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A native build of the tiny model in a folder whose name has a space and a make function call."""
    from edgeforge.cli.main import main

    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("needs make and cc")
    root = tmp_path_factory.mktemp("evil")
    out = root / EVIL_NAME
    code = main(["build", str(Path(__file__).parent / "fixtures" / "tiny_int8.tflite"), "--target", "cortex-m4",
                 "--runtime", "native", "--out", str(out), "-q"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def pi_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeforge.cli.main import main

    out = tmp_path_factory.mktemp("pi") / "rpi4"
    assert main(["build", str(Path(__file__).parent / "fixtures" / "tiny_int8.tflite"), "--target", "rpi4",
                 "--out", str(out), "-q"]) == 0
    return out


def _no_marker(*folders: Path, name: str) -> None:
    for folder in folders:
        assert not list(folder.rglob(name)), f"{name} appeared under {folder}"


@pytest.mark.parametrize("port", ["ssh://-oProxyCommand=touch PWNED", "ssh://pi@-oProxyCommand=touch PWNED",
                                  "ssh://-oProxyCommand=touch PWNED@host", "ssh://pi@host;touch PWNED",
                                  "ssh://pi@host touch PWNED", "ssh://"])
def test_ssh_port_cannot_inject_an_option(cli, pi_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          port: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert_clean_error(cli("bench", pi_build, "--port", port, "--count", "1", "--runs", "1"), 2)
    assert_clean_error(cli("flash", pi_build, "--port", port), 2)
    _no_marker(tmp_path, pi_build.parent, name="PWNED")


def test_ssh_commands_end_options_before_the_host(cli, pi_build: Path) -> None:
    import json

    r = cli("flash", pi_build, "--port", "ssh://pi@raspberrypi.local", "--dry-run", "--json")
    assert r.code == 0, r.err
    ssh, scp = json.loads(r.out)["commands"]
    assert ssh[ssh.index("pi@raspberrypi.local") - 1] == "--"
    assert ssh[-2:] == ["--", "edgeforge"]  # remote mkdir -p -- edgeforge
    assert scp[-1] == "pi@raspberrypi.local:edgeforge/" and "--" in scp[:scp.index(scp[-2])]
    assert all(Path(f).is_absolute() for f in scp[scp.index("--") + 1:-1])
    from edgeforge.device.boards import ssh_command

    assert ssh_command("ssh://pi@10.0.0.2", "true") == ["ssh", "-o", "BatchMode=yes", "--", "pi@10.0.0.2", "true"]


def test_serial_upload_port_cannot_be_an_option(cli, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "esp 32 $(x)"
    espidf = tmp_path / "idf"
    assert cli("build", tiny, "--target", "esp32", "--out", espidf, "-q").code == 0
    assert_clean_error(cli("flash", espidf, "--port=-e", "--dry-run"), 2)  # esptool's argv
    assert cli("build", tiny, "--target", "esp32", "--emitter", "platformio", "--out", out, "-q").code == 0
    assert_clean_error(cli("flash", out, "--port", "--help", "--dry-run"), 2)
    assert_clean_error(cli("flash", out, "--port=-e", "--dry-run"), 2)
    import json

    cmd = json.loads(cli("flash", out, "--port", "/dev/ttyUSB0", "--dry-run", "--json").out)["commands"][0]
    assert cmd[-1] == "--upload-port=/dev/ttyUSB0"
    # the human form is quoted: pasted into a shell it runs exactly that argv
    line = cli("flash", out, "--port", "/dev/ttyUSB0", "--dry-run").out.splitlines()[0]
    assert shlex.split(line.removeprefix("would run: ")) == cmd


def test_build_folder_with_space_and_make_function_flashes_and_benches(cli, evil_native_build: Path,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(evil_native_build / "firmware", ignore_errors=True)
    r = cli("flash", evil_native_build, "--board", "host-sim")
    assert r.code == 0, r.err
    assert (evil_native_build / "firmware" / "ef_bench_host").is_file()
    shutil.rmtree(evil_native_build / "firmware")
    r = cli("bench", evil_native_build, "--board", "host-sim", "--count", "1", "--runs", "1")
    assert r.code == 0, r.err
    assert "byte-identical" in r.out
    _no_marker(tmp_path, evil_native_build.parent, data_dir("firmware"), Path(os.getcwd()), name="MAKE_PWNED")


@pytest.fixture(scope="module")
def _one_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeforge.cli.main import main

    out = tmp_path_factory.mktemp("previous") / "out"
    assert main(["build", str(Path(__file__).parent / "fixtures" / "tiny_int8.tflite"), "--target", "cortex-m4",
                 "--out", str(out), "-q"]) == 0
    return out


@pytest.fixture
def previous_build(_one_build: Path, tmp_path: Path) -> Path:
    """A complete earlier build in --out (a copy per test)."""
    out = tmp_path / "out"
    shutil.copytree(_one_build, out)
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("option", [
    ["--flash-budget", "0"], ["--ram-budget", "0"], ["--ram-budget", "0.4"], ["--flash-budget", "-1K"],
    ["--latency-budget-ms", "nan"], ["--latency-budget-ms", "inf"], ["--latency-budget-ms", "0"],
    ["--max-accuracy-drop", "nan"], ["--max-accuracy-drop", "1.5"], ["--epochs", "-1"], ["--epochs", "0"],
    ["--input-std", "0"], ["--input-std", "nan"], ["--input-mean", "inf"], ["--calib-samples", "0"],
    ["--data-quant", "1e999,0"], ["--data-quant", "nan,0"], ["--data-quant", "0,0"], ["--data-quant", "0.5,300"],
    ["--flash-bud", "1M"], ["--targets-dir", "/nonexistent/profiles"],
])
def test_bad_build_options_are_usage_errors_before_anything_is_written(cli, tiny: Path, previous_build: Path,
                                                                        option: list[str]) -> None:
    before = _snapshot(previous_build)
    assert_clean_error(cli("build", tiny, "--target", "cortex-m4", "--out", previous_build, *option), 2)
    assert _snapshot(previous_build) == before
    assert [p.name for p in previous_build.parent.iterdir() if p.name.startswith(".out.")] == []


@pytest.mark.parametrize("layer", [
    "op = inf", "op = nan", "op = 1.0", "op = 1\nstructured = \"false\"\nsparsity = 0.5",
    "op = 1\nbits = \"4\"", "op = 1\nsparsity = nan", "op = 1\nsparsity = inf", "op = 1\nbits = 4.0",
    "op = 1\nstructured = 0",
])
def test_bad_recipe_values_are_usage_errors(cli, tiny: Path, previous_build: Path, tmp_path: Path,
                                            layer: str) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\n[[layer]]\n{layer}\n')
    before = _snapshot(previous_build)
    r = cli("build", tiny, "--target", "cortex-m4", "--out", previous_build, "--recipe", recipe)
    assert_clean_error(r, 2)
    assert "recipe" in r.err
    assert _snapshot(previous_build) == before


def test_a_typed_recipe_still_applies(cli, tiny: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\n[[layer]]\nop = 1\nbits = 4\nsparsity = 0\nstructured = false\n')
    r = cli("build", tiny, "--target", "cortex-m4", "--out", tmp_path / "o", "--recipe", recipe, "--json")
    assert r.code in (0, 3), r.err


@pytest.mark.parametrize("args", [
    ["build", "x.tflite"],  # --target missing
    ["build", "x.tflite", "--target", "esp32", "--quantization", "int3"],
    ["bench", "b", "--board", "host-sim", "--runs", "0"],
    ["bench", "b", "--board", "host-sim", "--warmup", "-1"],
    ["bench", "b", "--board", "host-sim", "--baud", "0"],
    ["bench", "b", "--board", "host-sim", "--port", "/dev/x"],  # mutually exclusive
    ["targets", "--json-o"],  # no guessing of prefixes
    ["flash", "b", "--dry"],
    ["nonsense"],
    [],
])
def test_argparse_errors_use_the_one_error_format_and_json(cli, args: list[str]) -> None:
    r = cli(*args)
    assert_clean_error(r, 2)
    assert "usage:" not in r.err
    r = cli(*args, "--json")
    assert r.code == 2
    err = json.loads(r.out)["error"]
    assert err["exit_code"] == 2 and err["message"] and err["hint"]


def test_build_help_has_groups_and_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeforge.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["build", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for heading in ("target and output:", "data:", "budgets", "compression:", "examples:", "exit codes:"):
        assert heading in text
    assert "edgeforge build kws.tflite --target cortex-m4" in text


def test_targets_dir_that_is_missing_is_an_error(cli, tmp_path: Path) -> None:
    r = cli("targets", "--targets-dir", tmp_path / "nope")
    assert_clean_error(r, 2)
    assert "nope" in r.err
