"""Measured latency of a build on a board: a thin layer over ``edgeforge.bench.run.bench_build`` for the
compression search (``build --measure --board``) and ``edgeforge calibrate``.

On an emulated board (``qemu-cortex-m4``: QEMU ``-icount shift=0``) a "latency" is an instruction count; it is
converted to milliseconds at the target profile's clock as if every instruction took one cycle, and labelled so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeforge.errors import UsageError
from edgeforge.events import Reporter

#: QEMU mps2-an386 under ``-icount shift=0``: one instruction = 1 ns of virtual time; the bench port's SysTick
#: models a 25 MHz clock (firmware/bench/ports/mps2-an386/ef_port_an386.c), so one tick = 40 instructions.
QEMU_INSTRUCTIONS_PER_TICK = 40  # qemu-cortex-m4: -icount shift=0 (1 ns per instruction), 25 MHz SysTick


def instructions_per_tick(board: str | None) -> float | None:
    """Emulated board: instructions per tick of its ef-ops cycle counter (1e9 / its timer clock under
    -icount shift=0); None when the counter is not a clock tick (RISC-V mcycle) or the board is not emulated."""
    from edgeforge.device.boards import emulated_board

    b = emulated_board(board or "")
    if b is None or b.cmsis_device is None:
        return None
    return 1e9 / b.sysclk_hz


@dataclass(frozen=True)
class BoardArgs:
    """What ``bench_build`` needs to reach a board: an emulated board's name, or a port."""

    name: str
    board: str | None
    port: str | None
    baud: int | None
    emulated: bool


def board_names() -> str:
    from edgeforge.device.boards import BOARDS

    return ", ".join(BOARDS)


@contextlib.contextmanager
def resolve_board(name: str | None, port: str | None = None) -> Iterator[BoardArgs]:
    """``name``: an emulated board (host-sim, qemu-cortex-m4, pi-local) or a board of the rig file
    (edgeforge-rig.toml), whose port is locked for the ``with`` block; or ``port``: a serial URL.
    UsageError (exit 2) for a board nobody knows."""
    from edgeforge.device.boards import BOARDS, emulated_board

    if name is None:
        if port is None:
            raise UsageError("no board given", f"pass --board ({board_names()}, or a rig board) or --port URL")
        yield BoardArgs(port, None, port, None, False)
        return
    if name in BOARDS:
        yield BoardArgs(name, name, None, None, emulated_board(name) is not None)
        return
    from edgeforge.device.rig import find_rig, load_rig

    if find_rig() is None:
        raise UsageError(f"unknown board {name!r}",
                         f"emulated boards: {board_names()}; real boards are named in edgeforge-rig.toml "
                         "(see `python -m pydoc edgeforge.device.rig`)")
    rig = load_rig()
    with rig.lock(name) as rb:  # UsageError naming the rig file for an unknown name
        kw = rb.bench_args()
        yield BoardArgs(name, kw["board"], kw["port"], kw["baud"], emulated_board(kw["board"] or "") is not None)


@dataclass(frozen=True)
class Measurement:
    ms: float  # at the target's clock (emulated boards: instructions counted as cycles)
    basis: str
    emulated: bool
    instructions: int | None  # emulated boards only
    doc: dict[str, Any]  # bench.json


def measure_latency(build_dir: Path, board: str | None, port: str | None, runs: int = 5,
                    reporter: Reporter | None = None) -> Measurement:
    """Bench ``build_dir`` (one seeded random input, ``runs`` timed inferences after one warm-up) and return
    its median latency. DeviceError (exit 4) when the board fails or its outputs differ from the host's."""
    from edgeforge.bench.run import bench_build
    from edgeforge.device.transport import DeviceError
    from edgeforge.run import read_build
    from edgeforge.target import load_registry

    manifest, _, _ = read_build(build_dir)
    target = load_registry().get(manifest.target.id)
    clock_mhz = float(target.hardware["clock_mhz"])
    with resolve_board(board, port) as b:
        outcome = bench_build(build_dir, b.board, b.port, max(runs, 1), 1, None, 1, reporter, b.baud)
    if not outcome.outputs_match:
        raise DeviceError(f"{b.name}: the outputs of {build_dir} differ from the host reference",
                          f"see {build_dir / 'bench.json'}; a latency from a wrong result is not reported")
    lat = outcome.doc["latency"]
    if lat["emulated"]:
        instr = int(lat["instructions_median"])
        return Measurement(instr / (clock_mhz * 1e3), f"measured on {b.name}: {instr} emulated instructions counted "
                           f"as cycles at {clock_mhz:g} MHz", True, instr, outcome.doc)
    return Measurement(float(lat["median_ms"]), f"measured on {b.name}: median of {runs} runs", False, None,
                       outcome.doc)


def measure_latency_ms(build_dir: Path, board: str, port: str | None, runs: int = 5) -> float:
    """Median latency of ``build_dir`` on ``board`` in ms (see :func:`measure_latency`)."""
    return measure_latency(build_dir, board, port, runs).ms
