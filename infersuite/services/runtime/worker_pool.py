"""N serving processes on one gRPC port behind one /metrics endpoint (INFERSUITE_WORKERS).

The parent serves no RPC. It starts the workers (infersuite/services/runtime/worker_process.py) with the spawn
method: worker 0 first, because when port 0 is asked it picks the port, then the others, which
bind the same port (SO_REUSEPORT). It turns every worker SERVING together once all have loaded
their models, serves one /metrics that merges the workers' registries at scrape time
(infersuite/services/runtime/metrics_merge.py), and on SIGTERM or SIGINT tells every worker to drain and
waits for them. A worker that dies while serving is restarted with backoff while the others keep
serving (health stays SERVING while at least INFERSUITE_MIN_WORKERS serve); more deaths than
INFERSUITE_WORKER_RESTART_LIMIT within the window is a crash loop and ends the server (exit
status 1), as does a worker that fails during start-up (a configuration the orchestrator must
see). docs/scaling.md has the design and the sizing notes.
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
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from infersuite.services.runtime import worker_process
from infersuite.services.runtime.metrics_merge import scrape
from infersuite.services.runtime.settings import RuntimeSettings, parse_cpu_list

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
    """INFERSUITE_WORKERS, or when 0: one per core, but one in explicit model control (whose loads and
    unloads act on the process that receives them; __main__ refuses more workers set explicitly)."""
    if settings.workers == 0 and settings.model_control_mode == "explicit":
        return 1
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

    def __init__(self, address: tuple[str, int], render: Callable[[], str]):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _MetricsHandler)
        self.render = render


class _MetricsHandler(BaseHTTPRequestHandler):
    server: _MetricsServer

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":  # 404 on every other path, "/" included
            self.send_error(404)
            return
        body = self.server.render().encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
        return


def check_port_free(host: str, port: int, what: str = "port") -> None:
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
            raise OSError(exc.errno, f"{what} {port} on {host or 'all addresses'} is in use: {exc.strerror}") from None


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    metrics_port: int | None = None
    bound: bool = False
    ready: frozenset[str] | None = None
    alive: bool = True
    serving: bool = False  # told to serve (its health may still be held NOT_SERVING: below min_workers)


def restart_backoff_s(deaths: int) -> float:
    """Seconds before restarting a worker that has died `deaths` times in the window (>= 1)."""
    return min(30.0, 0.5 * 2.0 ** (deaths - 1))


class Supervisor:
    """Starts, watches, restarts and stops the workers; serves the merged /metrics."""

    def __init__(self, settings: RuntimeSettings, count: int):
        self.settings, self.count = settings, count
        self.cores = worker_cores(parse_cpu_list(settings.cpu_affinity), count)
        self.workers: list[_Worker] = []  # slot i holds worker i's current process
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.serving: frozenset[str] | None = None  # health entries every worker serves, once all were ready
        self.held = False  # live workers told NOT_SERVING (fewer than min_workers serve)
        self.restarts = 0
        self._deaths: list[tuple[float, int]] = []  # (monotonic time, index) of deaths while serving
        self._pending: dict[int, asyncio.TimerHandle] = {}  # restarts waiting for their backoff
        self._events: asyncio.Queue[tuple[_Worker | None, tuple[Any, ...]]] = asyncio.Queue()
        self._http: _MetricsServer | None = None

    def _spawn(self, index: int, port: int, serve_when_ready: list[str] | None = None) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold grpc threads
        parent_end, child_end = context.Pipe()
        settings = worker_settings(self.settings, port, self.cores[index], self.count)
        process = context.Process(target=worker_process.run, args=(index, settings, self.cores[index], child_end,
                                                                       serve_when_ready),
                                  name=f"infersuite-worker-{index}")
        process.start()
        child_end.close()  # so the parent sees EOF when the worker exits
        worker = _Worker(index, process, parent_end)
        if index < len(self.workers):
            self.workers[index] = worker  # a restart takes the dead worker's slot
        else:
            self.workers.append(worker)
        asyncio.get_running_loop().add_reader(parent_end.fileno(), self._receive, worker)

    def _receive(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(worker.conn.fileno())
            message = ("exit",)
        self._events.put_nowait((worker, message))

    def _worker_ports(self) -> list[tuple[int, int | None]]:
        return [(w.index, w.metrics_port if w.alive else None) for w in self.workers]

    def _render_metrics(self) -> str:
        return scrape(self._worker_ports(), self.restarts)

    def _start_metrics(self) -> None:
        if self.settings.metrics_port < 0:
            return
        host = self.settings.metrics_host.strip("[]")
        self._http = _MetricsServer((host, self.settings.metrics_port), self._render_metrics)
        threading.Thread(target=self._http.serve_forever, args=(0.1,), name="metrics", daemon=True).start()
        self.metrics_port = int(self._http.server_port)

    def _share_siblings(self) -> None:
        """Tells each live worker the private metrics ports of the others: OIP ModelStatistics, answered by
        whichever worker a connection lands on, adds theirs (infersuite/services/runtime/model_manager.py)."""
        listening = [w for w in self.workers if w.alive and w.bound and w.metrics_port is not None]
        for worker in listening:
            self._send(worker, ("siblings", [w.metrics_port for w in listening if w is not worker]))

    def _on_bound(self, worker: _Worker, port: int, metrics_port: int | None) -> None:
        worker.metrics_port, worker.bound = metrics_port, True
        self._share_siblings()
        if self.port is None:  # worker 0: the port is known now (it may have been 0); the others bind it too
            self.port = port
            for later in range(1, self.count):
                self._spawn(later, port)
        if self.serving is None and len(self.workers) == self.count and all(w.bound for w in self.workers):
            print(f"infersuite: gRPC on port {self.port}, metrics on port {self.metrics_port} "
                  f"({self.count} workers)", flush=True)

    def _on_ready(self, worker: _Worker, entries: list[str]) -> None:
        worker.ready = frozenset(entries)
        if self.serving is not None:  # a restarted worker joins what the others serve
            missing = self.serving - worker.ready
            if missing:
                log.warning("restarted worker %d could not ready %s: it answers NOT_SERVING for them",
                            worker.index, sorted(missing))
            self._tell_serving(worker)
            self._update_hold()
            return
        if len(self.workers) == self.count and all(w.ready is not None for w in self.workers):
            self.serving = frozenset.intersection(*(w.ready for w in self.workers if w.ready is not None))
            log.info("all %d workers ready; serving %s", self.count, sorted(self.serving) or "nothing")
            for w in self.workers:
                self._tell_serving(w)

    def _tell_serving(self, worker: _Worker) -> None:
        worker.serving = True
        if not self.held:
            self._send(worker, ("serve", sorted((self.serving or frozenset()) & (worker.ready or frozenset()))))

    def _update_hold(self) -> None:
        """Every live worker NOT_SERVING while fewer than min_workers serve; SERVING again once enough do."""
        serving = [w for w in self.workers if w.alive and w.serving]
        held = len(serving) < min(self.settings.min_workers, self.count)
        if held == self.held:
            return
        self.held = held
        if held:
            log.error("%d of %d workers serve, fewer than INFERSUITE_MIN_WORKERS=%d: health NOT_SERVING until "
                      "restarted workers are ready", len(serving), self.count, self.settings.min_workers)
        for w in serving:
            self._send(w, ("hold",) if held else ("serve", sorted(self.serving or frozenset())))

    def _send(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):  # a worker that just died: its exit event follows
            worker.conn.send(message)

    def _on_death(self, worker: _Worker, why: str) -> int | None:
        """A worker died. Before all were serving: a start-up failure, the server stops (1). After:
        restarted with backoff, unless deaths in the window exceed the limit (a crash loop: 1)."""
        if not worker.alive:
            return None  # its "error" came first; this is the pipe closing after it
        worker.alive, worker.serving = False, False
        self._share_siblings()  # its statistics go with it; the others stop asking it
        if self.serving is None:
            log.error("worker %d %s during start-up: stopping every worker", worker.index, why)
            return 1
        now = time.monotonic()
        self._deaths = [(t, i) for t, i in self._deaths if now - t <= self.settings.worker_restart_window_s]
        self._deaths.append((now, worker.index))
        if len(self._deaths) > self.settings.worker_restart_limit:
            log.error("crash loop: %d worker deaths in %.0f s (INFERSUITE_WORKER_RESTART_LIMIT=%d); the last, worker "
                      "%d, %s: stopping every worker", len(self._deaths), self.settings.worker_restart_window_s,
                      self.settings.worker_restart_limit, worker.index, why)
            return 1
        delay = restart_backoff_s(sum(1 for _, i in self._deaths if i == worker.index))
        log.error("worker %d %s: restarting it in %.1f s; the other workers keep serving", worker.index, why, delay)
        self._update_hold()
        self._pending[worker.index] = asyncio.get_running_loop().call_later(delay, self._restart, worker.index)
        return None

    def _restart(self, index: int) -> None:
        self._pending.pop(index, None)
        old = self.workers[index]
        old.process.join(timeout=5)  # reaped: no zombie left per restart
        old.conn.close()
        self.restarts += 1
        assert self.port is not None
        # It listens only once ready, serving what the others do (unless they are held: then it waits).
        self._spawn(index, self.port, None if self.held else sorted(self.serving or ()))

    async def run(self) -> int:
        """Serves until SIGTERM/SIGINT (exit status 0), a start-up failure or a crash loop (1)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._events.put_nowait, (None, ("signal",)))
        self._start_metrics()
        self._spawn(0, self.settings.port)
        status = await self._watch()
        await self._stop_all()
        return status

    async def _watch(self) -> int:
        while True:
            worker, message = await self._events.get()
            kind = message[0]
            if worker is None:  # a signal
                log.info("signal received: every worker drains for up to %.1f s", self.settings.grace_period_s)
                return 0
            if kind == "bound":
                self._on_bound(worker, message[1], message[2])
            elif kind == "ready":
                self._on_ready(worker, message[1])
            elif kind in ("error", "exit"):
                if kind == "exit":
                    worker.process.join(timeout=1)  # its exit status, for the log
                why = f"failed: {message[1]}" if kind == "error" else f"exited (status {worker.process.exitcode})"
                status = self._on_death(worker, why)
                if status is not None:
                    return status

    async def _stop_all(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        for w in self.workers:
            if w.alive:
                self._send(w, ("stop",))
        deadline = time.monotonic() + self.settings.shutdown_drain_s + self.settings.shutdown_refuse_s + \
            self.settings.grace_period_s + 5.0
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
