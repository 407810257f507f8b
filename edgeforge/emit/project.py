"""Which firmware project a build writes (``espidf`` or ``platformio``) and the kernel set it implies.

A profile lists its project emitters in ``emit``, default first; ``--emitter`` picks another. The latency
estimate must price the kernels that project really compiles: ``[perf.ops.tflm]`` names its set
(``kernels``), and when the chosen project builds another set (``[platformio] kernels = "reference"`` on
ESP32 chips, whose Arduino library has no ESP-NN), the matching ``[perf.kernel_sets.<set>]`` table replaces it."""

from __future__ import annotations

import copy

from edgeforge.errors import UsageError
from edgeforge.target.schema import PROJECT_EMITTERS, Target, target_from_data


def project_emitter(target: Target, requested: str | None) -> str | None:
    """The project emitter of this build: ``requested`` when the profile offers it, else the profile's first."""
    offered = [e for e in target.emit if e in PROJECT_EMITTERS]
    if requested is None:
        return offered[0] if offered else None
    if requested not in offered:
        raise UsageError(f"target {target.id} does not offer --emitter {requested}",
                         f"choose one of: {', '.join(offered)}" if offered else f"{target.id} emits no project")
    return requested


def kernels_of(target: Target, emitter: str | None) -> str | None:
    """The TFLM kernel set the chosen project compiles (None: the profile does not say)."""
    section = target.data.get(emitter or "") or {}
    return section.get("kernels") or (target.data["perf"].get("ops") or {}).get("tflm", {}).get("kernels")


def for_emitter(target: Target, emitter: str | None) -> Target:
    """``target`` with its TFLM latency table for the kernels ``emitter``'s project compiles."""
    want = kernels_of(target, emitter)
    perf = target.data["perf"]
    have = (perf.get("ops") or {}).get("tflm", {}).get("kernels")
    if want is None or want == have:
        return target
    table = (perf.get("kernel_sets") or {}).get(want)
    if table is None:
        raise UsageError(f"target {target.id}: the {emitter} project builds {want} kernels, but the profile has "
                         f"no [perf.kernel_sets.{want}] table", "add the table to the profile")
    data = copy.deepcopy(target.data)
    data["perf"]["ops"]["tflm"] = copy.deepcopy(table)
    return target_from_data(data, target.source)
