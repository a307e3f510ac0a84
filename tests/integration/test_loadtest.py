"""The load engine against real gRPC servers on port 0: coordinated omission, generator rate, CLI."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys

import grpc
import pytest
from grpc import aio

from infersuite.loadtest.engine import LoadEngine, StepSpec, Target
from infersuite.loadtest.generators import create
from infersuite.loadtest.stats import summarize
from infersuite.loadtest.suite import start_trivial_server
from infersuite.loadtest.trivial_server import ECHO, StallGate, add_trivial_service
from infersuite.loadtest.workers import GeneratorSpec, WorkerPool

pytestmark = pytest.mark.integration


async def _stalling_server(stall_at_s: float | None) -> tuple[aio.Server, int, StallGate]:
    server = aio.server()
    gate = add_trivial_service(server, StallGate(stall_at_s=stall_at_s, stall_s=1.0))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, gate


async def _measure(step: StepSpec, stall_at_s: float) -> tuple[dict[str, float], dict[str, float], int]:
    server, port, gate = await _stalling_server(stall_at_s)
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
    # Open loop, 200/s for 3 s after 0.5 s warm-up; 1 s into the run the server freezes for 1 s.
    # A third of the window's requests were due during the freeze, so p99 ~ 1 s.
    step = StepSpec(mode="open", rate=200.0, arrival="constant", warmup_s=0.5, duration_s=3.0, deadline_s=5.0)
    open_intended, open_actual, open_ok = await _measure(step, stall_at_s=1.0)
    # The naive measurement: one closed-loop client simply does not send while it waits, so the
    # same freeze costs one slow sample among thousands.
    naive = StepSpec(mode="closed", concurrency=1, warmup_s=0.3, duration_s=3.0, deadline_s=5.0)
    closed, _, closed_ok = await _measure(naive, stall_at_s=1.0)
    print(f"\nopen loop  ({open_ok} ok): p50 {open_intended['p50_ms']:.1f} ms, p99 {open_intended['p99_ms']:.0f} ms "
          f"from intended, p99 {open_actual['p99_ms']:.0f} ms from actual send")
    print(f"closed loop ({closed_ok} ok): p50 {closed['p50_ms']:.2f} ms, p99 {closed['p99_ms']:.2f} ms, "
          f"max {closed['max_ms']:.0f} ms")
    assert open_intended["p99_ms"] >= 800.0  # the stall is in the open-loop tail
    assert open_intended["p99_ms"] >= open_actual["p99_ms"]  # never better than from the actual send
    assert closed["max_ms"] >= 1000.0  # the closed loop did live through the stall ...
    assert closed["p99_ms"] < 0.2 * closed["max_ms"]  # ... and its p99 hides it (a loaded machine's slack)
    assert closed_ok > 500  # enough samples that one stalled call is below the 1% tail


def test_one_generator_process_sustains_a_measured_rate():
    server, port = start_trivial_server()  # its own process: the generator process is measured alone
    try:
        # A long deadline and a high in-flight cap: on a busy machine the trivial server may fall
        # behind; its late answers still count, so the figure is the generator's, not a timeout's.
        step = StepSpec(mode="open", rate=3000.0, warmup_s=0.5, duration_s=3.0, deadline_s=30.0, max_inflight=50_000)
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
        [sys.executable, "-m", "infersuite.loadtest", "run", "--service", "health", "--target",
         f"127.0.0.1:{_free_port()}", "--connect-timeout", "1", "--metrics-url", "none", "--duration", "1"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "loadtest: error: cannot reach 127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr


def test_two_worker_processes_split_one_schedule_and_merge():
    server, port = start_trivial_server()
    try:
        step = StepSpec(mode="open", rate=400.0, arrival="constant", warmup_s=0.5, duration_s=1.0, deadline_s=5.0)
        with WorkerPool(Target(f"127.0.0.1:{port}"), GeneratorSpec("raw", (("method", ECHO),)), workers=2) as pool:
            stats = pool.run_step(step)
            closed = pool.run_step(StepSpec(mode="closed", concurrency=4, warmup_s=0.2, duration_s=1.0))
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert stats.processes == 2
    assert stats.sent + stats.dropped == 400  # exactly the window's share of one schedule, no double sends
    assert stats.ok == stats.sent and not stats.errors
    assert stats.latency_intended.get_total_count() == stats.ok
    assert closed.processes == 2 and closed.ok > 0 and not closed.errors


async def test_a_replayed_trace_is_sent_on_its_own_schedule():
    server, port, _ = await _stalling_server(stall_at_s=None)  # never stalls
    trace = tuple(0.01 * i for i in range(120))  # 100/s for 1.2 s
    engine = LoadEngine(Target(f"127.0.0.1:{port}"), create("raw", {"method": ECHO}))
    try:
        await engine.start()
        stats = await engine.run_step(StepSpec(mode="open", trace=trace, rate=100.0, warmup_s=0.2, duration_s=1.0))
    finally:
        await engine.close()
        await server.stop(0)
    assert stats.sent == 100  # the sends at 0.20 .. 1.19 s fall in the measured window
    assert stats.ok == 100 and not stats.dropped


def _self_signed(directory) -> tuple[bytes, bytes]:
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return key.read_bytes(), cert.read_bytes()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_targets_through_the_command_line(tmp_path):
    key, cert = _self_signed(tmp_path)
    server = aio.server()
    add_trivial_service(server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    await server.start()
    base = [sys.executable, "-m", "infersuite.loadtest", "run", "--service", "raw", "--param", f"method={ECHO}",
            "--target", f"127.0.0.1:{port}", "--metrics-url", "none", "--concurrency", "2", "--duration", "0.5",
            "--warmup", "0.1", "--workers", "0", "--connect-timeout", "2", "--quiet", "--out", str(tmp_path / "r")]
    try:
        secure = await asyncio.to_thread(subprocess.run, [*base, "--tls", "--ca-cert", str(tmp_path / "cert.pem"),
                                                          "--server-name", "localhost"],
                                         capture_output=True, text=True, timeout=120)
        plain = await asyncio.to_thread(subprocess.run, base, capture_output=True, text=True, timeout=120)
    finally:
        await server.stop(0)
    assert secure.returncode == 0, secure.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["steps"][0]["ok"] > 0 and not report["steps"][0]["errors"]
    assert plain.returncode == 1 and "TLS mismatch?" in plain.stderr and "Traceback" not in plain.stderr
