"""The segmentation report's verdicts: the goals table and the equal-compute fixed-depth baseline."""

from __future__ import annotations

import numpy as np

from benchmarks.segmentation.report import equal_compute_choice, goals
from models.segmentation.gating import ExitTable


def _fixed(miou_exit2: float, miou_full: float) -> list[dict]:
    return [{"policy": "fixed 2", "miou": miou_exit2, "encoder_gflops": 2.0},
            {"policy": "fixed 6", "miou": miou_full, "encoder_gflops": 6.0}]


def _gate(beta: float, miou: float, encoder_gflops: float, low: float) -> dict:
    return {"beta": beta, "miou": miou, "encoder_gflops": encoder_gflops, "vs_mix_95": (low, low + 0.01)}


def test_goals_are_met_only_with_the_measured_figures_that_meet_them() -> None:
    sweep = [_gate(0.0, 0.74, 5.0, 0.002), _gate(0.01, 0.735, 3.0, 0.001), _gate(0.02, 0.70, 2.0, -0.01)]
    lines = goals(_fixed(0.70, 0.74), sweep, [1.0, 3.0, 5.0], {"pixel_agreement": 0.9995}, "fpn")
    table = "\n".join(lines)
    assert "+4.00 overall" in table and table.count("**met**") == 5
    assert "at beta 0, 0.01 |" in table  # the interval is above 0 at two betas
    assert "at beta 0.01 |" in table  # 50% saved at 0.5 points lost; beta 0.02 loses 4 points
    flat = "\n".join(goals(_fixed(0.73, 0.735), sweep[2:], [0.6, 0.2, 0.6], None, "fpn"))
    assert flat.count("**missed**") == 3 and "at beta none" in flat and "served" not in flat


def test_equal_compute_mix_matches_the_mean_depth_it_is_given() -> None:
    table = ExitTable([2, 3, 4, 5, 6], np.zeros((4000, 5)), np.zeros((4000, 5, 2, 2), np.int32), np.zeros((4000, 1)))
    choice = equal_compute_choice(table, 3.25)
    assert set(np.unique(choice).tolist()) == {1, 2}  # exits 3 and 4 only
    assert abs(table.layers(choice).mean() - 3.25) < 0.03
