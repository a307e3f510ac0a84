"""Overload, deadlines and cancellation on a model of known cost (tests/reliability/sleepy.py):
capacity is exactly 1 / COMPUTE_S requests/s, so the figures asserted here do not depend on how
busy the machine is. benchmarks/reliability.py runs the same scenarios longer and on ctr."""

from __future__ import annotations

import grpc
import pytest

from services.runtime import RuntimeSettings, build_server
from tests.reliability import sleepy
from tests.reliability.scenarios import deadlines_and_cancellation, overload, starts_before_loss

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

COMPUTE_S = 0.02  # one execution at a time: capacity 50 requests/s
CAPACITY = 1 / COMPUTE_S
QUEUE = 6  # an accepted request waits at most ~QUEUE executions: 120 ms
SLO_MS = 300.0  # p99 of accepted requests (queue bound + compute + a busy machine's slack)


@pytest.fixture
async def sleepy_server(request):
    service = sleepy.SleepyService(COMPUTE_S, getattr(request, "param", QUEUE))
    server, port = await build_server(RuntimeSettings(port=0, metrics_port=0, host="127.0.0.1"), [service])
    await server.start()
    await server.wait_ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield server, channel, service.model
    await channel.close()
    await server.stop(0)


async def test_3x_overload_keeps_accepted_requests_in_slo_and_rejects_the_excess_at_once(sleepy_server) -> None:
    _, channel, _ = sleepy_server
    figures = await overload(channel, sleepy.request, CAPACITY, duration_s=4.0, factor=3.0, recovery_s=2.0)
    hot, cool = figures["overload"], figures["recovery"]
    assert hot["unanswered"] == 0 and cool["unanswered"] == 0, figures  # every request got a status
    assert set(hot["codes"]) <= {"OK", "RESOURCE_EXHAUSTED"}, figures  # nothing dropped, nothing else
    assert hot["codes"]["RESOURCE_EXHAUSTED"] >= 0.5 * hot["sent"], figures  # ~2/3 of 3x is excess
    assert hot["ok_p99_ms"] <= SLO_MS, figures
    assert hot["rejected_p99_ms"] <= 50.0, figures  # refused within milliseconds, never queued
    assert figures["throughput_vs_sustainable"] >= 0.9, figures
    # Recovery at once: served again within the overload's own backlog (QUEUE x COMPUTE_S = 120 ms); refused
    # only while that backlog drains (at most one later refusal: a Poisson burst can overflow 6 slots at 50%).
    backlog_s = (QUEUE + 2) * COMPUTE_S + 0.1
    assert figures["first_ok_after_overload_s"] <= backlog_s, figures
    assert sum(t > backlog_s for t in figures["recovery_refusals_at_s"]) <= 1, figures
    assert figures["recovery_p99_ms"] <= SLO_MS, figures

@pytest.mark.parametrize("sleepy_server", [32], indirect=True)  # a queue the floods cannot fill by themselves
async def test_expired_and_cancelled_requests_are_never_computed_and_do_not_starve_live_ones(sleepy_server) -> None:
    server, channel, model = sleepy_server
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    executions_before = model.executions
    figures = await deadlines_and_cancellation(channel, sleepy.request, url, sleepy.MODEL, CAPACITY,
                                               duration_s=3.0, short_deadline_s=COMPUTE_S * 2)
    live, short, flood = figures["live"], figures["short_deadline"], figures["cancelled_flood"]
    rejected = figures["rejected_before_compute"]
    assert live["codes"] == {"OK": live["sent"]} and live["ok_p99_ms"] <= SLO_MS, figures  # live ones not starved
    assert short["codes"].get("DEADLINE_EXCEEDED", 0) > 0 and flood["sent"] > 50, figures
    assert rejected["cancelled"] > 0 and rejected["deadline"] + rejected["expired"] > 0, figures
    # The server's counters: each request was computed, rejected before compute by reason, or cancelled
    # by its client before it ever reached the model's queue (the remainder, never negative).
    assert figures["executions"] == model.executions - executions_before, figures
    assert figures["executions"] + sum(rejected.values()) <= figures["requests_total"], figures
    # Computed without an OK answer: only requests whose execution had begun before the cancel/deadline
    # (plus 5 ms for a cancel to cross loopback: the server cannot stop what it has not heard of).
    lost, started_late = starts_before_loss(model.started, figures["loss_times"], notice_s=0.005)
    assert figures["executions"] == figures["ok_total"] + lost, figures
    assert not started_late, started_late
