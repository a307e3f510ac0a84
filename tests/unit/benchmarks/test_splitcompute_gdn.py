"""The GDN-encoder study (benchmarks/splitcompute/gdn.py) on its tiny quick setting: both arms train with every
seed on one teacher, the comparison is the seed-paired test accuracy difference, and a rerun reads the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.splitcompute import gdn


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("gdn")
    gdn.main(["--quick", "--seeds", "2", "--jobs", "1", "--out", str(root / "runs"), "--report", str(root / "r.md")])
    return root, json.loads((root / "r.json").read_text())


def test_both_arms_train_with_every_seed_and_the_difference_is_paired(study: tuple[Path, dict]) -> None:
    root, saved = study
    for arm in gdn.ARMS:
        assert [r["seed"] for r in saved["records"][arm]] == [0, 1]
        assert all(0 <= r["metrics"]["test_accuracy"] <= 1 for r in saved["records"][arm])
    assert saved["records"]["gdn"][0]["key"]["train"]["student"]["encoder"] == "gdn"
    assert saved["records"]["teacher-stem"][0]["key"]["train"]["student"]["encoder"] == "teacher-stem"
    accuracy = {arm: np.mean([r["metrics"]["test_accuracy"] for r in saved["records"][arm]]) for arm in gdn.ARMS}
    comparison = saved["comparison"]
    assert comparison["estimate"] == pytest.approx(accuracy["gdn"] - accuracy["teacher-stem"])
    assert comparison["interval_95"][0] <= comparison["estimate"] <= comparison["interval_95"][1]
    report = (root / "r.md").read_text()
    assert "GDN minus teacher stem" in report and comparison["verdict"] in report


def test_a_rerun_reads_every_run_from_the_cache(study: tuple[Path, dict]) -> None:
    root, saved = study
    again = gdn.measure(2, 1, root / "runs", quick=True)
    assert all(r["cached"] for records in again["records"].values() for r in records)
    assert [r["metrics"] for r in again["records"]["gdn"]] == [r["metrics"] for r in saved["records"]["gdn"]]
