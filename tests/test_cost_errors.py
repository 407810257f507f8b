"""A bug in the latency cost model surfaces as an internal error (exit 70); only a target profile without the
data for a cost model (KeyError / ValueError while building it) falls back to "no latency estimate"."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURES


def _failing(exc: Exception):  # type: ignore[no-untyped-def]
    def init(self, target, runtime, info):  # type: ignore[no-untyped-def]
        raise exc

    return init


def test_a_cost_model_bug_is_an_internal_error(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeforge.cost import candidate as costs

    monkeypatch.setattr(costs.LatencyEstimator, "__init__", _failing(ZeroDivisionError("a bug")))
    r = cli("build", FIXTURES / "tiny_int8.tflite", "--target", "cortex-m4", "--out", tmp_path / "o")
    assert r.code == 70, r.err
    assert "internal error: ZeroDivisionError: a bug" in r.err


def test_a_profile_without_cost_data_still_builds(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeforge.cost import candidate as costs

    monkeypatch.setattr(costs.LatencyEstimator, "__init__", _failing(KeyError("perf")))
    r = cli("build", FIXTURES / "tiny_int8.tflite", "--target", "cortex-m4", "--out", tmp_path / "o")
    assert r.code == 0, r.err
