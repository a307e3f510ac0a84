"""Each model's queue is bounded in time (max_queue_time_s), not only by count: admission refuses a
request when the queued work ahead of it exceeds the bound, and a request that still waits past it
leaves the queue uncomputed; both answer RESOURCE_EXHAUSTED with a retry hint."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from infersuite.services.runtime import ResourceExhausted
from infersuite.services.runtime.batching import BatchingPolicy, DynamicBatcher
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.stats import ModelStats
from tests.fixtures import FakeModel


def _batcher(model: FakeModel, metrics: Metrics, bound_s: float) -> DynamicBatcher:
    policy = BatchingPolicy(max_batch_size=0, max_queue_delay_s=0.0, max_queue_size=1000, combine=False,
                            max_queue_time_s=bound_s)
    return DynamicBatcher(model, policy, [], metrics, ModelStats())


def _rejected(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("infersuite_model_rejected_requests_total",
                                             {"model": "m", "reason": reason}) or 0.0


async def test_admission_refuses_work_beyond_the_bound_and_accepted_requests_wait_within_it() -> None:
    model = FakeModel("m", lambda inputs: {"y": inputs["x"] * 2}, delay_s=0.02)
    metrics = Metrics()
    batcher = _batcher(model, metrics, bound_s=0.05)
    x = np.ones((1, 2), np.float32)
    await batcher.submit({"x": x})  # measures the cost: ~20 ms per request

    async def timed() -> float | ResourceExhausted:
        start = asyncio.get_running_loop().time()
        try:
            np.testing.assert_array_equal((await batcher.submit({"x": x}))["y"], x * 2)
        except ResourceExhausted as exc:
            return exc
        return asyncio.get_running_loop().time() - start

    outcomes = await asyncio.gather(*(timed() for _ in range(20)))
    refused = [o for o in outcomes if isinstance(o, ResourceExhausted)]
    waits = [o for o in outcomes if isinstance(o, float)]
    # One runs, about three fit the 50 ms of queue behind it; 20 requests of 20 ms would take 400 ms.
    assert 2 <= len(waits) <= 6 and len(refused) == 20 - len(waits)
    assert max(waits) < 0.05 + 3 * 0.02  # queued within the bound, plus its own run and the one ahead
    assert all(e.retry_after_s and e.retry_after_s > 0 and "queue-time bound of 50 ms" in str(e) for e in refused)
    assert _rejected(metrics, "queue_time") == len(refused)
    await batcher.close()


async def test_a_request_that_waits_past_the_bound_leaves_the_queue_uncomputed() -> None:
    model = FakeModel("m", lambda inputs: {"y": inputs["x"]}, delay_s=0.0)
    metrics = Metrics()
    batcher = _batcher(model, metrics, bound_s=0.03)
    x = np.ones((1, 2), np.float32)
    await batcher.submit({"x": x})  # measured cheap: admission lets a queue form
    model.delay_s = 0.1  # then the model slows down
    first = asyncio.ensure_future(batcher.submit({"x": x}))
    await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(batcher.submit({"x": x}))
    await first
    try:
        await waiting
        raise AssertionError("a request that waited 90 ms against a 30 ms bound was computed")
    except ResourceExhausted as exc:
        assert "over its queue-time bound of 30 ms; not computed" in str(exc) and exc.retry_after_s == 0.03
    assert len(model.calls) == 2 and _rejected(metrics, "queue_time") == 1
    await batcher.close()


async def test_no_bound_keeps_the_count_bound_only() -> None:
    model = FakeModel("m", lambda inputs: {"y": inputs["x"]}, delay_s=0.01)
    batcher = _batcher(model, Metrics(), bound_s=0.0)
    x = np.ones((1, 2), np.float32)
    await batcher.submit({"x": x})
    results = await asyncio.gather(*(batcher.submit({"x": x}) for _ in range(15)))
    assert len(results) == 15  # 150 ms of work queued, all of it served
    await batcher.close()


async def test_a_loop_running_behind_refuses_new_work_until_it_catches_up() -> None:
    model = FakeModel("m", lambda inputs: {"y": inputs["x"]})
    metrics = Metrics()
    batcher = _batcher(model, metrics, bound_s=0.02)
    x = np.ones((1, 2), np.float32)
    await batcher.submit({"x": x})
    await asyncio.sleep(0.02)  # the monitor ticks on time: no lag
    assert batcher._loop_lag is not None and batcher._loop_lag.lag_s() < 0.01
    time.sleep(0.05)  # the loop is blocked (a backlog of received requests would do the same)
    try:
        await batcher.submit({"x": x})
        raise AssertionError("accepted while the loop ran 50 ms behind a 20 ms bound")
    except ResourceExhausted as exc:
        assert "ms behind on received requests" in str(exc) and exc.retry_after_s and exc.retry_after_s >= 0.04
    await asyncio.sleep(0.02)  # caught up
    np.testing.assert_array_equal((await batcher.submit({"x": x}))["y"], x)
    assert _rejected(metrics, "queue_time") == 1
    await batcher.close()


def test_no_bound_starts_no_loop_monitor() -> None:
    async def scenario() -> None:
        batcher = _batcher(FakeModel("m", lambda inputs: inputs), Metrics(), bound_s=0.0)
        assert batcher._loop_lag is None
        await batcher.close()

    asyncio.run(scenario())
