"""Knowledge distillation (issue 13 item 5): students of a Keras teacher (fewer channels), trained against
its soft outputs within a wall-time budget, converted to int8 and verified like any candidate."""

from __future__ import annotations

import json
from pathlib import Path

from edgeforge.model.tflite import read_tflite
from tests.compress.digits_int8 import Digits, digits_int8  # noqa: F401 (the fixture)
from tests.conftest import assert_clean_error


def _quant(d: Digits) -> str:
    inp = read_tflite(d.model.read_bytes()).input_tensors()[0]
    return f"{inp.scale[0]!r},{inp.zero_point[0]}"  # the int8 validation inputs' quantization


def test_students_are_trained_within_the_budget_and_verified_like_any_candidate(cli, digits_int8: Digits,
                                                                               tmp_path: Path) -> None:
    keras = digits_int8.model.parent / "model.keras"
    r = cli("build", keras, "--target", "cortex-m4", "--runtime", "native", "--data",
            digits_int8.model.parent / "calib.npz", "--val", digits_int8.val, "--data-quant", _quant(digits_int8),
            "--flash-budget", 2600, "--distill", "always", "--distill-minutes", "0.2", "--out", tmp_path / "o",
            "--json")
    assert r.code in (0, 3), r.err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    base = report["candidates"][0]
    assert base["verified"]["identical_outputs"]  # the reference is verified before any student
    students = [c for c in report["candidates"] if c["kind"] == "distilled"]
    assert len(students) == 4  # two widths, each also all-int4
    for s in students:
        assert s["flash_bytes"] < base["flash_bytes"] and s["latency_ms"] < base["latency_ms"]
        assert "against the teacher's soft outputs" in s["how"] and "seed" in s["how"]
        assert "wall-time budget" in s["how"] or "epoch limit" in s["how"]
    fitting = [s for s in students if "model_flash_bytes" not in s["misses"]]
    assert fitting and all(s["evaluated"] == "verified" for s in fitting)
    pick = report["chosen"] or report["closest"]["id"]
    if any(s["id"] == pick for s in students):  # a student is a new model: no recipe to replay
        assert not (tmp_path / "o" / "recipe.toml").exists()


def test_distill_always_needs_a_keras_model(cli, tiny: Path, tmp_path: Path) -> None:
    r = cli("build", tiny, "--target", "cortex-m4", "--runtime", "native", "--search", "always", "--distill",
            "always", "--out", tmp_path / "o")
    assert_clean_error(r, 2)
    assert "float teacher" in r.err and not (tmp_path / "o").exists()


def test_a_float_model_without_keras_metadata_is_rebuilt_as_a_keras_teacher(digits_int8: Digits) -> None:
    """SavedModel / .tflite sources teach through a Keras rebuild of their float model, checked against it."""
    import numpy as np

    from edgeforge.build import prepare
    from edgeforge.compress.rebuild import keras_from_tflite
    from edgeforge.events import NullReporter
    from edgeforge.target.loader import load_registry

    folder = digits_int8.model.parent
    prepared, ds = prepare(folder / "model.keras", load_registry().get("cortex-m4"), "int8", "tflm",
                           folder / "calib.npz", None, 200, NullReporter())
    assert prepared.float_model is not None and ds is not None
    fb, finfo = prepared.float_model
    x = np.asarray(ds.x, np.float32)
    teacher = keras_from_tflite(fb, finfo, x)  # raises when its outputs differ from the float model's
    kinds = [type(la).__name__ for la in teacher.layers]
    assert {"Conv2D", "DepthwiseConv2D", "Dense", "MaxPooling2D"} <= set(kinds)


def test_an_op_the_rebuild_cannot_express_is_refused_clearly() -> None:
    """What auto mode then skips (searching post-training only, with the reason in the report's notes)."""
    import numpy as np
    import pytest

    from edgeforge.compress.rebuild import keras_from_tflite
    from edgeforge.errors import UsageError
    from tests.conftest import FIXTURES

    model = (FIXTURES / "topk_float.tflite").read_bytes()
    with pytest.raises(UsageError, match="cannot rebuild op MUL"):
        keras_from_tflite(model, read_tflite(model), np.zeros((2, 16), np.float32))
