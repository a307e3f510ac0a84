"""`python -m services`: runs the suite with settings from the environment (INFERSUITE_*)."""

from __future__ import annotations

import asyncio
import logging
import signal

from services.runtime import RuntimeSettings, ServiceModule, build_server


async def serve(settings: RuntimeSettings, services: list[ServiceModule] | None = None) -> None:
    """Runs until SIGTERM/SIGINT, then drains in-flight requests for the grace period."""
    server, port = await build_server(settings, services)
    await server.start()
    log = logging.getLogger("infersuite")
    print(f"infersuite: gRPC on port {port}, metrics on port {server.metrics_port}", flush=True)
    log.info("gRPC listening on %s:%d (services: %s)", settings.host, port, ", ".join(settings.services))
    if server.metrics_port is not None:
        log.info("Prometheus metrics on http://%s:%d/metrics", settings.metrics_host, server.metrics_port)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("signal received: draining for up to %.1f s", settings.grace_period_s)
    await server.stop()
    log.info("stopped")


def main() -> None:
    settings = RuntimeSettings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
