"""Bring your own data, ctr: `python -m models.ctr.train --data LOG --repository DIR` on a click log
with the user's own ids (a small synthetic world written as CSV) trains, reports on the test period,
exports din-fp32 with its vocabulary, and the ctr service on that repository scores requests in
those ids: known ids answer, an unknown id is refused naming the field, index and id (oov reject),
and a model trained with oov bucket scores it instead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infersuite.services.ctr import CtrService
from infersuite.services.ctr.client import CtrClient, CtrClientError
from tests.fixtures import serving

pytestmark = pytest.mark.integration
ITEM = lambda i: 1_000_000 + 7 * i  # noqa: E731 - the external ids the example log uses
CATEGORY = lambda c: 500 + c  # noqa: E731


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.ctr.data import ClickDataConfig, make_click_data
    from models.ctr.train import main
    from models.ctr.user_data import write_click_log

    root = tmp_path_factory.mktemp("ctr-user-data")
    world = make_click_data(ClickDataConfig(n_users=400, n_items=60, n_categories=6, max_history=12, seed=5))
    write_click_log(root / "clicks.csv", world, [0, *map(ITEM, range(1, 61))], [0, *map(CATEGORY, range(1, 7))])
    for oov in ("reject", "bucket"):
        main(["--data", str(root / "clicks.csv"), "--epochs", "1", "--no-progress", "--oov", oov, "--min-count", "3",
              "--out", str(root / oov), "--repository", str(root / f"repo-{oov}"),
              "--no-quantize"])  # the vocabulary path; test_ctr_user_quantization runs the quantization gate
    return root


def test_the_report_and_the_exported_vocabulary(trained: Path) -> None:
    quality = json.loads((trained / "reject" / "quality.json").read_text())
    assert set(quality["variants"]) == {"base", "din_prelu", "din_dice"}
    assert all(0.0 <= v["test_gauc"] <= 1.0 for v in quality["variants"].values())
    assert quality["data"]["rows"]["test"] > 0 and quality["data"]["vocabulary"]["oov"] == "reject"
    assert "| DIN (Dice) |" in (trained / "reject" / "quality.md").read_text()
    meta = json.loads((trained / "repo-reject" / "din-fp32" / "1" / "meta.json").read_text())
    external = meta["vocabulary"]["external"]
    assert external["oov"] == "reject" and len(external["items"]) == meta["vocabulary"]["n_items"]
    assert set(external["items"]) <= set(map(ITEM, range(1, 61)))


async def test_scores_in_the_user_s_ids_and_an_unknown_id_by_the_policy(trained: Path) -> None:
    meta = json.loads((trained / "repo-reject" / "din-fp32" / "1" / "meta.json").read_text())
    items, categories = meta["vocabulary"]["external"]["items"], meta["vocabulary"]["external"]["categories"]
    history = dict(history_item_ids=items[:3], history_category_ids=categories[:1] * 3)
    candidates = dict(candidate_item_ids=items[3:5], candidate_category_ids=categories[:1] * 2)
    async with serving([CtrService()], trained / "repo-reject", metrics_port=-1) as served, \
            CtrClient(served.address) as ctr:
        scores = await ctr.score(**history, **candidates)
        assert scores.click_probabilities.shape == (2,) and np.isfinite(scores.click_probabilities).all()
        with pytest.raises(CtrClientError, match=r"candidate_item_ids\[1\]=5 is not in the model's vocabulary"):
            await ctr.score(**history, candidate_item_ids=[items[3], 5], candidate_category_ids=categories[:1] * 2)
    async with serving([CtrService()], trained / "repo-bucket", metrics_port=-1) as served, \
            CtrClient(served.address) as ctr:
        known = await ctr.score(**history, **candidates)
        unknown = await ctr.score(**history, candidate_item_ids=[items[3], 5],
                                  candidate_category_ids=categories[:1] * 2)
        assert known.click_probabilities[0] == pytest.approx(unknown.click_probabilities[0], abs=1e-6)
        assert np.isfinite(unknown.click_probabilities).all()
