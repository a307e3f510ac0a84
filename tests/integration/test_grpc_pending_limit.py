"""Why the suite offers no pending-call limit (docs/limits.md): gRPC core's limits on calls waiting to be
taken up (`grpc.server.max_pending_requests`, `grpc.max_unrequested_time_in_server`) do not apply to
grpcio's Python (grpc.aio) server. A server whose one handler blocks its event loop 50 ms per call takes
up no call meanwhile; 30 calls sent at once all wait and are answered OK, none refused by core. If a
grpcio upgrade makes this fail, the limits work again and INFERSUITE_MAX_PENDING_RPCS can return."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import grpc
import pytest
from grpc import aio

pytestmark = pytest.mark.integration

CALLS = 30


def _serve(options: list[tuple[str, int]], started: threading.Event, port: list[int], stop: threading.Event) -> None:
    async def run() -> None:
        server = aio.server(options=options)

        async def blocking(request: bytes, context: aio.ServicerContext) -> bytes:
            time.sleep(0.05)  # the loop is blocked: no call is taken up meanwhile
            return request

        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "t.Pending", {"Call": grpc.unary_unary_rpc_method_handler(blocking)}),))
        port.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        started.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await server.stop(0)

    asyncio.run(run())


@pytest.mark.parametrize("options", [
    [("grpc.server.max_pending_requests", 2), ("grpc.server.max_pending_requests_hard_limit", 4)],
    [("grpc.max_unrequested_time_in_server", 1)]], ids=["max_pending_requests", "max_unrequested_time"])
async def test_core_pending_limits_do_not_apply_to_the_python_server(options: list[tuple[str, int]]) -> None:
    started, stop, port = threading.Event(), threading.Event(), []
    thread = threading.Thread(target=_serve, args=(options, started, port, stop), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port[0]}") as channel:
            await channel.channel_ready()

            async def call() -> str:
                try:
                    await channel.unary_unary("/t.Pending/Call")(b"x", timeout=20)
                    return "OK"
                except aio.AioRpcError as err:
                    return err.code().name

            codes = Counter(await asyncio.gather(*(call() for _ in range(CALLS))))
    finally:
        stop.set()
        thread.join(10)
    # 30 calls x 50 ms = 1.5 s of blocked loop: past 2-4 pending calls, and past 1 s waiting, core would refuse
    assert codes == {"OK": CALLS}, codes
