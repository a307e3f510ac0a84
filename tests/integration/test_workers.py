"""`python -m infersuite.services` with INFERSUITE_WORKERS=2 in a real subprocess: both workers answer on one
port, /metrics and OIP ModelStatistics are one view whose counts equal the requests sent, and SIGTERM
drains every worker."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2, service_pb2_grpc

from infersuite.loadtest.local_suite import ServerProcess, check_health, loopback_settings
from infersuite.protos import ctr_pb2, ctr_pb2_grpc
from infersuite.services.runtime.worker_pool import check_port_free

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 16  # separate TCP connections: the kernel spreads them over the workers
SERVING = health_pb2.HealthCheckResponse.SERVING


class Suite(ServerProcess):
    """`python -m infersuite.services` with two workers serving ctr; stop() kills at once (nothing here needs a
    drain)."""

    def __init__(self, repository: Path, stderr: bool = False, **env: str):
        super().__init__(loopback_settings(repository, workers=2, PYTHONPATH=str(ROOT), **env), cwd=ROOT,
                         stderr=subprocess.PIPE if stderr else None)
        if "(2 workers)" not in self.announcement:
            self.stop()
            raise RuntimeError(f"the suite did not start 2 workers: {self.announcement!r}")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as reply:
            text = reply.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def stop(self, grace_s: float = 0.0) -> int:
        return super().stop(grace_s)


def _channels(port: int) -> list[grpc.aio.Channel]:
    # A local subchannel pool per channel: otherwise grpc shares one connection between them.
    return [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(CONNECTIONS)]


def _request(tiny_ctr, rng: np.random.Generator) -> ctr_pb2.ScoreRequest:
    history, candidates = int(rng.integers(1, 20)), int(rng.integers(1, 50))
    return ctr_pb2.ScoreRequest(
        history_item_ids=rng.integers(1, tiny_ctr.n_items + 1, history).tolist(),
        history_category_ids=rng.integers(1, tiny_ctr.n_categories + 1, history).tolist(),
        candidate_item_ids=rng.integers(1, tiny_ctr.n_items + 1, candidates).tolist(),
        candidate_category_ids=rng.integers(1, tiny_ctr.n_categories + 1, candidates).tolist())


@pytest.fixture(scope="module")
async def suite(tiny_ctr):
    running = Suite(tiny_ctr.repository)
    try:
        await running.ready()
        yield running
    finally:
        running.stop()


async def test_both_workers_answer_on_one_port_and_metrics_are_one_view(suite, tiny_ctr) -> None:
    rng, sent = np.random.default_rng(5), 0
    channels = _channels(suite.port)
    try:
        for channel in channels:  # every connection sees the same health, whichever worker took it
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == SERVING
        for _ in range(5):
            for channel in channels:
                reply = await ctr_pb2_grpc.CtrServiceStub(channel).Score(_request(tiny_ctr, rng), timeout=10)
                assert len(reply.click_probabilities) > 0 and np.isfinite(reply.click_probabilities).all()
                sent += 1
        # OIP statistics are the whole server's on every connection, whichever worker answers it.
        answered = set()
        for channel in channels:
            stats = await service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
                service_pb2.ModelStatisticsRequest(name="din-fp32"), timeout=10)
            answered.add(stats.model_stats[0].inference_stats.success.count)
        assert answered == {sent}, answered
    finally:
        for channel in channels:
            await channel.close()
    metrics = suite.metrics()
    score_ok = ("infersuite_requests_total",
                (("code", "OK"), ("method", "Score"), ("service", "infersuite.ctr.v1.CtrService")))
    assert metrics[score_ok] == sent
    latency = ("infersuite_request_duration_seconds_count",
               (("method", "Score"), ("service", "infersuite.ctr.v1.CtrService")))
    assert metrics[latency] == sent
    for worker in ("0", "1"):
        assert metrics[("infersuite_worker_up", (("worker", worker),))] == 1
        assert metrics[("infersuite_model_ready", (("model", "din-fp32"), ("worker", worker)))] == 1
        assert metrics[("infersuite_worker_requests_total", (("worker", worker),))] > 0, metrics  # both answered


async def _load(stub: ctr_pb2_grpc.CtrServiceStub, tiny_ctr, stop_at: list[float],
                log: list[tuple[float, float, str]]) -> None:
    """Sends requests back to back until the server refuses; logs (sent, answered, code)."""
    rng = np.random.default_rng(len(log))
    while True:
        sent = time.monotonic()
        try:
            await stub.Score(_request(tiny_ctr, rng), timeout=20)
            code = "OK"
        except grpc.aio.AioRpcError as err:
            code = err.code().name
        log.append((sent, time.monotonic(), code))
        if code != "OK" or (stop_at and time.monotonic() > stop_at[0]):
            return


async def test_sigterm_drains_every_worker_and_loses_nothing(tiny_ctr) -> None:
    draining = Suite(tiny_ctr.repository, INFERSUITE_SHUTDOWN_DRAIN_S="0.5", INFERSUITE_GRACE_PERIOD_S="5")
    log: list[tuple[float, float, str]] = []
    stop_at: list[float] = []
    channels = _channels(draining.port)
    try:
        await draining.ready()
        loads = [asyncio.create_task(_load(ctr_pb2_grpc.CtrServiceStub(c), tiny_ctr, stop_at, log))
                 for c in channels for _ in range(2)]
        await asyncio.sleep(1.5)
        signalled = time.monotonic()
        draining.proc.send_signal(signal.SIGTERM)
        stop_at.append(signalled + 3.0)
        await asyncio.wait_for(asyncio.gather(*loads), 30)
        exit_code = await asyncio.to_thread(draining.proc.wait, 30)
    finally:
        for channel in channels:
            await channel.close()
        draining.stop()
    # Sent before the signal or within the drain window (health NOT_SERVING, requests still taken): all answered.
    accepted = [code for sent, _, code in log if sent < signalled + 0.4]
    in_flight = [code for sent, answered, code in log if sent < signalled < answered]
    assert len(in_flight) >= 1 and accepted.count("OK") == len(accepted), (len(in_flight), set(accepted))
    # After the drain window new calls are refused: UNAVAILABLE, or CANCELLED for a call grpc's core
    # had received but not yet handed to the server when its shutdown began. Never an error of ours.
    assert {code for _, _, code in log} <= {"OK", "UNAVAILABLE", "CANCELLED"}
    assert exit_code == 0


def test_a_port_another_process_listens_on_is_refused_before_workers_share_it() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as a grpc server binds
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is in use"):
            check_port_free("127.0.0.1", port)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "INFERSUITE_HOST": "127.0.0.1", "INFERSUITE_PORT": str(port),
               "INFERSUITE_WORKERS": "2", "INFERSUITE_METRICS_PORT": "-1"}
        refused = subprocess.run([sys.executable, "-m", "infersuite.services"], cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=60)
        assert refused.returncode == 1 and f"port {port} on 127.0.0.1 is in use" in refused.stderr, refused.stderr
    check_port_free("127.0.0.1", 0)  # port 0: the first worker picks one


def test_a_taken_metrics_port_is_refused_in_one_line_before_start() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "INFERSUITE_HOST": "127.0.0.1", "INFERSUITE_PORT": "0",
               "INFERSUITE_METRICS_HOST": "127.0.0.1", "INFERSUITE_METRICS_PORT": str(port)}
        refused = subprocess.run([sys.executable, "-m", "infersuite.services"], cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=60)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.strip() == f"infersuite: metrics port {port} on 127.0.0.1 is in use: Address already in use"


def _workers(suite: Suite) -> list:
    """The worker processes, in start order (not multiprocessing's resource tracker)."""
    import psutil

    children = [c for c in psutil.Process(suite.proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
    return sorted(children, key=lambda c: c.create_time())


async def _until(condition, timeout_s: float, what: str, pause_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while not (value := await asyncio.to_thread(condition)):
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(pause_s)
    return value


def _health(port: int) -> int:
    """The overall health status on a fresh connection (so it lands on any worker); UNKNOWN (0) for a
    connection reset (one the kernel had queued on a worker as it was killed)."""
    try:
        return check_health(f"127.0.0.1:{port}", timeout_s=5, fresh=True)
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return health_pb2.HealthCheckResponse.UNKNOWN


async def test_a_killed_worker_is_restarted_under_load_while_the_other_serves(tiny_ctr) -> None:
    running = Suite(tiny_ctr.repository)
    channels = _channels(running.port)
    stop, log = asyncio.Event(), []

    async def load(stub: ctr_pb2_grpc.CtrServiceStub, seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            sent = time.monotonic()
            try:
                await stub.Score(_request(tiny_ctr, rng), timeout=20, wait_for_ready=True)
                code = "OK"
            except grpc.aio.AioRpcError as err:
                code = err.code().name
            log.append((sent, code))

    try:
        await running.ready()
        loads = [asyncio.create_task(load(ctr_pb2_grpc.CtrServiceStub(c), i)) for i, c in enumerate(channels)]
        await asyncio.sleep(1.0)
        victim, survivor = _workers(running)
        killed = time.monotonic()
        victim.kill()
        # /metrics keeps answering: the dead worker down, the other up, then the restart counted.
        metrics = await _until(lambda: (m := running.metrics())[("infersuite_worker_up", (("worker", "0"),))] == 0
                               and m, 10, "worker 0 reported down")
        assert metrics[("infersuite_worker_up", (("worker", "1"),))] == 1
        health_while_down = await asyncio.to_thread(_health, running.port)
        seen: list[int] = []  # health on fresh connections until the restarted worker has served a while

        async def watch_health() -> None:
            while not stop.is_set():
                seen.append(await asyncio.to_thread(_health, running.port))
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_health())
        await _until(lambda: running.metrics()[("infersuite_worker_restarts_total", ())] == 1
                     and running.metrics()[("infersuite_worker_up", (("worker", "0"),))] == 1, 60, "worker 0 restarted")
        await asyncio.sleep(1.0)  # load keeps going across the restart
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loads, watcher), 30)
        assert running.proc.poll() is None, "the server went down with its worker"
        assert health_while_down == SERVING
        # The restarted worker listens only once it serves: no fresh connection ever found NOT_SERVING.
        assert health_pb2.HealthCheckResponse.NOT_SERVING not in seen and seen.count(SERVING) > 10, seen
        # Fresh connections reach the restarted worker too, and it answers.
        before = running.metrics()[("infersuite_worker_requests_total", (("worker", "0"),))]
        fresh, rng = _channels(running.port), np.random.default_rng(9)
        try:
            for channel in fresh:
                reply = await ctr_pb2_grpc.CtrServiceStub(channel).Score(_request(tiny_ctr, rng), timeout=10)
                assert np.isfinite(reply.click_probabilities).all()
        finally:
            for channel in fresh:
                await channel.close()
        assert running.metrics()[("infersuite_worker_requests_total", (("worker", "0"),))] > before
        assert len(_workers(running)) == 2 and survivor.is_running()
    finally:
        stop.set()
        for channel in channels:
            await channel.close()
        running.stop()
    # Only calls on the killed worker's connections at the moment it died fail (UNAVAILABLE): one per
    # connection at most, since each sends one at a time; every later call reconnects and is answered.
    # wait_for_ready, as gRPC advises for a client of a replicated service: a reconnection the kernel
    # had queued on the dying worker is reset, and without it calls would fail fast during grpc's
    # reconnect backoff (1 s) instead of waiting for the next connection (a live worker's).
    failed = [(sent, code) for sent, code in log if code != "OK"]
    assert {code for _, code in failed} <= {"UNAVAILABLE"}, failed
    assert len(failed) <= CONNECTIONS, failed
    assert all(sent < killed + 1.0 for sent, _ in failed), failed
    assert sum(1 for sent, code in log if code == "OK" and sent > killed + 1.0) > 10 * CONNECTIONS


async def test_fewer_serving_workers_than_the_minimum_turn_health_not_serving_until_the_restart(tiny_ctr) -> None:
    running = Suite(tiny_ctr.repository, INFERSUITE_MIN_WORKERS="2")
    try:
        await running.ready()
        _workers(running)[1].kill()
        seen = await _until(lambda: (status := _health(running.port)) != SERVING and status, 10, "NOT_SERVING", 0.02)
        assert seen == health_pb2.HealthCheckResponse.NOT_SERVING
        await running.ready(timeout_s=60)  # the restarted worker is ready: SERVING again
        assert running.metrics()[("infersuite_worker_restarts_total", ())] == 1
        assert running.proc.poll() is None
    finally:
        running.stop()


async def test_a_crash_loop_ends_the_server_with_a_clear_message(tiny_ctr) -> None:
    running = Suite(tiny_ctr.repository, stderr=True, INFERSUITE_WORKER_RESTART_LIMIT="1",
                    INFERSUITE_GRACE_PERIOD_S="2")
    try:
        await running.ready()
        first = _workers(running)[0]
        first.kill()
        await _until(lambda: running.metrics()[("infersuite_worker_restarts_total", ())] == 1
                     and running.metrics()[("infersuite_worker_up", (("worker", "0"),))] == 1, 30, "the first restart")
        assert first.pid not in [w.pid for w in _workers(running)]
        _workers(running)[0].kill()  # the second death within the window: more than the limit of 1
        exit_code = await asyncio.to_thread(running.proc.wait, 30)
        assert exit_code == 1
        errors = running.proc.stderr.read() if running.proc.stderr else ""
        assert "crash loop: 2 worker deaths in 60 s (INFERSUITE_WORKER_RESTART_LIMIT=1)" in errors, errors
    finally:
        running.stop()


async def test_a_worker_waits_for_the_parent_before_health_and_server_ready_say_serving(tiny_ctr) -> None:
    """In process: a server whose readiness goes to a parent (as a worker's does) stays NOT_SERVING,
    with OIP ServerReady false, until told to serve; both turn together, and back on stop."""
    import tritonclient.grpc.aio as triton_aio

    from infersuite.services.ctr import CtrService, CtrSettings
    from infersuite.services.runtime import RuntimeSettings, build_server

    settings = RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1", model_repository=tiny_ctr.repository)
    server, port = await build_server(settings, [CtrService(CtrSettings())])
    reported: list[list[str]] = []

    async def report(entries: list[str]) -> None:
        reported.append(entries)

    server.on_ready = report
    await server.start()
    client = triton_aio.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        await server.wait_ready(timeout=60)
        assert reported == [["infersuite.ctr.v1.CtrService", ""]]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in reported[0]:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING, name
            assert not await client.is_server_ready()
            await server.set_serving(reported[0])
            for name in reported[0]:
                assert (await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)).status == SERVING
            assert await client.is_server_ready()
            stopping = asyncio.create_task(server.stop(1))
            await asyncio.sleep(0)
            assert not server.serving
            await stopping
    finally:
        await client.close()
