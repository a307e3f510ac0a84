"""A trivial gRPC endpoint (`/infersuite.loadtest.Trivial/Echo` returns its request bytes; a
StallGate can freeze it once for `stall_s`, `stall_at_s` after its first call) used to measure the
generator itself and to test latency accounting. Run alone: `python -m infersuite.loadtest.trivial_server`.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
from grpc import aio

SERVICE = "infersuite.loadtest.Trivial"
ECHO = f"/{SERVICE}/Echo"


class StallGate:
    """Every call passes through; the first call `stall_at_s` after the first one freezes the gate
    for `stall_s`, so every request arriving meanwhile waits too: a GC pause or a stuck thread, once."""

    def __init__(self, stall_at_s: float | None = None, stall_s: float = 1.0):
        self.stall_at_s, self.stall_s = stall_at_s, stall_s
        self.calls = 0
        self.stalls = 0
        self._first_call: float | None = None
        self._open = asyncio.Event()
        self._open.set()

    async def pass_through(self) -> None:
        self.calls += 1
        now = time.monotonic()
        self._first_call = self._first_call or now
        if self.stall_at_s is not None and not self.stalls and now - self._first_call >= self.stall_at_s:
            self._open.clear()
            self.stalls += 1
            await asyncio.sleep(self.stall_s)
            self._open.set()
        await self._open.wait()


def add_trivial_service(server: aio.Server, gate: StallGate | None = None) -> StallGate:
    gate = gate or StallGate()

    async def echo(request: bytes, context: aio.ServicerContext) -> bytes:
        await gate.pass_through()
        return request

    handlers = {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    return gate


async def serve(host: str, port: int) -> None:
    server = aio.server(options=[("grpc.so_reuseport", 0)])
    add_trivial_service(server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"port {bound}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infersuite.loadtest.trivial_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
