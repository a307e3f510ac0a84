"""The Patchout study's bookkeeping: paired per-clip differences, the verdict per budget, the report."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.audio.patchout import VARIANTS, paired_differences, render, run_key, summarise

WITH, WITHOUT = VARIANTS


def results(correct: dict[tuple[str, int], list[int]], budgets: tuple[float, ...] = (15.0,),
            seeds: int = 3) -> dict:
    runs = {run_key(v, b, s): {"epochs": 4 if v == WITH else 3, "correct": c}
            for (v, s), c in correct.items() for b in budgets}
    return {"budgets": list(budgets), "seeds": list(range(seeds)), "runs": runs, "train_clips": 10,
            "test_clips": len(next(iter(correct.values()))), "train_config": {}, "passt_config": {},
            "patchout": {}, "cpu_s_per_epoch": {WITH: 1.5, WITHOUT: 2.5}, "wall_s": 60.0, "written": "now"}


def test_patchout_ahead_on_every_seed_and_clip_is_supported() -> None:
    rng = np.random.default_rng(0)
    correct = {}
    for s in range(5):
        base = (rng.random(200) < 0.5).astype(int)
        correct[WITHOUT, s] = base.tolist()
        correct[WITH, s] = np.maximum(base, rng.random(200) < 0.4).astype(int).tolist()
    row, = summarise(results(correct, seeds=5))
    assert row["difference"]["verdict"] == "supported"
    assert row["difference"]["low"] > 0
    assert row["epochs"] == {WITH: 4, WITHOUT: 3}


def test_patchout_behind_is_contradicted_and_a_tie_unresolved() -> None:
    ones, zeros = [1] * 50 + [0] * 50, [0] * 50 + [0] * 50
    behind = {(WITH, s): zeros for s in range(3)} | {(WITHOUT, s): ones for s in range(3)}
    assert summarise(results(behind))[0]["difference"]["verdict"] == "contradicted"
    tie = {(v, s): ones for v in VARIANTS for s in range(3)}
    assert summarise(results(tie))[0]["difference"]["verdict"] == "unresolved"


def test_a_seed_missing_for_one_variant_is_left_out_of_the_pairing() -> None:
    correct = {(v, s): [1, 0, 1, 0] for v in VARIANTS for s in range(3)}
    r = results(correct)
    del r["runs"][run_key(WITHOUT, 15.0, 2)]
    row, = summarise(r)
    assert row["seeds"] == [0, 1]
    r["budgets"].append(30.0)  # no run at all at this budget: no row for it
    assert [x["budget_cpu_s"] for x in summarise(r)] == [15.0]


def test_variants_scored_on_different_clips_are_refused() -> None:
    correct = {(WITH, 0): [1, 1, 0], (WITHOUT, 0): [1, 0]}
    with pytest.raises(ValueError, match="different clips"):
        paired_differences(results(correct, seeds=1)["runs"], 15.0, [0])


def test_report_states_each_budget_with_its_interval_and_verdict() -> None:
    correct = {(v, s): ([1, 1, 1, 0] if v == WITH else [1, 0, 0, 0]) * 20 for v in VARIANTS for s in range(3)}
    text = render(results(correct, budgets=(15.0, 30.0)), "python -m benchmarks.audio.patchout --seeds 3")
    assert "`python -m benchmarks.audio.patchout --seeds 3`" in text
    row = next(line for line in text.splitlines() if line.startswith("| 30 |"))
    assert "4 / 3" in row and "0.750 +- 0.000" in row and "0.250 +- 0.000" in row and "+0.500 [+0.3" in row
    assert "**supported**" in row and "3 of 3" in row
