"""Calibration / validation data: ``.npz`` (``x``, optional ``y``), ``.npy``, one raw ``.bin`` file, or a
folder of raw ``.bin`` files (one input tensor each, MLPerf Tiny style) with an optional ``y_labels.csv``.

Data comes in the dtype it was stored in; ``float_view`` and ``model_view`` convert it for a
float model (calibration, reference) or for the quantized model's own input tensor.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeforge.errors import DataError, EdgeforgeError, UsageError

LABELS_FILE = "y_labels.csv"


#: Real values beyond this are taken as damaged data (float32 overflows at 3.4e38; calibration
#: ranges this wide leave no int8 resolution for anything else).
MAX_ABS_VALUE = 1e30


@dataclass(frozen=True)
class InputQuant:
    """How quantized raw data maps to real values: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        # an option value (--data-quant): a bad one is a usage error, caught before any data is read
        if not (math.isfinite(self.scale) and 0 < self.scale <= MAX_ABS_VALUE / 256):
            raise UsageError(f"--data-quant scale {self.scale!r} is not a positive finite number",
                             "write SCALE,ZERO_POINT with SCALE > 0, e.g. 0.584703,83")
        if not -128 <= self.zero_point <= 255:
            raise UsageError(f"--data-quant zero point {self.zero_point} is outside -128..255",
                             "the zero point is the integer meaning 0.0 in int8/uint8 data, e.g. 0.584703,83")


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # [N, *sample_shape] in the stored dtype
    y: np.ndarray | None  # [N] integer class labels
    source: str
    quant: InputQuant | None = None  # set when x holds quantized integers of known scale
    classes: int | None = None  # the class count the labels were written for (y_labels.csv), if stated

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def head(self, n: int) -> Dataset:
        return Dataset(self.x[:n], None if self.y is None else self.y[:n], self.source, self.quant, self.classes)

    def check_labels(self, outputs: int) -> None:
        """DataError unless the labels are class indices of a model with ``outputs`` classes: a label
        out of range would silently count as a miss (0 % top-1 for the wrong file)."""
        if self.y is None:
            return
        if self.classes is not None and self.classes != outputs:
            raise DataError(f"the labels of {self.source} are for {self.classes} classes but the model has "
                            f"{outputs} outputs", "pass the labels written for this model")
        if len(self.y) and int(self.y.max()) >= outputs:
            raise DataError(f"{self.source} has label {int(self.y.max())} but the model has {outputs} classes "
                            f"(labels 0..{outputs - 1})", "pass the labels written for this model, as class "
                            "indices")


def class_labels(y: np.ndarray, source: str) -> np.ndarray:
    """``y`` as int64 class indices; DataError for fractional, negative or non-finite labels."""
    y = np.asarray(y).reshape(-1)
    if y.dtype.kind == "b" or y.dtype.kind not in "fiu":
        raise DataError(f"labels in {source} have dtype {y.dtype}", "store y as integer class indices")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            bad = y[~np.isfinite(y) | (y != np.round(np.nan_to_num(y)))][0]
            raise DataError(f"{source} has label {float(bad)!r}, not a class index",
                            "store y as integer class indices 0..num_classes-1 (not one-hot, not scores)")
    if len(y) and y.min() < 0:
        raise DataError(f"{source} has label {int(y.min())}, not a class index",
                        "labels are class indices 0..num_classes-1")
    return y.astype(np.int64)


def _labels_from_csv(path: Path) -> tuple[dict[str, int], int | None]:
    """Labels by file name and the class count the rows state (rows: file,num_classes,label)."""
    labels: dict[str, int] = {}
    counts: set[int] = set()
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {str(exc)[:200]}",
                        "y_labels.csv is a UTF-8 text file of rows file,num_classes,label") from None
    for row in rows:
        if not row or row[0].strip().lower() in ("file", "filename", "name"):
            continue
        try:
            label = int(row[-1])
            count = int(row[1]) if len(row) >= 3 else None
        except ValueError:
            raise DataError(f"{path}: label {row[-1]!r} of {row[0]!r} is not an integer",
                            "y_labels.csv rows are: file,num_classes,label") from None
        if label < 0 or (count is not None and not 0 <= label < count):
            raise DataError(f"{path}: label {label} of {row[0]!r} is not a class index"
                            + (f" for {count} classes" if count is not None else ""),
                            "y_labels.csv rows are: file,num_classes,label with 0 <= label < num_classes")
        if count is not None:
            counts.add(count)
        labels[row[0].strip()] = label
    if len(counts) > 1:
        raise DataError(f"{path}: rows disagree on num_classes ({sorted(counts)})",
                        "y_labels.csv rows are: file,num_classes,label, with one num_classes for all")
    return labels, next(iter(counts), None)


def _bin_folder(folder: Path, shape: tuple[int, ...], dtype: np.dtype, quant: InputQuant | None) -> Dataset:
    files = sorted(folder.glob("*.bin"))
    if not files:
        raise DataError(f"{folder} holds no .bin files", "pass a folder of raw input tensors, a .npz or a .npy")
    labels_path = folder / LABELS_FILE
    return _bin_files(files, str(folder), shape, dtype, quant, labels_path if labels_path.is_file() else None)


def _bin_files(files: list[Path], source: str, shape: tuple[int, ...], dtype: np.dtype, quant: InputQuant | None,
               labels_path: Path | None) -> Dataset:
    """Raw input tensors, one per file (MLPerf Tiny style), with labels from ``labels_path``. A lone file may hold
    several tensors back to back."""
    for f in files:
        require_regular_file(f, DataError)
    elems = math.prod(shape)
    size = files[0].stat().st_size
    if len(files) == 1 and labels_path is None and size > 0:  # one file: a whole number of tensors is a batch
        for stored in [dtype] + ([np.dtype(np.int8)] if dtype.itemsize != 1 and quant is not None else []):
            if size % (elems * stored.itemsize) == 0:
                x = np.frombuffer(files[0].read_bytes(), dtype=stored).reshape((-1, *shape))
                check_finite(x, source)
                return Dataset(x, None, source, quant if stored.itemsize == 1 and dtype.kind == "f" else None)
    if size == elems * dtype.itemsize:
        stored = dtype
    elif quant is not None and size == elems:
        stored = np.dtype(np.int8)
    elif size == elems and dtype.kind == "f":
        raise DataError(f"{files[0].name} holds {size} bytes: {elems} one-byte values, but the model takes "
                        f"{dtype.name}", "pass --data-quant SCALE,ZERO_POINT to say how those integers map to "
                        "real values (e.g. 0.584703,83 for the MLPerf Tiny KWS inputs)")
    else:
        raise DataError(f"{files[0].name} holds {size} bytes but one model input {list(shape)} of "
                        f"{dtype.name} is {elems * dtype.itemsize} bytes",
                        "each .bin file must hold exactly one input tensor in the model's input dtype")
    rows = []
    for f in files:
        raw = f.read_bytes()
        if len(raw) != size:
            raise DataError(f"{f.name} holds {len(raw)} bytes, unlike the others ({size})",
                            "every .bin file must hold one input tensor")
        rows.append(np.frombuffer(raw, dtype=stored).reshape(shape))
    x = np.stack(rows)
    check_finite(x, source)
    y, classes = None, None
    if labels_path is not None:
        labels, classes = _labels_from_csv(labels_path)
        missing = [f.name for f in files if f.name not in labels]
        if missing:
            raise DataError(f"{LABELS_FILE} has no label for {missing[0]} ({len(missing)} missing)",
                            "list every .bin file in y_labels.csv, or remove the file to run without labels")
        y = np.array([labels[f.name] for f in files], dtype=np.int64)
    return Dataset(x, y, source, quant if stored.itemsize == 1 and dtype.kind == "f" else None,
                   classes if y is not None else None)


def require_regular_file(path: Path, error: type[EdgeforgeError]) -> None:
    """``error`` unless ``path`` is a regular file: reading a FIFO or a device blocks for ever or never ends."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}", "check the path and its permissions") from None
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise error(f"{path} is {kind}, not a file edgeforge can read", "pass a regular file (or folder)")


def _conform(x: np.ndarray, shape: tuple[int, ...], source: str) -> np.ndarray:
    """Reshape [N, ...] samples to ``shape`` when the element count per sample matches."""
    if x.ndim == 0:
        raise DataError(f"{source} holds a scalar, not samples", "store an array [N, *input_shape]")
    elems = math.prod(shape)
    per_sample = math.prod(x.shape[1:]) if x.ndim > 1 else 1
    if per_sample != elems:
        raise DataError(f"data samples in {source} have shape {list(x.shape[1:])} but the model input is "
                        f"{list(shape)}", "give one row per sample, each with the model's input shape")
    return x.reshape((x.shape[0], *shape))


def load_dataset(path: str | Path, sample_shape: tuple[int, ...], dtype: np.dtype,
                 quant: InputQuant | None = None) -> Dataset:
    """Read data for a model whose single input has ``sample_shape`` (no batch) and ``dtype``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data not found: {p}", "check the path")
    if p.is_dir():
        return _bin_folder(p, sample_shape, dtype, quant)
    require_regular_file(p, DataError)
    if p.suffix.lower() == ".bin":  # one raw input tensor
        return _bin_files([p], p.name, sample_shape, dtype, quant, None)
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if "x" not in z.files:
                    raise DataError(f"{p.name} has no array 'x' (found {', '.join(z.files) or 'none'})",
                                    "save with np.savez(path, x=inputs, y=labels)")
                x = np.asarray(z["x"])
                y = class_labels(z["y"], p.name) if "y" in z.files else None
        elif p.suffix == ".npy":
            x, y = np.load(p, allow_pickle=False), None
        else:
            raise DataError(f"{p.name}: unknown data format",
                            "use .npz (x, optional y), .npy, a .bin file (one raw input tensor) or a folder of .bin")
    except DataError:
        raise
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, tokenize errors...
        text = str(exc).splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {p.name}: {text}", "the file is corrupt or not a NumPy file") from None
    x = _conform(x, sample_shape, p.name)
    if len(x) == 0:
        raise DataError(f"{p.name} holds no samples (x has shape {list(x.shape)})",
                        "store at least one sample: an array [N, *input_shape] with N >= 1")
    check_finite(x, p.name)
    if y is not None and len(y) != len(x):
        raise DataError(f"{p.name}: {len(x)} samples but {len(y)} labels", "x and y must have one entry per sample")
    q = quant if quant is not None and x.dtype.kind in "iu" and x.dtype.itemsize == 1 else None
    return Dataset(x, y, str(p), q)


def check_finite(x: np.ndarray, source: str) -> None:
    """DataError unless every value of ``x`` is a finite number of sane magnitude: TensorFlow's
    quantizer crashes on inf, and nan or huge values give scales that make a useless model."""
    if x.dtype.kind not in "fiu":
        raise DataError(f"data in {source} has dtype {x.dtype}", "use numeric arrays")
    if x.dtype.kind != "f" or x.size == 0:
        return
    bad = ~np.isfinite(x) | (np.abs(np.nan_to_num(x)) > MAX_ABS_VALUE)
    if bad.any():
        first = int(np.argmax(bad.reshape(len(x), -1).any(axis=1))) if x.ndim else 0
        value = float(x.reshape(-1)[int(np.argmax(bad.reshape(-1)))])
        raise DataError(f"{source} holds {int(bad.sum())} non-finite or out-of-range value(s) (first in sample "
                        f"{first}: {value!r})", f"inputs must be finite numbers within ±{MAX_ABS_VALUE:g}; "
                        "clean the data (np.isfinite) before passing it")


def float_view(ds: Dataset) -> np.ndarray:
    """Real-valued samples for a float model (dequantized when the data is quantized); DataError for
    non-finite or out-of-range values."""
    if ds.x.dtype.kind not in "fiu":
        raise DataError(f"data in {ds.source} has dtype {ds.x.dtype}", "use numeric arrays")
    if ds.quant is not None:
        real = (ds.x.astype(np.float32) - ds.quant.zero_point) * np.float32(ds.quant.scale)
    else:
        with np.errstate(over="ignore"):
            real = ds.x.astype(np.float32)
    check_finite(real, ds.source)
    return real


def model_view(ds: Dataset, dtype: str, scale: float | None, zero_point: int | None) -> np.ndarray:
    """Samples in the dtype of a model input, quantized with its parameters when it is integer."""
    target = np.dtype(dtype)
    if ds.x.dtype == target and (ds.quant is None or target.kind != "f"):
        if ds.quant is None or scale is None or (
            abs(ds.quant.scale - scale) <= 1e-6 * max(scale, 1e-12) and ds.quant.zero_point == zero_point
        ):
            return ds.x
    real = float_view(ds)
    if target.kind == "f":
        return real.astype(target)
    if not scale:
        raise DataError(f"the model input is {dtype} without quantization parameters",
                        "edgeforge cannot map real-valued data onto it")
    info = np.iinfo(target)
    q = np.round(real / scale) + (zero_point or 0)
    return np.clip(q, info.min, info.max).astype(target)


def synthetic(sample_shape: tuple[int, ...], n: int = 100, seed: int = 0) -> np.ndarray:
    """Fallback calibration data: standard normal, seeded so builds stay deterministic."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *sample_shape)).astype(np.float32)
