"""String ids at the ctr handler and in OIP BYTES tensors (issue 24), against a fake model: no
sockets, no onnxruntime. Keys reach the graph as the vocabulary's rows; counts and lengths are
refused before any lookup; a model's OOV policy decides unknown ids; a model without a string
vocabulary refuses strings, and a string model refuses integers."""

from __future__ import annotations

import struct
from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infersuite.services.ctr.handler import CtrHandler, ScoreKeys, ScoreQuery, vocabularies
from infersuite.services.ctr.settings import CtrSettings
from infersuite.services.ctr.string_ids import string_id_inputs
from infersuite.services.runtime import InvalidArgument, Runtime, RuntimeSettings
from infersuite.services.runtime.batching import BatchingPolicy
from infersuite.services.runtime.bytes_inputs import BytesInputRegistry, datatype, decode
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager
from infersuite.services.runtime.repository import ModelRepository
from infersuite.services.runtime.tensors import TensorSpec
from tests.fixtures import FakeModel

ITEMS, CATEGORIES = ["sku-ä", "sku-b", "sku-c"], ["shoes", "hats"]
BATCHING = {"ragged_dims": {"history": {"inputs": {"history_items": 1, "history_categories": 1, "history_mask": 1},
                                        "outputs": {"activation_weights": 1}}},
            "rows": {"inputs": ["candidate_items", "candidate_categories", "candidate_user"],
                     "outputs": ["click_probability", "activation_weights"],
                     "group_index": {"candidate_user": "history_items"}}}


def _meta(oov: str, items: list = ITEMS, categories: list = CATEGORIES) -> dict:
    external = {"items": items, "categories": categories, "oov": oov}
    bucket = oov == "bucket"
    return {"family": "ctr", "batching": BATCHING, "vocabulary": {
        "n_items": len(items) + bucket, "n_categories": len(categories) + bucket, "external": external}}


def _echo(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    cand = inputs["candidate_items"].astype(np.float32)
    hist = inputs["history_items"].astype(np.float32) * inputs["history_mask"]
    weights = np.ascontiguousarray(hist[inputs["candidate_user"]])  # (R, T)
    return {"click_probability": cand / 1000, "activation_weights": weights}


@pytest.fixture
async def served(tmp_path):
    """(handler, {name: fake model}): din-strings (reject), din-bucket (bucket), din-integers (ids are rows)."""
    metrics = Metrics()
    manager = ModelManager(ModelRepository(tmp_path), backend=None, metrics=metrics)  # type: ignore[arg-type]
    models = {"din-strings": FakeModel("din-strings", _echo, _meta("reject")),
              "din-bucket": FakeModel("din-bucket", _echo, _meta("bucket")),
              "din-integers": FakeModel("din-integers", _echo, {"family": "ctr", "batching": BATCHING,
                                                                "vocabulary": {"n_items": 9, "n_categories": 3}})}
    for model in models.values():
        manager.attach(model, BatchingPolicy(max_batch_size=8, max_queue_delay_s=0.0))
    runtime = Runtime(RuntimeSettings(), manager, metrics)
    settings = CtrSettings(model="din-strings", extra_models=["din-bucket", "din-integers"], max_history=2,
                           max_candidates=3, max_id_bytes=8, max_history_keys=4)
    handler = CtrHandler(settings, runtime)
    runtime.initialize("ctr", list(models))
    yield handler, models
    await manager.close()


def _keys(history=("sku-ä", "sku-b"), history_categories=("shoes", "hats"), candidates=("sku-c", "sku-ä"),
          candidate_categories=("hats", "shoes"), **fields) -> ScoreQuery:
    empty = np.zeros(0, np.int64)
    query = dict(history_items=empty, history_categories=empty, candidate_items=empty, candidate_categories=empty,
                 keys=ScoreKeys(list(history), list(history_categories), list(candidates), list(candidate_categories)))
    return ScoreQuery(**{**query, **fields})


async def test_keys_reach_the_graph_as_the_vocabulary_s_rows(served) -> None:
    handler, models = served
    result = await handler.score(_keys(history=("sku-c", "sku-ä", "sku-b"), history_categories=("hats",) * 3))
    call = models["din-strings"].calls[-1]
    # all three behaviours looked up, the last max_history=2 used
    assert call["history_items"].tolist() == [[1, 2]] and call["history_categories"].tolist() == [[2, 2]]
    assert call["candidate_items"].tolist() == [3, 1] and call["candidate_categories"].tolist() == [2, 1]
    np.testing.assert_allclose(result.click_probabilities, [0.003, 0.001])
    bucket = await handler.score(_keys(candidates=("unknown", "sku-b"), model="din-bucket"))
    assert models["din-bucket"].calls[-1]["candidate_items"].tolist() == [4, 2]  # the shared row is n + 1
    assert np.isfinite(bucket.click_probabilities).all()


@pytest.mark.parametrize(("query", "message"), [
    (_keys(candidates=("sku-c", "nope")), r"candidate_item_keys\[1\]='nope' is not in the model's vocabulary "
                                          r"\(1 unknown id\(s\); this model was trained to reject them\)"),
    (_keys(history_categories=("shoes", "gloves")), r"history_category_keys\[1\]='gloves' is not in the model's"),
    (_keys(candidates=("sku-c", "x" * 9)), r"candidate_item_keys\[1\] is 9 bytes long, over the limit of 8 bytes"),
    (_keys(history=("ää", "äää" + "ä" * 2)), r"history_item_keys\[1\] is 10 bytes long"),
    (_keys(history=("",) * 2), r"history_item_keys\[0\] is the empty string"),
    (_keys(history=("sku-b",) * 5, history_categories=("hats",) * 5), r"history_item_keys has 5 ids, more than the "
                                                                     r"maximum of 4 string behaviours"),
    (_keys(candidates=("sku-b",) * 4, candidate_categories=("hats",) * 4),
     r"candidate_item_keys has 4 candidates, more than the maximum of 3"),
    (_keys(candidates=(), candidate_categories=()), r"candidate_item_keys is empty: at least one candidate"),
    (_keys(candidate_categories=("hats",)), r"candidate_item_keys has 2 ids but candidate_category_keys has 1"),
    (_keys(history_items=np.array([1], np.int64)), r"the request sends integer ids \(history_item_ids\) and string "
                                                   r"ids \(the \*_keys fields\): send one kind, not both"),
    (_keys(model="din-integers"), r"model 'din-integers' has no string vocabulary \(it takes integer ids 1..n\): "
                                  r"send history_item_ids"),
    (ScoreQuery(np.zeros(0, np.int64), np.zeros(0, np.int64), np.array([1]), np.array([1])),
     r"model 'din-strings' maps string ids \(its vocabulary holds strings\): send them in history_item_keys"),
])
async def test_bad_string_queries_are_invalid_argument_naming_what_is_wrong(served, query, message) -> None:
    handler, models = served
    before = len(models["din-strings"].calls)
    with pytest.raises(InvalidArgument, match=message):
        await handler.score(query)
    assert len(models["din-strings"].calls) == before  # refused before the model ran


async def test_lengths_are_checked_before_any_lookup(served) -> None:
    """A long id after an unknown one: the length is what is refused (the lookup never ran)."""
    handler, _ = served
    with pytest.raises(InvalidArgument, match=r"candidate_item_keys\[1\] is 9 bytes long"):
        await handler.score(_keys(candidates=("nope", "y" * 9)))


def test_a_model_listing_an_id_longer_than_the_limit_is_refused_at_load() -> None:
    class Set:
        names = ("din-long",)

        @staticmethod
        def get(name):
            return FakeModel(name, _echo, _meta("reject", items=["x" * 9]))

    with pytest.raises(ValueError, match=r"din-long's vocabulary lists a 9-byte string id, over "
                                         r"INFERSUITE_CTR_MAX_ID_BYTES=8"):
        vocabularies(Set(), max_id_bytes=8)  # type: ignore[arg-type]


def _raw(values: list[str | bytes]) -> bytes:
    """Triton's BYTES wire format: a 4-byte little-endian length, then the bytes, per element."""
    encoded = [v.encode() if isinstance(v, str) else v for v in values]
    return b"".join(struct.pack("<I", len(v)) + v for v in encoded)


def _oip(oov: str = "reject", max_id_bytes: int = 8):
    model = FakeModel("din-strings", _echo, _meta(oov))
    model.inputs = [TensorSpec(n, "INT64", (-1, -1)) for n in ("history_items", "history_categories")] + [
        TensorSpec("history_mask", "FP32", (-1, -1))] + [
        TensorSpec(n, "INT64", (-1,)) for n in ("candidate_items", "candidate_categories", "candidate_user")]
    return model, string_id_inputs(CtrSettings(max_id_bytes=max_id_bytes))(model)


def test_oip_bytes_map_through_the_vocabulary_with_padding_and_policy() -> None:
    model, strings = _oip()
    assert strings is not None and strings.names == {"history_items", "history_categories", "candidate_items",
                                                     "candidate_categories"}
    assert datatype("history_items", "INT64", strings) == "BYTES"
    assert datatype("history_mask", "FP32", strings) == "FP32"
    history = decode("history_items", "INT64", (2, 2), _raw(["sku-b", "", "sku-ä", "sku-c"]), [], strings, model.name)
    assert history.tolist() == [[2, 0], [1, 3]]  # '' pads a history
    typed = decode("candidate_items", "INT64", (2,), None, [b"sku-c", "sku-ä".encode()], strings, model.name)
    assert typed.tolist() == [3, 1]
    with pytest.raises(InvalidArgument, match=r"input 'history_items' id 'nope' at index \[1, 0\] is not in model "
                                              r"'din-strings'.s vocabulary \(1 unknown id"):
        decode("history_items", "INT64", (2, 1), _raw(["sku-b", "nope"]), [], strings, model.name)
    with pytest.raises(InvalidArgument, match=r"input 'candidate_items' element at index \[1\] is the empty string: "
                                              r"only the history inputs take it"):
        decode("candidate_items", "INT64", (2,), _raw(["sku-b", ""]), [], strings, model.name)
    with pytest.raises(InvalidArgument, match=r"input 'candidate_items' element at index \[0\] is not UTF-8 text"):
        decode("candidate_items", "INT64", (1,), _raw([b"\xff\xfe"]), [], strings, model.name)
    _, bucket = _oip("bucket")
    assert decode("candidate_items", "INT64", (2,), _raw(["nope", "sku-c"]), [], bucket, model.name).tolist() == [4, 3]


@pytest.mark.parametrize(("raw", "contents", "shape", "message"), [
    (_raw(["sku-b"]), [], (2,), r"the raw BYTES content ends before element 1 of 2"),
    (_raw(["sku-b"])[:-2], [], (1,), r"ends inside element 0 \(5 bytes declared, 3 left\)"),
    (_raw(["sku-b"]) + b"\x00", [], (1,), r"has 1 bytes after its 1 elements"),
    (struct.pack("<I", 2**31) + b"x", [], (1,), r"element 0 is 2147483648 bytes, over the limit of 8"),
    (None, [b"sku-b"], (2,), r"contents.bytes_contents has 1 values but its shape needs 2"),
    (None, [b"123456789"], (1,), r"element 0 is 9 bytes, over the limit of 8"),
])
def test_malformed_bytes_tensors_are_refused_before_any_lookup(raw, contents, shape, message) -> None:
    model, strings = _oip()
    with pytest.raises(InvalidArgument, match=rf"input 'candidate_items'.*{message}"):
        decode("candidate_items", "INT64", shape, raw, contents, strings, model.name)


def test_bytes_for_a_model_or_input_without_strings_are_refused_saying_so() -> None:
    model, strings = _oip()
    with pytest.raises(InvalidArgument, match=r"input 'candidate_user' has datatype BYTES, but model 'din-strings' "
                                              r"takes no strings for it \(it expects INT64\)"):
        decode("candidate_user", "INT64", (1,), _raw(["0"]), [], strings, model.name)
    integers = FakeModel("din-integers", _echo, {"family": "ctr", "vocabulary": {"n_items": 9, "n_categories": 3}})
    integers.inputs = model.inputs
    assert string_id_inputs(CtrSettings())(integers) is None
    with pytest.raises(InvalidArgument, match=r"model 'din-integers' takes no strings for it"):
        decode("candidate_items", "INT64", (1,), _raw(["sku-b"]), [], None, integers.name)


def test_the_registry_builds_one_mapping_per_served_version() -> None:
    built = []
    registry = BytesInputRegistry()
    model, _ = _oip()
    registry.add(lambda m: built.append(m.version) or string_id_inputs(CtrSettings())(m))
    first = registry.of(model)
    assert first is not None and registry.of(model) is first and built == ["1"]
    model.version = "2"
    assert registry.of(model) is not first and built == ["1", "2"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.integers(0, 4), max_size=2), raw=st.one_of(st.none(), st.binary(max_size=80)),
       listed=st.lists(st.sampled_from([b"sku-b", b"", b"nope", b"\xff", b"123456789", "sku-ä".encode()]),
                       max_size=6), name=st.sampled_from(["history_items", "candidate_items", "candidate_user"]))
def test_any_bytes_tensor_decodes_to_the_shape_s_rows_or_is_refused_naming_the_input(shape, raw, listed,
                                                                                    name) -> None:
    model, strings = _oip()
    try:
        rows = decode(name, "INT64", tuple(shape), raw, listed, strings, model.name)
    except InvalidArgument as exc:  # never another exception, and the message names the input
        assert f"'{name}'" in exc.message, exc.message
        return
    assert rows.shape == tuple(shape) and rows.dtype == np.int64
    assert ((rows >= 0) & (rows <= len(ITEMS))).all()  # a listed row or padding, nothing else under reject
