"""Trains the bundled example: a small CNN on scikit-learn's handwritten digits (real data, shipped
inside the scikit-learn package, so it works offline). Writes model.keras, calib.npz, val.npz and
labels.txt into --out; `make demo` then builds it for a board."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/examples/digits"))
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()

    from edgeforge.quiet import captured_output, quiet_tensorflow_env

    quiet_tensorflow_env()
    with captured_output():  # TensorFlow's start-up chatter
        import keras
    import numpy as np
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)  # same data split, same weights, every run
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]  # 8x8 grey levels 0..16 -> [0, 1]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    x_train, y_train, x_val, y_val = x[:split], y[:split], x[split:], y[split:]

    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 1, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0, shuffle=False)
    _, acc = model.evaluate(x_val, y_val, verbose=0)

    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "model.keras")
    np.savez(args.out / "calib.npz", x=x_train[:200], y=y_train[:200])
    np.savez(args.out / "val.npz", x=x_val, y=y_val)
    (args.out / "labels.txt").write_text("".join(f"{d}\n" for d in range(10)))
    print(f"trained digits CNN: validation top-1 {acc * 100:.1f}% on {len(x_val)} images -> {args.out}/model.keras")


if __name__ == "__main__":
    main()
