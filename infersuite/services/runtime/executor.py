"""The one place CPU-bound request work runs: a bounded thread pool the runtime gives every service.

The event loop only routes. Decoding (WAV, PNG/JPEG, range-coded latents), resampling and other
work that grows with the request runs here, so health checks and small requests of every service
in the process keep their latency while a large request is being decoded. The heavy parts
(soundfile, scipy's polyphase filter, numpy, Pillow, constriction) spend their time in native code,
so threads overlap with the loop. Bounded twice: `workers` jobs run at once (the rest of the CPU
stays for model execution), and at most `max_queued` wait; beyond that a request is refused with
RESOURCE_EXHAUSTED at once instead of queueing without bound.

Metrics: `infersuite_executor_busy` (jobs running), `infersuite_executor_queued` (jobs waiting),
`infersuite_executor_workers` (the pool size), on the server's registry.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from prometheus_client import Gauge

from infersuite.services.runtime.errors import ResourceExhausted
from infersuite.services.runtime.metrics import Metrics

R = TypeVar("R")


class _Job:
    """One call's state, shared by the loop (which may give up on it) and the worker (which may start it)."""

    __slots__ = ("abandoned", "started")

    def __init__(self) -> None:
        self.started = self.abandoned = False


class CpuExecutor:
    def __init__(self, workers: int, max_queued: int, metrics: Metrics):
        self.workers, self.max_queued = workers, max_queued
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="infersuite-cpu")
        self._lock = threading.Lock()
        self._pending = 0  # jobs queued or running (touched on the loop only)
        self.running = 0  # jobs running now (the busy gauge's value)
        registry = metrics.registry
        self.busy = Gauge("infersuite_executor_busy", "CPU-bound request jobs (decoding, resampling, entropy "
                          "decoding) running now in the runtime's executor.", registry=registry)
        self.queued = Gauge("infersuite_executor_queued", "CPU-bound request jobs waiting for a worker of the "
                            "runtime's executor.", registry=registry)
        Gauge("infersuite_executor_workers", "Threads of the runtime's executor for CPU-bound request work.",
              registry=registry).set(workers)

    async def run(self, function: Callable[..., R], *args: Any) -> R:
        """Runs `function(*args)` on a worker; the caller awaits without blocking the event loop."""
        if self._pending >= self.workers + self.max_queued:
            raise ResourceExhausted(f"the server's decoding capacity is busy ({self._pending} jobs running or "
                                    "waiting); retry later", retry_after_s=0.1)
        job = _Job()
        self._pending += 1
        self.queued.inc()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, job, function, args)
        finally:
            self._pending -= 1
            with self._lock:
                if not job.started:  # cancelled while waiting: it will never run
                    job.abandoned = True
                    self.queued.dec()

    def _call(self, job: _Job, function: Callable[..., R], args: tuple[Any, ...]) -> R:
        with self._lock:
            if job.abandoned:
                raise asyncio.CancelledError
            job.started = True
            self.running += 1
            self.queued.dec()
        self.busy.inc()
        try:
            return function(*args)
        finally:
            self.busy.dec()
            with self._lock:
                self.running -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
