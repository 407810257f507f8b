"""The three MLPerf Tiny int8 models through the native kernels: byte-identical outputs with the
tflite-micro reference interpreter on the official sample inputs and on seeded random inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import FULL
from harness import Program, random_inputs, tflm_run_many

from edgeforge.model.tflite import read_tflite

pytestmark = pytest.mark.mlperf


def _check(model: bytes, batches: list[list[np.ndarray]], single_rounding: bool = False) -> Program:
    info = read_tflite(model)
    program = Program([(info, model)], single_rounding)
    got = program.run_many([(0, xs) for xs in batches])
    want = tflm_run_many(model, batches)
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True))
           if any(a.tobytes() != b.astype(a.dtype).tobytes() or a.shape != b.shape for a, b in zip(g, w, strict=True))]
    assert not bad, f"{len(bad)}/{len(batches)} inputs differ from tflite-micro, first: {bad[:5]}"
    return program


def test_kws_samples_and_random(mlperf: Path) -> None:
    model = (mlperf / "kws" / "kws_ref_model_int8.tflite").read_bytes()
    info = read_tflite(model)
    assert set(info.op_names) == {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
                                  "SOFTMAX"}
    files = sorted((mlperf / "samples" / "kws01").glob("*.bin"))
    files = files if FULL else files[:: max(len(files) // 60, 1)]
    files.append(mlperf / "samples" / "kws01_ref_submission_input.bin")
    samples = [[np.frombuffer(f.read_bytes(), np.int8).reshape(1, 49, 10, 1)] for f in files]
    rng = np.random.default_rng(2024)
    randoms = [random_inputs(info, rng) for _ in range(40 if FULL else 10)]
    _check(model, samples + randoms)
    # the reference firmware's built-in input is "On" (class 5)
    out = Program([(info, model)]).run(0, samples[-1])[0]
    assert int(np.argmax(out)) == 5


def test_ic_resnet_random(mlperf: Path) -> None:
    model = (mlperf / "ic" / "pretrainedResnet_quant.tflite").read_bytes()
    info = read_tflite(model)
    assert "ADD" in info.op_names
    rng = np.random.default_rng(7)
    batches = [random_inputs(info, rng) for _ in range(30 if FULL else 6)]
    # natural-looking images too: smooth gradients over the full int8 range
    yy, xx = np.mgrid[0:32, 0:32]
    for c in range(3):
        img = ((yy * (c + 1) * 4 + xx * 3) % 256 - 128).astype(np.int8)
        batches.append([np.stack([img, np.roll(img, c, 0), np.roll(img, c, 1)], axis=-1)[None]])
    _check(model, batches)


def test_ad_recording_windows_and_random(mlperf: Path) -> None:
    model = (mlperf / "ad" / "ad01_int8.tflite").read_bytes()
    info = read_tflite(model)
    t = info.tensors[info.inputs[0]]
    frames = np.fromfile(mlperf / "samples" / "ad01_normal_id_01_00000000_hist_librosa.bin", np.float32)
    frames = frames.reshape(200, 128)
    step = 1 if FULL else 8
    batches = []
    for w in range(0, 196, step):
        x = frames[w : w + 5].reshape(1, 640) / t.scale[0]
        q = np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5) + t.zero_point[0], -128, 127).astype(np.int8)
        batches.append([q])
    rng = np.random.default_rng(11)
    batches += [random_inputs(info, rng) for _ in range(40 if FULL else 10)]
    _check(model, batches)


def test_single_rounding_build_runs_and_stays_within_one_lsb(mlperf: Path) -> None:
    """-DEF_SINGLE_ROUNDING=1 with single-rounding parameters: a different, valid rounding mode.
    On AD (FC layers only) it may differ from TFLM's default double rounding, but only by a few LSB."""
    model = (mlperf / "ad" / "ad01_int8.tflite").read_bytes()
    info = read_tflite(model)
    rng = np.random.default_rng(5)
    batches = [random_inputs(info, rng) for _ in range(10)]
    double = Program([(info, model)]).run_many([(0, xs) for xs in batches])
    single = Program([(info, model)], single_rounding=True).run_many([(0, xs) for xs in batches])
    diffs = [np.abs(d[0].astype(int) - s[0].astype(int)) for d, s in zip(double, single, strict=True)]
    assert max(int(d.max()) for d in diffs) <= 8
    assert sum(int((d > 0).sum()) for d in diffs) > 0  # the switch really changes the arithmetic
