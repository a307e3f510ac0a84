"""Open-loop load with Poisson arrivals where every request's final status is kept, plus /metrics
scraping. Shared by the reliability tests (seconds) and benchmarks/reliability/measure.py (minutes).

Latency is measured from each request's INTENDED send time, so a stalled client or server cannot
hide queueing (coordinated omission). A request that never got a status would be a missing entry;
`LoadResult.unanswered` counts them and must be 0. The client's own garbage collector is off while a
phase runs (`_collector_paused`): a minute of open-loop load piles up tens of thousands of objects, and
its full collections stalled the client for up to 0.35 s, delays counted against the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from infersuite.services.runtime.errors import RETRY_PUSHBACK_KEY

# A request for the driver: (method path, serialized request). Responses stay raw bytes.
Request = tuple[str, bytes]
RequestFactory = Callable[[int], Request]


@dataclass
class Outcome:
    index: int  # the request's number in its phase (what the factory was called with)
    intended: float  # offset in s from the phase start
    sent: float  # time.monotonic() when the call was issued
    latency_s: float  # from the intended send to the final status
    code: str  # gRPC status code name
    pushback: bool = False  # a refusal's trailing metadata held grpc-retry-pushback-ms


@dataclass
class LoadResult:
    rate: float
    duration_s: float
    outcomes: list[Outcome] = field(default_factory=list)
    unanswered: int = 0  # scheduled requests with no status at the end: must be 0
    started: float = 0.0  # time.monotonic() of the phase start

    @property
    def sent(self) -> int:
        return len(self.outcomes) + self.unanswered

    def codes(self) -> Counter[str]:
        return Counter(o.code for o in self.outcomes)

    def latencies(self, code: str = "OK") -> np.ndarray:
        return np.array([o.latency_s for o in self.outcomes if o.code == code])

    def percentile_ms(self, q: float, code: str = "OK") -> float:
        values = self.latencies(code)
        return float(np.percentile(values, q) * 1000) if values.size else float("nan")

    def throughput(self, code: str = "OK") -> float:
        return self.codes()[code] / self.duration_s

    def send_lag_s(self, outcome: Outcome) -> float:
        """How late the client issued the call (its own CPU starvation, not the server's doing)."""
        return outcome.sent - self.started - outcome.intended

    def from_send_ms(self, q: float, code: str = "OK") -> float:
        """Percentile of latency from the ACTUAL send: what the server (and the network) took."""
        values = [o.latency_s - self.send_lag_s(o) for o in self.outcomes if o.code == code]
        return round(float(np.percentile(values, q)) * 1000, 2) if values else float("nan")

    def summary(self) -> dict[str, object]:
        lags = [self.send_lag_s(o) for o in self.outcomes]
        return {"offered_rps": round(self.rate, 1), "duration_s": self.duration_s, "sent": self.sent,
                "codes": dict(self.codes()), "unanswered": self.unanswered,
                "refused_without_pushback": sum(o.code == "RESOURCE_EXHAUSTED" and not o.pushback
                                                for o in self.outcomes),
                "ok_rps": round(self.throughput(), 1), "ok_p50_ms": round(self.percentile_ms(50), 2),
                "ok_p99_ms": round(self.percentile_ms(99), 2), "ok_p99_from_send_ms": self.from_send_ms(99),
                "rejected_p99_ms": round(self.percentile_ms(99, "RESOURCE_EXHAUSTED"), 2),
                "rejected_p99_from_send_ms": self.from_send_ms(99, "RESOURCE_EXHAUSTED"),
                "send_lag_p99_ms": round(float(np.percentile(lags, 99)) * 1000, 2) if lags else 0.0,
                "ok_p99_ms_by_10s": self.p99_by_window(10.0),
                "send_lag_p99_ms_by_10s": self.p99_by_window(10.0, lag=True)}

    def p99_by_window(self, window_s: float, lag: bool = False) -> list[float | None]:
        """p99 (ms, from the intended send) of the OK answers to requests meant for each `window_s` of the
        phase, or with `lag` of the client's own send lag over all requests: tells a tail spread over the
        phase from one burst, and the server's from the client's (None: nothing in that window)."""
        count = max(1, int(np.ceil(self.duration_s / window_s)))
        bins: list[list[float]] = [[] for _ in range(count)]
        for o in self.outcomes:
            if lag or o.code == "OK":
                bins[min(count - 1, int(o.intended // window_s))].append(self.send_lag_s(o) if lag else o.latency_s)
        return [round(float(np.percentile(b, 99)) * 1000, 1) if b else None for b in bins]


async def _one(channel: grpc.aio.Channel, index: int, request: Request, timeout_s: float, phase_start: float,
               intended: float, result: LoadResult, wait_for_ready: bool = False) -> None:
    method, payload = request
    call = channel.unary_unary(method)
    sent = time.monotonic()
    pushback = False
    try:
        await call(payload, timeout=timeout_s, wait_for_ready=wait_for_ready)
        code = "OK"
    except grpc.aio.AioRpcError as err:
        code = err.code().name
        pushback = any(key == RETRY_PUSHBACK_KEY for key, _ in err.trailing_metadata() or ())
    result.outcomes.append(Outcome(index, intended, sent, time.monotonic() - phase_start - intended, code, pushback))


_paused = 0  # phases running at once (an overload and its overlapping recovery)


@contextlib.contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off (and what exists frozen) while any phase runs."""
    global _paused
    if _paused == 0:
        gc.collect()
        gc.freeze()
        gc.disable()
    _paused += 1
    try:
        yield
    finally:
        _paused -= 1
        if _paused == 0:
            gc.unfreeze()
            gc.enable()


async def open_loop(channel: grpc.aio.Channel | Sequence[grpc.aio.Channel], make_request: RequestFactory,
                    rate: float, duration_s: float, timeout_s: float = 5.0, seed: int = 0,
                    wait_for_ready: bool = False) -> LoadResult:
    """Poisson arrivals at `rate`/s for `duration_s`; waits for every request's status. With several
    channels (connections), request i goes on channel i mod their number."""
    channels = [channel] if isinstance(channel, grpc.aio.Channel) else list(channel)
    rng = np.random.default_rng(seed)
    offsets = np.cumsum(rng.exponential(1.0 / rate, size=int(rate * duration_s * 1.5) + 10))
    offsets = offsets[offsets < duration_s]
    result = LoadResult(rate, duration_s)
    with _collector_paused():
        start = result.started = time.monotonic()
        tasks = []
        for i, offset in enumerate(offsets):
            delay = start + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(channels[i % len(channels)], i, make_request(i), timeout_s,
                                                  start, float(offset), result, wait_for_ready)))
        _, pending = await asyncio.wait(tasks, timeout=timeout_s + 5) if tasks else (set(), set())
    result.unanswered = len(pending)
    for task in pending:
        task.cancel()
    return result


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and set(labels.items()) <= set(sample_labels))
