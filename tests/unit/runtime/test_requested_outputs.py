"""Only the outputs a request reads are computed: onnxruntime is asked for them, the answers are unchanged."""

import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from infersuite.services.runtime import RuntimeSettings
from infersuite.services.runtime.backends.onnxruntime import OnnxRuntimeBackend
from infersuite.services.runtime.batching import BatchingPolicy, DynamicBatcher
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager
from infersuite.services.runtime.repository import ModelRepository
from infersuite.services.runtime.stats import ModelStats
from tests.fixtures import FakeModel

SHIPPED = Path(__file__).resolve().parents[3] / "shipped_models"
DIN = "din-fp32"


class _SessionSpy:
    """Wraps an onnxruntime session and records the output names of every run."""

    def __init__(self, session: Any):
        self._session, self.asked = session, []

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.asked.append(list(names))
        return self._session.run(names, feeds)


def _feeds(history: int, candidates: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"history_items": rng.integers(1, 50, (1, history)), "history_categories": rng.integers(1, 10, (1, history)),
            "history_mask": np.ones((1, history), np.float32), "candidate_items": rng.integers(1, 50, candidates),
            "candidate_categories": rng.integers(1, 10, candidates), "candidate_user": np.zeros(candidates, np.int64)}


def test_only_the_asked_outputs_reach_the_session_and_answers_are_unchanged() -> None:
    async def scenario() -> None:
        settings = RuntimeSettings(model_repository=SHIPPED, intra_op_threads=1)
        manager = ModelManager(ModelRepository(SHIPPED), OnnxRuntimeBackend(settings), Metrics(), settings)
        await manager.load([DIN])
        model: Any = manager.get(DIN)
        spy = model._session = _SessionSpy(model._session)
        feeds = _feeds(7, 5)
        every = await manager.infer(DIN, feeds)
        asked = await manager.infer(DIN, feeds, ["click_probability"])
        assert spy.asked == [["click_probability", "activation_weights"], ["click_probability"]]
        assert set(every) == {"click_probability", "activation_weights"} and set(asked) == {"click_probability"}
        np.testing.assert_array_equal(asked["click_probability"], every["click_probability"])
        await manager.close()

    asyncio.run(scenario())


def test_a_batch_computes_the_union_of_what_its_requests_ask() -> None:
    async def scenario() -> None:
        model = FakeModel("m", lambda inputs: {"a": inputs["x"], "b": inputs["x"] * 2, "c": inputs["x"] * 3})
        policy = BatchingPolicy(max_batch_size=8, max_queue_delay_s=0.0)
        batcher = DynamicBatcher(model, policy, [], Metrics(), ModelStats())
        x = np.ones((1, 2), np.float32)
        # Submitted in one loop iteration: they form one batch.
        answers = await asyncio.gather(batcher.submit({"x": x}, ["b"]), batcher.submit({"x": x}, ["a", "b"]))
        assert model.asked_outputs == [["a", "b"]]
        np.testing.assert_array_equal(answers[0]["b"], np.full((1, 2), 2.0))
        await asyncio.gather(batcher.submit({"x": x}, ["c"]), batcher.submit({"x": x}))
        assert model.asked_outputs[-1] is None  # one request reads every output: all are computed
        await batcher.close()

    asyncio.run(scenario())
