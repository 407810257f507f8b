"""The digits CNN as an int8 .tflite source with labelled int8 validation data (a fixture the search and
channel tests import; trained once per session: the second module finds it in the session's temp folder)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass
class Digits:
    model: Path  # int8 .tflite
    val: Path  # int8 inputs in the model's input quantization, with labels
    weight_bytes: int


@pytest.fixture(scope="session")
def digits_int8(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    from edgeforge.quiet import captured_output, quiet_tensorflow_env

    quiet_tensorflow_env()
    with captured_output():
        import keras
    from sklearn.datasets import load_digits

    from edgeforge.build import prepare
    from edgeforge.events import NullReporter
    from edgeforge.target.loader import load_registry

    out = tmp_path_factory.getbasetemp() / "digits-int8"
    done = out / "done.json"
    if done.is_file():
        return Digits(out / "int8.tflite", out / "val.npz", int(json.loads(done.read_text())["weight_bytes"]))
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    n = 1000
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 1, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy")
    with captured_output():
        model.fit(x[:n], y[:n], epochs=15, batch_size=64, verbose=0, shuffle=False)
    model.save(out / "model.keras")
    np.savez(out / "calib.npz", x=x[:200], y=y[:200])
    prepared, _ = prepare(out / "model.keras", load_registry().get("cortex-m4"), "int8", "tflm", out / "calib.npz",
                          None, 200, NullReporter())
    (out / "int8.tflite").write_bytes(prepared.model)
    inp = prepared.info.input_tensors()[0]
    q = np.clip(np.round(x[n:] / inp.scale[0]) + inp.zero_point[0], -128, 127).astype(np.int8)
    np.savez(out / "val.npz", x=q, y=y[n:])
    done.write_text(json.dumps({"weight_bytes": prepared.info.weight_bytes}))
    return Digits(out / "int8.tflite", out / "val.npz", prepared.info.weight_bytes)
