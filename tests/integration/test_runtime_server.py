"""The runtime on real sockets: error mapping, health, drain on stop and on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runtime import RuntimeSettings, build_server
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


def test_sigterm_drains_in_flight_requests_then_exits() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.echo_server"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"gRPC on port (\d+)", line).group(1))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            slow = channel.unary_unary("/infersuite.test.Echo/Sleep").future(b"1.0", timeout=10)
            time.sleep(0.3)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert slow.result() == b"done"  # the in-flight request completed after SIGTERM
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - sent < 5.0 + 2.0  # within the grace period (+ exit slack)
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
