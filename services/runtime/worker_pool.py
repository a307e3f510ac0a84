"""N serving processes on one gRPC port behind one /metrics endpoint (INFERSUITE_WORKERS).

The parent serves no RPC. It starts the workers (services/runtime/worker_process.py) with the spawn
method: worker 0 first, because when port 0 is asked it picks the port, then the others, which
bind the same port (SO_REUSEPORT). It turns every worker SERVING together once all have loaded
their models, serves one /metrics that merges the workers' registries at scrape time
(services/runtime/metrics_merge.py), and on SIGTERM or SIGINT tells every worker to drain and
waits for them. A worker that dies while serving takes the server down (NOT_SERVING, the others
drain, exit status 1) so that the orchestrator restarts it whole: a server with fewer workers
than it says would be quietly slower. docs/scaling.md has the design and the sizing notes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from services.runtime import worker_process
from services.runtime.metrics_merge import scrape
from services.runtime.settings import RuntimeSettings, parse_cpu_list

log = logging.getLogger(__name__)


def available_cores() -> int:
    """Cores this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a container's
    CPU limit, which the affinity mask does not show)."""
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return max(1, min(count, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2, or "max" (no limit)
        return count


def worker_count(settings: RuntimeSettings) -> int:
    return settings.workers or len(parse_cpu_list(settings.cpu_affinity)) or available_cores()


def worker_cores(cores: list[int], workers: int) -> list[list[int]]:
    """Each worker's cores: contiguous shares of `cores` (a NUMA node's cores are usually numbered
    together), one core each round robin when there are more workers than cores; [] = not pinned."""
    if not cores:
        return [[] for _ in range(workers)]
    if workers >= len(cores):
        return [[cores[i % len(cores)]] for i in range(workers)]
    share, extra = divmod(len(cores), workers)
    bounds = [i * share + min(i, extra) for i in range(workers + 1)]
    return [cores[bounds[i]:bounds[i + 1]] for i in range(workers)]


def worker_settings(settings: RuntimeSettings, port: int, cores: list[int], workers: int) -> RuntimeSettings:
    """A worker's settings: the shared port, private metrics, and intra-op threads that do not
    oversubscribe the cores the workers share (unless set explicitly)."""
    threads = settings.intra_op_threads or len(cores) or max(1, available_cores() // workers)
    return settings.model_copy(update={
        "port": port, "workers": 1, "intra_op_threads": threads, "metrics_host": "127.0.0.1",
        "metrics_port": 0 if settings.metrics_port >= 0 else -1})


class _MetricsServer(ThreadingHTTPServer):
    """GET /metrics: every worker's metrics, read and merged at this scrape."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], worker_ports: Callable[[], Sequence[tuple[int, int | None]]]):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _MetricsHandler)
        self.worker_ports = worker_ports


class _MetricsHandler(BaseHTTPRequestHandler):
    server: _MetricsServer

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":  # 404 on every other path, "/" included
            self.send_error(404)
            return
        body = scrape(self.server.worker_ports()).encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
        return


def check_port_free(host: str, port: int) -> None:
    """Raises OSError if another process listens on the port. SO_REUSEPORT (which the workers need)
    would otherwise let them join a second server of the same user on that port without a word."""
    if port == 0:
        return
    host = host.strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free; a listener is not
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"port {port} on {host or 'all addresses'} is in use: {exc.strerror}") from None


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    metrics_port: int | None = None
    bound: bool = False
    ready: frozenset[str] | None = None
    alive: bool = True


class Supervisor:
    """Starts, watches and stops the workers; serves the merged /metrics."""

    def __init__(self, settings: RuntimeSettings, count: int):
        self.settings, self.count = settings, count
        self.cores = worker_cores(parse_cpu_list(settings.cpu_affinity), count)
        self.workers: list[_Worker] = []
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._events: asyncio.Queue[tuple[int, tuple[Any, ...]]] = asyncio.Queue()
        self._http: _MetricsServer | None = None

    def _spawn(self, index: int, port: int) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold grpc threads
        parent_end, child_end = context.Pipe()
        settings = worker_settings(self.settings, port, self.cores[index], self.count)
        process = context.Process(target=worker_process.run, args=(index, settings, self.cores[index], child_end),
                                  name=f"infersuite-worker-{index}")
        process.start()
        child_end.close()  # so the parent sees EOF when the worker exits
        self.workers.append(_Worker(index, process, parent_end))
        asyncio.get_running_loop().add_reader(parent_end.fileno(), self._receive, self.workers[-1])

    def _receive(self, target: _Worker) -> None:
        try:
            message = target.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(target.conn.fileno())
            target.alive = False
            message = ("exit",)
        self._events.put_nowait((target.index, message))

    def _worker_ports(self) -> list[tuple[int, int | None]]:
        return [(w.index, w.metrics_port) for w in self.workers]

    def _start_metrics(self) -> None:
        if self.settings.metrics_port < 0:
            return
        host = self.settings.metrics_host.strip("[]")
        self._http = _MetricsServer((host, self.settings.metrics_port), self._worker_ports)
        threading.Thread(target=self._http.serve_forever, args=(0.1,), name="metrics", daemon=True).start()
        self.metrics_port = int(self._http.server_port)

    def _on_bound(self, index: int, port: int, metrics_port: int | None) -> None:
        self.workers[index].metrics_port, self.workers[index].bound = metrics_port, True
        if index == 0:  # the port is known now (it may have been 0): the others bind it too
            self.port = port
            for later in range(1, self.count):
                self._spawn(later, port)
        if len(self.workers) == self.count and all(w.bound for w in self.workers):
            print(f"infersuite: gRPC on port {self.port}, metrics on port {self.metrics_port} "
                  f"({self.count} workers)", flush=True)

    def _on_ready(self, index: int, entries: list[str]) -> None:
        self.workers[index].ready = frozenset(entries)
        if len(self.workers) == self.count and all(w.ready is not None for w in self.workers):
            serving = frozenset.intersection(*(w.ready for w in self.workers if w.ready is not None))
            log.info("all %d workers ready; serving %s", self.count, sorted(serving) or "nothing")
            for w in self.workers:
                w.conn.send(("serve", sorted(serving)))

    async def run(self) -> int:
        """Serves until SIGTERM/SIGINT (exit status 0) or a worker failure (1)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._events.put_nowait, (-1, ("signal",)))
        self._start_metrics()
        self._spawn(0, self.settings.port)
        status = await self._watch()
        await self._stop_all()
        return status

    async def _watch(self) -> int:
        while True:
            index, message = await self._events.get()
            kind = message[0]
            if kind == "signal":
                log.info("signal received: every worker drains for up to %.1f s", self.settings.grace_period_s)
                return 0
            if kind == "bound":
                self._on_bound(index, message[1], message[2])
            elif kind == "ready":
                self._on_ready(index, message[1])
            elif kind == "error":
                log.error("%s", message[1])
                return 1
            elif kind == "exit":
                log.error("worker %d exited (status %s): stopping every worker", index,
                          self.workers[index].process.exitcode)
                return 1

    async def _stop_all(self) -> None:
        for w in self.workers:
            if w.alive:
                with contextlib.suppress(OSError):
                    w.conn.send(("stop",))
        deadline = time.monotonic() + self.settings.shutdown_drain_s + self.settings.grace_period_s + 5.0
        while any(w.process.is_alive() for w in self.workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for w in self.workers:
            if w.process.is_alive():
                log.error("worker %d did not stop in time: killed", w.index)
                w.process.kill()
            w.process.join()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


def serve_workers(settings: RuntimeSettings, count: int) -> int:
    """Runs `count` workers until a signal; returns the exit status."""
    return asyncio.run(Supervisor(settings, count).run())
