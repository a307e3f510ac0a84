"""The ctr handler's domain rules, against a fake model (no sockets, no onnxruntime)."""

from collections.abc import Mapping

import numpy as np
import pytest

from infersuite.services.ctr.handler import CtrHandler, ScoreQuery
from infersuite.services.ctr.settings import CtrSettings
from infersuite.services.runtime import InvalidArgument, NotFound, Runtime, RuntimeSettings
from infersuite.services.runtime.batching import BatchingPolicy
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager
from infersuite.services.runtime.repository import ModelRepository
from tests.fixtures import FakeModel

VOCAB = {"vocabulary": {"n_items": 100, "n_categories": 10}, "batching": {
    "ragged_dims": {"history": {"inputs": {"history_items": 1, "history_categories": 1, "history_mask": 1},
                                "outputs": {"activation_weights": 1}}},
    "rows": {"inputs": ["candidate_items", "candidate_categories", "candidate_user"],
             "outputs": ["click_probability", "activation_weights"],
             "group_index": {"candidate_user": "history_items"}}}}


def _echo_outputs(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows layout: click probability = candidate id / 1000; weight = its user's behaviour id."""
    cand = inputs["candidate_items"].astype(np.float32)  # (R,)
    hist = inputs["history_items"].astype(np.float32) * inputs["history_mask"]  # (U, T)
    weights = hist[inputs["candidate_user"]]  # (R, T)
    return {"click_probability": cand / 1000, "activation_weights": np.ascontiguousarray(weights)}


@pytest.fixture
async def handler_and_model(tmp_path):
    metrics = Metrics()
    manager = ModelManager(ModelRepository(tmp_path), backend=None, metrics=metrics)  # type: ignore[arg-type]
    model = FakeModel("din-fp32", _echo_outputs, VOCAB)
    manager.attach(model, BatchingPolicy(max_batch_size=8, max_queue_delay_s=0.0))
    runtime = Runtime(RuntimeSettings(), manager, metrics)
    handler = CtrHandler(CtrSettings(model="din-fp32", max_history=5, max_candidates=4), runtime)
    runtime.initialize("ctr", ["din-fp32"])
    yield handler, model
    await manager.close()


def _query(history=(1, 2, 3), cands=(10, 20), **kw) -> ScoreQuery:
    h = np.array(history, np.int64)
    c = np.array(cands, np.int64)
    fields = dict(history_items=h, history_categories=np.ones_like(h), candidate_items=c,
                  candidate_categories=np.ones_like(c))
    fields.update(kw)
    return ScoreQuery(**fields)


async def _score(handler: CtrHandler, query: ScoreQuery):
    return await handler.score(query)


async def test_scores_come_back_in_candidate_order(handler_and_model) -> None:
    handler, _ = handler_and_model
    result = await _score(handler, _query(cands=(30, 10, 20), explain=True))
    np.testing.assert_allclose(result.click_probabilities, [0.03, 0.01, 0.02])
    assert result.activation_weights.shape == (3, 3)
    assert result.history_used == 3 and result.model == "din-fp32"


async def test_long_history_keeps_the_most_recent_behaviours(handler_and_model) -> None:
    handler, model = handler_and_model
    result = await _score(handler, _query(history=tuple(range(1, 9)), explain=True))
    assert result.history_used == 5
    np.testing.assert_array_equal(model.calls[-1]["history_items"], [[4, 5, 6, 7, 8]])
    np.testing.assert_array_equal(result.activation_weights[0], [4, 5, 6, 7, 8])


async def test_empty_history_is_one_masked_padding_slot(handler_and_model) -> None:
    handler, model = handler_and_model
    result = await _score(handler, _query(history=()))
    assert result.history_used == 0 and result.activation_weights is None
    np.testing.assert_array_equal(model.calls[-1]["history_mask"], [[0.0]])
    np.testing.assert_array_equal(model.calls[-1]["history_items"], [[0]])


@pytest.mark.parametrize(("query", "message"), [
    (_query(cands=()), "candidate_item_ids is empty"),
    (_query(cands=(1, 2, 3, 4, 5)), "5 candidates, more than the maximum of 4"),
    (_query(history_categories=np.array([1, 1], np.int64)),
     "history_item_ids has 3 ids but history_category_ids has 2"),
    (_query(candidate_categories=np.array([1], np.int64)),
     "candidate_item_ids has 2 ids but candidate_category_ids has 1"),
    (_query(cands=(10, 101)), r"candidate_item_ids\[1\]=101 is outside the vocabulary \[1, 100\]"),
    (_query(history=(0, 2)), r"history_item_ids\[0\]=0 is outside"),
    (_query(candidate_categories=np.array([1, 11], np.int64)), r"candidate_category_ids\[1\]=11"),
    (_query(history_categories=np.array([1, -5, 1], np.int64)), r"history_category_ids\[1\]=-5"),
])
async def test_bad_input_is_rejected_with_the_field_named(handler_and_model, query, message) -> None:
    handler, model = handler_and_model
    with pytest.raises(InvalidArgument, match=message):
        await _score(handler, query)
    assert model.calls == []  # nothing computed for a rejected request


async def test_unknown_model_is_not_found(handler_and_model) -> None:
    handler, _ = handler_and_model
    with pytest.raises(NotFound, match="'din-int3' is not served by ctr"):
        await _score(handler, _query(model="din-int3"))
