"""Exception hierarchy and the stable exit-code table.

Only the CLI catches these; each carries a one-line message, a hint that says what to do,
and the exit code the CLI returns. Codes are published in the README: never renumber one.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2  # bad option, unknown target, invalid profile
    BUDGET = 3  # the build worked but the result misses a budget
    DEVICE = 4  # device, transport, flash or bench-protocol failure
    DATA = 65  # bad input: corrupt model, unsupported op, mismatched data (EX_DATAERR)
    UNAVAILABLE = 69  # a required external tool or package is missing (EX_UNAVAILABLE)
    INTERNAL = 70  # a bug in edgeforge (EX_SOFTWARE)
    INTERRUPTED = 130


class EdgeforgeError(Exception):
    """An error a user can act on."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(EdgeforgeError):
    exit_code = ExitCode.USAGE


class TargetError(EdgeforgeError):
    """Unknown target id or an invalid target profile."""

    exit_code = ExitCode.USAGE


class ModelError(EdgeforgeError):
    """The model file is missing, corrupt, truncated, not a model, or has dynamic shapes."""

    exit_code = ExitCode.DATA


class UnsupportedOpError(EdgeforgeError):
    """The model uses an op the target's runtime cannot run."""

    exit_code = ExitCode.DATA


class DataError(EdgeforgeError):
    """Calibration or validation data that cannot be read or does not match the model."""

    exit_code = ExitCode.DATA


class ToolMissingError(EdgeforgeError):
    """A package or external tool edgeforge needs is not installed."""

    exit_code = ExitCode.UNAVAILABLE


class InternalError(EdgeforgeError):
    """edgeforge caught itself producing something wrong (e.g. a memory plan that fails its verifier)."""

    exit_code = ExitCode.INTERNAL


EXIT_CODE_TABLE: tuple[tuple[int, str], ...] = (
    (ExitCode.OK, "success; every budget met"),
    (ExitCode.FAILURE, "generic failure"),
    (ExitCode.USAGE, "usage or configuration error (bad option, unknown target, invalid profile)"),
    (ExitCode.BUDGET, "budget exceeded: the build worked but the model does not fit or is too slow"),
    (ExitCode.DEVICE, "device, transport, flash or bench-protocol failure"),
    (ExitCode.DATA, "bad input: corrupt/unsupported model, unsupported op, data not matching the model"),
    (ExitCode.UNAVAILABLE, "a required package or external tool is missing"),
    (ExitCode.INTERNAL, "internal error (a bug: please report it)"),
    (ExitCode.INTERRUPTED, "interrupted (Ctrl-C)"),
)
