"""The scheduler: batching, ragged padding, admission control, cancellation (fake model, no sockets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import numpy as np
import pytest

from infersuite.services.runtime import DeadlineExceeded, InvalidArgument, ResourceExhausted, batching
from infersuite.services.runtime.batch_layout import RaggedDim, padding_fraction
from infersuite.services.runtime.batching import BatchingPolicy, DynamicBatcher
from infersuite.services.runtime.context import request_deadline
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.stats import ModelStats
from tests.fixtures import FakeModel
from tests.virtual_clock import patch_monotonic, run_virtual

SEQ = [RaggedDim("seq", {"tokens": 1}, {"per_token": 1})]


def _outputs(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    tokens = inputs["tokens"].astype(np.float32)  # (B, T), 0 = padding
    return {"per_token": tokens * 2, "total": tokens.sum(1)}


def _request(values) -> dict[str, np.ndarray]:
    return {"tokens": np.array([values], np.int64)}


def _batcher(model: FakeModel, metrics: Metrics | None = None, **policy) -> DynamicBatcher:
    defaults = dict(max_batch_size=8, max_queue_delay_s=0.02, max_queue_size=64)
    return DynamicBatcher(model, BatchingPolicy(**{**defaults, **policy}), SEQ, metrics or Metrics(), ModelStats())


async def test_concurrent_requests_share_one_execution_and_get_their_own_rows() -> None:
    model = FakeModel("m", _outputs, delay_s=0.01)
    batcher = _batcher(model)
    requests = [[1, 2, 3], [4, 5], [6, 7, 8], [9, 9]]
    results = await asyncio.gather(*(batcher.submit(_request(r)) for r in requests))
    assert len(model.calls) == 1 and model.calls[0]["tokens"].shape == (4, 3)  # padded to the longest
    for values, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["per_token"], [np.array(values) * 2])  # cut back to its length
        assert result["total"][0] == sum(values)
    await batcher.close()


async def test_padding_waste_is_capped_so_short_requests_do_not_ride_with_long_ones() -> None:
    model = FakeModel("m", _outputs)
    batcher = _batcher(model, max_padding_fraction=0.5)
    short = [batcher.submit(_request([1])) for _ in range(3)]
    long = batcher.submit(_request(list(range(1, 41))))
    await asyncio.gather(*short, long)
    shapes = sorted(call["tokens"].shape for call in model.calls)
    assert shapes == [(1, 40), (3, 1)]
    assert padding_fraction([1, 1, 1, 1], [(1,), (1,), (1,), (40,)]) > 0.5  # what the cap prevented
    await batcher.close()


async def test_full_queue_is_refused_at_once_with_a_retry_hint() -> None:
    model = FakeModel("m", _outputs, delay_s=0.2)
    metrics = Metrics()
    batcher = _batcher(model, metrics, max_batch_size=1, max_queue_size=2)
    running = [asyncio.ensure_future(batcher.submit(_request([1])))]
    await asyncio.sleep(0.02)  # executing
    running += [asyncio.ensure_future(batcher.submit(_request([1]))) for _ in range(2)]
    await asyncio.sleep(0.02)  # two queued: the queue is full
    refused = batcher.submit(_request([1]))
    with pytest.raises(ResourceExhausted, match="queue is full") as err:
        refused.send(None)  # at once: raised on the coroutine's first step, before it ever suspends
    assert not running[0].done()  # while the executing request still runs
    assert err.value.trailing_metadata[0][0] == "grpc-retry-pushback-ms" and int(err.value.trailing_metadata[0][1]) > 0
    await asyncio.gather(*running)
    assert metrics.rejected.labels("m", "queue_full")._value.get() == 1
    await batcher.close()


async def test_a_deadline_that_cannot_be_met_is_refused_before_compute() -> None:
    model = FakeModel("m", _outputs, delay_s=0.1)
    batcher = _batcher(model, max_batch_size=1)
    await batcher.submit(_request([1]))  # teaches the scheduler the compute time (~100 ms)
    busy = [asyncio.ensure_future(batcher.submit(_request([1]))) for _ in range(3)]
    await asyncio.sleep(0.01)
    token = request_deadline.set(time.monotonic() + 0.05)
    try:
        with pytest.raises(DeadlineExceeded, match="deadline cannot be met"):
            await batcher.submit(_request([7]))
    finally:
        request_deadline.reset(token)
    await asyncio.gather(*busy)
    assert all(call["tokens"][0, 0] != 7 for call in model.calls)  # never computed
    await batcher.close()


async def test_cancelled_and_expired_requests_leave_the_queue_uncomputed() -> None:
    model = FakeModel("m", _outputs, delay_s=0.1)
    metrics = Metrics()
    batcher = _batcher(model, metrics, max_batch_size=1)
    first = asyncio.ensure_future(batcher.submit(_request([1])))
    await asyncio.sleep(0.01)
    cancelled = asyncio.ensure_future(batcher.submit(_request([5])))
    token = request_deadline.set(time.monotonic() + 0.03)  # expires while queued behind `first`
    expiring = asyncio.ensure_future(batcher.submit(_request([6])))
    request_deadline.reset(token)
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await first
    with pytest.raises(DeadlineExceeded, match="not computed"):
        await expiring
    assert [int(c["tokens"][0, 0]) for c in model.calls] == [1]
    assert metrics.rejected.labels("m", "cancelled")._value.get() == 1
    assert metrics.rejected.labels("m", "expired")._value.get() == 1
    await batcher.close()


async def test_a_failed_batch_fails_every_request_in_it() -> None:
    def broken(inputs):
        raise InvalidArgument("model rejected the inputs: bad tensor")

    batcher = _batcher(FakeModel("m", broken))
    results = await asyncio.gather(*(batcher.submit(_request([i + 1])) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, InvalidArgument) for r in results)
    await batcher.close()


async def test_batching_off_runs_one_request_per_execution() -> None:
    model = FakeModel("m", _outputs)
    batcher = _batcher(model, combine=False)
    await asyncio.gather(*(batcher.submit(_request([i + 1, 1])) for i in range(4)))
    assert [c["tokens"].shape for c in model.calls] == [(1, 2)] * 4
    await batcher.close()


async def test_more_rows_than_max_batch_size_is_invalid() -> None:
    batcher = _batcher(FakeModel("m", _outputs), max_batch_size=2)
    with pytest.raises(InvalidArgument, match="3 rows exceed the model's max_batch_size 2"):
        await batcher.submit({"tokens": np.ones((3, 2), np.int64)})
    await batcher.close()


def test_a_lone_request_at_low_load_does_not_wait_for_company(monkeypatch) -> None:
    """On a fake clock (tests/virtual_clock.py): arrivals 0.6 s apart, so no company is expected within
    the 0.5 s queue delay, are each answered at the virtual instant they arrive. Waiting for company
    would show as exactly 0.5 s, however slow or loaded the machine."""
    patch_monotonic(monkeypatch, batching)

    async def lone_arrivals() -> tuple[list[float], list[tuple[int, ...]]]:
        loop, model = asyncio.get_running_loop(), FakeModel("m", _outputs)
        batcher = _batcher(model, max_queue_delay_s=0.5)
        waits = []
        for _ in range(3):
            sent = loop.time()
            await batcher.submit(_request([1, 2]))
            waits.append(loop.time() - sent)
            await asyncio.sleep(0.6)
        await batcher.close()
        return waits, [call["tokens"].shape for call in model.calls]

    waits, shapes = run_virtual(lone_arrivals())
    assert waits == [0.0, 0.0, 0.0]
    assert shapes == [(1, 2)] * 3  # one execution each, none merged or repeated


ROWS_META = {"batching": {
    "ragged_dims": {"seq": {"inputs": {"tokens": 1}, "outputs": {"per_row": 1}}},
    "rows": {"inputs": ["row_values", "row_user"], "outputs": ["per_row"], "group_index": {"row_user": "tokens"}}}}


def _rows_outputs(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each row: its value times its user's tokens (so a wrong user index shows); per user: token sum."""
    tokens = inputs["tokens"].astype(np.float32)  # (U, T)
    per_row = inputs["row_values"][:, None].astype(np.float32) * tokens[inputs["row_user"]]  # (R, T)
    return {"per_row": per_row, "user_total": tokens.sum(1)}


async def test_rows_layout_concatenates_rows_and_offsets_user_indices() -> None:
    """Requests with several users each: rows are concatenated, their user indices shifted by the users
    of the requests before, and every request gets back exactly its rows and users, cut to its length."""
    from infersuite.services.runtime.batch_layout import BatchLayout

    model = FakeModel("m", _rows_outputs, ROWS_META)
    layout = BatchLayout.from_meta(ROWS_META)
    batcher = DynamicBatcher(model, BatchingPolicy(max_batch_size=64, max_queue_delay_s=0.02), layout, Metrics(),
                             ModelStats())
    requests = [
        {"tokens": np.array([[1, 2, 0], [3, 4, 5]], np.int64), "row_values": np.array([10, 20, 30], np.int64),
         "row_user": np.array([1, 0, 1], np.int64)},
        {"tokens": np.array([[7]], np.int64), "row_values": np.array([2], np.int64),
         "row_user": np.array([0], np.int64)},
    ]
    alone = [_rows_outputs(r) for r in requests]
    results = await asyncio.gather(*(batcher.submit(r) for r in requests))
    assert len(model.calls) == 1 and model.calls[0]["row_user"].tolist() == [1, 0, 1, 2]  # offset by 2 users
    for want, got in zip(alone, results, strict=True):
        np.testing.assert_array_equal(got["per_row"], want["per_row"])
        np.testing.assert_array_equal(got["user_total"], want["user_total"])
    with pytest.raises(InvalidArgument, match=r"row_user.*valid: 0\.\.0"):
        await batcher.submit({**requests[1], "row_user": np.array([1], np.int64)})
    await batcher.close()


async def test_an_execution_sees_its_own_requests_latest_deadline_not_the_one_its_task_inherited() -> None:
    """A backend that bounds its call by the request deadline (Triton) reads it from the execution's
    context. The execution after A's is scheduled from A's task, so it inherited A's deadline: B's
    execution must see B's own (the Triton backend answered DEADLINE_EXCEEDED for healthy requests)."""
    release = asyncio.Event()
    seen: list[float | None] = []

    class Recording(FakeModel):
        async def infer(self, inputs, outputs=None):
            seen.append(request_deadline.get())
            await release.wait()
            return await super().infer(inputs, outputs)

    batcher = _batcher(Recording("m", _outputs), max_batch_size=1)
    now = time.monotonic()

    async def send(deadline: float | None, values: list[int]) -> dict[str, np.ndarray]:
        request_deadline.set(deadline)  # as the handler wrapper does, in the request's own context
        return await batcher.submit(_request(values))

    first = asyncio.ensure_future(send(now + 30.0, [1]))
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(send(now + 600.0, [2])), asyncio.ensure_future(send(None, [3]))]
    for _ in range(5):
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *queued)
    assert seen == [now + 30.0, now + 600.0, None]
    await batcher.close()
