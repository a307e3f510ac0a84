"""Bring your own data, ctr, Amazon layout: `python -m models.ctr.train --data reviews_*_5.json[.gz]` on a
generated dataset (a few hundred reviews; gzip with --oov reject, plain with --oov bucket) trains,
reports on each user's last review, exports din-fp32 with string_ids.json beside it, and the ctr
service, sent the ids that file gives for the test rows' asins and categories, answers what the
torch checkpoint gives on those rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infersuite.services.ctr import CtrService
from infersuite.services.ctr.client import CtrClient
from tests.fixtures import serving

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.ctr.amazon_example import write_amazon_example
    from models.ctr.train import main

    root = tmp_path_factory.mktemp("ctr-amazon")
    for oov, compress in (("reject", True), ("bucket", False)):
        reviews, _ = write_amazon_example(root / f"data-{oov}", users=60, items=90, seed=7, compress=compress)
        main(["--data", str(reviews), "--epochs", "1", "--no-progress", "--oov", oov, "--min-count", "2",
              "--out", str(root / oov), "--repository", str(root / f"repo-{oov}"),
              "--no-quantize"])  # the served din stays fp32 (torch parity); test_ctr_user_quantization gates
    return root


def test_the_report_and_the_shipped_string_ids(trained: Path) -> None:
    quality = json.loads((trained / "reject" / "quality.json").read_text())
    assert quality["data"]["format"] == "amazon" and 300 <= quality["data"]["reviews"] <= 900
    assert quality["data"]["rows"]["test"] == quality["test_users"] <= 60  # one test row per user at most
    report = (trained / "reject" / "quality.md").read_text()
    assert "# CTR quality: Deep Interest Network on your Amazon reviews" in report and "| DIN (Dice) |" in report
    version = trained / "repo-reject" / "din-fp32" / "1"
    meta, ids = json.loads((version / "meta.json").read_text()), json.loads((version / "string_ids.json").read_text())
    assert sorted(ids["items"].values()) == sorted(meta["vocabulary"]["external"]["items"])
    assert sorted(ids["categories"].values()) == sorted(meta["vocabulary"]["external"]["categories"])
    assert set(ids["item_categories"]) == set(ids["items"]) and ids["unknown_id"] == 0


@pytest.mark.parametrize("oov", ["reject", "bucket"])
async def test_served_answers_equal_torch_on_the_test_rows(trained: Path, oov: str) -> None:
    from models.ctr.train import predict, read_checkpoint
    from models.ctr.user_data import TimeSplit, load_user_data

    version = trained / f"repo-{oov}" / "din-fp32" / "1"
    external = json.loads((version / "meta.json").read_text())["vocabulary"]["external"]
    ids = json.loads((version / "string_ids.json").read_text())
    names = {kind: {v: k for k, v in ids[kind].items()} for kind in ("items", "categories")}

    def client_ids(rows: np.ndarray, kind: str) -> list[int]:
        """Embedding rows back to the strings a client holds, then to the ids string_ids.json gives (0: unlisted)."""
        listed = external[kind]
        return [ids[kind].get(names[kind].get(listed[r - 1]) if r <= len(listed) else None, 0) for r in rows]

    reviews = next((trained / f"data-{oov}").glob("reviews_*"))
    data = load_user_data(reviews, None, TimeSplit(min_count=2, oov=oov)).data  # type: ignore[arg-type]
    model, _ = read_checkpoint(trained / oov / "din_dice.pt")
    impression_rows, torch_scores = predict(model, data, data.test_users)
    expected = dict(zip(impression_rows.tolist(), torch_scores.tolist(), strict=True))
    served_scores, torch_for_served = [], []
    async with serving([CtrService()], trained / f"repo-{oov}", metrics_port=-1) as served, \
            CtrClient(served.address) as ctr:
        for user in data.test_users:
            length = int(data.history_lengths[user])
            lo, hi = data.impression_offsets[user], data.impression_offsets[user + 1]
            scores = await ctr.score(client_ids(data.history_items[user, :length], "items"),
                                     client_ids(data.history_categories[user, :length], "categories"),
                                     client_ids(data.candidate_items[lo:hi], "items"),
                                     client_ids(data.candidate_categories[lo:hi], "categories"))
            served_scores += scores.click_probabilities.tolist()
            torch_for_served += [expected[r] for r in range(lo, hi)]
    assert len(served_scores) == 2 * len(data.test_users) >= 80
    np.testing.assert_allclose(served_scores, torch_for_served, atol=1e-5)
