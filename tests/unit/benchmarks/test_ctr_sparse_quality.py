"""benchmarks/ctr/sparse_quality.py on the study's tiny world: both arms train, the comparison is paired."""

from __future__ import annotations

import pytest
import torch

from benchmarks.ctr import sparse_quality
from benchmarks.ctr.sparse_quality import arms, compare, measure, render


def test_the_arms_differ_only_in_the_embedding_tables():
    dense, sparse = arms()["dense"], arms()["sparse"]
    assert dense.variant == sparse.variant and dense.name != sparse.name
    assert {k: v for k, v in sparse.train.items() if k != "sparse_embeddings"} == dense.train
    assert sparse.train["sparse_embeddings"] is True and "sparse_embeddings" not in dense.train


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    threads = torch.get_num_threads()
    try:
        return measure(2, 1, tmp_path_factory.mktemp("runs"), quick=True)
    finally:
        torch.set_num_threads(threads)


def test_both_arms_train_on_a_fresh_world_and_the_report_reads_the_paired_interval(quick_result):
    assert quick_result["world"]["seed"] == sparse_quality.WORLD_SEED != 0
    for name in ("dense", "sparse"):
        records = quick_result["records"][name]
        assert [r["seed"] for r in records] == [0, 1]
        assert all(0.0 <= r["test"]["gauc"] <= 1.0 and r["test"]["per_user"] for r in records)
    figures = compare(quick_result)
    low, high = figures["interval_95"]
    assert low <= figures["estimate"] <= high and figures["seeds"] == 2 and figures["users"] > 50
    text = render(quick_result, "python -m benchmarks.ctr.sparse_quality --quick")
    assert f"**{figures['estimate']:+.4f} [{low:+.4f}, {high:+.4f}]**" in text
    assert "| sparse tables, lazy Adam (--sparse-embeddings) |" in text and "seed 7" in text


def test_an_arm_compared_with_itself_is_zero_and_within_the_margin(quick_result):
    same = {**quick_result, "records": {"dense": quick_result["records"]["dense"],
                                        "sparse": quick_result["records"]["dense"]}}
    figures = compare(same)
    assert figures["estimate"] == 0.0 and figures["interval_95"] == [0.0, 0.0] and figures["within_margin"]
