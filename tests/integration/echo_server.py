"""A real suite process hosting only the test Echo service (used by the SIGTERM test)."""

import asyncio
import logging

from services.__main__ import serve
from services.runtime import RuntimeSettings
from tests.fixtures import EchoService

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(serve(RuntimeSettings(port=0, metrics_port=0, grace_period_s=5.0), [EchoService()]))
