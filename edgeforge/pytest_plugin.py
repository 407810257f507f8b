"""pytest plugin for hardware-in-the-loop (HIL) tests on the boards of a rig file.

Installed with edgeforge (the ``pytest11`` entry point ``edgeforge``), so any pytest run in edgeforge's
environment has it; nothing changes for a test suite that uses none of it. Without the entry point
(a checkout not reinstalled), load it with ``pytest -p edgeforge.pytest_plugin``.

Options:

``--ef-rig PATH``
    The rig file (format: ``python -m pydoc edgeforge.device.rig``); default ``$EDGEFORGE_RIG``. An unreadable
    or invalid rig stops the run with a usage error naming the file, board and field.
``--ef-board NAME``
    The rig board the ``ef_board`` fixture gives; may be left out when the rig has a single board.
``--ef-lock-timeout SECONDS``
    How long ``ef_board`` waits for a board another job holds before failing the test (default 300).

Marker ``@pytest.mark.hil``: the test needs a board. Without a rig (no ``--ef-rig``, no ``$EDGEFORGE_RIG``;
a ``./edgeforge-rig.toml`` alone does not count) it is skipped, with the reason "hil test: no board rig ...".
``@pytest.mark.hil(targets=["esp32", "esp32s3"])`` also skips the test when the selected board's target is
not one of those.

Fixtures:

``ef_rig`` (session)
    The loaded :class:`~edgeforge.device.rig.Rig` (the test is skipped when there is no rig).
``ef_board`` (function)
    The selected :class:`~edgeforge.device.rig.RigBoard`, its port locked for the whole test (setup and
    teardown of fixtures that depend on it included), so that parallel CI jobs, and ``pytest-xdist``
    workers, never share a board: a test whose board is busy waits, then fails ``board X is busy (locked by
    pid N ...)``. The lock is released when the test ends, or when the process dies.

Example rig file (``edgeforge-rig.toml``)::

    [boards.esp32-devkitc]
    port = "/dev/serial/by-id/usb-Silicon_Labs_CP2102N_USB_to_UART_Bridge_Controller_4a7c3f-if00-port0"
    target = "esp32"
    flasher = "esptool"
    baud = 115200
    reset = "dtr-rts"

    [boards.sim]
    target = "cortex-m4"
    flasher = "host-sim"

Example test::

    import pytest

    from edgeforge.bench.protocol import DutClient
    from edgeforge.bench.run import bench_build
    from edgeforge.device.transport import SerialTransport

    @pytest.mark.hil(targets=["esp32"])
    def test_bench_on_the_board(ef_board, built_esp32):      # built_esp32: your fixture building the model
        outcome = bench_build(built_esp32, runs=5, warmup=1, input_path=None, count=4, **ef_board.bench_args())
        assert outcome.outputs_match

    @pytest.mark.hil
    def test_board_answers(ef_board):                       # a board with a port (not host-sim/qemu)
        transport = SerialTransport(ef_board.port, ef_board.baud or 115200)
        try:
            client = DutClient(transport)
            client.resync()
            assert client.name()
        finally:
            transport.close()

Run::

    pytest --ef-rig ci/edgeforge-rig.toml --ef-board esp32-devkitc -m hil

Each ``ef_board`` test takes and releases the lock on its own; a job that flashes a board in one test and
benchmarks it in the next should check what runs there (``bench_build`` refuses a board running another
model).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from edgeforge.device.rig import Rig, RigBoard

ENV_RIG = "EDGEFORGE_RIG"  # edgeforge.device.rig.ENV_RIG, without importing it into every pytest run
SKIP_REASON = f"hil test: no board rig (pass --ef-rig PATH or set ${ENV_RIG})"
_RIG = pytest.StashKey["Rig | None"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edgeforge", "edgeforge hardware-in-the-loop tests")
    group.addoption("--ef-rig", metavar="PATH", default=None,
                    help=f"rig file of the boards this machine has (default: ${ENV_RIG}); "
                         "without one, tests marked hil are skipped")
    group.addoption("--ef-board", metavar="NAME", default=None,
                    help="rig board the ef_board fixture uses (optional when the rig has one board)")
    group.addoption("--ef-lock-timeout", metavar="SECONDS", type=float, default=300.0,
                    help="how long ef_board waits for a board another job holds (default: 300)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hil: hardware-in-the-loop test: needs a board rig (--ef-rig PATH or "
                                       f"${ENV_RIG}), skipped without one; hil(targets=[...]) also skips other "
                                       "boards' targets")
    config.stash[_RIG] = None
    option = config.getoption("ef_rig", None)
    board = config.getoption("ef_board", None)
    if not option and not os.environ.get(ENV_RIG):
        if board:
            raise pytest.UsageError(f"--ef-board {board} needs a rig: pass --ef-rig PATH or set ${ENV_RIG}")
        return
    from edgeforge.device.rig import load_rig
    from edgeforge.errors import EdgeforgeError

    try:
        rig = load_rig(config.invocation_params.dir / option if option else None)
        if board:
            rig.board(board)
    except EdgeforgeError as exc:
        raise pytest.UsageError(_text(exc)) from None
    config.stash[_RIG] = rig


def pytest_report_header(config: pytest.Config) -> list[str]:
    rig = config.stash.get(_RIG, None)
    if rig is None:
        return []
    board = config.getoption("ef_board", None)
    return [f"edgeforge rig: {rig.path} (boards: {', '.join(rig.names)})" + (f"; board: {board}" if board else "")]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash.get(_RIG, None) is not None:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker("hil") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ef_rig(pytestconfig: pytest.Config) -> Rig:
    """The rig file given with --ef-rig (or $EDGEFORGE_RIG), loaded; skips the test when there is none."""
    rig = pytestconfig.stash.get(_RIG, None)
    if rig is None:
        pytest.skip(SKIP_REASON)
    return rig


@pytest.fixture
def ef_board(request: pytest.FixtureRequest, ef_rig: Rig) -> Iterator[RigBoard]:
    """The --ef-board board of the rig, its port locked for the duration of the test."""
    from edgeforge.errors import EdgeforgeError

    name = request.config.getoption("ef_board", None)
    if not name:
        if len(ef_rig.names) != 1:
            pytest.fail(f"the rig {ef_rig.path} has {len(ef_rig.names)} boards ({', '.join(ef_rig.names)}): "
                        "choose one with --ef-board NAME", pytrace=False)
        name = ef_rig.names[0]
    board = ef_rig.board(name)
    marker = request.node.get_closest_marker("hil")
    targets = marker.kwargs.get("targets") if marker is not None else None
    if targets is not None and board.target not in ([targets] if isinstance(targets, str) else targets):
        pytest.skip(f"hil test for target(s) {', '.join([targets] if isinstance(targets, str) else targets)}; "
                    f"board {board.name} is {board.target}")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(ef_rig.lock(name, timeout=request.config.getoption("ef_lock_timeout")))
        except EdgeforgeError as exc:
            pytest.fail(_text(exc), pytrace=False)
        yield board


def _text(exc: Exception) -> str:
    message, hint = getattr(exc, "message", str(exc)), getattr(exc, "hint", "")
    return f"{message}\nhint: {hint}" if hint else message

