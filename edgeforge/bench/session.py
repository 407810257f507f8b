"""A bench session: upload inputs, time inferences, fetch outputs, memory and per-op figures.

Reliability rules: timeouts derive from the expected latency; a failed exchange (timeout, CRC mismatch,
reboot, refused command, a reply to another request) is retried after a resynchronisation and, where the
port has control lines, a reset; a figure is reported only from an exchange whose checks all passed; if
retries run out the bench fails (exit 4) rather than report anything. Which reports are fetched follows the
identity the caller checked against the build (``identity["ext"]``), never a guess."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeforge.bench.protocol import DutClient
from edgeforge.device.transport import DeviceError, SerialTransport


@dataclass(frozen=True)
class SampleResult:
    index: int
    latency_us: float
    output: bytes
    matches_host: bool
    retries: int


@dataclass
class BenchReport:
    identity: dict[str, str]
    samples: list[SampleResult] = field(default_factory=list)
    memory: dict[str, int] = field(default_factory=dict)
    ops: list[tuple[int, str, int, int]] = field(default_factory=list)
    retries: int = 0
    first_divergence: dict[str, Any] | None = None

    @property
    def latencies_ms(self) -> list[float]:
        return [s.latency_us / 1000 for s in self.samples]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p90_ms(self) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]

    @property
    def all_match(self) -> bool:
        return all(s.matches_host for s in self.samples)


def _attempt(client: DutClient, transport: SerialTransport, what: str, fn: Callable[[], Any], retries: int,
             on_retry: Callable[[str], None]) -> tuple[Any, int]:
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return fn(), attempt
        except DeviceError as exc:
            last = exc
            on_retry(f"{what}: {exc.message} (attempt {attempt + 1} of {retries + 1})")
            if attempt == retries - 1:
                transport.reset()  # DTR/RTS where the port has them; a no-op on sockets
            try:
                client.resync()
            except DeviceError:
                pass
    assert last is not None
    raise DeviceError(f"{what} failed after {retries + 1} attempts: {last}",
                      "check the cable/port speed; no figure was reported from the failed exchanges")


def run_session(client: DutClient, transport: SerialTransport, identity: dict[str, str], inputs: np.ndarray,
                expected: np.ndarray, runs: int, warmup: int, expected_latency_s: float, retries: int = 3,
                on_retry: Callable[[str], None] = lambda _m: None,
                progress: Callable[[int, int], None] = lambda _d, _t: None,
                decode_results: Callable[[tuple[float, ...]], bytes] | None = None) -> BenchReport:
    """Bench every input: upload, ``infer runs warmup``, fetch the raw output bytes (checked), compare.

    ``identity``: the device's checked identity ({} for a plain MLPerf DUT, whose outputs come from its
    unchecked ``m-results`` line through ``decode_results``)."""
    report = BenchReport(identity)
    infer_timeout = 5.0 + 3.0 * (runs + warmup + 1) * max(expected_latency_s, 0.001)
    for i, x in enumerate(inputs):
        data = np.ascontiguousarray(x).tobytes()

        def one() -> tuple[float, bytes]:
            client.upload(data)
            result = client.infer(runs, warmup, infer_timeout)
            if client.plain and decode_results is not None:
                return result.latency_us, decode_results(result.results)
            return result.latency_us, client.raw_output()

        (latency, raw), used = _attempt(client, transport, f"input {i}", one, retries, on_retry)
        report.retries += used
        want = np.ascontiguousarray(expected[i]).tobytes()
        report.samples.append(SampleResult(i, latency, raw, raw == want, used))
        progress(i + 1, len(inputs))
    ext = identity.get("ext", "").split(";")
    if "ef-mem" in ext:
        report.memory = _attempt(client, transport, "memory report", client.memory, retries, on_retry)[0]
    if "ef-ops" in ext:
        report.ops = _attempt(client, transport, "per-op timing", lambda: client.op_times(infer_timeout),
                              retries, on_retry)[0]
    return report
