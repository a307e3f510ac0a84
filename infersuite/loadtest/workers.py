"""Multi-process load generation: W worker processes, each with its own event loop, channels
and request pool, run the same step from one shared start instant; their histograms merge.

`workers=0` runs the engine in this process (no fork, no pickling), for tests and tiny runs.
Workers live for the whole run (a sweep reuses them), so connection set-up and pool building
happen once. Messages on each pipe: ("ready"|"error"|"progress"|"result", payload).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from infersuite.loadtest.engine import LoadEngine, StepSpec, Target
from infersuite.loadtest.generators import GeneratorError, create
from infersuite.loadtest.stats import StepStats

START_MARGIN_S = 0.3  # workers get the step this long before it starts, so they all start on time


@dataclass(frozen=True)
class GeneratorSpec:
    """Everything a worker needs to rebuild the generator (must pickle)."""

    service: str
    params: tuple[tuple[str, str], ...] = ()
    pool_size: int = 1024
    seed: int = 0


class WorkerError(Exception):
    """A worker could not start (bad target, missing stubs) or died during a step."""


def _worker_main(conn: Connection, target: Target, generator: GeneratorSpec, worker: int, workers: int) -> None:
    asyncio.run(_serve_steps(conn, target, generator, worker, workers))


async def _serve_steps(conn: Connection, target: Target, spec: GeneratorSpec, worker: int, workers: int) -> None:
    # Every failure before "ready" goes back to the parent as ("error", why): a worker that dies
    # silently would leave the parent waiting for an answer that never comes.
    try:
        engine = LoadEngine(target, create(spec.service, dict(spec.params)), worker=worker, workers=workers,
                            seed=spec.seed, pool_size=spec.pool_size)
    except GeneratorError as err:
        conn.send(("error", str(err)))
        return
    try:
        await engine.start()
    except GeneratorError as err:
        conn.send(("error", str(err)))
        await engine.close()
        return
    except Exception as err:  # a bad target, unreadable certificates, ...: say why instead of dying
        conn.send(("error", f"{spec.service}: the load worker could not start: {type(err).__name__}: {err}"))
        await engine.close()
        return
    conn.send(("ready", engine.pool.description if engine.pool else {}))
    loop = asyncio.get_running_loop()
    try:
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message is None:
                break
            step, start_at = message
            stats = await engine.run_step(step, start_at, lambda done: conn.send(("progress", done)))
            conn.send(("result", stats.to_dict()))
    finally:
        await engine.close()


class WorkerPool:
    """`with WorkerPool(target, generator, workers=4) as pool: stats = pool.run_step(step)`."""

    def __init__(self, target: Target, generator: GeneratorSpec, workers: int = 1):
        self.target, self.generator, self.workers = target, generator, workers
        self.description: dict[str, Any] = {}
        self._processes: list[Any] = []
        self._pipes: list[Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: LoadEngine | None = None

    def __enter__(self) -> WorkerPool:
        if self.workers == 0:
            self._start_inline()
        else:
            self._start_processes()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_inline(self) -> None:
        self._loop = asyncio.new_event_loop()
        spec = self.generator
        self._engine = LoadEngine(self.target, create(spec.service, dict(spec.params)), seed=spec.seed,
                                  pool_size=spec.pool_size)
        try:
            self._loop.run_until_complete(self._engine.start())
        except GeneratorError:
            self.close()
            raise
        assert self._engine.pool is not None
        self.description = self._engine.pool.description

    def _start_processes(self) -> None:
        context = mp.get_context("spawn")  # grpc's threads do not survive fork
        for worker in range(self.workers):
            parent, child = context.Pipe()
            process = context.Process(target=_worker_main, daemon=True, name=f"loadtest-worker-{worker}",
                                      args=(child, self.target, self.generator, worker, self.workers))
            process.start()
            child.close()  # the worker holds the only other end: its exit reads as EOF here at once
            self._processes.append(process)
            self._pipes.append(parent)
        for pipe in self._pipes:
            kind, payload = self._receive(pipe, timeout=120)
            if kind == "error":
                self.close()
                raise GeneratorError(payload)
            self.description = payload

    def _receive(self, pipe: Connection, timeout: float) -> tuple[str, Any]:
        if not pipe.poll(timeout):
            raise WorkerError(f"a load worker did not answer within {timeout:.0f} s")
        try:
            return pipe.recv()  # type: ignore[no-any-return]
        except EOFError:
            raise WorkerError("a load worker died (see its error above)") from None

    def run_step(self, step: StepSpec, progress: Callable[[int], None] | None = None,
                 at_window_start: Callable[[], None] | None = None) -> StepStats:
        """Runs one step on every worker; returns the merged statistics. `at_window_start` runs
        (on a timer thread) when the warm-up ends, e.g. to scrape the server's metrics."""
        start_at = time.monotonic() + START_MARGIN_S
        if at_window_start is not None:
            timer = threading.Timer(start_at + step.warmup_s - time.monotonic(), at_window_start)
            timer.daemon = True
            timer.start()
        if self._engine is not None:
            assert self._loop is not None
            return self._loop.run_until_complete(self._engine.run_step(step, start_at, progress))
        for pipe in self._pipes:
            pipe.send((step, start_at))
        return self._collect(step, progress)

    def _collect(self, step: StepSpec, progress: Callable[[int], None] | None) -> StepStats:
        done = [0] * len(self._pipes)
        results: dict[int, StepStats] = {}
        deadline = time.monotonic() + START_MARGIN_S + step.warmup_s + step.duration_s + step.deadline_s + 60
        while len(results) < len(self._pipes):
            ready = wait([p for i, p in enumerate(self._pipes) if i not in results], timeout=1.0)
            if time.monotonic() > deadline:
                raise WorkerError("load workers did not finish the step in time")
            for pipe in ready:
                index = self._pipes.index(pipe)  # type: ignore[arg-type]
                kind, payload = self._receive(pipe, timeout=1)  # type: ignore[arg-type]
                if kind == "progress":
                    done[index] = payload
                    if progress:
                        progress(sum(done))
                elif kind == "result":
                    results[index] = StepStats.from_dict(payload)
        merged = results[0]
        for index in range(1, len(results)):
            merged.merge(results[index])
        return merged

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(BrokenPipeError, OSError):
                pipe.send(None)
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        self._processes, self._pipes = [], []
        if self._loop is not None:
            if self._engine is not None:
                self._loop.run_until_complete(self._engine.close())
            self._loop.close()
            self._loop, self._engine = None, None
