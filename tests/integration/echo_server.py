"""A real suite process hosting the test Echo service (used by the SIGTERM test), plus
`infersuite.test.Traced/Sleep`: Echo's Sleep that prints when each sleep begins and ends, so the test
orders its signal after the server has the requests in hand and reads what the server finished."""

import asyncio
import logging

import grpc
from grpc import aio

from infersuite.services.__main__ import serve
from infersuite.services.runtime import Runtime, RuntimeSettings
from tests.fixtures import EchoService

TRACED = "infersuite.test.Traced"


class TracedEchoService(EchoService):
    grpc_service_names = (*EchoService.grpc_service_names, TRACED)

    def register(self, server: aio.Server, runtime: Runtime) -> None:
        super().register(server, runtime)

        async def sleep(request: bytes, context: aio.ServicerContext) -> bytes:
            seconds = request.decode()
            print(f"trace: sleep {seconds} began", flush=True)
            await asyncio.sleep(float(seconds))
            print(f"trace: sleep {seconds} ended", flush=True)
            return b"done"

        handlers = {"Sleep": grpc.unary_unary_rpc_method_handler(sleep)}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(TRACED, handlers),))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(serve(RuntimeSettings(port=0, metrics_port=0, grace_period_s=5.0), [TracedEchoService()]))
