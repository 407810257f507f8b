"""Smoke runs of the libFuzzer harnesses (`make fuzz` runs them for FUZZ_SECONDS each): built with clang,
ASan and UBSan, a fixed seed and a bounded number of executions, so `make test` catches a parser or kernel
regression the long runs would. Skipped when clang is absent (`make toolchain` installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "tests" / "fuzz"

pytestmark = pytest.mark.skipif(shutil.which("clang") is None or shutil.which("make") is None,
                                reason="clang is not installed (make toolchain)")


def _smoke(tmp_path: Path, harness: str, runs: int, *extra: str) -> int:
    out = tmp_path / "fuzz"
    build = subprocess.run(["make", "-s", "-C", str(FUZZ), str(out / harness), f"{out}/seeds/parser/session",
                            f"OUT={out}"], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    corpus = out / "corpus"
    corpus.mkdir(exist_ok=True)
    run = subprocess.run([str(out / harness), "-seed=1", f"-runs={runs}", "-print_final_stats=1",
                          f"-artifact_prefix={out}/crash-", str(corpus), *extra],
                         capture_output=True, text=True, timeout=600, cwd=out)
    assert run.returncode == 0, run.stderr[-3000:]
    return int(re.search(r"stat::number_of_executed_units:\s+(\d+)", run.stderr).group(1))


def test_bench_parser_fuzz_smoke(tmp_path: Path) -> None:
    seeds = tmp_path / "fuzz" / "seeds" / "parser"
    executed = _smoke(tmp_path, "fuzz_bench_parser", 30_000, f"-dict={FUZZ / 'bench_parser' / 'parser.dict'}",
                      str(seeds))
    assert executed >= 30_000


def test_runtime_kernels_fuzz_smoke(tmp_path: Path) -> None:
    """conv / depthwise / FC (int8 and int4 filters) and avg / max pooling on random shapes, against the
    harness's own reference loops."""
    assert _smoke(tmp_path, "fuzz_kernels", 3_000) >= 3_000
