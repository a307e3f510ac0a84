"""BD-rate and matched-accuracy ratios on synthetic curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.splitcompute.bdrate import bd_rate, frontier, ratio_at

RATES = np.array([100.0, 180.0, 400.0, 900.0, 2500.0])
ACCURACIES = np.array([0.55, 0.68, 0.80, 0.86, 0.90])


@pytest.mark.parametrize("factor", [0.1, 0.5, 2.0, 25.9])
def test_a_curve_scaled_by_a_constant_factor_in_rate_has_that_bd_rate(factor: float) -> None:
    result = bd_rate((RATES, ACCURACIES), (RATES * factor, ACCURACIES))
    assert result is not None
    assert result.value == pytest.approx(factor - 1, rel=1e-9, abs=1e-12)
    assert (result.accuracy_low, result.accuracy_high) == (0.55, 0.90)
    assert ratio_at((RATES, ACCURACIES), (RATES * factor, ACCURACIES), 0.83) == pytest.approx(1 / factor, rel=1e-9)


def test_bd_rate_integrates_only_over_the_overlapping_accuracies() -> None:
    # a log-linear reference (PCHIP fits it exactly on any subset); tested = reference / 4 on
    # [0.68, 0.90] only, so the overlap starts at 0.68
    reference = 30 * np.exp(9 * ACCURACIES)
    tested_rates, tested_acc = reference[1:] / 4, ACCURACIES[1:]
    result = bd_rate((reference, ACCURACIES), (tested_rates, tested_acc))
    assert result is not None and result.accuracy_low == 0.68 and result.accuracy_high == 0.90
    assert result.value == pytest.approx(-0.75, rel=1e-9)
    assert ratio_at((reference, ACCURACIES), (tested_rates, tested_acc), 0.6) is None  # outside the tested curve


def test_a_log_linear_difference_averages_in_log_space() -> None:
    # log r_test - log r_ref = k * (a - 0.55): the mean over [0.55, 0.90] is k * 0.175
    accuracies = np.linspace(0.55, 0.90, 8)
    reference = 50 * np.exp(12 * accuracies)
    tested = reference * np.exp(-4 * (accuracies - 0.55))
    result = bd_rate((reference, accuracies), (tested, accuracies))
    assert result is not None
    assert result.value == pytest.approx(math.expm1(-4 * 0.175), rel=1e-6)


def test_curves_without_a_common_accuracy_range_have_no_bd_rate() -> None:
    assert bd_rate(([10, 20], [0.1, 0.2]), ([10, 20], [0.3, 0.4])) is None


def test_the_frontier_drops_points_that_cost_more_without_being_more_accurate() -> None:
    rates, accuracies = frontier([2219, 1542, 2885, 5176, 2219], [0.866, 0.847, 0.866, 0.875, 0.860])
    np.testing.assert_array_equal(rates, [1542, 2219, 5176])
    np.testing.assert_array_equal(accuracies, [0.847, 0.866, 0.875])


def test_bad_curves_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        frontier([0.0, 10.0], [0.5, 0.6])
    with pytest.raises(ValueError, match="finite"):
        frontier([10.0, 20.0], [0.5, float("nan")])
    with pytest.raises(ValueError, match="two efficient points"):
        bd_rate(([10, 20], [0.5, 0.4]), ([10, 20], [0.5, 0.6]))
