"""The load engine against real gRPC servers on port 0: coordinated omission, generator rate, CLI."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from grpc import aio

from loadtest.engine import LoadEngine, StepSpec, Target
from loadtest.generators import create
from loadtest.stats import summarize
from loadtest.suite import start_trivial_server
from loadtest.trivial_server import ECHO, StallGate, add_trivial_service
from loadtest.workers import GeneratorSpec, WorkerPool

pytestmark = pytest.mark.integration


async def _stalling_server(stall_after: int) -> tuple[aio.Server, int, StallGate]:
    server = aio.server()
    gate = add_trivial_service(server, StallGate(stall_after=stall_after, stall_s=1.0))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, gate


async def _measure(step: StepSpec, stall_after: int) -> tuple[dict[str, float], dict[str, float], int]:
    server, port, gate = await _stalling_server(stall_after)
    engine = LoadEngine(Target(f"127.0.0.1:{port}"), create("raw", {"method": ECHO}))
    try:
        await engine.start()
        stats = await engine.run_step(step)
    finally:
        await engine.close()
        await server.stop(0)
    assert gate.stalls == 1, "the server must have stalled inside the run"
    assert not stats.errors and not stats.check_failures
    return summarize(stats.latency_intended), summarize(stats.latency_actual), stats.ok


async def test_open_loop_p99_shows_a_one_second_stall_that_closed_loop_hides():
    # Open loop, 200/s for 3 s after 0.5 s warm-up; the 200th call (t ~ 1 s) freezes the server
    # for 1 s. A third of the window's requests were due during the freeze, so p99 ~ 1 s.
    step = StepSpec(mode="open", rate=200.0, arrival="constant", warmup_s=0.5, duration_s=3.0, deadline_s=5.0)
    open_intended, open_actual, open_ok = await _measure(step, stall_after=200)
    # The naive measurement: one closed-loop client simply does not send while it waits, so the
    # same freeze costs one slow sample among thousands.
    naive = StepSpec(mode="closed", concurrency=1, warmup_s=0.3, duration_s=3.0, deadline_s=5.0)
    closed, _, closed_ok = await _measure(naive, stall_after=400)
    print(f"\nopen loop  ({open_ok} ok): p50 {open_intended['p50_ms']:.1f} ms, p99 {open_intended['p99_ms']:.0f} ms "
          f"from intended, p99 {open_actual['p99_ms']:.0f} ms from actual send")
    print(f"closed loop ({closed_ok} ok): p50 {closed['p50_ms']:.2f} ms, p99 {closed['p99_ms']:.2f} ms, "
          f"max {closed['max_ms']:.0f} ms")
    assert open_intended["p99_ms"] >= 800.0  # the stall is in the open-loop tail
    assert open_intended["p99_ms"] >= open_actual["p99_ms"]  # never better than from the actual send
    assert closed["max_ms"] >= 1000.0  # the closed loop did live through the stall ...
    assert closed["p99_ms"] < 100.0  # ... and its p99 hides it
    assert closed_ok > 500  # enough samples that one stalled call is below the 1% tail


def test_one_generator_process_sustains_a_measured_rate():
    server, port = start_trivial_server()  # its own process: the generator process is measured alone
    try:
        step = StepSpec(mode="open", rate=3000.0, warmup_s=0.5, duration_s=3.0, deadline_s=5.0)
        with WorkerPool(Target(f"127.0.0.1:{port}"), GeneratorSpec("raw", (("method", ECHO),)), workers=1) as pool:
            stats = pool.run_step(step)
    finally:
        server.terminate()
        server.wait(timeout=10)
    lag = summarize(stats.schedule_lag)
    print(f"\none generator process at 3000/s offered: {stats.throughput():.0f} ok/s, sent {stats.sent}, "
          f"schedule lag p99 {lag['p99_ms']:.2f} ms, late {stats.late}, worker CPU {stats.cpu_percent:.0f}%")
    assert not stats.errors and not stats.dropped
    assert stats.sent >= 0.95 * 3000 * 3.0  # the schedule was kept (sends may be late, never skipped)
    assert stats.throughput() >= 1000.0  # a modest floor: 2 shared cores, the server on the same machine


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_target_is_a_clear_error():
    done = subprocess.run(
        [sys.executable, "-m", "loadtest", "run", "--service", "health", "--target", f"127.0.0.1:{_free_port()}",
         "--connect-timeout", "1", "--metrics-url", "none", "--duration", "1"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "loadtest: error: cannot reach 127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr
