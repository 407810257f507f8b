"""Fine-tuning a compression recipe into the Keras source (``--train``): on the digits CNN trained here
(scikit-learn's handwritten digits, real data), fine-tuned pruning + int4 beats post-training by a wide
margin; the Keras weights carry the recipe's zeros; layers map to their Keras kernels; misuse is a
UsageError."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeforge.compress.apply import apply_recipe
from edgeforge.compress.finetune import finetune, finetuned_int8, keras_kernels, map_layers, sparsity_at
from edgeforge.compress.layers import WeightLayer, input_means, weight_layers
from edgeforge.compress.recipe import LayerChoice, Recipe
from edgeforge.data import Dataset, model_view
from edgeforge.errors import UsageError
from edgeforge.evaluate import evaluate
from edgeforge.model.load import load_model
from edgeforge.model.tflite import read_tflite


@dataclass
class Digits:
    path: Path
    prepared: Any
    layers: list[WeightLayer]
    train: Dataset
    val: Dataset


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """The bundled example's CNN (examples/digits/train.py), trained here for 20 epochs."""
    from edgeforge.quiet import captured_output, quiet_tensorflow_env

    quiet_tensorflow_env()
    with captured_output():
        import keras
    from sklearn.datasets import load_digits

    from edgeforge.build import prepare
    from edgeforge.events import NullReporter
    from edgeforge.target.loader import load_registry

    out = tmp_path_factory.mktemp("digits")
    keras.utils.set_random_seed(0)
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_a"),
        keras.layers.MaxPooling2D(2),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw"),
        keras.layers.Conv2D(32, 1, activation="relu", name="conv_b"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax", name="fc"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy")
    with captured_output():
        model.fit(x[:split], y[:split], epochs=20, batch_size=64, verbose=0, shuffle=False)
    model.save(out / "model.keras")
    np.savez(out / "calib.npz", x=x[:200], y=y[:200])
    prepared, _ = prepare(out / "model.keras", load_registry().get("cortex-m4"), "int8", "tflm", out / "calib.npz",
                          None, 200, NullReporter())
    layers = weight_layers(prepared.model, prepared.info)
    return Digits(out / "model.keras", prepared, layers, Dataset(x[:split], y[:split], "digits train"),
                  Dataset(x[split:], y[split:], "digits val"))


def _keras(path: Path) -> Any:
    import keras

    return keras.models.load_model(path, compile=False)


def _means(model: bytes, layers: list[WeightLayer], ds: Dataset) -> dict[int, np.ndarray]:
    """Bias correction inputs, as the search computes them (int8 model inputs, batch 1 each)."""
    info = read_tflite(model)
    t = info.input_tensors()[0]
    x = model_view(ds.head(64), t.dtype, t.scale[0], t.zero_point[0])[:, None]
    return input_means(model, info, layers, x)


def test_layers_map_to_their_keras_kernels(digits: Digits) -> None:
    mapping = map_layers(_keras(digits.path), digits.layers)
    got = {op: (m.ref.layer, m.ref.attr, m.ref.op) for op, m in mapping.items()}
    assert got == {0: ("conv_a", "kernel", "CONV_2D"), 2: ("dw", "kernel", "DEPTHWISE_CONV_2D"),
                   3: ("conv_b", "kernel", "CONV_2D"), 5: ("fc", "kernel", "FULLY_CONNECTED")}
    for op, m in mapping.items():
        assert m.similarity > 0.99
        assert np.allclose(m.gain, 1.0, atol=0.02), op  # no BatchNormalization folded here
        assert m.ref.tflite_shape == tuple(next(la for la in digits.layers if la.op_index == op).values.shape)


def test_finetuned_pruning_and_int4_beat_post_training(digits: Digits, tmp_path: Path) -> None:
    """75% of every layer pruned, int4 wherever TFLite Micro runs it: post-training collapses, fine-tuning
    (5 epochs) recovers; the Keras weights hold the recipe's zeros and int4 grid, so applying the recipe to
    the fine-tuned int8 model changes next to nothing."""
    prep, layers = digits.prepared, digits.layers
    recipe = Recipe.of("p75-int4", {la.op_index: LayerChoice(4, 0.75) for la in layers})

    ptq = apply_recipe(prep.model, layers, recipe, {}, _means(prep.model, layers, digits.train))
    ptq_acc = evaluate(None, ptq, read_tflite(ptq), "tflm", digits.val).top1

    ft = finetune(prep.source, layers, recipe, digits.train, 5, tmp_path, seed=0)
    assert ft.format == "keras" and ft.path.parent == tmp_path
    model, new_layers = finetuned_int8(ft, digits.train.x[:200], layers)
    out = apply_recipe(model, new_layers, recipe, {}, _means(model, new_layers, digits.train))
    ft_acc = evaluate(None, out, read_tflite(out), "tflm", digits.val).top1
    base = evaluate(None, prep.model, prep.info, "tflm", digits.val).top1
    assert ptq_acc is not None and ft_acc is not None and base is not None
    assert ptq_acc < 0.75 and ft_acc > 0.88, (ptq_acc, ft_acc)
    assert ft_acc - ptq_acc > 0.25 and base - ft_acc < 0.06, (base, ptq_acc, ft_acc)

    kernels = {ref.layer: np.asarray(v.numpy()) for ref, v in keras_kernels(_keras(ft.path))}
    for la in layers:
        w = kernels[{0: "conv_a", 2: "dw", 3: "conv_b", 5: "fc"}[la.op_index]]
        target = round(0.75 * w.size)
        if recipe.choice(la.op_index).bits == 8:
            assert np.count_nonzero(w == 0) == target, la.op_index
        else:  # int4 rounds a few more to zero; every weight is on the per-channel 15-level grid
            assert target <= np.count_nonzero(w == 0) <= target + w.size // 20, la.op_index
            flat = w.reshape(-1, w.shape[-1]) if la.op == "CONV_2D" else w.reshape(-1, w.shape[-2] * w.shape[-1])
            peak = np.abs(flat).max(axis=0)
            steps = flat / (np.where(peak > 0, peak, 1.0) / 7)
            assert np.allclose(steps, np.round(steps), atol=1e-3)
    for a, b in zip(new_layers, weight_layers(out, read_tflite(out))):  # the recipe found its zeros and grid
        assert np.abs(b.real() - a.real()).max() <= 0.6 * np.abs(a.real()).max() / 127 + 1e-9, a.op_index


def test_pruning_masks_hold_exactly_the_target_zeros(digits: Digits, tmp_path: Path) -> None:
    recipe = Recipe.of("mix", {0: LayerChoice(8, 0.5, structured=True), 2: LayerChoice(8, 0.3),
                               5: LayerChoice(8, 0.9)})
    ft = finetune(digits.prepared.source, digits.layers, recipe, digits.train.head(256), 1, tmp_path)
    w = {ref.layer: np.asarray(v.numpy()) for ref, v in keras_kernels(_keras(ft.path))}
    dead = np.all(w["conv_a"].reshape(-1, 16) == 0, axis=0)  # HWIO: output channels last
    assert dead.sum() == 8 and np.count_nonzero(w["conv_a"]) == 8 * 9
    assert np.count_nonzero(w["dw"] == 0) == round(0.3 * 144)
    assert np.count_nonzero(w["fc"] == 0) == round(0.9 * 5120)
    assert np.count_nonzero(w["conv_b"] == 0) == 0  # not in the recipe: trained, never pruned
    assert [round(sparsity_at(s, 10, 0.8), 3) for s in (0, 5, 10, 20)] == [0.0, 0.7, 0.8, 0.8]


def test_without_labels_it_distills_silently_and_deterministically(digits: Digits, tmp_path: Path,
                                                                    capfd: pytest.CaptureFixture[str]) -> None:
    recipe = Recipe.of("p50", {3: LayerChoice(4, 0.5)})
    unlabelled = Dataset(digits.train.x[:256], None, "digits x only")
    capfd.readouterr()
    runs = [finetune(digits.prepared.source, digits.layers, recipe, unlabelled, 1, tmp_path / str(i), seed=3)
            for i in range(2)]
    assert capfd.readouterr() == ("", "")
    weights = [[np.asarray(v.numpy()) for v in _keras(r.path).weights] for r in runs]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
    conv_b = {ref.layer: np.asarray(v.numpy()) for ref, v in keras_kernels(_keras(runs[0].path))}["conv_b"]
    assert np.count_nonzero(conv_b == 0) >= 256


def test_only_keras_sources_can_be_fine_tuned(digits: Digits, tiny: Path, tmp_path: Path) -> None:
    source = load_model(tiny)
    layers = weight_layers(source.tflite, read_tflite(source.tflite))
    recipe = Recipe.of("x", {layers[0].op_index: LayerChoice(8, 0.5)})
    with pytest.raises(UsageError) as err:
        finetune(source, layers, recipe, digits.train, 1, tmp_path)
    assert "Keras model (.keras/.h5)" in err.value.hint
    with pytest.raises(UsageError, match="epochs"):
        finetune(digits.prepared.source, digits.layers, recipe, digits.train, 0, tmp_path)


def test_ambiguous_or_foreign_layers_are_usage_errors() -> None:
    """Equal shapes are told apart by the weights; identical weights, or a filter no kernel matches, fail."""
    import keras

    def model(same: bool) -> Any:
        m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="d1"), keras.layers.Dense(8, name="d2")])
        if same:
            m.layers[1].kernel.assign(m.layers[0].kernel.numpy())
        return m

    def layer(op: int, k: np.ndarray) -> WeightLayer:
        t = k.T  # [out, in]
        scale = np.abs(t).max() / 127
        return WeightLayer(op, "FULLY_CONNECTED", f"fc{op}", op, None, np.round(t / scale).astype(np.int8),
                           np.full(8, scale), 0, 64, 0.01)

    m = model(False)
    ks = [np.asarray(la.kernel.numpy()) for la in m.layers]
    got = map_layers(m, [layer(0, ks[1]), layer(1, ks[0])])  # listed in the other order on purpose
    assert (got[0].ref.layer, got[1].ref.layer) == ("d2", "d1")
    same = model(True)
    with pytest.raises(UsageError, match="could be any"):
        map_layers(same, [layer(0, np.asarray(same.layers[0].kernel.numpy()))])
    with pytest.raises(UsageError, match="no Keras layer"):
        map_layers(m, [layer(0, np.zeros((8, 4), np.float32) + 1)])


def test_build_with_train_fine_tunes_the_best_candidates(digits: Digits, cli, tmp_path: Path) -> None:
    """`edgeforge build --train DATA --epochs N`: the search fine-tunes its best pruned/int4 candidates,
    verifies them next to their post-training versions, and the report says how it trained."""
    np.savez(tmp_path / "train.npz", x=digits.train.x, y=digits.train.y)
    np.savez(tmp_path / "val.npz", x=digits.val.x, y=digits.val.y)
    budget = int(0.45 * digits.prepared.info.weight_bytes)
    r = cli("build", digits.path, "--target", "cortex-m4", "--runtime", "native", "--data",
            digits.path.parent / "calib.npz", "--val", tmp_path / "val.npz", "--flash-budget", budget,
            "--train", tmp_path / "train.npz", "--epochs", 3, "--out", tmp_path / "o", "--json")
    assert r.code == 0, r.err
    report = __import__("json").loads((tmp_path / "o" / "report.json").read_text())
    assert report["training"].startswith("fine-tuned: 3 epochs")
    tuned = [c for c in report["candidates"] if c["kind"] == "fine-tuned"]
    assert tuned and all(c["evaluated"] == "verified" for c in tuned)
    chosen = next(c for c in report["candidates"] if c["id"] == report["chosen"])
    assert chosen["flash_bytes"] <= budget
    ptq = {c["summary"]: c for c in report["candidates"] if c["kind"] != "fine-tuned"}
    for c in tuned:  # fine-tuning recovers what post-training pruning/int4 lost
        assert c["accuracy"] >= ptq[c["summary"]]["accuracy"] - 0.01
