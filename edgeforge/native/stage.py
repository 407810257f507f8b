"""The native runtime as a build stage: lower, plan, emit and (where the toolchain exists) cross-compile."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeforge.model.tflite import ModelInfo
from edgeforge.native.emit import NativeModel, native_files, prepare_native
from edgeforge.native.toolchain import ArmImage, arm_available, arm_image
from edgeforge.target.schema import Target

#: Flash of the kernel library and start-up when no cross-compiler can measure it (the -Os Cortex-M4
#: figure for the KWS/IC kernel set, rounded up): estimates only, labelled as such.
CODE_ESTIMATE_BYTES = 8192


@dataclass(frozen=True)
class NativeResult:
    native: NativeModel
    files: dict[str, bytes]  # relative to native/
    arm: ArmImage | None
    arm_note: str  # why there is no ARM measurement, when there is none

    @property
    def flash(self) -> tuple[int, str]:
        if self.arm is not None and self.arm.link_error is None:
            return self.arm.flash, "measured: linked Cortex-M image (.text + .rodata + .data)"
        return self.native.const_bytes + CODE_ESTIMATE_BYTES, \
            f"estimated: constants + ~{CODE_ESTIMATE_BYTES} B of kernel code ({self.arm_note})"

    @property
    def ram(self) -> tuple[int, str]:
        if self.arm is not None and self.arm.link_error is None:
            return self.arm.ram, "measured: linked image .data + .bss (arena) + worst-case stack"
        return self.native.plan.arena_bytes, f"measured: native arena plan (stack not included: {self.arm_note})"

    def to_json(self, tflm_measured: int | None) -> dict[str, Any]:
        p = self.native.plan
        return {
            "arena_bytes": p.arena_bytes,
            "lower_bound_bytes": p.lower_bound,
            "tflm_like_head_bytes": self.native.tflm_like_head,
            "tflm_measured_arena_bytes": tflm_measured,
            "const_bytes": self.native.const_bytes,
            "weights": self.native.weights.to_json(),
            "schedule": list(p.order),
            "reordered": list(p.order) != sorted(p.order),
            "rounding": "single" if self.native.single_rounding else "double (TFLM default)",
            "arm": self.arm.to_json() if self.arm else None,
            "arm_note": self.arm_note,
        }


def arm_settings(target: Target) -> dict[str, Any] | None:
    tc = target.data.get("toolchain")
    if not tc:
        return None
    hw = target.hardware
    return {"cflags": tc["cflags"], "cross": tc["cross"], "flash_origin": hex(tc["flash_origin"]),
            "ram_origin": hex(tc["ram_origin"]), "flash_bytes": hw["flash_bytes"], "ram_bytes": hw["ram_bytes"],
            "cpu": hw["cpu"], "flash_source": f"target profile {target.id}: hardware.flash_bytes / ram_bytes"}


def compile_native(files: dict[str, bytes], target: Target) -> tuple[ArmImage | None, str]:
    """Cross-compile and link the rendered C for ``target``'s part: the image (its flash, RAM and whether it
    links), or None and why not (no toolchain settings in the profile, or no cross-compiler installed)."""
    arm = arm_settings(target)
    if arm is None:
        return None, f"no Cortex-M toolchain settings for {target.id}"
    if not arm_available(arm["cross"]):
        return None, f"{arm['cross']}-gcc not installed"
    with tempfile.TemporaryDirectory(prefix="edgeforge-native-") as tmp:
        root = Path(tmp)
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        return arm_image(root, list(arm["cflags"]), arm["cross"]), ""


def native_stage(info: ModelInfo, model: bytes, target: Target, base: dict[str, Any],
                 single_rounding: bool = False) -> NativeResult:
    """Plan (lower to typed kernel calls, fuse, plan and verify the arena), emit (render the C) and compile."""
    native = prepare_native(info, model, single_rounding)
    files = native_files(native, info, base, arm_settings(target))
    image, note = compile_native(files, target)
    return NativeResult(native, files, image, note)
