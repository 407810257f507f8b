"""One input convention for `run` and `bench` (issues 13 and 15): 8-bit data means scale * (q - zero_point)
with its own data quantization (--data-quant, else what the build recorded), converted to the model
input's; a single .bin file works; --data-quant on real-valued data is a usage error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeforge.hostrun import run_batch
from edgeforge.model.tflite import read_tflite
from tests.conftest import assert_clean_error

DATA_QUANT = (0.0078431, -1)  # not the tiny model's input quantization (0.0039196, -128)


def _folder(tiny: Path, path: Path, n: int = 6) -> tuple[Path, np.ndarray]:
    """A .bin folder of int8 inputs in DATA_QUANT, and the same inputs in the model's quantization."""
    info = read_tflite(tiny.read_bytes())
    inp = info.input_tensors()[0]
    real = np.random.default_rng(3).uniform(0, 1, (n, *inp.shape[1:]))
    q = np.clip(np.round(real / DATA_QUANT[0]) + DATA_QUANT[1], -128, 127).astype(np.int8)
    path.mkdir()
    for i, row in enumerate(q):
        (path / f"s{i:02d}.bin").write_bytes(row.tobytes())
    back = (q.astype(np.float32) - DATA_QUANT[1]) * np.float32(DATA_QUANT[0])
    model_q = np.clip(np.round(back / inp.scale[0]) + inp.zero_point[0], -128, 127).astype(np.int8)
    return path, model_q


@pytest.mark.parametrize("runtime", ["tflm", "native"])
def test_run_converts_int8_data_from_the_quantization_the_build_recorded(cli, tiny: Path, tmp_path: Path,
                                                                        runtime: str) -> None:
    folder, model_q = _folder(tiny, tmp_path / "bins")
    quant = f"{DATA_QUANT[0]},{DATA_QUANT[1]}"
    b = cli("build", tiny, "--target", "cortex-m4", "--runtime", runtime, "--val", folder, "--data-quant", quant,
            "--search", "never", "--out", tmp_path / "b", "--json")
    assert b.code == 0, b.err
    assert json.loads(b.out)["compression"]["data_quant"] == {"scale": DATA_QUANT[0], "zero_point": DATA_QUANT[1]}
    model = tiny.read_bytes()
    want = run_batch(model, "tflm", model_q.reshape(len(model_q), 1, *model_q.shape[1:])).reshape(len(model_q), -1)

    r = cli("run", tmp_path / "b", "--input", folder, "--output", tmp_path / "y.npy", "--json")
    assert r.code == 0, r.err
    assert "converted from their data quantization" in json.loads(r.out)["inputs"]
    assert np.array_equal(np.load(tmp_path / "y.npy").reshape(len(want), -1), want)

    # naming the model's own quantization says the data is already in it: no conversion
    info = read_tflite(model)
    own = f"{info.input_tensors()[0].scale[0]!r},{info.input_tensors()[0].zero_point[0]}"
    r = cli("run", tmp_path / "b", "--input", folder, "--data-quant", own, "--output", tmp_path / "z.npy", "--json")
    assert r.code == 0, r.err
    raw = np.stack([np.frombuffer(p.read_bytes(), np.int8) for p in sorted(folder.glob("*.bin"))])
    as_is = run_batch(model, "tflm", raw.reshape(len(raw), *info.input_tensors()[0].shape)).reshape(len(raw), -1)
    assert np.array_equal(np.load(tmp_path / "z.npy").reshape(len(as_is), -1), as_is)

    # a single .bin file is one input
    one = cli("run", tmp_path / "b", "--input", folder / "s00.bin", "--output", tmp_path / "one.npy")
    assert one.code == 0, one.err
    assert np.array_equal(np.load(tmp_path / "one.npy").reshape(1, -1), want[:1])


def test_data_quant_on_real_valued_data_is_a_usage_error(cli, tiny: Path, tmp_path: Path) -> None:
    b = cli("build", tiny, "--target", "cortex-m4", "--runtime", "tflm", "--search", "never", "--out", tmp_path / "b")
    assert b.code == 0, b.err
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8, 1), np.float32))
    r = cli("run", tmp_path / "b", "--input", tmp_path / "x.npy", "--data-quant", "0.5,0", "--output",
            tmp_path / "y.npy")
    assert_clean_error(r, 2)
    assert "--data-quant applies to 8-bit integer data" in r.err


def test_bench_reads_inputs_with_the_same_convention(tiny: Path, tmp_path: Path) -> None:
    from edgeforge.bench.run import _inputs
    from edgeforge.data import InputQuant

    folder, model_q = _folder(tiny, tmp_path / "bins")
    info = read_tflite(tiny.read_bytes())
    from types import SimpleNamespace

    # only the manifest's recorded data quantization matters here
    manifest = SimpleNamespace(compression=SimpleNamespace(data_quant=DATA_QUANT))
    unrecorded = SimpleNamespace(compression=SimpleNamespace(data_quant=None))
    assert np.array_equal(_inputs(folder, info, 4, manifest), model_q[:4])
    assert np.array_equal(_inputs(folder, info, 4, unrecorded, InputQuant(*DATA_QUANT)), model_q[:4])


@pytest.mark.mlperf
def test_the_bundle_runner_takes_raw_mlperf_samples_as_already_quantized(cli, mlperf: Path, tmp_path: Path) -> None:
    """The raw kws01 'Stop' sample (int8, in the int8 model's input quantization) is class 7; the runner used
    to quantize those integers a second time (class 11)."""
    import subprocess
    import sys

    r = cli("build", mlperf / "kws" / "kws_ref_model_int8.tflite", "--target", "rpi4", "--out", tmp_path / "pi")
    assert r.code == 0, r.err
    runner = tmp_path / "pi" / "bundle" / "run_model.py"
    sample = mlperf / "samples" / "kws01" / "tst_000000_Stop_7.bin"
    np.save(tmp_path / "s.npy", np.fromfile(sample, np.int8).reshape(1, 49, 10, 1))
    for given in ([str(sample)], [str(tmp_path / "s.npy")], [str(sample), "--data-quant", "0.584703,83"]):
        proc = subprocess.run([sys.executable, str(runner), *given, "--runs", "1", "--warmup", "0"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["top1_index"] == 7, given
