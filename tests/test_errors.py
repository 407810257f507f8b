"""Bad input gets one clear line, a hint and its documented exit code; nothing is lost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, assert_clean_error


@pytest.fixture
def out_with_previous_build(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous build")
    return out


def _unchanged(out: Path) -> bool:
    return sorted(p.name for p in out.iterdir()) == ["keep.txt"] and (out / "keep.txt").read_text() == "previous build"


@pytest.mark.parametrize("name, content", [
    ("truncated.tflite", "truncate"),
    ("garbage.tflite", b"\x00" * 4 + b"TFL3" + bytes(range(256)) * 4),
    ("notes.txt", b"this is not a model\n"),
    ("empty.tflite", b""),
    ("corrupt.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 100),
    ("corrupt.keras", b"PK\x03\x04" + b"\x00" * 100),
    ("renamed.h5", b"just text"),
])
def test_bad_model_exits_65_and_keeps_out(cli, tmp_path: Path, out_with_previous_build: Path,
                                          name: str, content: bytes | str) -> None:
    path = tmp_path / name
    if content == "truncate":
        data = (FIXTURES / "tiny_int8.tflite").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)  # type: ignore[arg-type]
    r = cli("build", path, "--target", "esp32", "--out", out_with_previous_build)
    assert_clean_error(r, 65)
    assert _unchanged(out_with_previous_build)


def test_savedmodel_folder_without_pb(cli, tmp_path: Path) -> None:
    (tmp_path / "sm" / "variables").mkdir(parents=True)
    assert_clean_error(cli("analyze", tmp_path / "sm"), 65)


def test_missing_model(cli, tmp_path: Path) -> None:
    assert_clean_error(cli("build", tmp_path / "nope.tflite", "--target", "esp32"), 65)


def test_unsupported_op_for_tflm_exits_65_naming_it(cli, tmp_path: Path, out_with_previous_build: Path) -> None:
    r = cli("build", FIXTURES / "topk_float.tflite", "--target", "cortex-m4", "--out", out_with_previous_build)
    assert_clean_error(r, 65)
    assert "TOPK_V2" in r.err
    assert _unchanged(out_with_previous_build)


def test_unsupported_op_is_flagged_by_analyze(cli) -> None:
    r = cli("analyze", FIXTURES / "topk_float.tflite", "--target", "cortex-m4", "--json")
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["unsupported_ops"] == ["TOPK_V2"]
    assert [row["op"] for row in doc["layers"] if not row["supported"]] == ["TOPK_V2"]
    assert doc["arena"] is None  # not measurable: TFLM cannot load it


def test_same_model_is_fine_for_litert(cli, tmp_path: Path) -> None:
    r = cli("build", FIXTURES / "topk_float.tflite", "--target", "rpi4", "--quantization", "float32",
            "--out", tmp_path / "o")
    assert r.code == 0, r.err
    assert (tmp_path / "o" / "bundle" / "model.tflite").is_file()


def test_data_of_the_wrong_shape_exits_65(cli, tiny: Path, tmp_path: Path, out_with_previous_build: Path) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((5, 7, 7, 1), np.float32))
    r = cli("build", tiny, "--target", "esp32", "--val", tmp_path / "bad.npz", "--out", out_with_previous_build)
    assert_clean_error(r, 65)
    assert "[7, 7, 1]" in r.err and "[8, 8, 1]" in r.err
    assert _unchanged(out_with_previous_build)


def test_bin_files_of_the_wrong_size_exit_65(cli, tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bins"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"\x00" * 63)
    assert_clean_error(cli("build", tiny, "--target", "esp32", "--val", folder, "--out", tmp_path / "o"), 65)
    assert not (tmp_path / "o").exists()


def test_labels_count_mismatch_exits_65(cli, tiny: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8, 1), np.int8), y=np.zeros(3))
    assert_clean_error(cli("build", tiny, "--target", "esp32", "--val", tmp_path / "d.npz"), 65)


def test_corrupt_npz_exits_65(cli, tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04broken")
    assert_clean_error(cli("build", tiny, "--target", "esp32", "--val", tmp_path / "d.npz"), 65)


def test_unknown_target_and_bad_options_exit_2(cli, tiny: Path) -> None:
    assert_clean_error(cli("build", tiny, "--target", "esp8266"), 2)
    assert_clean_error(cli("build", tiny, "--target", "esp32", "--ram-budget", "lots"), 2)
    assert_clean_error(cli("build", tiny, "--target", "esp32", "--quantization", "float16"), 2)
    assert_clean_error(cli("build", tiny), 2)  # argparse's usage errors too, in the same format


def test_json_errors_are_one_json_document(cli, tmp_path: Path) -> None:
    (tmp_path / "x.tflite").write_bytes(b"nope")
    r = cli("build", tmp_path / "x.tflite", "--target", "esp32", "--json")
    assert r.code == 65
    err = json.loads(r.out)["error"]
    assert err["exit_code"] == 65 and err["hint"]


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    """The installed entry point, in a real process: native libraries must not leak output either."""
    import subprocess
    import sys

    (tmp_path / "x.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    proc = subprocess.run([sys.executable, "-m", "edgeforge", "analyze", str(tmp_path / "x.h5")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 65
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 2, proc.stderr
