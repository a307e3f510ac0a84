"""The reliability scenarios, each a function that drives load, injects one fault and returns its
figures. The tests run them for seconds and assert; benchmarks/reliability/measure.py runs them for
minutes and writes reports/reliability.md. One implementation, two durations.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.reliability.load import LoadResult, RequestFactory, metric, open_loop, scrape

REJECTED = "infersuite_model_rejected_requests_total"
COMPUTED = "infersuite_model_compute_duration_seconds_count"


async def overload(channel: grpc.aio.Channel, make_request: RequestFactory, sustainable_rps: float,
                   duration_s: float, factor: float = 3.0, recovery_s: float = 2.0,
                   timeout_s: float = 5.0, trace: ExecutionTrace | None = None) -> dict[str, object]:
    """`factor` x the sustainable rate for `duration_s`, then 0.5 x at once (recovery), overlapping
    the overload's tail so a backlog would show. Recovery figures: when the first recovery request
    was answered OK (after the overload's end), the OK share of the whole recovery phase, and when
    (after the overload's end) the refused ones were sent.

    With a `trace` of the server's own times (the known-cost model keeps one), the waits are also
    counted in executions instead of seconds (`executions_waited`): what admission control bounds,
    whatever the machine's load."""

    async def recovery() -> LoadResult:
        await asyncio.sleep(duration_s)
        return await open_loop(channel, lambda i: make_request(RECOVERY_IDS + i), 0.5 * sustainable_rps,
                               recovery_s, timeout_s, seed=2)

    hot, cool = await asyncio.gather(
        open_loop(channel, make_request, factor * sustainable_rps, duration_s, timeout_s, seed=1), recovery())
    first_ok = min((o.intended + o.latency_s for o in cool.outcomes if o.code == "OK"), default=None)
    counted = {} if trace is None else {
        "overload_in_executions": executions_waited(trace, hot),
        "recovery_in_executions": executions_waited(trace, cool, RECOVERY_IDS, since=hot.started + duration_s)}
    return {**counted, "overload": hot.summary(), "recovery": cool.summary(),
            "throughput_vs_sustainable": round(hot.throughput() / sustainable_rps, 3),
            "first_ok_after_overload_s": None if first_ok is None else round(first_ok, 3),
            "recovery_ok_share": round(cool.codes()["OK"] / max(cool.sent, 1), 4),
            "recovery_refusals_at_s": sorted(round(o.intended, 3) for o in cool.outcomes if o.code != "OK")[:50],
            "recovery_p99_ms": round(cool.percentile_ms(99), 2)}


async def sustainable_rate(channel: grpc.aio.Channel, make_request: RequestFactory, rates: list[float],
                           step_s: float, slo_ms: float, min_ok_share: float = 1.0,
                           retries: int = 0) -> tuple[float, list[dict[str, object]]]:
    """Highest offered rate whose requests succeed (all of them, or at least `min_ok_share`) with p99
    within the SLO (a rising sweep). A failing step is run again up to `retries` times (other arrival
    times) and the sweep ends only when every try of a step failed: one stray refusal or stall in a
    few seconds does not end it (each step's tries are all in the steps, `try` numbering them)."""
    best, steps = 0.0, []
    for rate in rates:
        for attempt in range(retries + 1):
            result = await open_loop(channel, make_request, rate, step_s, seed=int(rate) + 1000 * attempt)
            steps.append({**result.summary(), "try": attempt + 1})
            ok = result.codes()["OK"] >= min_ok_share * result.sent and result.percentile_ms(99) <= slo_ms
            if ok:
                break
        if not ok:
            break
        best = result.throughput()
    return best, steps


RECOVERY_IDS, SHORT_IDS, FLOOD_IDS, BACKLOG_IDS = 500_000, 1_000_000, 2_000_000, 3_000_000  # ids per phase (traceable)


class ExecutionTrace(Protocol):
    """The server's own times (time.monotonic()) per request id, kept by a model that can trace them."""
    started: Mapping[int, float]  # its execution began
    finished: Mapping[int, float]  # its execution ended
    arrived: Mapping[int, float]  # it reached the handler
    refused: Mapping[int, float]  # the runtime answered it with an error instead of computing it


def executions_waited(trace: ExecutionTrace, result: LoadResult, id_offset: int = 0,
                      since: float | None = None) -> dict[str, object]:
    """A phase's waits counted in executions of the one-at-a-time model rather than in seconds, from
    the server's own times: a busy machine stretches seconds (the event loop, the model's sleep, the
    client and the loopback all slow down together) but not how many executions a request waited
    behind, which is what a bounded queue and early refusal promise.

    busy_share: the share of the phase's duration the model spent executing (work-conserving: ~1 under
    overload, however slow each execution ran);
    ok_max: most executions begun between an OK request's arrival and its own execution's start;
    refused_max: most begun between a refused request's arrival and its refusal (0 or 1: never queued);
    with `since` (the overload's end, client time): first_ok_after, the executions begun from `since`
    to the start of the first OK request that arrived after it, and refused_after: for each refused
    request that arrived after `since`, the executions begun from `since` to its arrival."""
    starts = sorted(trace.started.values())

    def between(begin: float, end: float) -> int:
        return max(0, bisect.bisect_left(starts, end) - bisect.bisect_right(starts, begin))

    ids = [id_offset + o.index for o in result.outcomes]
    ok = [i for i, o in zip(ids, result.outcomes, strict=True) if o.code == "OK"]
    refused = [i for i in ids if i in trace.refused]
    begin, end = result.started, result.started + result.duration_s
    busy = sum(max(0.0, min(trace.finished.get(i, end), end) - max(t, begin)) for i, t in trace.started.items())
    figures: dict[str, object] = {
        "busy_share": round(busy / result.duration_s, 3),
        "ok_max": max((between(trace.arrived[i], trace.started[i]) for i in ok), default=0),
        "refused_max": max((between(trace.arrived[i], trace.refused[i]) for i in refused), default=0)}
    if since is not None:
        first = min((trace.started[i] for i in ok if trace.arrived[i] >= since), default=None)
        figures["first_ok_after"] = -1 if first is None else between(since, first)
        late = [i for i in refused if trace.arrived[i] >= since]
        figures["refused_after"] = sorted(between(since, trace.arrived[i]) for i in late)
    return figures


async def deadlines_and_cancellation(channel: grpc.aio.Channel, make_request: RequestFactory,
                                     metrics_url: str, model: str, capacity_rps: float, duration_s: float,
                                     short_deadline_s: float,
                                     trace: ExecutionTrace | None = None) -> dict[str, object]:
    """Live requests at 50% of capacity, while (a) requests whose deadline is shorter than the
    queue ahead and (b) a flood of requests the client cancels arrive at 2x capacity each.

    Proof from the server's own counters: executions + rejections-before-compute = requests, i.e.
    a request is either computed or turned away by reason, never lost. `lost_after_start` lists
    the requests computed without an OK answer, with the times to check that each one had started
    BEFORE its cancellation or deadline (`starts_before_loss` needs the model's start times)."""
    before = scrape(metrics_url)
    live, short, (flood, cancelled_at) = await asyncio.gather(
        open_loop(channel, make_request, 0.5 * capacity_rps, duration_s, timeout_s=10.0, seed=3),
        open_loop(channel, lambda i: make_request(SHORT_IDS + i), 2 * capacity_rps, duration_s,
                  short_deadline_s, seed=4),
        _cancel_flood(channel, lambda i: make_request(FLOOD_IDS + i), 2 * capacity_rps, duration_s))
    await asyncio.sleep(0.3)  # let the server finish its bookkeeping of the last cancellations
    after = scrape(metrics_url)
    rejected = {reason: metric(after, REJECTED, model=model, reason=reason)
                - metric(before, REJECTED, model=model, reason=reason)
                for reason in ("deadline", "expired", "cancelled", "queue_full")}
    executions = metric(after, COMPUTED, model=model) - metric(before, COMPUTED, model=model)
    deadline_of = {SHORT_IDS + o.index: o.sent + short_deadline_s for o in short.outcomes if o.code != "OK"}
    counted = {} if trace is None else {"live_in_executions": executions_waited(trace, live)}
    return {**counted, "live": live.summary(), "short_deadline": short.summary(), "cancelled_flood": flood,
            "rejected_before_compute": rejected, "executions": executions,
            "ok_total": live.codes()["OK"] + short.codes()["OK"],
            "requests_total": live.sent + short.sent + flood["sent"],
            "loss_times": {**deadline_of, **cancelled_at}}


def starts_before_loss(started: dict[int, float], loss_times: dict[int, float],
                       notice_s: float = 0.0) -> tuple[int, list[tuple[int, float]]]:
    """(computed requests that were later cancelled/expired, [(id, s)] of those whose execution
    began more than `notice_s` AFTER the client cancelled or the deadline passed: must be empty).
    `notice_s` is the time a client's cancel needs to reach the server (the server cannot know sooner)."""
    lost = [i for i in loss_times if i in started]
    late = [(i, round(started[i] - loss_times[i], 4)) for i in lost if started[i] > loss_times[i] + notice_s]
    return len(lost), late


async def _cancel_flood(channel: grpc.aio.Channel, make_request: RequestFactory, rate: float,
                        duration_s: float) -> tuple[dict[str, int], dict[int, float]]:
    """Requests that the client cancels 1 ms after sending them (a client that disappears)."""
    calls: list[grpc.aio.UnaryUnaryCall] = []
    cancelled_at: dict[int, float] = {}
    start = time.monotonic()
    while time.monotonic() - start < duration_s:
        method, payload = make_request(len(calls))
        calls.append(channel.unary_unary(method)(payload, timeout=10.0))
        await asyncio.sleep(0.001)
        calls[-1].cancel()
        cancelled_at[FLOOD_IDS + len(calls) - 1] = time.monotonic()
        await asyncio.sleep(max(0.0, 1.0 / rate - 0.001))
    codes: dict[str, int] = {}
    for call in calls:
        try:
            await call
            code = "OK"
        except asyncio.CancelledError:
            code = "CANCELLED"
        except grpc.aio.AioRpcError as err:
            code = err.code().name
        codes[code] = codes.get(code, 0) + 1
    return {"sent": len(calls), **codes}, cancelled_at


@dataclass
class ShutdownFigures:
    sent_before_signal: int
    in_flight_at_signal: int  # sent before SIGTERM, answered after it
    codes_before_signal: dict[str, int]
    codes_after_signal: dict[str, int]
    health_not_serving_after_s: float | None  # SIGTERM -> the Watch stream says NOT_SERVING
    first_refusal_after_s: float | None  # SIGTERM -> first UNAVAILABLE
    exit_after_s: float
    exit_code: int | None
    grace_s: float
    drained_after_s: float | None = None  # SIGTERM -> the last request sent before it was answered


async def graceful_shutdown(proc: subprocess.Popen, port: int, make_request: RequestFactory, rate: float,
                            before_s: float, after_s: float, grace_s: float, backlog: int = 0,
                            end_watch: bool = False) -> ShutdownFigures:
    """Load at `rate`; SIGTERM `before_s` into it; load goes on `after_s` more. With a `backlog`, that
    many requests are sent at once just before the signal, which lands once the server answered the
    first of them (so it holds the rest): a drain of known length in executions, which refusals of new
    requests must not wait for (`first_refusal_after_s` < `drained_after_s`, an order, not a duration).

    The health Watch stream is itself an in-flight call, so while it is open the server waits out its
    whole grace period; `end_watch` closes it at NOT_SERVING, as a balancer that has taken the server
    out of rotation would, so the exit shows whether the server stops once its requests are drained."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        statuses: list[tuple[float, int]] = []

        async def follow_health() -> None:
            try:
                async for reply in watch:
                    statuses.append((time.monotonic(), reply.status))
                    if end_watch and reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        watch.cancel()
                        return
            except grpc.aio.AioRpcError:
                pass

        follower = asyncio.create_task(follow_health())
        load = asyncio.create_task(open_loop(channel, make_request, rate, before_s + after_s, timeout_s=10.0))
        await asyncio.sleep(before_s)
        queued = [asyncio.create_task(_answered(channel, make_request(BACKLOG_IDS + i))) for i in range(backlog)]
        if queued:
            await asyncio.wait(queued, return_when=asyncio.FIRST_COMPLETED)
        signalled = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        result = await load
        held = await asyncio.gather(*queued)
        exit_code = await asyncio.to_thread(_wait, proc, grace_s + 10)
        exited = time.monotonic() - signalled
        follower.cancel()
    start = result.started
    before = [o for o in result.outcomes if start + o.intended < signalled]
    after = [o for o in result.outcomes if start + o.intended >= signalled]
    answers_before = [start + o.intended + o.latency_s for o in before] + [at for _, at in held]
    refusals = [start + o.intended + o.latency_s - signalled for o in after if o.code == "UNAVAILABLE"]
    not_serving = [t - signalled for t, status in statuses if status == health_pb2.HealthCheckResponse.NOT_SERVING
                   and t >= signalled - 0.05]
    return ShutdownFigures(
        len(before) + len(held), sum(at > signalled for at in answers_before),
        _count([*(o.code for o in before), *(code for code, _ in held)]), _count(o.code for o in after),
        round(min(not_serving), 4) if not_serving else None, round(min(refusals), 4) if refusals else None,
        round(exited, 3), exit_code, grace_s,
        round(max(answers_before) - signalled, 4) if answers_before else None)


async def _answered(channel: grpc.aio.Channel, request: tuple[str, bytes]) -> tuple[str, float]:
    """(status code name, time.monotonic() of the answer) of one call."""
    method, payload = request
    try:
        await channel.unary_unary(method)(payload, timeout=30.0)
        code = "OK"
    except grpc.aio.AioRpcError as err:
        code = err.code().name
    return code, time.monotonic()


def _wait(proc: subprocess.Popen, timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _count(codes) -> dict[str, int]:  # type: ignore[no-untyped-def]
    counts: dict[str, int] = {}
    for code in codes:
        counts[code] = counts.get(code, 0) + 1
    return counts


def process_footprint(pid: int) -> tuple[int, int]:
    """(RSS bytes, open file descriptors) of a process."""
    proc = psutil.Process(pid)
    return proc.memory_info().rss, proc.num_fds()


async def soak(channel: grpc.aio.Channel, make_request: RequestFactory, pid: int, rate: float, duration_s: float,
               warmup_s: float, samples: int = 10) -> dict[str, object]:
    """`rate` for `warmup_s` (allocators and caches settle), then `duration_s` with RSS and fd
    samples; growth is measured from the first sample after warm-up to the last."""
    await open_loop(channel, make_request, rate, warmup_s, seed=7)
    footprints = [process_footprint(pid)]
    results = []
    for i in range(samples):
        results.append(await open_loop(channel, make_request, rate, duration_s / samples, seed=100 + i))
        footprints.append(process_footprint(pid))
    codes: dict[str, int] = {}
    for result in results:
        for code, n in result.codes().items():
            codes[code] = codes.get(code, 0) + n
    p99 = max(r.percentile_ms(99) for r in results)
    rss0, fds0 = footprints[0]
    rss1, fds1 = footprints[-1]
    return {"rate_rps": rate, "duration_s": duration_s, "codes": codes,
            "unanswered": sum(r.unanswered for r in results), "worst_window_p99_ms": round(p99, 2),
            "rss_start_mib": round(rss0 / 2**20, 1), "rss_end_mib": round(rss1 / 2**20, 1),
            "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2), "fds_start": fds0, "fds_end": fds1,
            "rss_series_mib": [round(r / 2**20, 1) for r, _ in footprints], "fd_series": [f for _, f in footprints]}
