"""Overload, deadlines and cancellation on a model of known cost (tests/reliability/sleepy.py):
capacity is exactly 1 / COMPUTE_S requests/s. Waits are asserted in executions of that model
(how many executions began while a request waited), not in milliseconds: a busy machine slows the
event loop, the model and the client together, so a wall-clock p99 measures the machine, while
the execution count measures what admission control promises (a bounded queue, refusals at once).
benchmarks/reliability/measure.py runs the same scenarios longer, on ctr too, and reports milliseconds."""

from __future__ import annotations

import grpc
import pytest

from infersuite.services.runtime import RuntimeSettings, build_server
from tests.reliability import sleepy
from tests.reliability.scenarios import deadlines_and_cancellation, overload, starts_before_loss

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

COMPUTE_S = 0.02  # one execution at a time: capacity 50 requests/s
CAPACITY = 1 / COMPUTE_S
QUEUE = 6  # an accepted request waits at most ~QUEUE executions: 120 ms
# An accepted request waits behind at most the queue ahead of it plus the execution in progress
# (+1: an execution may begin between the client's send and the server's admission).
MAX_WAITED = QUEUE + 2
# The backlog the overload leaves (QUEUE queued + 1 running) drains before recovery requests are taken,
# and the first one taken then waits its own turn: the old 260 ms bound at 20 ms per execution.
BACKLOG = 2 * QUEUE + 2


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
    _, channel, model = sleepy_server
    figures = await overload(channel, sleepy.request, CAPACITY, duration_s=4.0, factor=3.0, recovery_s=2.0,
                             trace=model)
    hot, cool = figures["overload"], figures["recovery"]
    waits, recovery = figures["overload_in_executions"], figures["recovery_in_executions"]
    assert hot["unanswered"] == 0 and cool["unanswered"] == 0, figures  # every request got a status
    assert set(hot["codes"]) <= {"OK", "RESOURCE_EXHAUSTED"}, figures  # nothing dropped, nothing else
    assert hot["codes"]["RESOURCE_EXHAUSTED"] >= 0.5 * hot["sent"], figures  # ~2/3 of 3x is excess
    assert 0 < waits["ok_max"] <= MAX_WAITED, figures  # the queue was used, and bounded every wait
    assert waits["refused_max"] <= 1, figures  # refused at once, never queued
    assert waits["busy_share"] >= 0.9, figures  # the one slot never idled while requests were refused
    # Recovery at once: served again once the overload's own backlog is done; refused only while that backlog
    # drains (at most one later refusal: a Poisson burst can overflow 6 slots at 50%).
    assert 0 <= recovery["first_ok_after"] <= BACKLOG, figures
    assert sum(n > BACKLOG for n in recovery["refused_after"]) <= 1, figures
    assert recovery["ok_max"] <= MAX_WAITED, figures

@pytest.mark.parametrize("sleepy_server", [32], indirect=True)  # a queue the floods cannot fill by themselves
async def test_expired_and_cancelled_requests_are_never_computed_and_do_not_starve_live_ones(sleepy_server) -> None:
    server, channel, model = sleepy_server
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    executions_before = model.executions
    figures = await deadlines_and_cancellation(channel, sleepy.request, url, sleepy.MODEL, CAPACITY,
                                               duration_s=3.0, short_deadline_s=COMPUTE_S * 2,
                                               trace=model)
    live, short, flood = figures["live"], figures["short_deadline"], figures["cancelled_flood"]
    rejected = figures["rejected_before_compute"]
    # Live ones not starved: all answered, none queued behind more than a short queue. Had the cancelled or
    # expired requests (4x capacity together) been computed, the 32-slot queue would fill behind them.
    assert live["codes"] == {"OK": live["sent"]}, figures
    assert figures["live_in_executions"]["ok_max"] <= MAX_WAITED, figures
    assert short["codes"].get("DEADLINE_EXCEEDED", 0) > 0 and flood["sent"] > 50, figures
    assert rejected["cancelled"] > 0 and rejected["deadline"] + rejected["expired"] > 0, figures
    # The server's counters: each request was computed, rejected before compute by reason, or cancelled
    # by its client before it ever reached the model's queue (the remainder, never negative).
    assert figures["executions"] == model.executions - executions_before, figures
    assert figures["executions"] + sum(rejected.values()) <= figures["requests_total"], figures
    # Computed without an OK answer: only requests whose execution had begun before the cancel/deadline
    # (plus one execution's time for the news to reach the model: a cancel crosses loopback, and a loaded
    # event loop starts a task some ms after the batcher checked it; a server that computed what it had
    # dropped would start those requests whole queue waits late).
    lost, started_late = starts_before_loss(model.started, figures["loss_times"], notice_s=COMPUTE_S)
    assert figures["executions"] == figures["ok_total"] + lost, figures
    assert not started_late, started_late
