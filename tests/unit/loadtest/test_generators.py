"""Request generators: seeded synthetic requests inside the vocabulary, and response checks."""

import asyncio
import json

import numpy as np
import pytest

from infersuite.loadtest.generators import GeneratorError, create
from infersuite.loadtest.generators.ctr import CtrShape, check_score
from infersuite.loadtest.generators.oip import OutputSpec, check_infer, oip_messages
from infersuite.loadtest.generators.oip_layout import values
from infersuite.protos import ctr_pb2


def _pool(name, params, seed=0, size=200):
    return asyncio.run(create(name, params).build(None, np.random.default_rng(seed), size))


def test_ctr_requests_follow_the_synthetic_distribution():
    pool = _pool("ctr", {"n_items": "120", "n_categories": "8"})
    requests = [ctr_pb2.ScoreRequest.FromString(p) for p in pool.payloads]
    histories = [len(r.history_item_ids) for r in requests]
    candidates = [len(r.candidate_item_ids) for r in requests]
    assert min(histories) >= 1 and max(histories) <= 50 and len(set(histories)) > 30
    assert min(candidates) >= 10 and max(candidates) <= 100 and len(set(candidates)) > 50
    for request in requests:
        assert len(request.history_item_ids) == len(request.history_category_ids)
        assert all(1 <= i <= 120 for i in [*request.history_item_ids, *request.candidate_item_ids])
        assert all(1 <= c <= 8 for c in [*request.history_category_ids, *request.candidate_category_ids])
    assert pool.expectations[0] == CtrShape(len(requests[0].candidate_item_ids), histories[0], False)


def test_ctr_pool_is_reproducible_from_its_seed():
    assert _pool("ctr", {}, seed=3).payloads == _pool("ctr", {}, seed=3).payloads
    assert _pool("ctr", {}, seed=3).payloads != _pool("ctr", {}, seed=4).payloads


def test_ctr_reads_the_vocabulary_from_the_model_meta(tmp_path):
    meta = tmp_path / "din-fp32" / "2" / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"vocabulary": {"n_items": 40, "n_categories": 4}}))
    generator = create("ctr", {"repository": str(tmp_path)})
    assert (generator.n_items, generator.n_categories) == (40, 4)
    with pytest.raises(GeneratorError, match=r"no <version>/meta\.json"):
        create("ctr", {"repository": str(tmp_path), "model": "missing"})


@pytest.mark.parametrize("kind", ["string", "integer"])
def test_ctr_sends_the_external_ids_of_a_model_trained_on_a_users_log(tmp_path, kind):
    items = ["B00A", "B00B", "B00C"] if kind == "string" else [9001, 9002, 9003]
    categories = ["books", "toys"] if kind == "string" else [70, 71]
    meta = tmp_path / "din-fp32" / "1" / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"vocabulary": {"n_items": 4, "n_categories": 3, "external": {
        "items": items, "categories": categories, "oov": "reject", "min_count": 1}}}))
    pool = _pool("ctr", {"repository": str(tmp_path), "model": "din-fp32"}, size=50)
    requests = [ctr_pb2.ScoreRequest.FromString(p) for p in pool.payloads]
    suffix = "keys" if kind == "string" else "ids"  # strings go in the *_keys fields, integers in *_ids
    sent_items = {i for r in requests for side in ("history", "candidate") for i in getattr(r, f"{side}_item_{suffix}")}
    sent_categories = {c for r in requests for side in ("history", "candidate")
                       for c in getattr(r, f"{side}_category_{suffix}")}
    assert sent_items == set(items) and sent_categories == set(categories)  # every id drawn, none invented
    unused = ("history_item_ids", "candidate_item_ids") if kind == "string" else ("history_item_keys",)
    assert all(not getattr(r, name) for r in requests for name in unused)
    assert pool.description["ids"] == f"the model's {kind} ids"


def test_ctr_check_catches_wrong_shapes_and_ranges():
    shape = CtrShape(candidates=3, history=5, explain=False)
    good = ctr_pb2.ScoreResponse(click_probabilities=[0.1, 0.5, 0.9], history_used=5)
    assert check_score(shape, good.SerializeToString()) is None
    short = ctr_pb2.ScoreResponse(click_probabilities=[0.1, 0.5], history_used=5)
    assert "wrong number" in check_score(shape, short.SerializeToString())
    out_of_range = ctr_pb2.ScoreResponse(click_probabilities=[0.1, 1.5, 0.9], history_used=5)
    assert "outside [0, 1]" in check_score(shape, out_of_range.SerializeToString())
    nan = ctr_pb2.ScoreResponse(click_probabilities=[0.1, float("nan"), 0.9], history_used=5)
    assert "outside [0, 1]" in check_score(shape, nan.SerializeToString())
    too_much_history = ctr_pb2.ScoreResponse(click_probabilities=[0.1, 0.5, 0.9], history_used=6)
    assert "history_used" in check_score(shape, too_much_history.SerializeToString())


def test_oip_check_catches_missing_and_malformed_outputs():
    messages = oip_messages()
    expected = OutputSpec((("click_probability", "FP32"),))
    good = messages.ModelInferResponse()
    good.outputs.add(name="click_probability", datatype="FP32", shape=[1, 3])
    good.raw_output_contents.append(np.array([[0.1, 0.2, 0.3]], np.float32).tobytes())
    assert check_infer(expected, good.SerializeToString()) is None
    truncated = messages.ModelInferResponse()
    truncated.CopyFrom(good)
    truncated.raw_output_contents[0] = truncated.raw_output_contents[0][:8]
    assert "byte size" in check_infer(expected, truncated.SerializeToString())
    nan = messages.ModelInferResponse()
    nan.CopyFrom(good)
    nan.raw_output_contents[0] = np.array([[0.1, np.nan, 0.3]], np.float32).tobytes()
    assert "non-finite" in check_infer(expected, nan.SerializeToString())
    assert "missing" in check_infer(OutputSpec((("other", "FP32"),)), good.SerializeToString())


def test_oip_shapes_and_parameters():
    generator = create("oip", {"model": "m", "batch": "2", "dim": "5", "shape.special": "3x4"})
    rng = np.random.default_rng(0)
    shapes = generator.plan.draw([("x", [-1, -1, 7]), ("special", [-1, -1])], generator.layout, rng)
    assert shapes == {"x": [2, 5, 7], "special": [3, 4]}
    ids = values("ids", np.dtype(np.int64), {"ids": [1000]}, generator.layout, None, rng)
    assert ids.min() >= 1 and ids.max() <= 10
    with pytest.raises(GeneratorError, match="expected dims like 2x16"):
        create("oip", {"model": "m", "shape.x": "2by3"})
    with pytest.raises(GeneratorError, match=r"1 <= LOW <= HIGH"):
        create("oip", {"model": "m", "dim": "9..3"})


DIN_META = {"vocabulary": {"n_items": 600, "n_categories": 30},
            "limits": {"inputs": {"history_mask": {"range": [0, 1]}, "candidate_items": {"range": [1, 50]},
                                  "candidate_user": {"below_dim": ["history_items", 0]}}},
            "batching": {"ragged_dims": {"history": {"inputs": {"history_items": 1, "history_categories": 1,
                                                                "history_mask": 1}},
                                         "candidates": {"inputs": {"candidate_items": 0}}},
                         "rows": {"inputs": ["candidate_items", "candidate_user"],
                                  "group_index": {"candidate_user": "history_items"}}}}


def test_oip_draws_shapes_per_request_and_realistic_values_from_meta(tmp_path):
    (tmp_path / "din" / "1").mkdir(parents=True)
    (tmp_path / "din" / "1" / "meta.json").write_text(json.dumps(DIN_META))
    generator = create("oip", {"model": "din", "repository": str(tmp_path), "batch": "1..4",
                               "dim.history": "1..50", "dim.rows": "20..100"})
    inputs = [("history_items", [-1, -1]), ("history_categories", [-1, -1]), ("history_mask", [-1, -1]),
              ("candidate_items", [-1]), ("candidate_user", [-1])]
    rng = np.random.default_rng(1)
    seen_lengths = set()
    for _ in range(50):
        shapes = generator.plan.draw(inputs, generator.layout, rng)
        users, length = shapes["history_items"]
        assert shapes["history_categories"] == shapes["history_mask"] == [users, length]  # one draw per group
        assert 1 <= users <= 4 and 1 <= length <= 50 and 20 <= shapes["candidate_items"][0] <= 100
        assert shapes["candidate_user"] == shapes["candidate_items"]
        seen_lengths.add(length)
        tensors = {name: values(name, np.dtype(np.float32 if "mask" in name else np.int64), shapes,
                                generator.layout, None, rng) for name, _ in inputs}
        assert (tensors["history_mask"] == 1).all()
        assert tensors["history_items"].min() >= 1 and tensors["history_items"].max() <= 600
        assert tensors["history_categories"].max() <= 30
        assert tensors["candidate_user"].min() >= 0 and tensors["candidate_user"].max() < users
        assert tensors["candidate_items"].min() >= 1 and tensors["candidate_items"].max() <= 50  # declared range
    assert len(seen_lengths) > 10  # shapes vary per request


def test_health_and_raw_generators():
    health = _pool("health", {}, size=4)
    assert health.method == "/grpc.health.v1.Health/Check" and len(health) == 4
    assert health.check(None, b"\x08\x01") is None and health.check(None, b"\x08\x02")
    raw = _pool("raw", {"method": "/a.B/C", "payload_bytes": "32"}, size=3)
    assert raw.method == "/a.B/C" and [len(p) for p in raw.payloads] == [32, 32, 32]
    with pytest.raises(GeneratorError, match=r"/package\.Service/Method"):
        create("raw", {"method": "nope"})


def test_ctr_follows_the_family_alias_to_the_served_model(tmp_path):
    for name, n_items in (("din-fp32", 40), ("din-int8-qat", 55)):
        meta = tmp_path / name / "1" / "meta.json"
        meta.parent.mkdir(parents=True)
        meta.write_text(json.dumps({"vocabulary": {"n_items": n_items, "n_categories": 4}}))
    assert create("ctr", {"repository": str(tmp_path)}).n_items == 40  # no aliases.json: din-fp32
    (tmp_path / "aliases.json").write_text(json.dumps({"din": "din-int8-qat"}))
    assert create("ctr", {"repository": str(tmp_path)}).n_items == 55
    assert create("ctr", {"repository": str(tmp_path), "model": "din-fp32"}).n_items == 40
