"""Where TensorFlow Lite Micro's sources come from when edgeforge compiles a TFLM build for a board.

edgeforge never carries TFLM itself. In order, it takes: ``--tflm-src DIR`` (or ``EDGEFORGE_TFLM_SRC``); the
TFLM library PlatformIO downloaded into the build's own project (``platformio/.pio/libdeps/<env>/<lib>/src``, after
``pio run`` or ``edgeforge flash --port``); the offline tree ``../shared/third_party/tflite-micro`` beside the
repository or the working directory (the project's tests and CI).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeforge.errors import ToolMissingError

ENV = "EDGEFORGE_TFLM_SRC"
MARKER = Path("tensorflow/lite/micro/micro_interpreter.h")
SHARED = Path("shared/third_party/tflite-micro")
_REPO = Path(__file__).resolve().parents[2]


def is_tflm_tree(path: Path) -> bool:
    """A folder laid out like TFLM's own: ``tensorflow/`` and ``third_party/flatbuffers`` at its top."""
    return (path / MARKER).is_file() and (path / "third_party" / "flatbuffers" / "include").is_dir()


def _platformio_trees(build_dir: Path | None) -> list[Path]:
    if build_dir is None:
        return []
    libdeps = build_dir / "platformio" / ".pio" / "libdeps"
    return sorted(p for p in libdeps.glob("*/*/src") if p.is_dir()) if libdeps.is_dir() else []


def candidates(explicit: Path | None, build_dir: Path | None) -> list[tuple[str, Path]]:
    """Every place looked at, in order, with how it was chosen."""
    found: list[tuple[str, Path]] = []
    if explicit is not None:
        found.append(("--tflm-src", explicit))
    if os.environ.get(ENV):
        found.append((ENV, Path(os.environ[ENV])))
    found += [("PlatformIO library", p) for p in _platformio_trees(build_dir)]
    for base in dict.fromkeys((_REPO.parent, Path.cwd().resolve().parent)):
        found.append(("shared tree", base / SHARED))
    return found


def find_tflm_src(explicit: Path | None = None, build_dir: Path | None = None) -> Path:
    """The TFLM source root to compile; ToolMissingError (exit 69) saying where to put one when none exists.

    An explicit choice (option or environment) that is not a TFLM tree is an error rather than skipped: the
    user named it, so silently compiling another TFLM would bench something else."""
    for how, path in candidates(explicit, build_dir):
        if is_tflm_tree(path):
            return path.resolve()
        if how in ("--tflm-src", ENV):
            raise ToolMissingError(f"{how} {path} is not a TensorFlow Lite Micro source tree (no {MARKER} or "
                                   "third_party/flatbuffers/include)",
                                   "point it at a tflite-micro checkout with its third_party downloads")
    raise ToolMissingError(
        "TensorFlow Lite Micro sources not found: a --runtime tflm build is compiled against them for the board",
        f"pass --tflm-src DIR or set {ENV} to a tflite-micro tree (with third_party/flatbuffers, gemmlowp, "
        f"ruy, cmsis_nn), or run `pio run` in BUILD/platformio once so its TFLM library is downloaded")
