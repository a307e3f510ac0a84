"""Claims that survive training variance: a hierarchical bootstrap over training seeds and test units.

A comparison of two trained models (a variant against its control, both trained with the same seeds
and scored on the same test units: users, images, clips) is a table of per-unit differences, one row
per training seed. Resampling only the units (as the first reports did) treats the trained models as
fixed and ignores that another seed would have trained different ones; with a handful of seeds that
is most of the uncertainty. Here every resample draws the seeds with replacement, then the units with
replacement (the same unit draw for every seed: the test set is shared, so seed and unit are
crossed), and takes the weighted mean difference. The interval is the percentile interval of those
resamples.

The rule every report prints (`RULE`): a claim that the variant is better is **supported** only when
the interval lies above 0, **contradicted** when it lies below, and **unresolved** when it holds 0.
With one seed the seed level cannot be resampled, and the verdict says so ("one seed").

A figure that is not a mean over units (dataset mIoU: IoU per class over all pixels of the set, then the
mean over classes) is resampled the same way by `hierarchical_bootstrap_pooled`: each unit keeps additive
counts (per class intersection and pixel totals), a resample pools the drawn units' counts per drawn seed
and applies the figure to the pools.

Where a report's committed .json keeps only per-seed summaries (each seed's mean difference over the
shared test units, and a bootstrap over units of the seed-averaged difference), the per-unit table is
gone and the bootstrap above cannot be run. `seed_level_interval` then gives the interval that keeps
training variance in: a Student-t interval over the per-seed differences (df = seeds - 1, the honest
width with a handful of seeds, where a percentile bootstrap of 3 values is far too narrow), its half-width
combined in quadrature with the units-only bootstrap's (test-set sampling, which the seeds share and so
their spread does not show; the seed x unit interaction is counted twice: conservative). It is never
narrower than either part. Its rule is `SEED_RULE`. `percentile_of` places one random draw (e.g. the
single seeded baseline a report used) among many draws of the same random procedure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

RESAMPLES = 5000


def rule(resamples: int = RESAMPLES) -> str:
    """The rule as a report prints it, with the resamples its intervals were drawn with."""
    return ("supported: the 95% interval of a hierarchical bootstrap over training seeds and test units "
            f"({resamples:,} resamples, paired) lies above 0; contradicted: below 0; unresolved: it holds 0")


RULE = rule()
SEED_RULE = ("supported: the 95% Student-t interval over training seeds of the per-seed paired difference "
             "(df = seeds - 1; its half-width combined in quadrature with the test-unit bootstrap's) lies above 0; "
             "contradicted: below 0; unresolved: it holds 0 or there is one seed")


@dataclass(frozen=True)
class Interval:
    """A weighted mean difference and its interval over seeds x units (resamples 0: the analytic
    `seed_level_interval`)."""

    estimate: float
    low: float
    high: float
    seeds: int
    units: int
    resamples: int
    level: float

    @property
    def verdict(self) -> str:
        if self.seeds < 2:
            return "unresolved (one seed: training variance not measured)"
        if self.low > 0:
            return "supported"
        if self.high < 0:
            return "contradicted"
        return "unresolved"

    def __str__(self) -> str:
        return (f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}] ({self.seeds} seeds x {self.units} units): "
                f"{self.verdict}")


def hierarchical_bootstrap(differences: np.ndarray, weights: np.ndarray | None = None, resamples: int = RESAMPLES,
                           level: float = 0.95, seed: int = 0) -> Interval:
    """`differences` (seeds, units): the variant minus the control per test unit, for each training seed
    (paired: both trained with that seed, scored on the same units). `weights` (units,) or (seeds, units),
    e.g. impressions per user for GAUC; None = equal. NaN anywhere is refused (a missing unit would
    silently change the comparison)."""
    values = np.asarray(differences, np.float64)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"differences must be (seeds, units) with at least one of each, got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("differences hold NaN or Inf: every seed must score every unit")
    w = np.ones_like(values) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), values.shape)
    if not np.isfinite(w).all() or (w < 0).any() or (w.sum(axis=1) <= 0).any():
        raise ValueError("weights must be finite, >= 0, and not all 0 for a seed")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"resamples must be >= 1 and level in (0, 1), got {resamples}, {level}")
    seeds, units = values.shape
    estimate = float((w * values).sum() / w.sum())
    rng = np.random.default_rng(seed)
    samples = np.empty(resamples)
    chunk = max(1, 2_000_000 // (seeds * units))  # resamples at a time: ~32 MB of gathered values
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        picked_seeds = rng.integers(0, seeds, (n, seeds))  # (n, S)
        picked_units = rng.integers(0, units, (n, units))  # (n, U), shared by the seeds of a resample
        v = values[picked_seeds[:, :, None], picked_units[:, None, :]]  # (n, S, U)
        ww = w[picked_seeds[:, :, None], picked_units[:, None, :]]
        total = ww.sum(axis=(1, 2))
        # A draw of only zero-weight units has no mean: it is left out (rare unless weights sit on few units).
        samples[start:start + n] = np.where(total > 0, (ww * v).sum(axis=(1, 2)) / np.where(total > 0, total, 1),
                                            np.nan)
    samples = samples[np.isfinite(samples)]
    if not samples.size:
        raise ValueError("every resample drew only zero-weight units: the weights sit on too few units")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), seeds, units, resamples, level)


def hierarchical_bootstrap_pooled(variant: np.ndarray, control: np.ndarray, metric: Callable[[np.ndarray], np.ndarray],
                                  resamples: int = RESAMPLES, level: float = 0.95, seed: int = 0) -> Interval:
    """The same resampling as `hierarchical_bootstrap` for a figure that is not a mean over units but a
    function of their pooled counts (dataset mIoU of summed confusions, accuracy of summed hits).
    `variant`, `control` (seeds, units, k): each unit's additive counts (paired: seed s of both trained with
    that seed, unit u the same test unit); `metric` maps pooled counts (..., k) to the figure (...). The
    difference per seed is metric(variant summed over the drawn units) - metric(control, same units); a
    resample averages it over the drawn seeds. Units are drawn as counts (a multinomial row), so a resample
    costs one (units x k) product per seed."""
    a, b = np.asarray(variant, np.float64), np.asarray(control, np.float64)
    if a.ndim != 3 or a.shape != b.shape or min(a.shape) < 1:
        raise ValueError(f"variant and control must both be (seeds, units, k) with at least one of each, got "
                         f"{a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("the counts hold NaN or Inf: every seed must score every unit")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"resamples must be >= 1 and level in (0, 1), got {resamples}, {level}")
    seeds, units, _ = a.shape
    per_seed = metric(a.sum(1)) - metric(b.sum(1))  # (seeds,)
    if not np.isfinite(per_seed).all():
        raise ValueError("the metric is not finite on the whole test set")
    rng = np.random.default_rng(seed)
    samples = np.empty(resamples)
    chunk = max(1, min(resamples, 4_000_000 // (units * max(1, a.shape[2]))))
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        picked_seeds = rng.integers(0, seeds, (n, seeds))
        drawn = rng.integers(0, units, (n, units))
        counts = np.zeros((n, units))
        np.add.at(counts, (np.repeat(np.arange(n), units), drawn.ravel()), 1.0)  # (n, units) times each unit drawn
        diff = np.stack([metric(counts @ a[s]) - metric(counts @ b[s]) for s in range(seeds)], 1)  # (n, seeds)
        picked = np.take_along_axis(diff, picked_seeds, 1)
        finite = np.isfinite(picked).any(1)  # a draw where the metric has no value (e.g. no class at all)
        block = np.full(n, np.nan)
        block[finite] = np.nanmean(picked[finite], 1)
        samples[start:start + n] = block
    samples = samples[np.isfinite(samples)]
    if not samples.size:
        raise ValueError("the metric had no value on any resample")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(per_seed.mean()), float(low), float(high), seeds, units, resamples, level)


def seed_level_interval(per_seed: np.ndarray, unit_interval: tuple[float, float] | None = None, units: int = 0,
                        level: float = 0.95) -> Interval:
    """`per_seed` (seeds,): the variant minus the control for each training seed, each over the same test
    units. `unit_interval`: a units-only bootstrap interval (at `level`) of the seed-averaged difference, or
    None. The interval is mean +- sqrt((t(level, seeds - 1) * sd / sqrt(seeds))^2 + (units-only half-width)^2),
    never narrower than either part; with one seed it
    is the units-only interval (or the point) and the verdict says that training variance is not measured."""
    values = np.asarray(per_seed, np.float64)
    if values.ndim != 1 or values.size < 1 or not np.isfinite(values).all():
        raise ValueError(f"per_seed must be a finite 1-d array with at least one seed, got {values!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    unit_half = 0.0
    if unit_interval is not None:
        low, high = unit_interval
        if not (np.isfinite(low) and np.isfinite(high)) or high < low:
            raise ValueError(f"unit_interval must be a finite (low, high), got {unit_interval}")
        unit_half = (high - low) / 2
    estimate, seeds = float(values.mean()), values.size
    if seeds < 2:
        return Interval(estimate, estimate - unit_half, estimate + unit_half, 1, units, 0, level)
    # Half-widths, not standard errors, are combined: the seed share keeps its t(seeds - 1) quantile (a
    # pooled Welch-Satterthwaite df would let a little unit noise narrow the interval).
    seed_half = float(stats.t.ppf(0.5 + level / 2, seeds - 1)) * float(values.std(ddof=1)) / np.sqrt(seeds)
    half = float(np.hypot(seed_half, unit_half))
    return Interval(estimate, estimate - half, estimate + half, seeds, units, 0, level)


def percentile_of(value: float, draws: np.ndarray) -> float:
    """Where `value` falls among `draws`, in percent (ties count half): 50 = a typical draw."""
    samples = np.asarray(draws, np.float64)
    if samples.ndim != 1 or samples.size < 1 or not np.isfinite(samples).all() or not np.isfinite(value):
        raise ValueError("draws must be a finite 1-d array with at least one value, and value finite")
    below, tied = float((samples < value).sum()), float((samples == value).sum())
    return 100.0 * (below + tied / 2) / samples.size
