"""``manifest.json``: the contract between ``edgeforge build`` and everything that reads a build folder
(run, flash, bench, build --measure, calibrate, esptool flashing).

Build writes a :class:`Manifest`; readers get one back from :func:`read_manifest`, which checks the
document against :data:`SCHEMA` and its format version first, so a missing, damaged or too-new manifest is
one usage error (exit 2) and never a ``KeyError`` deep inside a reader. The sections readers use are typed;
the reports only people and tests read (arena, accuracy, native plan, search table, artifacts) travel as
JSON objects. The JSON is canonical: sorted keys, two-space indent, one trailing newline."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from edgeforge.budget import Verdict
from edgeforge.errors import UsageError

FORMAT_NAME = "edgeforge-build"
#: Bump when a reader of an older edgeforge would misread the document (a key changes meaning or goes away).
FORMAT_VERSION = 1
FILENAME = "manifest.json"
REBUILD = "pass the --out folder of `edgeforge build`, or rebuild it with this edgeforge"

_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "dtype", "scale", "zero_point"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "dtype": {"type": "string"},
        "scale": {"type": ["number", "array"], "items": {"type": "number"}},
        "zero_point": {"type": ["integer", "array"], "items": {"type": "integer"}},
    },
}
_OBJECT_OR_NULL = {"type": ["object", "null"]}

#: What a reader may rely on. Extra keys are allowed: a newer edgeforge of the same format version may add some.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edgeforge build manifest",
    "type": "object",
    "required": ["format", "edgeforge_version", "input_model", "target", "compression", "model", "arena",
                 "estimates", "accuracy", "budgets", "fits", "artifacts", "warnings"],
    "properties": {
        "format": {"type": "string", "pattern": f"^{FORMAT_NAME}/[0-9]+$"},
        "edgeforge_version": {"type": "string"},
        "input_model": {"type": "object", "required": ["path", "format", "sha256"],
                        "properties": {"path": {"type": "string"}, "format": {"type": "string"},
                                       "sha256": {"type": "string"}}},
        "target": {"type": "object", "required": ["id", "name", "profile_sha256", "runtime"],
                   "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                  "profile_sha256": {"type": "string"}, "runtime": {"type": "string"},
                                  "emitter": {"type": "string"}, "kernels": {"type": "string"}}},
        "compression": {"type": "object",
                        "required": ["scheme", "description", "calibration", "synthetic_calibration"],
                        "properties": {"scheme": {"type": "string"}, "description": {"type": "string"},
                                       "calibration": {"type": "string"},
                                       "synthetic_calibration": {"type": "boolean"},
                                       "data_quant": {"type": ["object", "null"],
                                                      "required": ["scale", "zero_point"],
                                                      "properties": {"scale": {"type": "number"},
                                                                     "zero_point": {"type": "integer"}}}}},
        "model": {"type": "object",
                  "required": ["path", "bytes", "sha256", "ops", "params", "macs", "weight_bytes",
                               "activation_peak_bytes", "inputs", "outputs"],
                  "properties": {"path": {"type": "string", "minLength": 1}, "bytes": {"type": "integer"},
                                 "sha256": {"type": "string"}, "ops": {"type": "array", "items": {"type": "string"}},
                                 "params": {"type": "integer"}, "macs": {"type": "integer"},
                                 "weight_bytes": {"type": "integer"}, "activation_peak_bytes": {"type": "integer"},
                                 "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
                                 "outputs": {"type": "array", "items": _TENSOR, "minItems": 1}}},
        "arena": _OBJECT_OR_NULL,
        "estimates": {"type": "object", "required": ["flash_bytes", "ram_bytes", "latency_ms"],
                      "properties": {"flash_bytes": {"type": "integer"}, "ram_bytes": {"type": "integer"},
                                     "latency_ms": {"type": "number"}}},
        "accuracy": _OBJECT_OR_NULL,
        "budgets": {"type": "array", "items": {
            "type": "object", "required": ["budget", "limit", "value", "basis"],
            "properties": {"budget": {"type": "string"}, "limit": {"type": "number"},
                           "value": {"type": ["number", "null"]}, "basis": {"type": "string"}}}},
        "fits": {"type": "boolean"},
        "artifacts": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["bytes", "sha256"],
            "properties": {"bytes": {"type": "integer"}, "sha256": {"type": "string"}}}},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "espidf": {"type": "object", "required": ["project", "chip", "flash_mode", "flash_freq", "flash_size",
                                                  "baud", "images"],
                   "properties": {"images": {"type": "array", "items": {
                       "type": "object", "required": ["path", "offset"],
                       "properties": {"path": {"type": "string"}, "offset": {"type": "string"}}}}}},
        "native": {"type": "object"},
        "search": {"type": "object"},
        "latency_alternatives": {"type": "array", "items": {
            "type": "object", "required": ["target", "runtime", "latency_ms"],
            "properties": {"target": {"type": "string"}, "runtime": {"type": "string"},
                           "latency_ms": {"type": "number"}}}},
    },
}


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as a host or the firmware feeds it (quantization per tensor or per channel)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | tuple[float, ...]
    zero_point: int | tuple[int, ...]

    @classmethod
    def of(cls, t: Any) -> TensorSpec:
        """The spec of a model tensor (``TensorInfo``): per-tensor quantization as a scalar."""
        return cls(t.name, tuple(t.shape), t.dtype, t.scale[0] if len(t.scale) == 1 else tuple(t.scale),
                   t.zero_point[0] if len(t.zero_point) == 1 else tuple(t.zero_point))

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TensorSpec:
        scale, zp = d["scale"], d["zero_point"]
        return cls(d["name"], tuple(d["shape"]), d["dtype"], tuple(scale) if isinstance(scale, list) else scale,
                   tuple(zp) if isinstance(zp, list) else zp)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": list(self.scale) if isinstance(self.scale, tuple) else self.scale,
                "zero_point": list(self.zero_point) if isinstance(self.zero_point, tuple) else self.zero_point}


@dataclass(frozen=True)
class InputModel:
    path: str  # as the user named it (the file name only: builds are relocatable)
    format: str
    sha256: str


@dataclass(frozen=True)
class TargetRef:
    id: str
    name: str
    profile_sha256: str
    runtime: str
    emitter: str | None = None  # the firmware project, when the profile offers more than one
    kernels: str | None = None  # the TFLM kernel set the latency estimate assumes, when the profile names one


@dataclass(frozen=True)
class Compression:
    scheme: str
    description: str
    calibration: str  # how it was calibrated, for people
    synthetic_calibration: bool  # int8 ranges came from synthetic inputs (no --data)
    # what 8-bit --data/--val meant (build --data-quant): run and bench read raw int8 data the same way
    data_quant: tuple[float, int] | None = None


@dataclass(frozen=True)
class ModelSummary:
    path: str  # relative to the build folder
    bytes: int
    sha256: str
    ops: tuple[str, ...]
    params: int
    macs: int
    weight_bytes: int
    activation_peak_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Estimates:
    flash_bytes: int
    ram_bytes: int
    latency_ms: float


def verdict_fits(budgets: Iterable[Verdict], link_error: str | None, search_found: bool) -> bool:
    """The build's one "fits" verdict: every evaluated budget met, the native image links, and a compression
    search (when one ran) found a candidate that fits."""
    return link_error is None and search_found and all(v.fits is not False for v in budgets)


@dataclass(frozen=True)
class Manifest:
    """One build, as ``edgeforge build`` wrote it (:meth:`dumps`) and every reader gets it (:func:`read_manifest`)."""

    edgeforge_version: str
    input_model: InputModel
    target: TargetRef
    compression: Compression
    model: ModelSummary
    estimates: Estimates
    budgets: tuple[Verdict, ...]
    fits: bool  # computed once by :func:`verdict_fits` when the build writes it
    artifacts: Mapping[str, Mapping[str, Any]]  # relative path -> {bytes, sha256}
    warnings: tuple[str, ...] = ()
    arena: Mapping[str, Any] | None = None  # TFLM's arena as measured (ArenaMeasurement.to_json)
    accuracy: Mapping[str, Any] | None = None  # Accuracy.to_json
    espidf: Mapping[str, Any] | None = None  # what esptool flashing needs (emit.espidf.manifest_entry)
    native: Mapping[str, Any] | None = None  # the native runtime's plan and image (NativeResult.to_json)
    search: Mapping[str, Any] | None = None  # what the compression search chose (compress.driver summary)
    # a missed latency budget: the runtimes/targets whose estimate for this model meets it (build.faster_options)
    latency_alternatives: tuple[Mapping[str, Any], ...] | None = None
    format_version: int = FORMAT_VERSION

    @property
    def missed(self) -> list[Verdict]:
        return [v for v in self.budgets if v.fits is False]

    def to_json(self) -> dict[str, Any]:
        t = self.target
        target: dict[str, Any] = {"id": t.id, "name": t.name, "profile_sha256": t.profile_sha256,
                                  "runtime": t.runtime}
        target.update({k: v for k, v in (("emitter", t.emitter), ("kernels", t.kernels)) if v is not None})
        m = self.model
        doc: dict[str, Any] = {
            "format": f"{FORMAT_NAME}/{self.format_version}",
            "edgeforge_version": self.edgeforge_version,
            "input_model": {"path": self.input_model.path, "format": self.input_model.format,
                            "sha256": self.input_model.sha256},
            "target": target,
            "compression": {"scheme": self.compression.scheme, "description": self.compression.description,
                            "calibration": self.compression.calibration,
                            "synthetic_calibration": self.compression.synthetic_calibration,
                            "data_quant": None if self.compression.data_quant is None else {
                                "scale": self.compression.data_quant[0],
                                "zero_point": self.compression.data_quant[1]}},
            "model": {"path": m.path, "bytes": m.bytes, "sha256": m.sha256, "ops": list(m.ops), "params": m.params,
                      "macs": m.macs, "weight_bytes": m.weight_bytes,
                      "activation_peak_bytes": m.activation_peak_bytes,
                      "inputs": [s.to_json() for s in m.inputs], "outputs": [s.to_json() for s in m.outputs]},
            "arena": _plain(self.arena),
            "estimates": {"flash_bytes": self.estimates.flash_bytes, "ram_bytes": self.estimates.ram_bytes,
                          "latency_ms": self.estimates.latency_ms},
            "accuracy": _plain(self.accuracy),
            "budgets": [v.to_json() for v in self.budgets],
            "fits": self.fits,
            "artifacts": {k: dict(v) for k, v in sorted(self.artifacts.items())},
            "warnings": list(self.warnings),
        }
        doc.update({k: _plain(v) for k, v in (("espidf", self.espidf), ("native", self.native),
                                               ("search", self.search),
                                               ("latency_alternatives", self.latency_alternatives)) if v is not None})
        return doc

    def dumps(self) -> bytes:
        """The canonical bytes of ``manifest.json`` (same manifest, same bytes)."""
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, doc: Any, where: str = FILENAME) -> Manifest:
        """Validate ``doc`` (format version first, then :data:`SCHEMA`) and type it."""
        if not isinstance(doc, dict) or not isinstance(doc.get("format"), str):
            raise UsageError(f"{where} is not an edgeforge build manifest (no format)", REBUILD)
        name, _, version = doc["format"].partition("/")
        if name != FORMAT_NAME or not (version.isascii() and version.isdigit()):
            raise UsageError(f"{where} is not an edgeforge build manifest (format {doc['format']!r})", REBUILD)
        if int(version) > FORMAT_VERSION:
            raise UsageError(f"{where} was written by a newer edgeforge (format {doc['format']}; this edgeforge "
                             f"reads up to {FORMAT_NAME}/{FORMAT_VERSION})",
                             "upgrade edgeforge, or rebuild the model with this one")
        errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            at = "/".join(str(p) for p in e.path) or "(top level)"
            raise UsageError(f"{where} is damaged: at {at}: {e.message}", REBUILD)
        t, c, m, e_ = doc["target"], doc["compression"], doc["model"], doc["estimates"]
        return cls(
            edgeforge_version=doc["edgeforge_version"],
            input_model=InputModel(**{k: doc["input_model"][k] for k in ("path", "format", "sha256")}),
            target=TargetRef(t["id"], t["name"], t["profile_sha256"], t["runtime"], t.get("emitter"),
                             t.get("kernels")),
            compression=Compression(c["scheme"], c["description"], c["calibration"], c["synthetic_calibration"],
                                    None if c.get("data_quant") is None else
                                    (float(c["data_quant"]["scale"]), int(c["data_quant"]["zero_point"]))),
            model=ModelSummary(m["path"], m["bytes"], m["sha256"], tuple(m["ops"]), m["params"], m["macs"],
                               m["weight_bytes"], m["activation_peak_bytes"],
                               tuple(TensorSpec.from_json(s) for s in m["inputs"]),
                               tuple(TensorSpec.from_json(s) for s in m["outputs"])),
            estimates=Estimates(e_["flash_bytes"], e_["ram_bytes"], e_["latency_ms"]),
            budgets=tuple(Verdict(v["budget"], v["limit"], v["value"], v["basis"]) for v in doc["budgets"]),
            fits=doc["fits"], artifacts=doc["artifacts"], warnings=tuple(doc["warnings"]),
            arena=doc["arena"], accuracy=doc["accuracy"], espidf=doc.get("espidf"), native=doc.get("native"),
            search=doc.get("search"), format_version=int(version),
            latency_alternatives=tuple(doc["latency_alternatives"]) if "latency_alternatives" in doc else None)


def _plain(value: Any) -> Any:
    """A JSON value with every mapping a plain dict (sorted on output anyway) and every tuple a list."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def read_manifest(build_dir: Path) -> Manifest:
    """The manifest of the build in ``build_dir``; a usage error (exit 2) when there is none, or it is
    damaged or from a newer edgeforge."""
    path = build_dir / FILENAME
    if not path.is_file():
        raise UsageError(f"{build_dir} is not an edgeforge build folder (no {FILENAME})",
                         "pass the --out folder of `edgeforge build`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path} is damaged: {exc}", REBUILD) from None
    return Manifest.from_json(doc, str(path))

