"""String ids served directly (issue 24), ctr: a click log whose item and category ids are strings
(`--ids string`) trains in seconds, exports din-fp32 with a vocabulary of those strings, and a real
server on port 0 scores the strings themselves: Score's `*_keys` fields and OIP BYTES tensors answer
what torch gives on the test rows (and what OIP gives for the same rows sent as INT64), unknown ids
are refused (oov reject, naming the id and its position) or take the shared row (oov bucket), bounds
and misuse are INVALID_ARGUMENT, and no answer holds a NaN."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput
from tritonclient.utils import InferenceServerException

from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.ctr.client import CtrClient, CtrClientError, ScoreInput
from tests.fixtures import serving

pytestmark = pytest.mark.integration
ITEM = lambda i: f"sku-{i:04d}-ü" if i % 5 else f"{i:08d}-4c1e-9a2f"  # noqa: E731 - non-ASCII and UUID-like ids
CATEGORY = lambda c: f"category {c}"  # noqa: E731
ID_INPUTS = ("history_items", "history_categories", "candidate_items", "candidate_categories")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_ctr) -> Path:
    from models.ctr.data import ClickDataConfig, make_click_data
    from models.ctr.train import main
    from models.ctr.user_data import write_click_log

    root = tmp_path_factory.mktemp("ctr-string-ids")
    world = make_click_data(ClickDataConfig(n_users=400, n_items=60, n_categories=6, max_history=12, seed=5))
    write_click_log(root / "clicks.csv", world, [0, *map(ITEM, range(1, 61))], [0, *map(CATEGORY, range(1, 7))])
    for oov in ("reject", "bucket"):
        main(["--data", str(root / "clicks.csv"), "--ids", "string", "--epochs", "1", "--no-progress", "--oov", oov,
              "--min-count", "3", "--out", str(root / oov), "--repository", str(root / f"repo-{oov}"),
              "--no-quantize"])  # the served din stays fp32 (torch parity); test_ctr_user_quantization gates
    # a model with integer ids beside it, to show that it refuses strings
    copy = shutil.copytree(tiny_ctr.repository / "din-fp32", root / "repo-reject" / "din-integers")
    config = copy / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "din-fp32"', 'name: "din-integers"'))
    return root


def _test_rows(trained: Path, oov: str):
    """(torch's DIN, the test rows, their torch scores by impression, the vocabulary) of the `oov` model."""
    from models.ctr.train import predict, read_checkpoint
    from models.ctr.user_data import TimeSplit, load_user_data

    split = TimeSplit(min_count=3, oov=oov)  # type: ignore[arg-type]
    data = load_user_data(trained / "clicks.csv", None, split, ids="string").data
    model, _ = read_checkpoint(trained / oov / "din_dice.pt")
    rows, scores = predict(model, data, data.test_users)
    meta = json.loads((trained / f"repo-{oov}" / "din-fp32" / "1" / "meta.json").read_text())
    return data, dict(zip(rows.tolist(), scores.tolist(), strict=True)), meta["vocabulary"]["external"]


def _strings(rows: np.ndarray, listed: list[str]) -> list[str]:
    """Embedding rows back to the strings a client holds (the bucket row: a string never seen)."""
    return [listed[r - 1] if r <= len(listed) else f"never-seen-{i}" for i, r in enumerate(rows.tolist())]


def _oip_inputs(history: list[list[str]], history_categories: list[list[str]], candidates: list[str],
                candidate_categories: list[str], users: list[int], datatype: str = "BYTES") -> list[InferInput]:
    """The rows layout with U users (histories padded with '' or 0, hidden by the mask)."""
    width = max(len(h) for h in history)
    pad = "" if datatype == "BYTES" else 0
    dtype = np.object_ if datatype == "BYTES" else np.int64
    arrays = {
        "history_items": np.array([h + [pad] * (width - len(h)) for h in history], dtype),
        "history_categories": np.array([h + [pad] * (width - len(h)) for h in history_categories], dtype),
        "history_mask": np.array([[1.0] * len(h) + [0.0] * (width - len(h)) for h in history], np.float32),
        "candidate_items": np.array(candidates, dtype), "candidate_categories": np.array(candidate_categories, dtype),
        "candidate_user": np.array(users, np.int64)}
    inputs = []
    for name, value in arrays.items():
        kind = datatype if name in ID_INPUTS else ("FP32" if value.dtype == np.float32 else "INT64")
        tensor = InferInput(name, list(value.shape), kind)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def _users_inputs(users: list[tuple[list, list, list, list]], datatype: str = "BYTES") -> list[InferInput]:
    """One OIP request for several users' (history items, history categories, candidates, their categories)."""
    owners = [index for index, user in enumerate(users) for _ in user[2]]
    return _oip_inputs([list(u[0]) for u in users], [list(u[1]) for u in users],
                       [c for u in users for c in u[2]], [c for u in users for c in u[3]], owners, datatype)


def _user_rows(data, user: int) -> tuple[list, list, list, list]:
    """A test row's embedding rows (the integer path)."""
    length, lo, hi = int(data.history_lengths[user]), data.impression_offsets[user], data.impression_offsets[user + 1]
    return (data.history_items[user, :length].tolist(), data.history_categories[user, :length].tolist(),
            data.candidate_items[lo:hi].tolist(), data.candidate_categories[lo:hi].tolist())


def test_the_shipped_vocabulary_holds_the_strings(trained: Path) -> None:
    quality = json.loads((trained / "reject" / "quality.json").read_text())
    assert quality["data"]["ids"] == "string" and quality["data"]["rows"]["test"] > 0
    for oov in ("reject", "bucket"):
        external = json.loads((trained / f"repo-{oov}" / "din-fp32" / "1" / "meta.json").read_text())[
            "vocabulary"]["external"]
        assert external["oov"] == oov and set(external["items"]) <= set(map(ITEM, range(1, 61)))
        assert set(external["categories"]) <= set(map(CATEGORY, range(1, 7)))


@pytest.mark.parametrize("oov", ["reject", "bucket"])
async def test_score_and_oip_with_string_ids_equal_torch_and_the_integer_rows(trained: Path, oov: str) -> None:
    data, expected, external = _test_rows(trained, oov)
    served_scores, torch_scores = [], []
    async with serving([CtrService()], trained / f"repo-{oov}", metrics_port=-1) as served, \
            CtrClient(served.address) as ctr:
        oip = triton_aio.InferenceServerClient(served.address)
        try:
            metadata = await oip.get_model_metadata("din-fp32", as_json=True)
            shown = {i["name"]: i["datatype"] for i in metadata["inputs"]}
            assert shown == {**dict.fromkeys(ID_INPUTS, "BYTES"), "history_mask": "FP32", "candidate_user": "INT64"}
            config = (await oip.get_model_config("din-fp32", as_json=True))["config"]  # agrees with the metadata
            assert {i["name"]: i["data_type"] for i in config["input"]} == {
                **dict.fromkeys(ID_INPUTS, "TYPE_STRING"), "history_mask": "TYPE_FP32", "candidate_user": "TYPE_INT64"}
            users = []
            for user in data.test_users:
                length = int(data.history_lengths[user])
                lo, hi = data.impression_offsets[user], data.impression_offsets[user + 1]
                keys = (_strings(data.history_items[user, :length], external["items"]),
                        _strings(data.history_categories[user, :length], external["categories"]),
                        _strings(data.candidate_items[lo:hi], external["items"]),
                        _strings(data.candidate_categories[lo:hi], external["categories"]))
                scores = await ctr.score(*keys)
                served_scores += scores.click_probabilities.tolist()
                torch_scores += [expected[r] for r in range(lo, hi)]
                users.append((user, keys))
            assert len(served_scores) >= 100
            np.testing.assert_allclose(served_scores, torch_scores, atol=1e-5)
            # OIP: three users in one request (ragged histories padded with ''), as strings and as INT64 rows
            three = [user for user, _ in users[:3]]
            by_strings = (await oip.infer("din-fp32", _users_inputs([k for _, k in users[:3]]))).as_numpy(
                "click_probability")
            by_rows = (await oip.infer("din-fp32", _users_inputs([_user_rows(data, u) for u in three], "INT64"))
                       ).as_numpy("click_probability")
            torch_three = [expected[r] for u in three for r in range(data.impression_offsets[u],
                                                                     data.impression_offsets[u + 1])]
            np.testing.assert_allclose(by_strings, by_rows, atol=1e-6)
            np.testing.assert_allclose(by_strings, torch_three, atol=1e-5)
            assert np.isfinite(by_strings).all() and np.isfinite(served_scores).all()
        finally:
            await oip.close()


async def test_unknown_ids_are_refused_by_reject_and_share_the_bucket_row(trained: Path) -> None:
    items = json.loads((trained / "repo-reject" / "din-fp32" / "1" / "meta.json").read_text())[
        "vocabulary"]["external"]["items"]
    history, categories = [items[0], items[1]], [CATEGORY(1)] * 2
    async with serving([CtrService()], trained / "repo-reject", metrics_port=-1) as served, \
            CtrClient(served.address) as ctr:
        with pytest.raises(CtrClientError, match=r"candidate_item_keys\[1\]='sku-nope' is not in the model's "
                                                 r"vocabulary \(1 unknown id\(s\)") as refused:
            await ctr.score(history, categories, [items[2], "sku-nope"], [CATEGORY(1)] * 2)
        assert refused.value.code.name == "INVALID_ARGUMENT"
        # ScoreStream: each request's own answer, the unknown id refused in its answer only
        stream = [("good", ScoreInput(history, categories, [items[2]], [CATEGORY(1)])),
                  ("bad", ScoreInput(history, categories, ["sku-nope"], [CATEGORY(1)]))]
        answers = {a.request_id: a async for a in ctr.score_stream(stream)}
        assert answers["good"].scores is not None and np.isfinite(answers["good"].scores.click_probabilities).all()
        assert answers["bad"].error is not None and answers["bad"].error.code.name == "INVALID_ARGUMENT"
        assert "candidate_item_keys[0]='sku-nope' is not in the model's vocabulary" in str(answers["bad"].error)
        oip = triton_aio.InferenceServerClient(served.address)
        try:
            inputs = _oip_inputs([history], [categories], [items[2], items[3], "sku-nope"], [CATEGORY(1)] * 3,
                                 [0] * 3)
            unknown_at_2 = (r"input 'candidate_items' id 'sku-nope' at index \[2\] is not in model "
                            r"'din-fp32'.s vocabulary")
            with pytest.raises(InferenceServerException, match=unknown_at_2) as oip_refused:
                await oip.infer("din-fp32", inputs)
            assert oip_refused.value.status() == "StatusCode.INVALID_ARGUMENT"
        finally:
            await oip.close()
    bucket_items = json.loads((trained / "repo-bucket" / "din-fp32" / "1" / "meta.json").read_text())[
        "vocabulary"]["external"]["items"]
    history = [bucket_items[0], bucket_items[1]]
    async with serving([CtrService()], trained / "repo-bucket", metrics_port=-1) as served, \
            CtrClient(served.address) as ctr:
        unknown = await ctr.score(history, categories, ["sku-nope", "another-unknown", bucket_items[2]],
                                  [CATEGORY(1)] * 3)
        assert unknown.click_probabilities[0] == pytest.approx(unknown.click_probabilities[1], abs=1e-6)
        assert np.isfinite(unknown.click_probabilities).all()
        oip = triton_aio.InferenceServerClient(served.address)
        try:  # the shared row is the one after the listed items: OIP INT64 on that row answers the same
            category_row = json.loads((trained / "repo-bucket" / "din-fp32" / "1" / "meta.json").read_text())[
                "vocabulary"]["external"]["categories"].index(CATEGORY(1)) + 1
            by_rows = _oip_inputs([[1, 2]], [[category_row] * 2], [len(bucket_items) + 1], [category_row], [0],
                                  "INT64")
            shared = (await oip.infer("din-fp32", by_rows)).as_numpy("click_probability")
            assert shared[0] == pytest.approx(unknown.click_probabilities[0], abs=1e-5)
        finally:
            await oip.close()


async def test_misuse_and_oversized_ids_are_invalid_argument(trained: Path) -> None:
    items = json.loads((trained / "repo-reject" / "din-fp32" / "1" / "meta.json").read_text())[
        "vocabulary"]["external"]["items"]
    settings = CtrSettings(extra_models=["din-integers"], max_id_bytes=64, max_history_keys=8, max_candidates=5)
    async with serving([CtrService(settings)], trained / "repo-reject", metrics_port=-1) as served, \
            CtrClient(served.address) as ctr:
        cases = [
            (dict(history_item_ids=[items[0]], history_category_ids=[CATEGORY(1)], candidate_item_ids=[1],
                  candidate_category_ids=[1]),
             r"sends integer ids \(candidate_item_ids, candidate_category_ids\) and string ids"),
            (dict(history_item_ids=[], history_category_ids=[], candidate_item_ids=[], candidate_category_ids=[]),
             r"candidate_item_ids is empty: at least one candidate is required \(integer ids in candidate_item_ids, "
             r"or string ids in candidate_item_keys\)"),
            (dict(history_item_ids=[], history_category_ids=[], candidate_item_ids=[1, 2],
                  candidate_category_ids=[1, 1]), r"model 'din-fp32' maps string ids \(its vocabulary holds strings\)"),
            (dict(history_item_ids=[], history_category_ids=[], candidate_item_ids=["x" * 65],
                  candidate_category_ids=[CATEGORY(1)]), r"candidate_item_keys\[0\] is 65 bytes long, over the limit "
                                                         r"of 64"),
            (dict(history_item_ids=["ü" * 33], history_category_ids=[CATEGORY(1)], candidate_item_ids=[items[0]],
                  candidate_category_ids=[CATEGORY(1)]), r"history_item_keys\[0\] is 66 bytes long"),
            (dict(history_item_ids=[items[0]] * 9, history_category_ids=[CATEGORY(1)] * 9,
                  candidate_item_ids=[items[0]], candidate_category_ids=[CATEGORY(1)]),
             r"history_item_keys has 9 ids, more than the maximum of 8"),
            (dict(history_item_ids=[], history_category_ids=[], candidate_item_ids=[items[0]] * 6,
                  candidate_category_ids=[CATEGORY(1)] * 6), r"candidate_item_keys has 6 candidates, more than the "
                                                             r"maximum of 5"),
            (dict(history_item_ids=[], history_category_ids=[], candidate_item_ids=[items[0], ""],
                  candidate_category_ids=[CATEGORY(1)] * 2), r"candidate_item_keys\[1\] is the empty string"),
            (dict(history_item_ids=[items[0]], history_category_ids=[], candidate_item_ids=[items[0]],
                  candidate_category_ids=[CATEGORY(1)]), r"history_item_keys has 1 ids but history_category_keys "
                                                         r"has 0"),
            (dict(history_item_ids=[], history_category_ids=[], candidate_item_ids=[items[0]],
                  candidate_category_ids=[CATEGORY(1)], model="din-integers"),
             r"model 'din-integers' has no string vocabulary \(it takes integer ids 1..n\)"),
        ]
        for arguments, message in cases:
            with pytest.raises(CtrClientError, match=message) as refused:
                await ctr.score(**arguments)
            assert refused.value.code.name == "INVALID_ARGUMENT", message
        oip = triton_aio.InferenceServerClient(served.address)
        try:
            metadata = await oip.get_model_metadata("din-integers", as_json=True)
            assert {i["datatype"] for i in metadata["inputs"]} == {"INT64", "FP32"}
            oip_cases = [
                ("din-integers", _oip_inputs([[items[0]]], [[CATEGORY(1)]], [items[1]], [CATEGORY(1)], [0]),
                 r"input 'history_items' has datatype BYTES, but model 'din-integers' takes no strings for it"),
                ("din-fp32", _oip_inputs([[items[0]]], [[CATEGORY(1)]], ["y" * 65], [CATEGORY(1)], [0]),
                 r"input 'candidate_items' element 0 is 65 bytes, over the limit of 64"),
                ("din-fp32", _oip_inputs([[items[0]]], [[CATEGORY(1)]], [""], [CATEGORY(1)], [0]),
                 r"input 'candidate_items' element at index \[0\] is the empty string"),
            ]
            for model, inputs, message in oip_cases:
                with pytest.raises(InferenceServerException, match=message) as oip_refused:
                    await oip.infer(model, inputs)
                assert oip_refused.value.status() == "StatusCode.INVALID_ARGUMENT", message
        finally:
            await oip.close()


async def test_the_synchronous_transport_maps_bytes_ids_too(trained: Path) -> None:
    items = json.loads((trained / "repo-bucket" / "din-fp32" / "1" / "meta.json").read_text())[
        "vocabulary"]["external"]["items"]
    inputs = _oip_inputs([[items[0], items[1]], [items[2]]], [[CATEGORY(1)] * 2, [CATEGORY(2)]],
                         [items[3], "unknown", items[4]], [CATEGORY(1), CATEGORY(2), CATEGORY(3)], [0, 1, 1])
    answers = []
    for transport in ("aio", "sync"):
        async with serving([CtrService()], trained / "repo-bucket", metrics_port=-1, transport=transport) as served:
            oip = triton_aio.InferenceServerClient(served.address)
            try:
                answers.append((await oip.infer("din-fp32", inputs)).as_numpy("click_probability"))
            finally:
                await oip.close()
    assert answers[0].shape == (3,) and np.isfinite(answers[0]).all()
    np.testing.assert_allclose(answers[1], answers[0], atol=1e-6)


async def test_amazon_reviews_trained_with_string_ids_are_scored_by_asin(tmp_path: Path) -> None:
    """`--format amazon --ids string`: the vocabulary is the asins and category names; Score takes them."""
    from models.ctr.amazon_example import write_amazon_example
    from models.ctr.train import main, predict, read_checkpoint
    from models.ctr.user_data import TimeSplit, load_user_data

    reviews, _ = write_amazon_example(tmp_path / "data", users=60, items=90, seed=7)
    main(["--data", str(reviews), "--ids", "string", "--epochs", "1", "--no-progress", "--min-count", "2",
          "--out", str(tmp_path / "out"), "--repository", str(tmp_path / "repo"), "--no-quantize"])
    version = tmp_path / "repo" / "din-fp32" / "1"
    external = json.loads((version / "meta.json").read_text())["vocabulary"]["external"]
    assert not (version / "string_ids.json").exists() and all(isinstance(i, str) for i in external["items"])
    data = load_user_data(reviews, None, TimeSplit(min_count=2), ids="string").data
    model, _ = read_checkpoint(tmp_path / "out" / "din_dice.pt")
    rows, torch_scores = predict(model, data, data.test_users)
    expected = dict(zip(rows.tolist(), torch_scores.tolist(), strict=True))
    served_scores, torch_for_served = [], []
    async with serving([CtrService()], tmp_path / "repo", metrics_port=-1) as served, \
            CtrClient(served.address) as ctr:
        for user in data.test_users:
            history, history_categories, candidates, candidate_categories = _user_rows(data, user)
            scores = await ctr.score(_strings(np.array(history), external["items"]),
                                     _strings(np.array(history_categories), external["categories"]),
                                     _strings(np.array(candidates), external["items"]),
                                     _strings(np.array(candidate_categories), external["categories"]))
            served_scores += scores.click_probabilities.tolist()
            lo, hi = data.impression_offsets[user], data.impression_offsets[user + 1]
            torch_for_served += [expected[r] for r in range(lo, hi)]
    assert len(served_scores) == 2 * len(data.test_users) >= 80
    np.testing.assert_allclose(served_scores, torch_for_served, atol=1e-5)


async def test_the_load_generator_drives_a_string_id_model(trained: Path, tmp_path: Path) -> None:
    """python -m infersuite.loadtest run --service ctr on a model trained with string ids: the requests carry
    the model's own string ids (read from its meta.json) and every one is answered OK and checked."""
    repository = trained / "repo-reject"  # unknown ids refused: a request with an invented id would fail
    async with serving([CtrService()], repository, metrics_port=-1) as served:
        done = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "infersuite.loadtest", "run", "--service", "ctr", "--target", served.address,
            "--param", f"repository={repository}", "--param", "model=din-fp32", "--metrics-url", "none",
            "--concurrency", "2", "--duration", "0.5", "--warmup", "0.1", "--workers", "0", "--quiet",
            "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    step = report["steps"][0]
    assert step["ok"] > 0 and not step["errors"], step

