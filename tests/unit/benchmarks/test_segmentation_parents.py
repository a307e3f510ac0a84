"""The gate over independently trained parents (benchmarks/segmentation/parents.py) on its tiny quick setting:
every parent is trained with its own seed (and reused from the cache), every beta gets a seed-level interval from
the pooled bootstrap, and the report states the goals from the figures it shows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.segmentation import parents
from benchmarks.segmentation.report import BETAS


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("parents")
    parents.main(["--quick", "--parents", "2", "--out", str(root / "runs"), "--report", str(root / "report.md")])
    return root, json.loads((root / "report.json").read_text())


def test_each_parent_is_trained_with_its_own_seed_and_cached(study: tuple[Path, dict]) -> None:
    root, saved = study
    assert [p["seed"] for p in saved["parents"]] == [0, 1] and not any(p["cached"] for p in saved["parents"])
    for seed in (0, 1):
        key = json.loads((root / "runs" / f"seed{seed}" / "key.json").read_text())
        assert key["train"]["seed"] == seed
    first = parents.measure(2, root / "runs", quick=True)
    assert all(p["cached"] for p in first["parents"])
    # the cached parents give the same gates and figures as the trained ones
    assert first["cells"] == saved["cells"]


def test_every_beta_has_its_interval_and_the_goals_follow_from_the_rows(study: tuple[Path, dict]) -> None:
    root, saved = study
    analysis = saved["analysis"]
    assert [r["beta"] for r in analysis["rows"]] == list(BETAS)
    for row in analysis["rows"]:
        cells = saved["cells"][str(row["beta"])]
        assert len(cells) == 2
        assert row["gain"] == pytest.approx(np.mean([c["gate_miou"] - c["mix_miou"] for c in cells]))
        low, high = row["interval_95"]
        assert low <= high and row["verdict"] in {"supported", "contradicted", "unresolved"}
        assert all(0 <= c["gate_miou"] <= 1 and 2 <= c["layers"] <= 3 for c in cells)
    gains, headrooms = (sum(r[k] for r in analysis["rows"]) for k in ("gain", "headroom"))
    assert analysis["mean_captured"] == pytest.approx(gains / headrooms)
    above = sum(r["verdict"] == "supported" for r in analysis["rows"])
    assert analysis["betas_above"] == above and analysis["goals"]["betas_above"] == (above >= parents.BETAS_GOAL)
    report = (root / "report.md").read_text()
    assert f"**{above}** ({'met' if above >= parents.BETAS_GOAL else 'MISSED'})" in report
    assert "scene seed 41" in report and "hierarchical bootstrap over training seeds and test units" in report


def test_one_parent_is_refused() -> None:
    with pytest.raises(SystemExit):
        parents.main(["--quick", "--parents", "1"])
