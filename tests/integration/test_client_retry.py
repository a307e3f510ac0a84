"""The typed clients' opt-in retry policy and wait_for_ready against real grpc.aio servers on real
ports: a refusal with the server's pushback is retried after the pushback (gRPC's retry, gRFC A6), a
pushback of -1 is not retried, no policy means one attempt, and wait_for_ready waits for a server
that is not listening yet instead of failing at once."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from infersuite.protos import ctr_pb2, ctr_pb2_grpc
from infersuite.services.client import RetryPolicy
from infersuite.services.ctr.client import CtrClient, CtrClientError

pytestmark = pytest.mark.integration


class Refusing(ctr_pb2_grpc.CtrServiceServicer):
    """Refuses the first `refusals` Score calls with RESOURCE_EXHAUSTED and `pushback` ms, then answers."""

    def __init__(self, refusals: int, pushback: str):
        self.refusals, self.pushback = refusals, pushback
        self.attempts: list[float] = []

    async def Score(self, request: ctr_pb2.ScoreRequest, context: grpc.aio.ServicerContext) -> ctr_pb2.ScoreResponse:
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.refusals:
            context.set_trailing_metadata((("grpc-retry-pushback-ms", self.pushback),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue is full; retry later")
        return ctr_pb2.ScoreResponse(click_probabilities=[0.25])


async def _serve(servicer: ctr_pb2_grpc.CtrServiceServicer, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    ctr_pb2_grpc.add_CtrServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


@pytest.fixture
async def refusing() -> AsyncIterator[tuple[Refusing, int]]:
    servicer = Refusing(refusals=1, pushback="300")
    server, port = await _serve(servicer)
    try:
        yield servicer, port
    finally:
        await server.stop(None)


async def _score(client: CtrClient) -> list[float]:
    return (await client.score([1], [1], [2], [1], timeout_s=10)).click_probabilities.tolist()


async def test_a_refusal_with_pushback_is_retried_after_the_pushback(refusing) -> None:
    servicer, port = refusing
    async with CtrClient(f"127.0.0.1:{port}", retry=RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.002)) as ctr:
        assert await _score(ctr) == [0.25]
    first, second = servicer.attempts
    assert second - first >= 0.3  # the server's 300 ms, not the policy's 1 ms backoff


async def test_without_a_policy_or_with_pushback_minus_one_there_is_one_attempt(refusing) -> None:
    servicer, port = refusing
    async with CtrClient(f"127.0.0.1:{port}") as ctr:
        with pytest.raises(CtrClientError, match="RESOURCE_EXHAUSTED: queue is full"):
            await _score(ctr)
    assert len(servicer.attempts) == 1
    never = Refusing(refusals=1, pushback="-1")  # the server says retrying cannot help
    server, port = await _serve(never)
    try:
        async with CtrClient(f"127.0.0.1:{port}", retry=RetryPolicy()) as ctr:
            with pytest.raises(CtrClientError, match="RESOURCE_EXHAUSTED"):
                await _score(ctr)
        assert len(never.attempts) == 1
    finally:
        await server.stop(None)


async def test_wait_for_ready_waits_for_a_server_that_starts_later() -> None:
    with socket.socket() as probe:  # a port nobody listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with CtrClient(f"127.0.0.1:{port}") as impatient:
        with pytest.raises(CtrClientError, match="UNAVAILABLE"):
            await _score(impatient)
    async with CtrClient(f"127.0.0.1:{port}", wait_for_ready=True) as patient:
        waiting = asyncio.create_task(_score(patient))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # still waiting for a connection, not failed
        server, _ = await _serve(Refusing(refusals=0, pushback="0"), port)
        try:
            assert await asyncio.wait_for(waiting, 30) == [0.25]
        finally:
            await server.stop(None)
