"""A cheap request to an idle model runs on the event loop after one yield (no executor hand-off);
requests received together queue, combine and run as one batch; while not combining, cheap batches
run on the loop too; a busy model queues; expensive ones and INFERSUITE_INLINE_MAX_MS=0 keep the
executor path, with the same bookkeeping either way."""

import asyncio
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infersuite.services.runtime import DeadlineExceeded, RuntimeSettings
from infersuite.services.runtime.backends.onnxruntime import OnnxRuntimeBackend
from infersuite.services.runtime.batching import BatchingPolicy, DynamicBatcher
from infersuite.services.runtime.context import request_deadline
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager
from infersuite.services.runtime.repository import ModelRepository
from infersuite.services.runtime.stats import ModelStats
from tests.fixtures import FakeModel
from tests.unit.runtime.test_requested_outputs import DIN, SHIPPED, _feeds


class _InlineModel(FakeModel):
    """A fake backend with both paths; counts which one ran."""

    def __init__(self) -> None:
        super().__init__("m", lambda inputs: {"y": inputs["x"] + 1})
        self.inline_calls = 0

    def infer_now(self, inputs: Mapping[str, np.ndarray],
                  outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        self.inline_calls += 1
        return self._outputs(inputs)


def _batcher(model: FakeModel, inline_max_s: float, combine: bool = False) -> tuple[DynamicBatcher, ModelStats]:
    stats = ModelStats()
    policy = BatchingPolicy(max_batch_size=8, max_queue_delay_s=0.0, inline_max_s=inline_max_s, combine=combine)
    return DynamicBatcher(model, policy, [], Metrics(), stats), stats


@pytest.mark.parametrize("inline_max_s, inline_expected", [(1.0, 3), (0.0, 0), (1e-12, 0)])
def test_cheap_requests_to_an_idle_model_run_inline_and_others_on_the_executor(
        inline_max_s: float, inline_expected: int) -> None:
    async def scenario() -> None:
        model = _InlineModel()
        batcher, stats = _batcher(model, inline_max_s)
        x = np.zeros((1, 2), np.float32)
        for _ in range(4):  # the first one measures the model's cost on the executor path
            np.testing.assert_array_equal((await batcher.submit({"x": x}))["y"], x + 1)
        assert model.inline_calls == inline_expected and len(model.calls) == 4 - inline_expected
        assert stats.execution_count == 4 and stats.inference_count == 4
        await batcher.close()

    asyncio.run(scenario())


def test_a_lone_request_runs_inline_and_a_burst_queues_and_combines() -> None:
    async def scenario() -> None:
        model = _InlineModel()
        batcher, stats = _batcher(model, 1.0, combine=True)
        x = np.zeros((1, 2), np.float32)
        await batcher.submit({"x": x})  # measures the cost on the executor path
        await batcher.submit({"x": x})  # alone: inline
        assert model.inline_calls == 1 and len(model.calls) == 1
        answers = await asyncio.gather(*(batcher.submit({"x": x + i}) for i in range(4)))  # received together
        for i, answer in enumerate(answers):
            np.testing.assert_array_equal(answer["y"], x + i + 1)
        # Each yielded first, saw the others and queued; the queue ran as one batch (on the executor: combining).
        assert model.inline_calls == 1 and len(model.calls) == 2 and stats.execution_count == 3
        await batcher.close()

    asyncio.run(scenario())


def test_a_busy_model_queues_instead_of_running_inline() -> None:
    async def scenario() -> None:
        model = _InlineModel()
        model.delay_s = 0.05
        batcher, _ = _batcher(model, 1.0)
        x = np.zeros((1, 2), np.float32)
        await batcher.submit({"x": x})
        running = asyncio.ensure_future(batcher.submit({"x": x}))  # inline: done after its one yield
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert running.done() and model.inline_calls == 1
        model.inline_calls = 0
        batcher._per_cell_ewma_s = None  # unknown cost again: the executor path
        slow = asyncio.ensure_future(batcher.submit({"x": x}))
        await asyncio.sleep(0.01)
        batcher._per_cell_ewma_s = 0.0
        queued = asyncio.ensure_future(batcher.submit({"x": x}))  # the model is busy with `slow`...
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not queued.done() and len(batcher._queue) == 1 and model.inline_calls == 0  # ...so it queues
        await slow
        await queued  # then runs when the model is free (on the loop: a batch of one)
        assert model.inline_calls == 1
        await batcher.close()

    asyncio.run(scenario())


def test_an_expired_deadline_is_not_computed_inline() -> None:
    async def scenario() -> None:
        model = _InlineModel()
        batcher, _ = _batcher(model, 1.0)
        x = np.zeros((1, 2), np.float32)
        await batcher.submit({"x": x})
        batcher._per_request_ewma_s = None  # no admission estimate: the expiry itself must refuse it
        request_deadline.set(0.0)
        with pytest.raises(DeadlineExceeded):
            await batcher.submit({"x": x})
        assert model.inline_calls == 0
        await batcher.close()

    asyncio.run(scenario())


# 1,000 ms: inline whatever the machine's speed (at 2 ms a loaded CI machine once measured the DIN run slower and
# sent it to the executor: the outcome must not hang on timing); 0 ms: never inline.
@pytest.mark.parametrize("inline_max_ms, batching, on_loop", [(1000.0, False, True), (0.0, False, False),
                                                             (1000.0, True, True)])
def test_onnxruntime_runs_on_the_loop_thread_only_when_inline(inline_max_ms: float, batching: bool,
                                                              on_loop: bool) -> None:
    async def scenario() -> None:
        settings = RuntimeSettings(model_repository=SHIPPED, intra_op_threads=1, inline_max_ms=inline_max_ms,
                                   dynamic_batching=batching)
        manager = ModelManager(ModelRepository(Path(SHIPPED)), OnnxRuntimeBackend(settings), Metrics(), settings)
        await manager.load([DIN])
        model: Any = manager.get(DIN)
        threads: list[int] = []
        session = model._session

        class Spy:
            def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
                threads.append(threading.get_ident())
                return session.run(names, feeds)

        model._session = Spy()
        cpu_before = model.compute_cpu_s
        feeds = _feeds(5, 4)
        answers = [await manager.infer(DIN, feeds, ["click_probability"]) for _ in range(3)]
        loop_thread = threading.get_ident()
        assert threads[0] != loop_thread  # the first execution measures the cost on the executor
        assert all((t == loop_thread) == on_loop for t in threads[1:])
        assert model.compute_cpu_s > cpu_before  # infersuite_model_compute_cpu_seconds counts both paths
        for answer in answers[1:]:
            np.testing.assert_array_equal(answer["click_probability"], answers[0]["click_probability"])
        await manager.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("queue_time_s, queued_on_loop", [(0.0, True), (0.05, False)])
def test_under_a_queue_time_bound_queued_requests_run_on_the_executor(queue_time_s: float,
                                                                       queued_on_loop: bool) -> None:
    """Executions back to back on the loop would slow grpc.aio's take-up of new calls; with a bound
    (latency first) a queued request runs on the executor, a lone one to an idle model still inline."""
    async def scenario() -> None:
        model = _InlineModel()
        model.delay_s = 0.02
        stats = ModelStats()
        policy = BatchingPolicy(max_batch_size=8, max_queue_delay_s=0.0, inline_max_s=1.0, combine=False,
                                max_queue_time_s=queue_time_s)
        batcher = DynamicBatcher(model, policy, [], Metrics(), stats)
        x = np.zeros((1, 2), np.float32)
        await batcher.submit({"x": x})  # measures the cost on the executor path
        await batcher.submit({"x": x})  # alone, idle model: inline either way
        assert model.inline_calls == 1
        batcher._per_cell_ewma_s = None  # unknown cost: this one takes the executor and keeps the model busy
        slow = asyncio.ensure_future(batcher.submit({"x": x}))
        await asyncio.sleep(0.005)
        batcher._per_cell_ewma_s = 0.0
        queued = [asyncio.ensure_future(batcher.submit({"x": x + i})) for i in range(2)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(batcher._queue) == 2
        await slow
        for i, answer in enumerate(await asyncio.gather(*queued)):
            np.testing.assert_array_equal(answer["y"], x + i + 1)
        assert model.inline_calls == (3 if queued_on_loop else 1)
        assert stats.execution_count == 5 and stats.inference_count == 5
        await batcher.close()

    asyncio.run(scenario())
