"""The hierarchical bootstrap (models/statistics.py): a difference that holds on every seed is
supported, one that flips sign between seeds is unresolved even where a bootstrap over test units
alone (the first reports' method) calls it supported, the interval is reproducible, and missing
values are refused."""

from __future__ import annotations

import numpy as np
import pytest

from models.ctr.metrics import paired_bootstrap
from models.statistics import RULE, hierarchical_bootstrap


def _units(rng: np.random.Generator, seed_effects: list[float], units: int = 2000, noise: float = 0.05) -> np.ndarray:
    return np.array([effect + noise * rng.standard_normal(units) for effect in seed_effects])


def test_a_difference_every_seed_shows_is_supported_and_a_negative_one_contradicted() -> None:
    rng = np.random.default_rng(0)
    better = hierarchical_bootstrap(_units(rng, [0.020, 0.022, 0.019]), resamples=2000)
    assert better.verdict == "supported" and 0 < better.low < better.estimate < better.high
    worse = hierarchical_bootstrap(_units(rng, [-0.020, -0.025, -0.018]), resamples=2000)
    assert worse.verdict == "contradicted" and worse.high < 0
    assert "supported" in RULE and "seeds" in RULE


def test_seed_variance_makes_a_unit_level_win_unresolved() -> None:
    rng = np.random.default_rng(1)
    differences = _units(rng, [0.05, -0.04, 0.06])  # training seeds disagree on the sign
    weights = np.ones(differences.shape[1])
    _, unit_low, _ = paired_bootstrap(weights, differences.mean(0), resamples=2000)  # units only, seeds averaged
    assert unit_low > 0  # what a units-only bootstrap would have called supported
    interval = hierarchical_bootstrap(differences, resamples=2000)
    assert interval.low < 0 < interval.high and interval.verdict == "unresolved"


def test_weights_one_seed_reproducibility_and_refusals() -> None:
    differences = np.array([[1.0, -1.0, 0.0, 0.5]] * 3)
    weighted = hierarchical_bootstrap(differences, weights=np.array([3.0, 1.0, 0.0, 0.0]), resamples=500)
    assert weighted.estimate == pytest.approx(0.5)  # (3 * 1 - 1) / 4
    again = hierarchical_bootstrap(differences, weights=np.array([3.0, 1.0, 0.0, 0.0]), resamples=500)
    assert (weighted.low, weighted.high) == (again.low, again.high)
    one = hierarchical_bootstrap(np.full((1, 50), 0.3), resamples=200)
    assert one.verdict.startswith("unresolved (one seed") and one.low == one.high == pytest.approx(0.3)
    for bad in (np.array([[np.nan, 1.0]]), np.zeros(3), np.zeros((0, 3))):
        with pytest.raises(ValueError):
            hierarchical_bootstrap(bad)
    with pytest.raises(ValueError, match="weights"):
        hierarchical_bootstrap(np.ones((2, 2)), weights=np.array([0.0, 0.0]))


def test_the_printed_rule_names_the_resamples_drawn() -> None:
    from models.statistics import RULE, rule

    assert "(5,000 resamples, paired)" in RULE
    assert "(500 resamples, paired)" in rule(500)
