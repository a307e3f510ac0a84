"""The runtime's CPU executor: bounded (running + waiting jobs), refuses at once beyond that,
and its gauges say what runs and what waits, also after a caller gives up on a waiting job."""

from __future__ import annotations

import asyncio
import threading

import pytest

from infersuite.services.runtime import ResourceExhausted
from infersuite.services.runtime.executor import CpuExecutor
from infersuite.services.runtime.metrics import Metrics


def _gauge(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


async def test_jobs_run_off_the_loop_bounded_and_counted() -> None:
    metrics = Metrics()
    executor = CpuExecutor(workers=1, max_queued=1, metrics=metrics)
    release = threading.Event()
    loop_thread = threading.get_ident()
    try:
        running = asyncio.ensure_future(executor.run(lambda: (release.wait(5), threading.get_ident())[1]))
        waiting = asyncio.ensure_future(executor.run(lambda: 42))
        await asyncio.sleep(0.05)
        assert (executor.running, _gauge(metrics, "infersuite_executor_busy"),
                _gauge(metrics, "infersuite_executor_queued")) == (1, 1.0, 1.0)
        with pytest.raises(ResourceExhausted, match="2 jobs running or waiting"):
            await executor.run(lambda: 0)  # a third: refused at once, never queued
        release.set()
        assert await running != loop_thread and await waiting == 42
        assert (_gauge(metrics, "infersuite_executor_busy"), _gauge(metrics, "infersuite_executor_queued"),
                _gauge(metrics, "infersuite_executor_workers")) == (0.0, 0.0, 1.0)
    finally:
        release.set()
        executor.shutdown()


async def test_a_waiting_job_given_up_never_runs_and_leaves_no_count() -> None:
    metrics = Metrics()
    executor = CpuExecutor(workers=1, max_queued=4, metrics=metrics)
    release, ran = threading.Event(), []
    try:
        running = asyncio.ensure_future(executor.run(release.wait, 5))
        waiting = asyncio.ensure_future(executor.run(ran.append, "should not run"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        release.set()
        await running
        await asyncio.sleep(0.05)
        assert ran == [] and _gauge(metrics, "infersuite_executor_queued") == 0.0
        assert await executor.run(lambda: "still serving") == "still serving"
    finally:
        release.set()
        executor.shutdown()


async def test_errors_of_a_job_reach_the_caller_unchanged() -> None:
    executor = CpuExecutor(workers=1, max_queued=0, metrics=Metrics())
    try:
        with pytest.raises(ValueError, match="bad wav"):
            await executor.run(lambda: (_ for _ in ()).throw(ValueError("bad wav")))
    finally:
        executor.shutdown()
