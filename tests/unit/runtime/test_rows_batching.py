"""Flattened (rows-layout) batching of the real DIN graph: the scores of requests combined into
one execution equal the scores of each request run alone, for every ragged pattern (empty
history, N=1, N=max, long and short histories side by side). Real onnxruntime, no sockets."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from infersuite.services.ctr.handler import CtrHandler, ScoreQuery
from infersuite.services.ctr.settings import CtrSettings
from infersuite.services.runtime import InvalidArgument, Runtime, RuntimeSettings
from infersuite.services.runtime.backends.onnxruntime import OnnxRuntimeBackend
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager
from infersuite.services.runtime.repository import ModelRepository

MAX_CANDIDATES = 500


def _queries(n_items: int, n_categories: int, seed: int = 0) -> list[ScoreQuery]:
    rng = np.random.default_rng(seed)
    shapes = [(0, 1), (0, 7), (1, 1), (20, 1), (1, MAX_CANDIDATES), (20, MAX_CANDIDATES), (3, 5), (17, 2),
              (20, 40), (5, 33), (0, MAX_CANDIDATES), (11, 1)]
    queries = []
    for history, candidates in shapes:
        queries.append(ScoreQuery(
            history_items=rng.integers(1, n_items + 1, history),
            history_categories=rng.integers(1, n_categories + 1, history),
            candidate_items=rng.integers(1, n_items + 1, candidates),
            candidate_categories=rng.integers(1, n_categories + 1, candidates), explain=True))
    return queries


async def _handler(repository, batching: bool) -> tuple[CtrHandler, ModelManager]:
    settings = RuntimeSettings(model_repository=repository, dynamic_batching=batching, warmup_runs=0)
    metrics = Metrics()
    manager = ModelManager(ModelRepository(repository), OnnxRuntimeBackend(settings), metrics, settings)
    await manager.load(["din-fp32"])
    runtime = Runtime(settings, manager, metrics)
    handler = CtrHandler(CtrSettings(model="din-fp32", max_candidates=MAX_CANDIDATES), runtime)
    runtime.initialize("ctr", ["din-fp32"])  # the model set the handler serves (the server does this on load)
    return handler, manager


async def test_combined_requests_score_exactly_as_alone(tiny_ctr) -> None:
    queries = _queries(tiny_ctr.n_items, tiny_ctr.n_categories)
    alone, manager = await _handler(tiny_ctr.repository, batching=False)
    expected = [await alone.score(q) for q in queries]
    await manager.close()

    combined, manager = await _handler(tiny_ctr.repository, batching=True)
    executions = manager.stats["din-fp32"]
    before = executions.execution_count
    registry = manager._metrics.registry
    sample = lambda name: registry.get_sample_value(name, {"model": "din-fp32"}) or 0.0  # noqa: E731
    sizes_before = {n: sample(n) for n in ("infersuite_model_batch_size_sum", "infersuite_model_batch_rows_sum")}
    results = await asyncio.gather(*(combined.score(q) for q in queries))
    ran = executions.execution_count - before
    await manager.close()

    assert ran < len(queries)  # they really shared executions
    # The batch size counts requests (the sizing rule's unit); rows (candidates) are the second metric.
    assert sample("infersuite_model_batch_size_sum") - sizes_before["infersuite_model_batch_size_sum"] == len(queries)
    assert sample("infersuite_model_batch_rows_sum") - sizes_before["infersuite_model_batch_rows_sum"] == \
        sum(q.candidate_items.size for q in queries)
    for query, want, got in zip(queries, expected, results, strict=True):
        assert got.click_probabilities.shape == (query.candidate_items.size,)
        assert got.activation_weights is not None and want.activation_weights is not None
        assert got.activation_weights.shape == (query.candidate_items.size, query.history_items.size)
        assert np.isfinite(got.click_probabilities).all() and np.isfinite(got.activation_weights).all()
        close = {"rtol": 0, "atol": 1e-6, "equal_nan": False}
        np.testing.assert_allclose(got.click_probabilities, want.click_probabilities, **close)
        np.testing.assert_allclose(got.activation_weights, want.activation_weights, **close)


async def test_a_row_index_outside_its_own_request_is_refused(tiny_ctr) -> None:
    """A row pointing at another request's user would read that user's history: refused up front."""
    _, manager = await _handler(tiny_ctr.repository, batching=True)
    inputs = {"history_items": np.ones((1, 3), np.int64), "history_categories": np.ones((1, 3), np.int64),
              "history_mask": np.ones((1, 3), np.float32), "candidate_items": np.ones(2, np.int64),
              "candidate_categories": np.ones(2, np.int64), "candidate_user": np.array([0, 1], np.int64)}
    with pytest.raises(InvalidArgument, match=r"candidate_user.*(valid: 0\.\.0|range \[0, 0\])"):
        await manager.infer("din-fp32", inputs)
    await manager.close()
