"""`python -m infersuite.services`: runs the suite with settings from the environment (INFERSUITE_*)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from pydantic import ValidationError

from infersuite.services.runtime import RuntimeSettings, ServiceModule, build_server
from infersuite.services.runtime.service import load_services
from infersuite.services.runtime.settings import parse_cpu_list
from infersuite.services.runtime.worker_pool import check_port_free, serve_workers, worker_count


async def serve(settings: RuntimeSettings, services: list[ServiceModule] | None = None) -> None:
    """Runs until SIGTERM/SIGINT, then drains in-flight requests for the grace period."""
    server, port = await build_server(settings, services)
    await server.start()
    log = logging.getLogger("infersuite")
    print(f"infersuite: gRPC on port {port}, metrics on port {server.metrics_port}", flush=True)
    hosted = ", ".join(s.name for s in server.services) or "none: OIP only"
    log.info("gRPC listening on %s:%d (services: %s)", settings.host, port, hosted)
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


def settings_or_exit() -> RuntimeSettings:
    """The settings from the environment, or one line per wrong INFERSUITE_* value and exit status 1."""
    try:
        return RuntimeSettings()
    except ValidationError as exc:
        lines = [f"infersuite: INFERSUITE_{'_'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {e['msg']}"
                 for e in exc.errors()]
        raise SystemExit("\n".join(lines)) from None


def check_startup(settings: RuntimeSettings, count: int) -> None:
    """What would otherwise fail later with a traceback (or a worker's), said in one line before anything starts."""
    if settings.model_control_mode == "explicit" and count > 1:
        raise ValueError(f"INFERSUITE_MODEL_CONTROL_MODE=explicit needs one serving process, not {count} workers: "
                         "a load or unload would reach only the worker its connection lands on. Set "
                         "INFERSUITE_WORKERS=1 (and scale with replicas), or use model control none "
                         "(docs/scaling.md)")
    load_services(settings.services)  # an unknown family name
    # grpc sets SO_REUSEPORT: without this check a second server would silently share the port
    check_port_free(settings.host, settings.port)
    if settings.metrics_port > 0:
        check_port_free(settings.metrics_host, settings.metrics_port, what="metrics port")
    if not settings.model_repository.is_dir():  # as Triton, which does not start on a missing repository
        raise ValueError(f"INFERSUITE_MODEL_REPOSITORY={settings.model_repository}: no such directory (`make models` "
                         "builds model_repository/; `make serve` falls back to shipped_models/)")


def main() -> None:
    settings = settings_or_exit()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    count = worker_count(settings)
    try:
        check_startup(settings, count)
    except OSError as exc:
        raise SystemExit(f"infersuite: {exc.strerror}") from None
    except ValueError as exc:
        raise SystemExit(f"infersuite: {exc}") from None
    if count > 1:  # N processes on one port behind one /metrics (docs/scaling.md)
        raise SystemExit(serve_workers(settings, count))
    cores = parse_cpu_list(settings.cpu_affinity)
    if cores:
        os.sched_setaffinity(0, cores)
        settings = settings.model_copy(update={"intra_op_threads": settings.intra_op_threads or len(cores)})
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
