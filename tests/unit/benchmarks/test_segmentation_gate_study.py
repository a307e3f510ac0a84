"""The gate study's comparison: the equal-compute mix per seed and the seed-mean bootstrap interval."""

from __future__ import annotations

import numpy as np

from benchmarks.segmentation_gate_study import seed_mean_interval, versus_mix
from models.segmentation.gating import ExitTable


def _table(n: int = 400) -> ExitTable:
    """Exit 2 gets every pixel of odd images wrong, exit 3 gets all right: going deeper pays on odd images only."""
    confusions = np.zeros((n, 2, 2, 2), np.int32)
    confusions[:, :, 0, 0] = confusions[:, :, 1, 1] = 50
    confusions[1::2, 0, 1, 1], confusions[1::2, 0, 1, 0] = 0, 50
    return ExitTable([2, 3], np.zeros((n, 2)), confusions, np.zeros((n, 1)))


def test_a_gate_that_sends_exactly_the_images_that_gain_deeper_beats_the_mix_beyond_noise() -> None:
    table = _table()
    knowing = np.arange(400) % 2  # odd images (the ones exit 2 fails) go to exit 3
    result = versus_mix(table, [knowing, knowing, knowing])
    assert abs(result["layers"] - 2.5) < 1e-9
    assert all(abs(table.layers(m).mean() - 2.5) < 0.06 for m in result["mixes"])
    assert result["gate"] == 1.0 and result["diff"] > 0.1
    low, high = seed_mean_interval(table, result["choices"], result["mixes"])
    assert 0 < low <= result["diff"] <= high


def test_a_gate_no_better_than_chance_gets_an_interval_around_zero() -> None:
    table = _table()
    rng = np.random.default_rng(3)
    guesses = [rng.integers(0, 2, 400) for _ in range(3)]
    result = versus_mix(table, guesses)
    low, high = seed_mean_interval(table, result["choices"], result["mixes"])
    assert low < 0 < high
    assert seed_mean_interval(table, result["mixes"], result["mixes"]) == (0.0, 0.0)
