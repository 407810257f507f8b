"""Conversion to .tflite and post-training quantization.

TensorFlow sources (SavedModel, .keras, .h5) all go one way: to a SavedModel, then through the
serving signature's concrete function with the batch fixed to 1, then ``TFLiteConverter``.
That one path also handles TF 2.x-era SavedModels that ``from_saved_model`` rejects, and
Keras 3 models (which ``from_keras_model`` cannot convert). A float ``.tflite`` source has no
graph to re-convert: it is quantized with ``ai-edge-quantizer`` instead, from a clean float graph
(``rewrite.float_graph``). Both run in a worker process (``worker``): TensorFlow's native code can
crash on hostile input, and a crash must be an error naming the input, not the end of the build.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from edgeforge.errors import ModelError, ToolMissingError, UnsupportedOpError
from edgeforge.model.load import SourceModel
from edgeforge.model.tflite import read_tflite
from edgeforge.output import scratch_prefix
from edgeforge.model.trust import TRUST_FLAG
from edgeforge.quiet import captured_output, quiet_tensorflow_env

SCHEMES = ("int8", "float16", "dynamic-int8", "float32")


@cache
def tensorflow() -> Any:
    quiet_tensorflow_env()
    try:
        with captured_output():
            import tensorflow as tf
    except ImportError:
        raise ToolMissingError("TensorFlow is not installed", "pip install 'edgeforge' (it depends on tensorflow)") from None
    tf.get_logger().setLevel("ERROR")
    return tf


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str


class LocalGraph:
    """A TensorFlow model ready for the converter, in this process: a batch-1 concrete function and its
    owner. Only the conversion worker (``worker``) builds one; the pipeline holds a ``TFGraph``."""

    def __init__(self, source: SourceModel) -> None:
        self.source = source
        # pid in the name: a later build removes the folder if this process is killed (edgeforge.output)
        self._tmp = tempfile.TemporaryDirectory(prefix=scratch_prefix("sm"))
        saved_model = self._saved_model_dir(source, Path(self._tmp.name) / "saved_model")
        self.trackable, self.function, self.inputs = self._concrete(saved_model)

    def close(self) -> None:
        self._tmp.cleanup()

    def _saved_model_dir(self, source: SourceModel, dest: Path) -> Path:
        if source.format == "savedmodel":
            return source.path
        model = self._load_keras(source)
        with captured_output():
            if hasattr(model, "export"):  # Keras 3
                model.export(str(dest))
            else:  # tf_keras (Keras 2)
                tensorflow().saved_model.save(model, str(dest))
        return dest

    @staticmethod
    def _load_keras(source: SourceModel) -> Any:
        """The Keras model, loaded in safe mode (no Python from the file) unless ``source.trust_code``."""
        tensorflow()
        safe = not source.trust_code
        errors = []
        try:
            import keras

            with captured_output():
                return keras.models.load_model(source.path, compile=False, safe_mode=safe)
        except Exception as exc:  # Keras raises ValueError/TypeError/OSError... on old or corrupt files
            errors.append(f"Keras 3: {_first_line(exc)}")
        if source.format == "h5":
            try:
                import tf_keras

                with captured_output(), _tf_keras_safe_mode(safe):
                    return tf_keras.models.load_model(source.path, compile=False)
            except ImportError:
                errors.append("tf_keras: not installed (pip install tf-keras)")
            except Exception as exc:
                errors.append(f"tf_keras: {_first_line(exc)}")
        if safe and any("safe_mode" in e or "arbitrary code" in e for e in errors):
            raise ModelError(f"{source.path.name} contains code that would run when it is loaded ({errors[0]})",
                             f"edgeforge runs no code from a model file; if you trust where it came from, pass "
                             f"{TRUST_FLAG}")
        raise ModelError(f"cannot load {source.path.name}: " + "; ".join(errors),
                         "the file is corrupt or was not saved by Keras; re-save it with model.save()")

    @staticmethod
    def _concrete(saved_model: Path) -> tuple[Any, Any, list[InputSpec]]:
        tf = tensorflow()
        try:
            with captured_output():
                loaded = tf.saved_model.load(str(saved_model))
        except Exception as exc:
            raise ModelError(f"cannot load SavedModel {saved_model}: {_first_line(exc)}",
                             "the folder is corrupt or incomplete (saved_model.pb and variables/ are needed)") from None
        sigs = dict(getattr(loaded, "signatures", {}) or {})
        if not sigs:
            raise ModelError(f"SavedModel {saved_model} has no serving signature",
                             "re-export it with a signature (tf.saved_model.save(..., signatures=...))")
        sig = sigs.get("serving_default") or sigs.get("serve") or next(iter(sigs.values()))
        specs = sig.structured_input_signature[1]
        names = sorted(specs)
        fixed: list[Any] = []
        inputs: list[InputSpec] = []
        for name in names:
            spec = specs[name]
            dims = list(spec.shape)
            if dims and dims[0] is None:
                dims[0] = 1  # fix the batch: integer conversion and MCUs need static shapes
            if any(d is None for d in dims):
                raise ModelError(f"input {name!r} has a dynamic shape {spec.shape}",
                                 "export the model with fixed input sizes (only the batch may be dynamic)")
            fixed.append(tf.TensorSpec(dims, spec.dtype, name=name))
            inputs.append(InputSpec(name, tuple(int(d) for d in dims), spec.dtype.name))

        @tf.function(input_signature=fixed)
        def serve(*args: Any) -> Any:
            return sig(**dict(zip(names, args)))

        with captured_output():
            function = serve.get_concrete_function()
        return loaded, function, inputs


@contextmanager
def _tf_keras_safe_mode(safe: bool) -> Iterator[None]:
    """tf_keras's legacy HDF5 loader takes no ``safe_mode`` argument; its Lambda deserializer honours
    this scope. Without the scope (an incompatible tf_keras) a safe load is refused outright."""
    try:
        from tf_keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:
        if safe:
            raise ModelError("this tf_keras version offers no safe mode for legacy .h5 files",
                             f"pass {TRUST_FLAG} if you trust the file, or re-save it as .keras with Keras 3") from None
        yield
        return
    with SafeModeScope(safe):
        yield


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _converter_error(exc: Exception, scheme: str) -> Exception:
    text = str(exc)
    ops = sorted({w.strip("'\",.:") for w in text.replace("(", " ").split() if w.isupper() and "_" in w})
    if "not supported" in text.lower() or "failed to legalize" in text.lower() or "ops that can be supported" in text:
        return UnsupportedOpError(f"the converter cannot produce a {scheme} model: {_first_line(exc)}",
                                  f"ops involved: {', '.join(ops) or 'see -v output'}; try another --quantization "
                                  "or replace the op in the model")
    return ModelError(f"conversion to {scheme} failed: {_first_line(exc)}", "run with -v for the converter's log")


class TFGraph:
    """A TensorFlow model opened in a conversion worker process (see ``worker``): TensorFlow's converter
    and quantizer crash on some inputs (a SIGSEGV on infinite calibration data) and must not take the
    build down. ``inputs`` are the batch-1 input specs; ``close`` ends the worker."""

    def __init__(self, source: SourceModel) -> None:
        from edgeforge.model import worker

        self.source = source
        self._worker = worker.acquire(source.path.name)
        try:
            reply, _ = self._worker.call(("open", str(source.path), source.format, source.sha256,
                                          source.trust_code))
        except BaseException:
            worker.release(self._worker)
            raise
        self.inputs = [InputSpec(n, tuple(shape), dtype) for n, shape, dtype in reply["inputs"]]

    def convert(self, scheme: str, calibration: np.ndarray | None) -> bytes:
        _, blobs = self._worker.call(("convert", scheme, calibration))
        return blobs[0]

    def close(self) -> None:
        from edgeforge.model import worker

        worker.release(self._worker)

    @staticmethod
    def _load_keras(source: SourceModel) -> Any:
        """The Keras model in this process (fine-tuning trains it here); see ``LocalGraph._load_keras``."""
        return LocalGraph._load_keras(source)


def convert_tf(graph: TFGraph, scheme: str, calibration: np.ndarray | None) -> bytes:
    """Convert ``graph`` with quantization ``scheme`` in its worker; ``calibration``: float input, [N, ...]."""
    return graph.convert(scheme, calibration)


def convert_local(graph: LocalGraph, scheme: str, calibration: np.ndarray | None) -> bytes:
    """Convert ``graph`` with quantization ``scheme`` in this process; ``calibration``: float input, [N, ...]."""
    tf = tensorflow()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([graph.function], graph.trackable)
    if scheme == "int8":
        if calibration is None:
            raise ValueError("int8 conversion needs calibration data")
        samples = calibration.astype(np.float32)

        def representative() -> Any:
            for i in range(len(samples)):
                yield [samples[i : i + 1]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif scheme == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif scheme == "dynamic-int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        with captured_output():
            return bytes(conv.convert())
    except Exception as exc:  # ConverterError and friends
        raise _converter_error(exc, scheme) from None


def _with_signature(data: bytes) -> bytes:
    """Add a ``serving_default`` signature (ai-edge-quantizer needs one; old converters wrote none)."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if model.signatureDefs:
        return data
    sg = model.subgraphs[0]

    def tensor_map(i: int) -> Any:
        m = schema.TensorMapT()
        m.name, m.tensorIndex = sg.tensors[i].name, i
        return m

    sig = schema.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = "serving_default", 0
    sig.inputs = [tensor_map(i) for i in sg.inputs]
    sig.outputs = [tensor_map(i) for i in sg.outputs]
    model.signatureDefs = [sig]
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


#: Ops whose int8 output must carry its input's scale and zero point: TFLite Micro's pooling kernels
#: check it (pooling_common.cc), and shape-only ops copy bytes. TFLite's converter and ai-edge-quantizer
#: tie them when they recognise the op; when the quantizer misread the ops (the MLPerf KWS file's old
#: op-code field, see ``rewrite.normalize_opcodes``) every tensor got its own scale and TFLite Micro
#: refused the model. Tying them after quantization keeps that class of failure out of the build.
SAME_SCALE_OPS = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
#: Ops with a fixed int8 output range that TFLite Micro's kernels require exactly (softmax_common.cc and
#: friends): (scale, zero point), as TFLite's converter sets them.
FIXED_OUTPUT_QUANT = {"SOFTMAX": (1 / 256, -128), "LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0)}


def _values(v: Any) -> list[Any]:
    """A schema vector field (None, a list or a numpy array) as a list."""
    return [] if v is None else [x.item() if hasattr(x, "item") else x for x in v]


def tie_scales(data: bytes) -> bytes:
    """``data`` with each SAME_SCALE_OPS output quantized like its input, in graph order (a reshape after
    a pool follows the pool), and FIXED_OUTPUT_QUANT outputs on their fixed grid. Sound for these ops:
    their outputs lie within their inputs' range, or within the fixed range of the function."""
    from edgeforge.model.rewrite import pack, unpack

    info = read_tflite(data)
    model = unpack(data)
    tensors = model.subgraphs[0].tensors
    changed = False
    for op in info.ops:
        fixed = FIXED_OUTPUT_QUANT.get(op.op)
        if fixed is not None and info.tensors[op.outputs[0]].dtype == "int8":
            q = tensors[op.outputs[0]].quantization
            if q is not None and (_values(q.scale), _values(q.zeroPoint)) != ([fixed[0]], [fixed[1]]):
                q.scale, q.zeroPoint = [fixed[0]], [fixed[1]]
                changed = True
            continue
        if op.op not in SAME_SCALE_OPS or not op.inputs or op.inputs[0] < 0:
            continue
        src, dst = tensors[op.inputs[0]], tensors[op.outputs[0]]
        if src.type != dst.type or src.quantization is None or dst.quantization is None:
            continue
        if src.quantization.scale is None or len(src.quantization.scale) != 1:
            continue  # per-tensor activations only
        src_zp = _values(src.quantization.zeroPoint) or [0]
        if (_values(dst.quantization.scale), _values(dst.quantization.zeroPoint)) != (_values(src.quantization.scale),
                                                                                     src_zp):
            dst.quantization.scale, dst.quantization.zeroPoint = _values(src.quantization.scale), src_zp
            changed = True
    return pack(model) if changed else data


def _signature_input(data: bytes) -> tuple[str, str]:
    """The first signature's key and its first input's name: the quantizer keys calibration samples by
    these, which differ from the tensor's own name (``serving_default_x:0`` is input ``x``)."""
    from edgeforge.model.rewrite import unpack

    sig = unpack(data).signatureDefs[0]

    def text(v: bytes | str) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    return text(sig.signatureKey), text(sig.inputs[0].name)


def quantize_tflite(data: bytes, scheme: str, calibration: np.ndarray | None, name: str = "the model") -> bytes:
    """Quantize a float .tflite (no TF graph to re-convert) with ai-edge-quantizer, in a worker process."""
    if scheme == "float32":
        return data
    from edgeforge.model import worker

    w = worker.acquire(name)
    try:
        _, blobs = w.call(("quantize", data, scheme, calibration))
    finally:
        worker.release(w)
    return blobs[0]


def quantize_local(data: bytes, scheme: str, calibration: np.ndarray | None) -> bytes:
    """``quantize_tflite`` in this process."""
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise ToolMissingError("quantizing a float .tflite needs ai-edge-quantizer",
                               "pip install ai-edge-quantizer, or pass the Keras/SavedModel source instead") from None
    recipes = {"int8": recipe.static_wi8_ai8, "dynamic-int8": recipe.dynamic_wi8_afp32}
    if scheme not in recipes:
        raise ModelError(f"a .tflite source cannot be converted to {scheme}",
                         "pass the Keras/SavedModel source, or choose --quantization int8 or dynamic-int8")
    from edgeforge.model.rewrite import float_graph

    signed = _with_signature(float_graph(data))
    try:
        with captured_output():
            q = quantizer.Quantizer(signed, recipes[scheme]())
            result = None
            if scheme == "int8":
                assert calibration is not None
                key, name = _signature_input(signed)
                samples = [{name: calibration[i : i + 1].astype(np.float32)} for i in range(len(calibration))]
                result = q.calibrate({key: samples})
            out = bytes(q.quantize(result).quantized_model)
            if scheme == "int8":
                from tensorflow.lite.python import util

                tf = tensorflow()
                out = tie_scales(bytes(util.modify_model_io_type(out, tf.int8, tf.int8)))
    except Exception as exc:
        raise _converter_error(exc, scheme) from None
    return out


_CACHE: dict[tuple[str, str, str], bytes] = {}


def cache_key(source: SourceModel, scheme: str, calibration: np.ndarray | None) -> tuple[str, str, str]:
    digest = hashlib.sha256(calibration.tobytes()).hexdigest() if calibration is not None else "-"
    return (source.sha256, scheme, digest)


def convert(source: SourceModel, scheme: str, calibration: np.ndarray | None, graph: TFGraph | None) -> bytes:
    """The model as .tflite with ``scheme``; memoised per (model, scheme, calibration) in-process."""
    key = cache_key(source, scheme, calibration)
    if key not in _CACHE:
        if source.tflite is not None:
            _CACHE[key] = quantize_tflite(source.tflite, scheme, calibration, source.path.name)
        else:
            assert graph is not None
            _CACHE[key] = convert_tf(graph, scheme, calibration)
    return _CACHE[key]
