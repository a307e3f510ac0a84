"""The seed-level interval from per-seed summaries (models/statistics.py): the issue's figures for DIN's
QAT vs its fp32 control and PaSST's Patchout at equal compute (3 seeds, Student-t) come out unresolved,
the units-only bootstrap's width widens it, one seed is never a verdict, and `percentile_of` places a
draw among many."""

from __future__ import annotations

import numpy as np
import pytest

from models.statistics import SEED_RULE, percentile_of, seed_level_interval


def test_three_seeds_reproduce_the_reviews_t_intervals() -> None:
    qat = seed_level_interval([-0.0020709870, -0.0024476817, -0.0001656139])  # reports/ctr_quality.json
    assert (round(qat.low, 4), round(qat.high, 4)) == (-0.0046, 0.0015)
    assert qat.verdict == "unresolved" and qat.seeds == 3 and qat.resamples == 0
    patchout = seed_level_interval(np.array([0.903, 0.847, 0.817]) - np.array([0.850, 0.769, 0.611]))
    assert (round(patchout.low, 2), round(patchout.high, 2)) == (-0.09, 0.32)
    assert "Student-t" in SEED_RULE and "seeds" in SEED_RULE


def test_a_consistent_difference_is_supported_and_unit_noise_widens_it() -> None:
    steady = seed_level_interval([0.020, 0.022, 0.019, 0.021])
    assert steady.verdict == "supported" and steady.low > 0
    widened = seed_level_interval([0.020, 0.022, 0.019, 0.021], unit_interval=(0.005, 0.035), units=500)
    assert widened.low < steady.low and widened.high > steady.high and widened.units == 500
    assert seed_level_interval([-0.02, -0.03, -0.025]).verdict == "contradicted"


def test_one_seed_is_unresolved_whatever_its_size() -> None:
    one = seed_level_interval([0.5], unit_interval=(0.4, 0.6))
    assert one.verdict.startswith("unresolved (one seed") and one.low == pytest.approx(0.4)
    with pytest.raises(ValueError):
        seed_level_interval([])
    with pytest.raises(ValueError):
        seed_level_interval([0.1, np.nan])
    with pytest.raises(ValueError):
        seed_level_interval([0.1, 0.2], unit_interval=(0.3, 0.1))


def test_percentile_of_a_draw() -> None:
    draws = np.arange(100.0)
    assert percentile_of(-1.0, draws) == 0.0 and percentile_of(1000.0, draws) == 100.0
    assert percentile_of(22.0, draws) == pytest.approx(22.5)  # 22 below, one tie counted half
    with pytest.raises(ValueError):
        percentile_of(1.0, np.array([]))
