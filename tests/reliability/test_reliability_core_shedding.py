"""Refusal before the servicer: with INFERSUITE_MAX_CONCURRENT_RPCS, calls past the limit are refused
RESOURCE_EXHAUSTED and never reach the service's handler (the known-cost model of tests/reliability/sleepy.py
records every call that reaches one): by the suite's limit, with grpc-retry-pushback-ms, before the request
is decoded, or (INFERSUITE_CALL_LIMIT_PUSHBACK=false) by grpc.aio's compiled layer before any Python runs,
without. Without the limit every call is taken up and the excess is refused by the model's queue, after its
handler parsed it."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from infersuite.services.runtime import RuntimeSettings, build_server
from tests.reliability import sleepy

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

BURST = 60  # calls sent at once
COMPUTE_S = 0.05


async def _burst(**limits: int | bool) -> tuple[dict[str, int], int, int]:
    service = sleepy.SleepyService(COMPUTE_S, max_queue_size=4)
    settings = RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1", **limits)
    server, port = await build_server(settings, [service])
    await server.start()
    await server.wait_ready()
    codes: dict[str, int] = {}
    pushbacks = 0
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()

            async def call(i: int) -> str:
                nonlocal pushbacks
                method, body = sleepy.request(i)
                try:
                    await channel.unary_unary(method)(body, timeout=10)
                    return "OK"
                except grpc.aio.AioRpcError as err:
                    pushbacks += any(key == "grpc-retry-pushback-ms" for key, _ in err.trailing_metadata() or ())
                    return err.code().name

            for code in await asyncio.gather(*(call(i) for i in range(1, BURST + 1))):
                codes[code] = codes.get(code, 0) + 1
    finally:
        await server.stop(0)
    return codes, len(service.model.arrived), pushbacks


@pytest.mark.parametrize("pushback", [True, False])
async def test_past_the_concurrency_limit_calls_are_refused_before_the_servicer(pushback: bool) -> None:
    codes, reached_python, pushbacks = await _burst(max_concurrent_rpcs=2, call_limit_pushback=pushback)
    assert set(codes) == {"OK", "RESOURCE_EXHAUSTED"} and sum(codes.values()) == BURST, codes
    # at most 2 calls in handlers at once (50 ms each): the rest of the burst is refused before one
    assert reached_python <= 4 and codes["RESOURCE_EXHAUSTED"] >= BURST - 4, (codes, reached_python)
    assert reached_python == codes["OK"], (codes, reached_python)
    # the suite's refusals say when to come back; grpc.aio's do not
    assert pushbacks == (codes["RESOURCE_EXHAUSTED"] if pushback else 0), (codes, pushbacks)


async def test_without_the_limit_every_call_reaches_python_and_the_queue_refuses() -> None:
    codes, reached_python, _ = await _burst()
    assert set(codes) == {"OK", "RESOURCE_EXHAUSTED"} and sum(codes.values()) == BURST, codes
    assert reached_python == BURST, (codes, reached_python)
