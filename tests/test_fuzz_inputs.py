"""The Python input fuzzer (tests/fuzz/fuzz_inputs.py) as a smoke test, and the findings it made."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, FULL, ROOT, assert_clean_error

RUNS = 3000 if FULL else 400


def test_fuzzer_smoke_run_finds_nothing(tmp_path: Path) -> None:
    """A fixed amount of seeded work: every mutated .tflite, .npz, .npy, .bin, .bin folder and .keras
    input is read or refused with edgeforge's own error; no other exception, hang or crash."""
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz" / "fuzz_inputs.py"), "--runs", str(RUNS),
                           "--seed", "1", "--out", str(tmp_path / "fuzz")], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{\n"):])
    assert summary["executions"] == RUNS and summary["failures"] == 0 and summary["crashes"] == 0
    targets = {k.split(":")[0] for k in summary["by_target"]}
    assert targets == {"tflite", "npz", "npy", "bin", "binfolder", "keras"}
    assert any(k.endswith(":accepted") for k in summary["by_target"])  # the mutants are not all rejects


def test_a_damaged_npy_header_is_a_data_error(cli, tiny: Path, tmp_path: Path) -> None:
    """Found by the fuzzer: numpy's header parser raised tokenize.TokenError (exit 70)."""
    np.save(tmp_path / "d.npy", np.zeros((2, 8, 8, 1), np.float32))
    raw = bytearray((tmp_path / "d.npy").read_bytes())
    raw[raw.index(b"(") + 1] = ord("[")  # an unclosed bracket in the header dict
    (tmp_path / "d.npy").write_bytes(bytes(raw))
    r = cli("build", tiny, "--target", "cortex-m4", "--data", tmp_path / "d.npy", "--out", tmp_path / "o")
    assert_clean_error(r, 65)


def test_a_keras_zip_of_unknown_version_is_a_model_error(cli, tmp_path: Path) -> None:
    """Found by the fuzzer: zipfile raised NotImplementedError on a central directory's version field."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", "{}")
    raw = bytearray(buf.getvalue())
    cd = raw.index(b"PK\x01\x02")
    raw[cd + 6] = 128  # "version needed to extract": 12.8
    (tmp_path / "m.keras").write_bytes(bytes(raw))
    assert_clean_error(cli("analyze", tmp_path / "m.keras"), 65)


def test_a_label_file_that_is_not_utf8_is_a_data_error(cli, tiny: Path, tmp_path: Path) -> None:
    """Found by the fuzzer: UnicodeDecodeError from y_labels.csv (exit 70)."""
    (tmp_path / "a.bin").write_bytes(bytes(64))
    (tmp_path / "y_labels.csv").write_bytes(b"a.bin,10,\xff\xfe\n")
    r = cli("build", tiny, "--target", "cortex-m4", "--data", tmp_path, "--out", tmp_path / "o")
    assert_clean_error(r, 65)


def test_float_graph_handles_per_channel_scales() -> None:
    """Found by the fuzzer: per-channel scales come back from the flatbuffer as numpy arrays."""
    from edgeforge.model.rewrite import float_graph
    from edgeforge.model.tflite import read_tflite

    data = (FIXTURES / "tiny_int8.tflite").read_bytes()
    info = read_tflite(float_graph(data))
    assert any(len(t.scale) > 1 for t in read_tflite(data).tensors)
    assert not any(t.is_constant and t.dtype == "int8" for t in info.tensors)
