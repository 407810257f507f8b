"""Hostile model files: no code runs from a model unless the user trusts it (--trust-model-code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import assert_clean_error


def _marker_fn(marker: Path):  # noqa: ANN202 - a Keras layer function
    """A lambda that writes ``marker`` (a constant in its bytecode, so Keras stores it in the file)."""
    return eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x * 2.0)[1]")


@pytest.fixture(scope="module")
def lambda_h5(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A legacy Keras 2 .h5 whose Lambda layer (marshalled bytecode) writes a marker file when run."""
    import tf_keras

    root = tmp_path_factory.mktemp("lambda_h5")
    marker = root / "MARKER"
    model = tf_keras.Sequential([tf_keras.layers.InputLayer((6,)), tf_keras.layers.Lambda(_marker_fn(marker)),
                                 tf_keras.layers.Dense(3)])
    path = root / "lambda.h5"
    model.save(path, save_format="h5")
    marker.unlink(missing_ok=True)  # building the model ran it once, here in the test
    return path, marker


@pytest.fixture(scope="module")
def lambda_keras(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A Keras 3 .keras whose Lambda layer (a Python lambda) writes a marker file when run."""
    import keras

    root = tmp_path_factory.mktemp("lambda_keras")
    marker = root / "MARKER"
    fn = _marker_fn(marker)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Lambda(fn), keras.layers.Dense(3)])
    path = root / "lambda.keras"
    model.save(path)
    marker.unlink(missing_ok=True)
    return path, marker


@pytest.mark.parametrize("command", [["analyze"], ["analyze", "--target", "cortex-m4"],
                                     ["build", "--target", "cortex-m4"]])
def test_legacy_h5_lambda_is_refused_and_never_runs(cli, lambda_h5: tuple[Path, Path], tmp_path: Path,
                                                    command: list[str]) -> None:
    path, marker = lambda_h5
    out = ["--out", tmp_path / "out"] if command[0] == "build" else []
    r = cli(command[0], path, *command[1:], *out)
    assert_clean_error(r, 65)
    assert "--trust-model-code" in r.err and "Lambda" in r.err
    assert not marker.exists(), "Python from the model file ran"
    assert not (tmp_path / "out").exists()


def test_keras3_lambda_is_refused_with_the_flag_named(cli, lambda_keras: tuple[Path, Path]) -> None:
    path, marker = lambda_keras
    r = cli("analyze", path)
    assert_clean_error(r, 65)
    assert "--trust-model-code" in r.err
    assert not marker.exists()


def test_legacy_loader_itself_is_in_safe_mode(lambda_h5: tuple[Path, Path]) -> None:
    """The second line of defence: even past the config check, the tf_keras fallback runs no lambda."""
    from edgeforge.errors import ModelError
    from edgeforge.model.convert import TFGraph
    from edgeforge.model.load import SourceModel

    path, marker = lambda_h5
    with pytest.raises(ModelError) as err:
        TFGraph._load_keras(SourceModel(path, "h5", "-"))
    assert "--trust-model-code" in err.value.hint
    assert not marker.exists()


def test_trusted_h5_lambda_loads(cli, lambda_h5: tuple[Path, Path]) -> None:
    """--trust-model-code reaches the loader: the user's own Lambda model converts (and its code runs)."""
    path, marker = lambda_h5
    r = cli("analyze", path, "--trust-model-code")
    assert r.code == 0, r.err
    assert "FULLY_CONNECTED" in r.out
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("config, found", [
    ({"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "config": {"name": "d"}}]}}, []),
    ({"module": "keras.layers", "class_name": "Dense", "config": {}}, []),
    ({"class_name": "Lambda", "config": {"name": "l", "function": "4wIAAA"}}, ["Lambda layer 'l'"]),
    ({"layers": [{"config": {"function": {"class_name": "__lambda__", "config": {"code": "x"}}}}]}, ["Lambda"]),
    ({"class_name": "TFOpLambda", "config": {"function": "math.add"}}, []),  # a TF op by name: no bytecode
    ({"module": "os", "class_name": "system", "config": "touch PWNED"}, ["module 'os'"]),
    ({"module": "builtins", "class_name": "function", "config": "eval"}, ["module 'builtins'"]),
])
def test_code_in_config(config: object, found: list[str]) -> None:
    from edgeforge.model.trust import code_in_config

    got = code_in_config(config)
    assert len(got) == len(found), got
    for text, want in zip(got, found):
        assert want in text


def test_deeply_nested_config_is_not_a_crash() -> None:
    from edgeforge.model.trust import code_in_config

    deep: object = {"class_name": "Lambda"}
    for _ in range(100_000):
        deep = {"config": deep}
    assert code_in_config(deep) == ["a Lambda layer (Python bytecode)"]


# --------------------------------------------------------------------------- conversion isolation, data checks


@pytest.fixture(scope="module")
def small_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    path = tmp_path_factory.mktemp("small") / "small.keras"
    model.save(path)
    return path


def _samples(n: int = 12) -> np.ndarray:
    return np.random.default_rng(0).random((n, 8, 8, 1)).astype(np.float32)


def test_a_crash_inside_tensorflow_is_exit_65_naming_the_input(small_keras: Path) -> None:
    """Infinite calibration values SIGSEGV TensorFlow's quantizer: the worker dies, the build does not."""
    from edgeforge.errors import ModelError
    from edgeforge.model import convert as conv
    from edgeforge.model.load import load_model

    source = load_model(small_keras)
    calib = _samples()
    calib[3, 2, 2, 0] = np.inf
    graph = conv.TFGraph(source)
    try:
        with pytest.raises(ModelError) as err:
            conv.convert(source, "int8", calib, graph)
    finally:
        graph.close()
    assert "small.keras" in err.value.message and "crashed" in err.value.message


def test_the_worker_reports_converter_errors_and_survives(small_keras: Path) -> None:
    from edgeforge.model import convert as conv
    from edgeforge.model.load import load_model

    source = load_model(small_keras)
    graph = conv.TFGraph(source)
    try:
        assert [(s.shape, s.dtype) for s in graph.inputs] == [((1, 8, 8, 1), "float32")]
        with pytest.raises(RuntimeError, match="calibration"):  # a bug in the caller stays a bug (exit 70)
            graph.convert("int8", None)
        model = graph.convert("int8", _samples())  # the same worker goes on serving
    finally:
        graph.close()
    from edgeforge.model.tflite import read_tflite

    assert read_tflite(model).is_int8


@pytest.mark.parametrize("x, what", [
    ("inf", "non-finite"), ("-inf", "non-finite"), ("nan", "non-finite"), ("1e38", "out-of-range"),
    ("empty", "no samples"),
])
def test_bad_data_values_exit_65_before_any_output(cli, tiny: Path, tmp_path: Path, x: str, what: str) -> None:
    data = _samples()
    if x == "empty":
        data = data[:0]
    elif x == "nan":
        data[:] = np.nan
    else:
        data[5, 1, 1, 0] = float(x)
    np.savez(tmp_path / "d.npz", x=data)
    r = cli("build", tiny, "--target", "cortex-m4", "--data", tmp_path / "d.npz", "--out", tmp_path / "o")
    assert_clean_error(r, 65)
    assert what in r.err
    assert not (tmp_path / "o").exists()


def test_infinite_calibration_data_for_a_keras_model_exits_65(cli, small_keras: Path, tmp_path: Path) -> None:
    """Before: SIGSEGV in TensorFlow's quantizer, no message."""
    data = _samples()
    data[3, 2, 2, 0] = -np.inf
    np.savez(tmp_path / "d.npz", x=data)
    r = cli("build", small_keras, "--target", "cortex-m4", "--data", tmp_path / "d.npz", "--out", tmp_path / "o")
    assert_clean_error(r, 65)
    assert "d.npz" in r.err and "non-finite" in r.err


def test_non_finite_validation_data_exits_65(cli, tiny: Path, tmp_path: Path) -> None:
    val = np.zeros((4, 8, 8, 1), np.float32)
    val[1, 0, 0, 0] = np.nan
    np.savez(tmp_path / "v.npz", x=val)
    r = cli("build", tiny, "--target", "cortex-m4", "--val", tmp_path / "v.npz", "--out", tmp_path / "o")
    assert_clean_error(r, 65)
    assert "v.npz" in r.err


@pytest.mark.parametrize("quant", ["1e999,0", "nan,0", "inf,0", "0,0", "-0.5,3", "0.1,300", "0.1,-129"])
def test_bad_data_quant_is_a_usage_error(cli, tiny: Path, tmp_path: Path, quant: str) -> None:
    r = cli("build", tiny, "--target", "cortex-m4", f"--data-quant={quant}", "--out", tmp_path / "o")
    assert_clean_error(r, 2)
    assert "--data-quant" in r.err


# --------------------------------------------------------------------------- wrong artefacts are refused


def _edited(tmp_path: Path, name: str, edit) -> Path:  # noqa: ANN001 - edit(ModelT)
    from conftest import FIXTURES
    from edgeforge.model.rewrite import pack, unpack

    model = unpack((FIXTURES / "tiny_int8.tflite").read_bytes())
    edit(model)
    path = tmp_path / name
    path.write_bytes(pack(model))
    return path


@pytest.mark.parametrize("where, scale, what", [
    ("inputs", float("nan"), "non-finite"), ("inputs", 0.0, "no positive"), ("outputs", 0.0, "no positive"),
    ("outputs", float("inf"), "non-finite"), ("inputs", -0.5, "no positive"),
])
def test_tflite_with_a_bad_io_scale_exits_65(cli, tmp_path: Path, where: str, scale: float, what: str) -> None:
    def edit(model) -> None:  # noqa: ANN001
        sg = model.subgraphs[0]
        sg.tensors[getattr(sg, where)[0]].quantization.scale = [scale]

    path = _edited(tmp_path, "scaled.tflite", edit)
    r = cli("build", path, "--target", "cortex-m4", "--out", tmp_path / "o")
    assert_clean_error(r, 65)
    assert what in r.err
    assert not (tmp_path / "o").exists()


def test_a_graph_without_operators_exits_65(cli, tmp_path: Path) -> None:
    def edit(model) -> None:  # noqa: ANN001
        sg = model.subgraphs[0]
        sg.operators = []
        sg.outputs = list(sg.inputs)

    path = _edited(tmp_path, "empty.tflite", edit)
    for args in (["analyze", path], ["build", path, "--target", "cortex-m4", "--out", tmp_path / "o"]):
        r = cli(*args)
        assert_clean_error(r, 65)
        assert "no operators" in r.err


def test_an_int8_conversion_with_float_io_is_refused() -> None:
    """What all-NaN calibration gave before: a float-input model labelled "int8 I/O" with kInput0Scale = 0."""
    from conftest import FIXTURES
    from edgeforge.stages import check_converted
    from edgeforge.errors import ModelError
    from edgeforge.model.tflite import read_tflite

    info = read_tflite((FIXTURES / "topk_float.tflite").read_bytes())
    with pytest.raises(ModelError, match="not int8"):
        check_converted(info, "m.keras", "int8")
    check_converted(info, "m.keras", "float32")


@pytest.mark.parametrize("y, what", [(99, "label 99 but the model has 10 classes"), (-1, "label -1"),
                                     (0.5, "label 0.5")])
def test_labels_that_are_not_class_indices_exit_65(cli, tiny: Path, tmp_path: Path, y: float, what: str) -> None:
    np.savez(tmp_path / "d.npz", x=_samples(), y=np.full(12, y))
    r = cli("build", tiny, "--target", "cortex-m4", "--data", tmp_path / "d.npz", "--out", tmp_path / "o")
    assert_clean_error(r, 65)
    assert what in r.err
    assert not (tmp_path / "o").exists()


def test_label_file_for_another_class_count_exits_65(cli, tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bins"
    folder.mkdir()
    for i, x in enumerate(_samples(4)):
        (x * 100).astype(np.int8).tofile(folder / f"s{i}.bin")
    (folder / "y_labels.csv").write_text("".join(f"s{i}.bin,12,{i}\n" for i in range(4)))
    r = cli("build", tiny, "--target", "cortex-m4", "--data", folder, "--out", tmp_path / "o")
    assert_clean_error(r, 65)
    assert "12 classes" in r.err and "10 outputs" in r.err
    (folder / "y_labels.csv").write_text("".join(f"s{i}.bin,10,{i + 9}\n" for i in range(4)))
    r = cli("build", tiny, "--target", "cortex-m4", "--data", folder, "--out", tmp_path / "o")
    assert_clean_error(r, 65)
    assert "not a class index for 10 classes" in r.err


def test_in_range_labels_still_score(cli, tiny: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=_samples(), y=np.arange(12) % 10)
    r = cli("build", tiny, "--target", "cortex-m4", "--data", tmp_path / "d.npz", "--out", tmp_path / "o", "--json")
    assert r.code in (0, 3), r.err
    import json

    assert json.loads(r.out)["accuracy"]["top1"] is not None


@pytest.mark.parametrize("symbol", ["int", "class", "main", "new", "NULL", "kTensorArenaSize", "kInput0Scale",
                                    "g_tensor_arena", "a__b", "uint8_t"])
def test_symbols_the_emitted_code_cannot_use_exit_2(cli, tiny: Path, tmp_path: Path, symbol: str) -> None:
    r = cli("build", tiny, "--target", "cortex-m4", "--symbol", symbol, "--out", tmp_path / "o")
    assert_clean_error(r, 2)
    assert "--symbol" in r.err
    assert not (tmp_path / "o").exists()


def test_a_good_symbol_names_the_array(cli, tiny: Path, tmp_path: Path) -> None:
    r = cli("build", tiny, "--target", "cortex-m4", "--symbol", "kws_model", "--out", tmp_path / "o")
    assert r.code in (0, 3), r.err
    assert "kws_model[]" in (tmp_path / "o" / "tflm" / "model_data.h").read_text()


# --------------------------------------------------------------------------- valid models accepted


@pytest.fixture(scope="module")
def keras_float_tflite(small_keras: Path) -> Path:
    """A float .tflite as TFLiteConverter.from_keras_model writes it: its signature's input is named
    after the Keras layer, its tensor ``serving_default_<layer>:0``."""
    import keras
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(small_keras))
    path = small_keras.parent / "keras_float.tflite"
    path.write_bytes(converter.convert())
    return path


def test_float_tflite_from_keras_quantizes_to_int8(cli, keras_float_tflite: Path, tmp_path: Path) -> None:
    """Before: "conversion to int8 failed: 'input_layer'" (samples keyed by the tensor name)."""
    np.savez(tmp_path / "d.npz", x=_samples(), y=np.arange(12) % 10)
    r = cli("build", keras_float_tflite, "--target", "cortex-m4", "--data", tmp_path / "d.npz", "--out",
            tmp_path / "o", "--json")
    assert r.code in (0, 3), r.err
    import json

    doc = json.loads(r.out)
    assert [t["dtype"] for t in doc["model"]["inputs"] + doc["model"]["outputs"]] == ["int8", "int8"]
    assert doc["accuracy"]["sqnr_db"] > 15  # against the float .tflite itself


def test_old_schema_opcodes_are_normalized() -> None:
    """Pre-3a files keep the op in deprecated_builtin_code and leave builtin_code 0 (= ADD)."""
    from conftest import FIXTURES
    from edgeforge.model.rewrite import normalize_opcodes, pack, unpack
    from edgeforge.model.tflite import read_tflite

    data = (FIXTURES / "tiny_int8.tflite").read_bytes()
    model = unpack(data)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    for c in model.operatorCodes:
        c.deprecatedBuiltinCode, c.builtinCode = max(c.builtinCode, c.deprecatedBuiltinCode), 0
    old = pack(model)
    assert [c.builtinCode for c in unpack(normalize_opcodes(old)).operatorCodes] == codes
    assert read_tflite(normalize_opcodes(old)).op_names == read_tflite(data).op_names


@pytest.mark.mlperf
def test_mlperf_kws_float32_tflite_quantizes_and_keeps_accuracy(cli, mlperf: Path, tmp_path: Path) -> None:
    """Before: refused by TFLite Micro (pooling_common.cc:73 scale_diff). The file uses the old op-code
    field and int8 (hybrid) conv weights: it is normalized to a clean float graph, then quantized."""
    import json

    r = cli("build", mlperf / "kws" / "kws_ref_model_float32.tflite", "--target", "cortex-m4", "--data",
            mlperf / "samples" / "kws01", "--data-quant", "0.584703,83", "--calib-samples", 100,
            "--out", tmp_path / "o", "--json")
    assert r.code == 0, r.err
    acc = json.loads(r.out)["accuracy"]
    assert acc["samples"] == 500
    assert acc["float_top1"] == pytest.approx(0.898, abs=0.005)  # the float reference: the README's figure
    assert acc["top1"] >= 0.88  # the reference int8 model: 0.898


@pytest.mark.mlperf
def test_tie_scales_gives_pools_their_inputs_quantization(mlperf: Path) -> None:
    """Defence in depth for quantizers that calibrate each tensor alone: TFLite Micro requires an
    average pool's output quantized like its input, and softmax's output on 1/256."""
    from edgeforge.hostrun import tflm_interpreter
    from edgeforge.model.convert import tie_scales
    from edgeforge.model.rewrite import pack, unpack
    from edgeforge.model.tflite import read_tflite

    data = (mlperf / "kws" / "kws_ref_model_int8.tflite").read_bytes()
    info = read_tflite(data)
    pool = next(op for op in info.ops if op.op == "AVERAGE_POOL_2D")
    soft = next(op for op in info.ops if op.op == "SOFTMAX")
    model = unpack(data)
    tensors = model.subgraphs[0].tensors
    tensors[pool.outputs[0]].quantization.scale = [0.5]
    tensors[soft.outputs[0]].quantization.scale = [0.01]
    broken = pack(model)
    from edgeforge.errors import ModelError

    with pytest.raises(ModelError, match="pooling"):
        tflm_interpreter(broken)
    fixed = read_tflite(tie_scales(broken))
    assert fixed.tensors[pool.outputs[0]].scale == fixed.tensors[pool.inputs[0]].scale
    assert fixed.tensors[soft.outputs[0]].scale == (1 / 256,)
    tflm_interpreter(tie_scales(broken))


# --------------------------------------------------------------------------- odd files and shapes


@pytest.fixture
def deadline():  # noqa: ANN201 - a hang fails the test instead of the suite
    import signal

    def expire(*_: object) -> None:
        raise TimeoutError("edgeforge blocked on the input")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("command", ["analyze", "build"])
def test_a_fifo_named_like_a_model_is_refused_at_once(cli, tmp_path: Path, deadline, command: str) -> None:
    import os

    fifo = tmp_path / "m.tflite"
    os.mkfifo(fifo)
    r = cli(command, fifo, *(["--target", "cortex-m4", "--out", tmp_path / "o"] if command == "build" else []))
    assert_clean_error(r, 65)
    assert "FIFO" in r.err


@pytest.mark.parametrize("name", ["d.npz", "d.bin", "bins/a.bin", "labels.txt"])
def test_a_fifo_as_data_is_refused_at_once(cli, tiny: Path, tmp_path: Path, deadline, name: str) -> None:
    import os

    fifo = tmp_path / name
    fifo.parent.mkdir(exist_ok=True)
    os.mkfifo(fifo)
    option = {"d.npz": "--data", "d.bin": "--val", "bins/a.bin": "--data", "labels.txt": "--labels"}[name]
    r = cli("build", tiny, "--target", "rpi4" if option == "--labels" else "cortex-m4", option,
            fifo.parent if name.startswith("bins") else fifo, "--out", tmp_path / "o")
    assert_clean_error(r, 65)
    assert "FIFO" in r.err


def test_a_scalar_input_is_not_called_a_dynamic_shape(cli, tmp_path: Path) -> None:
    def edit(model) -> None:  # noqa: ANN001
        sg = model.subgraphs[0]
        t = sg.tensors[sg.inputs[0]]
        t.shape, t.shapeSignature = [], None

    r = cli("analyze", _edited(tmp_path, "scalar.tflite", edit))
    assert_clean_error(r, 65)
    assert "scalar" in r.err and "dynamic" not in r.err


def test_a_single_bin_file_is_data_and_input(cli, tiny: Path, tmp_path: Path) -> None:
    """One raw input tensor in a .bin file: --data, --val and `run --input` (before: "unknown data format")."""
    x = (_samples(1)[0] * 100).astype(np.int8)
    x.tofile(tmp_path / "one.bin")
    r = cli("build", tiny, "--target", "cortex-m4", "--data", tmp_path / "one.bin", "--out", tmp_path / "o")
    assert r.code in (0, 3), r.err
    r = cli("run", tmp_path / "o", "--input", tmp_path / "one.bin", "--output", tmp_path / "y.npy")
    assert r.code == 0, r.err
    from edgeforge.hostrun import run_batch

    want = run_batch(tiny.read_bytes(), "tflm", x.reshape(1, 1, 8, 8, 1))
    assert np.array_equal(np.load(tmp_path / "y.npy").reshape(-1), want.reshape(-1))
    (tmp_path / "short.bin").write_bytes(b"\0" * 63)
    r = cli("build", tiny, "--target", "cortex-m4", "--data", tmp_path / "short.bin", "--out", tmp_path / "o2")
    assert_clean_error(r, 65)
    assert "63 bytes" in r.err


def test_an_interrupted_worker_is_not_reused(small_keras: Path) -> None:
    """Ctrl-C during a conversion leaves a reply unread: that worker must end, not serve the next model."""
    from edgeforge.model import worker
    from edgeforge.model.convert import TFGraph
    from edgeforge.model.load import load_model

    graph = TFGraph(load_model(small_keras))
    w = graph._worker
    w._busy = True  # what an exception between request and reply leaves behind
    graph.close()
    assert w not in worker._idle and not w.alive
    graph = TFGraph(load_model(small_keras))
    try:
        assert graph._worker is not w
    finally:
        graph.close()
    assert graph._worker in worker._idle  # a clean session returns its worker to the pool
