"""Model import: identifies the format of what the user passed and opens it.

Formats: ``.tflite``; Keras 3 ``.keras``; HDF5 ``.h5`` (Keras 3 first, then the legacy Keras 2
``tf_keras`` package), loaded in safe mode unless the user trusts the file (see ``trust``); SavedModel folders, including TF 2.x-era ones that
``TFLiteConverter.from_saved_model`` rejects: they are converted through the serving
signature's concrete function with the batch fixed to 1 (see ``convert``).
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgeforge.data import require_regular_file
from edgeforge.errors import ModelError
from edgeforge.model.tflite import FILE_IDENTIFIER, ModelInfo, read_tflite
from edgeforge.model.trust import check_model_code

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
FORMATS = ("tflite", "keras", "h5", "savedmodel")


@dataclass(frozen=True)
class SourceModel:
    """The user's model as found on disk."""

    path: Path
    format: str
    sha256: str
    tflite: bytes | None = None  # only for format "tflite"
    info: ModelInfo | None = None  # only for format "tflite"
    trust_code: bool = False  # the user passed --trust-model-code: Keras may run Python from the file

    @property
    def name(self) -> str:
        return self.path.name if self.path.is_dir() else self.path.stem


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_dir(path: Path) -> str:
    """Hash of a folder: relative paths and contents, in sorted order (stable across machines)."""
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if not q.is_dir()):
        require_regular_file(p, ModelError)  # TensorFlow would block on a FIFO named saved_model.pb
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        h.update(_sha256_file(p).encode())
    return h.hexdigest()


def detect_format(path: Path) -> str:
    """The format of ``path`` by content (magic bytes), not just by its extension."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return "savedmodel"
        raise ModelError(f"{path} is a folder but not a SavedModel (no saved_model.pb)",
                         "pass the SavedModel folder itself, or a .tflite/.keras/.h5 file")
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) >= 8 and head[4:8] == FILE_IDENTIFIER:
        return "tflite"
    if head.startswith(HDF5_MAGIC):
        return "h5"
    if head.startswith(b"PK\x03\x04"):
        return "keras"
    suffix = path.suffix.lower()
    known = {".tflite": "a .tflite", ".h5": "an HDF5 (.h5)", ".hdf5": "an HDF5 (.h5)", ".keras": "a .keras"}
    if suffix in known:
        raise ModelError(f"{path.name} is named like {known[suffix]} model but its content is not one "
                         "(corrupt, truncated or renamed file)", "re-export the model from its training code")
    raise ModelError(f"{path.name} is not a model edgeforge can read",
                     "pass a .tflite, .keras, .h5 file or a SavedModel folder")


def load_model(path: str | Path, trust_code: bool = False) -> SourceModel:
    """Open the model at ``path``; ModelError (exit 65) for anything that is not a readable model, and
    for a Keras file carrying Python code (Lambda or custom layers) unless ``trust_code``."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model not found: {p}", "check the path")
    if not p.is_dir():
        require_regular_file(p, ModelError)
    fmt = detect_format(p)
    if fmt == "savedmodel":
        return SourceModel(p, fmt, _sha256_dir(p))
    if fmt == "keras":
        try:
            with zipfile.ZipFile(p) as z:
                bad = z.testzip()
                names = set(z.namelist())
        except Exception:  # BadZipFile, OSError, EOFError, NotImplementedError (zip version), zlib.error...
            raise ModelError(f"{p.name} is a corrupt or truncated .keras archive",
                             "re-save the model with model.save('model.keras')") from None
        if bad is not None or "config.json" not in names:
            raise ModelError(f"{p.name} is a zip file but not a Keras model (no config.json)",
                             "re-save the model with model.save('model.keras')")
        check_model_code(p, fmt, trust_code)
        return SourceModel(p, fmt, _sha256_file(p), trust_code=trust_code)
    if fmt == "h5":
        check_model_code(p, fmt, trust_code)
        return SourceModel(p, fmt, _sha256_file(p), trust_code=trust_code)
    data = p.read_bytes()
    info = read_tflite(data, p.name)
    _check_tflite(info, p.name)
    return SourceModel(p, fmt, hashlib.sha256(data).hexdigest(), data, info)


def _check_tflite(info: ModelInfo, name: str) -> None:
    for t in info.input_tensors() + info.output_tensors():
        if not t.shape:
            raise ModelError(f"{name}: {'input' if t.index in info.inputs else 'output'} {t.name!r} is a scalar "
                             "(shape []); edgeforge builds models whose inputs and outputs are tensors",
                             "export the model with a batch dimension, e.g. input shape [1, N]")
        if any(d < 0 for d in t.shape_signature[1:]):
            raise ModelError(f"{name} has a dynamic shape on tensor {t.name!r} {list(t.shape_signature)}",
                             "export the model with fixed input sizes (batch may be dynamic)")
    check_model(info, name)


def check_model(info: ModelInfo, name: str) -> None:
    """ModelError (exit 65) for a graph no build should come from: no operators, or quantization
    parameters that are not finite, or an integer input/output without a positive scale (the
    emitted ``kInput0Scale`` would be ``nanf`` or 0, and every real value maps to one integer)."""
    if not info.ops:
        raise ModelError(f"{name} has no operators: its graph computes nothing",
                         "export the trained model itself (its layers), not an empty or identity graph")
    for t in info.tensors:
        if any(not math.isfinite(s) for s in t.scale):
            raise ModelError(f"{name}: tensor {t.name!r} has a non-finite quantization scale {list(t.scale)[:4]}",
                             "the file is damaged or was quantized from bad data: re-export or re-quantize it")
    for t in info.input_tensors() + info.output_tensors():
        if t.dtype in ("int8", "uint8", "int16") and (not t.scale or t.scale[0] <= 0):
            raise ModelError(f"{name}: integer tensor {t.name!r} has no positive quantization scale "
                             f"({list(t.scale) or 'none'})", "re-quantize the model from its float source "
                             "with representative calibration data")
