"""The runtime on real sockets: error mapping, health, drain on stop and on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infersuite.loadtest.local_suite import ServerProcess
from infersuite.services.runtime import RuntimeSettings, build_server
from infersuite.services.runtime.handler_wrapper import SHUTTING_DOWN
from tests.fixtures import EchoService

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _call(channel: grpc.aio.Channel, method: str, payload: bytes, timeout: float = 10):
    return channel.unary_unary(f"/infersuite.test.Echo/{method}")(payload, timeout=timeout)


@pytest.fixture
async def echo_server():
    server, port = await build_server(RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1"), [EchoService()])
    await server.start()
    await server.wait_ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield server, channel
    await channel.close()
    await server.stop(0)


async def test_internal_errors_never_leak_and_domain_errors_keep_their_message(echo_server) -> None:
    _, channel = echo_server
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(channel, "Boom", b"")
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details() == "Internal server error"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(channel, "Bad", b"")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "field 'x' must be positive, got -1"
    assert await _call(channel, "Sleep", b"0") == b"done"  # still serving


async def test_stop_drains_in_flight_and_refuses_new_requests(echo_server) -> None:
    server, channel = echo_server
    health = health_pb2_grpc.HealthStub(channel)
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING
    in_flight = asyncio.ensure_future(_call(channel, "Sleep", b"0.5"))
    await asyncio.sleep(0.1)
    stopping = asyncio.ensure_future(server.stop(grace=5))
    await asyncio.sleep(0.1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(channel, "Sleep", b"0")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await in_flight == b"done"
    await stopping


async def test_stop_answers_new_calls_itself_until_they_stop_coming_then_stops() -> None:
    """After SIGTERM's drain, new calls are answered by the server's handlers (the stop's own message, so not
    by a transport already shut), health still answers NOT_SERVING, the call in flight completes, and the
    stop waits for the calls to stop coming before it shuts the transport."""
    settings = RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1", shutdown_refuse_s=30.0)
    server, port = await build_server(settings, [EchoService()])
    await server.start()
    await server.wait_ready()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        in_flight = asyncio.ensure_future(_call(channel, "Sleep", b"0.5"))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(server.stop(grace=5))
        while not server.closing.refusing:
            await asyncio.sleep(0.01)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _call(channel, "Sleep", b"0")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert err.value.details() == SHUTTING_DOWN
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await in_flight == b"done"
        assert server.closing.refused == 1
        await asyncio.wait_for(stopping, 20)  # no more calls came: the stop did not wait out its 30 s


GRACE_S = 5.0  # tests/integration/echo_server.py


def _read_until(proc: subprocess.Popen, *patterns: str) -> dict[str, re.Match]:
    """Reads the process's output until every pattern has matched a line; their first matches."""
    found: dict[str, re.Match] = {}
    seen: list[str] = []
    while len(found) < len(patterns):
        line = proc.stdout.readline()
        assert line, f"the server exited before printing {set(patterns) - set(found)}: {seen}"
        seen.append(line)
        found.update({p: m for p in patterns if p not in found and (m := re.search(p, line))})
    return found


def test_sigterm_drains_in_flight_requests_then_exits() -> None:
    """Ordered by the server's own timers, not timed by the test's clock: SIGTERM lands once the server
    has begun both sleeps (its trace says so); the one shorter than the 5 s grace period completes, the
    one longer than it (60 s) is cut when the grace period ends, and the process exits 0. A server that
    ignored the grace period would answer the long one "done"; one that did not drain would fail the
    short one. However slow the machine, the 1 s timer fires before the 5 s one and that before 60 s."""
    # The one launcher (infersuite/loadtest/local_suite.py) reads the start line; the trace lines stay on the pipe.
    server = ServerProcess({"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
                           command=[sys.executable, "-m", "tests.integration.echo_server"], cwd=ROOT)
    proc, port = server.proc, server.port
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            sleep = channel.unary_unary("/infersuite.test.Traced/Sleep")
            short, long = sleep.future(b"1.0", timeout=120), sleep.future(b"60.0", timeout=120)
            _read_until(proc, "trace: sleep 1.0 began", "trace: sleep 60.0 began")
            proc.send_signal(signal.SIGTERM)
            assert short.result() == b"done"  # in flight at SIGTERM, completed within the grace period
            with pytest.raises(grpc.RpcError):
                long.result()  # cut when the grace period ended, never answered "done"
            # Generous: the grace period is 5 s; a server that waited for the 60 s sleep would take 60 s.
            assert proc.wait(timeout=45) == 0
        trace = [line.strip() for line in proc.stdout.read().splitlines() if line.startswith("trace:")]
        assert "trace: sleep 1.0 ended" in trace and "trace: sleep 60.0 ended" not in trace, trace
    finally:
        proc.kill()
        proc.wait()


async def test_reflection_lists_the_services(echo_server) -> None:
    """grpcurl and the load-test suite discover services this way (it answered INTERNAL once handlers were
    wrapped at registration: the sync reflection servicer ran inside an async handler)."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _, channel = echo_server
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = [s.name for reply in [r async for r in call] for s in reply.list_services_response.service]
    assert {"grpc.health.v1.Health", "inference.GRPCInferenceService", "infersuite.test.Echo"} <= set(names)
