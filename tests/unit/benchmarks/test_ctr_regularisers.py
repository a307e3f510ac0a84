"""benchmarks/ctr/regularisers.py on a tiny table: the arms run, the figures mean what the report says."""

from __future__ import annotations

import pytest
import torch

from benchmarks.ctr import regularisers
from benchmarks.ctr.regularisers import ARMS, make_batches, ratio, render, run_arm


@pytest.fixture
def tiny_runs():
    threads = torch.get_num_threads()
    try:
        runs = [{"round": k, **run_arm(reg, tables, 2_000, steps=2, warmup=1)} for k in (1, 2) for reg, tables in ARMS]
    finally:
        torch.set_num_threads(threads)
    return runs


def test_batches_follow_the_long_tail_and_stay_inside_the_tables():
    batches, frequencies = make_batches(5_000, 4, seed=0)
    items = torch.cat([b["history_items"][b["history_mask"] > 0] for b in batches])
    assert int(items.min()) >= 1 and int(items.max()) <= 5_000
    assert float((items <= 50).float().mean()) > 0.3  # 1/rank: the top 1% of ids take a large share
    assert all(int(b["history_mask"].sum(1).min()) >= 1 and b["history_items"].shape[1] <= 100 for b in batches)
    assert frequencies["item"].shape == (5_001,) and float(frequencies["item"][0]) == 0.0
    assert float(frequencies["item"][1]) > float(frequencies["item"][5_000]) >= 1.0


def test_every_arm_runs_and_only_sparse_tables_have_small_gradients(tiny_runs):
    by_arm = {(r["regulariser"], r["tables"]): r for r in tiny_runs if r["round"] == 1}
    assert set(by_arm) == set(ARMS)
    table_bytes = (2_001 + regularisers.CATEGORIES + 1) * 64 * 4
    for (_, tables), r in by_arm.items():
        assert len(r["wall_ms"]) == 2 and all(x > 0 for x in r["wall_ms"] + r["cpu_ms"])
        assert r["optimizer_state_bytes"] >= 2 * table_bytes  # both Adams keep two moments of every row
        if tables == "dense":
            assert r["gradient_bytes"] == table_bytes
        else:
            assert 0 < r["gradient_bytes"] < table_bytes / 2


def test_the_report_shows_every_arm_and_ratio_and_refuses_a_busy_machine(tiny_runs):
    result = {"revision": "abc1234", "items": [2_000], "steps": 2, "warmup": 1, "rounds": 2, "runs": tiny_runs,
              "cores": {"idle_share": 0.4, "foreign_share": 0.2, "offenders": ["python (9.0 s)"]},
              "load_after": (1.0, 1.0, 1.0)}
    l2 = ratio(result, 2_000, ("l2", "dense"), ("none", "dense"))
    assert len(l2) == 2 and all(v > 0 for v in l2)
    text = render(result, "python -m benchmarks.ctr.regularisers --items 2000")
    assert text.startswith("> **INVALID: work outside this benchmark took 20.0%")
    for name in ("L2 on every row, dense (Adam)", "MBA, sparse (lazy Adam)", "none, sparse tables (lazy Adam)"):
        assert f"| 2,000 | {name} |" in text
    assert "Reading (medians over rounds): at 2,000 item rows" in text
    quiet = render({**result, "cores": {**result["cores"], "foreign_share": 0.01}}, "cmd")
    assert not quiet.startswith("> **INVALID")
