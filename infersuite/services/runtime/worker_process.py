"""One serving process of several (INFERSUITE_WORKERS > 1), started by infersuite/services/runtime/worker_pool.py.

It is a whole server (its own onnxruntime sessions, batchers and registry) bound to the shared
gRPC port (grpc sets SO_REUSEPORT on Linux, so the kernel spreads new connections over the
workers) with its metrics on a private localhost port that the parent scrapes. It follows the
parent over a pipe:

    worker -> parent: ("bound", grpc_port, metrics_port or None), ("ready", [health entries]),
                      ("error", message)
    parent -> worker: ("serve", [health entries]), ("hold",), ("stop",)

Health stays NOT_SERVING until the parent has heard "ready" from every worker and says "serve",
so a health check answers the same whichever worker the connection lands on; "hold" turns it
NOT_SERVING again (fewer workers serve than INFERSUITE_MIN_WORKERS asks). The worker drains
(NOT_SERVING, then the grace period for in-flight requests) on "stop", on SIGTERM, or when the
parent goes away (the pipe closes). It ignores SIGINT: Ctrl-C reaches the whole process group,
and the parent drains every worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable
from multiprocessing.connection import Connection

import prometheus_client

from infersuite.services.runtime.server import build_server
from infersuite.services.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)


def run(index: int, settings: RuntimeSettings, cores: list[int], conn: Connection,
        serve_when_ready: list[str] | None = None) -> None:
    """The worker process's entry point (multiprocessing, spawn start method)."""
    if cores:
        os.sched_setaffinity(0, cores)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=settings.log_level,
                        format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s")
    prometheus_client.disable_created_metrics()  # per-process timestamps: dropped by the merge anyway
    try:
        asyncio.run(_serve(settings, conn, serve_when_ready))
    except Exception as exc:
        log.exception("worker %d failed", index)
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None


async def _serve(settings: RuntimeSettings, conn: Connection, serve_when_ready: list[str] | None) -> None:
    """`serve_when_ready`: a restarted worker of a serving server, told what the others serve: it loads
    its models before it listens and turns those entries SERVING itself, so no connection the kernel
    hands it finds it NOT_SERVING (the parent's "serve" that follows its "ready" changes nothing)."""
    server, port = await build_server(settings)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    serving: list[asyncio.Task[None]] = []  # health changes, applied one after the other in the parent's order

    async def after(previous: asyncio.Task[None] | None, change: Awaitable[None]) -> None:
        if previous is not None:
            await previous
        await change

    async def report_ready(entries: list[str]) -> None:
        if serve_when_ready is not None:
            await server.set_serving([entry for entry in serve_when_ready if entry in entries])
        conn.send(("ready", entries))

    def on_message() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone: drain and leave
            loop.remove_reader(conn.fileno())
            stopping.set()
            return
        if message[0] in ("serve", "hold") and not stopping.is_set():
            change = server.set_serving(message[1]) if message[0] == "serve" else server.hold()
            serving.append(asyncio.create_task(after(serving[-1] if serving else None, change)))
        elif message[0] == "siblings":  # the other workers' private metrics ports (OIP statistics)
            server.models.sibling_ports = list(message[1])
        elif message[0] == "stop":
            stopping.set()

    server.on_ready = report_ready
    await server.start(load_first=serve_when_ready is not None)
    conn.send(("bound", port, server.metrics_port))
    loop.add_reader(conn.fileno(), on_message)
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await asyncio.gather(*serving)  # a late "serve" must not undo the NOT_SERVING of stop()
    log.info("draining for up to %.1f s", settings.grace_period_s)
    await server.stop()
