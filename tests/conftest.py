"""Shared fixtures. The MLPerf Tiny models live outside the repository (../shared); tests that need
them skip cleanly when it is absent. EDGEFORGE_FULL_TESTS=1 (`make test-all`) runs slow checks in
full; `make test` runs them reduced."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = ROOT / "tests" / "golden"
MLPERF = ROOT.parent / "shared" / "models" / "mlperf_tiny"
FULL = os.environ.get("EDGEFORGE_FULL_TESTS") == "1"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The checkout's own .edgeforge/targets/ (what `edgeforge calibrate` writes when run here) must not change
# what the tests see; tests that exercise project profiles chdir into a tmp_path, which is still read.
os.environ["EDGEFORGE_IGNORE_PROJECT_DIR"] = str(ROOT)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run ``edgeforge ARGS`` in-process; returns exit code, stdout and stderr."""
    from edgeforge.cli.main import main

    monkeypatch.setenv("CI", "true")

    def run(*args: object) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def mlperf() -> Path:
    if not MLPERF.is_dir():
        pytest.skip("../shared/models/mlperf_tiny is absent (only the project's own machines have it)")
    return MLPERF


@pytest.fixture
def tiny() -> Path:
    return FIXTURES / "tiny_int8.tflite"


def assert_clean_error(result: CliResult, code: int) -> None:
    """One error line and one hint line, the documented exit code, no traceback."""
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.err + result.out
    lines = [ln for ln in result.err.splitlines() if ln.startswith(("error:", "hint:"))]
    assert [ln.split(":")[0] for ln in lines] == ["error", "hint"], result.err
