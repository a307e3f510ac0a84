"""Bjontegaard delta rate (BD-rate) and byte ratios at matched accuracy between rate-accuracy curves.

G. Bjontegaard, "Calculation of average PSNR differences between RD-curves" (VCEG-M33, 2001),
with accuracy in place of PSNR: each curve is log(rate) as a function of accuracy, fitted by a
piecewise-cubic Hermite interpolant (PCHIP, the monotone fit later VCEG/JVET BD-rate tools use
instead of the original cubic polynomial, which can oscillate); the difference of the two fits is
integrated (exactly: both are piecewise cubics) over the accuracies both curves cover and averaged:

    BD-rate = exp( 1/(a_hi - a_lo) * integral_{a_lo}^{a_hi} [log r_test(a) - log r_ref(a)] da ) - 1

so -0.9 means the tested method needs 10x fewer bytes on average over the common range.

A curve is first reduced to its efficient frontier (a point costing more bytes than another
without being more accurate is dropped), which makes accuracy strictly increase with rate, as
the interpolation needs. numpy + scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.interpolate import PchipInterpolator

Curve = tuple[ArrayLike, ArrayLike]  # (bytes per image, accuracy) of every point


@dataclass(frozen=True)
class BdRate:
    value: float  # relative rate change of the tested curve vs the reference (-0.9 = 10x fewer bytes)
    accuracy_low: float  # the overlapping accuracy range integrated over
    accuracy_high: float


def frontier(rates: ArrayLike, accuracies: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The efficient points, sorted by rate: every kept point is more accurate than all cheaper ones."""
    rate, accuracy = np.asarray(rates, np.float64), np.asarray(accuracies, np.float64)
    if rate.shape != accuracy.shape or rate.size == 0:
        raise ValueError(f"rates {rate.shape} and accuracies {accuracy.shape} must be equal, non-empty")
    if not (np.all(np.isfinite(rate)) and np.all(rate > 0) and np.all(np.isfinite(accuracy))):
        raise ValueError("rates must be finite and positive, accuracies finite")
    order = np.lexsort((-accuracy, rate))  # by rate, the more accurate first on equal rates
    kept_rate: list[float] = []
    kept_accuracy: list[float] = []
    for r, a in zip(rate[order], accuracy[order], strict=True):
        if not kept_accuracy or a > kept_accuracy[-1]:
            kept_rate.append(r)
            kept_accuracy.append(a)
    return np.array(kept_rate), np.array(kept_accuracy)


def log_rate_curve(rates: ArrayLike, accuracies: ArrayLike) -> PchipInterpolator:
    """log(rate) as a monotone function of accuracy over the curve's frontier (>= 2 points)."""
    rate, accuracy = frontier(rates, accuracies)
    if rate.size < 2:
        raise ValueError("a curve needs at least two efficient points")
    return PchipInterpolator(accuracy, np.log(rate), extrapolate=False)


def overlap(reference: PchipInterpolator, tested: PchipInterpolator) -> tuple[float, float] | None:
    low = max(float(reference.x[0]), float(tested.x[0]))
    high = min(float(reference.x[-1]), float(tested.x[-1]))
    return (low, high) if high > low else None


def bd_rate(reference: Curve, tested: Curve, accuracy_floor: float | None = None) -> BdRate | None:
    """BD-rate of `tested` vs `reference`, each (rates, accuracies), over the accuracies both cover (from
    `accuracy_floor` up, when given: the high-accuracy range); None when no such range is left."""
    ref, test = log_rate_curve(*reference), log_rate_curve(*tested)
    span = overlap(ref, test)
    if span is None:
        return None
    low, high = span
    if accuracy_floor is not None:
        low = max(low, accuracy_floor)
        if high <= low:
            return None
    integral = float(test.integrate(low, high)) - float(ref.integrate(low, high))  # exact: piecewise cubics
    return BdRate(float(np.expm1(integral / (high - low))), low, high)


def ratio_at(reference: Curve, tested: Curve, accuracy: float) -> float | None:
    """reference bytes / tested bytes at one accuracy, each interpolated on its curve in log-rate;
    None outside either curve's accuracy range."""
    ref, test = log_rate_curve(*reference), log_rate_curve(*tested)
    values = float(ref(accuracy)), float(test(accuracy))
    if not np.all(np.isfinite(values)):
        return None
    return float(np.exp(values[0] - values[1]))
