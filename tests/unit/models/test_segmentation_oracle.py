"""The oracle at a given mean depth (models.segmentation.gating.oracle_confusions): the headroom the ECO-M2F gate is
measured against, at exactly the gate's compute, the best any exit assignment can do on the summed quality."""

from __future__ import annotations

import numpy as np
import pytest

from models.segmentation.gating import expected_confusions, oracle_confusions

EXITS = [2, 3, 4, 5, 6]


def _depth_coded(n: int) -> np.ndarray:
    """(n, E, 2, 2) confusions whose [0, 0] cell holds the exit's depth, so a mix's mean depth can be read back."""
    confusions = np.zeros((n, len(EXITS), 2, 2))
    confusions[:, :, 0, 0] = EXITS
    return confusions


@pytest.mark.parametrize("mean_layers", [2.0, 2.37, 3.5, 4.9, 6.0])
def test_the_oracle_spends_exactly_the_compute_it_is_given(mean_layers: float) -> None:
    quality = np.random.default_rng(1).normal(size=(40, len(EXITS))).cumsum(1)
    oracle = oracle_confusions(_depth_coded(40), quality, EXITS, mean_layers)
    assert oracle[:, 0, 0].mean() == pytest.approx(mean_layers)


def test_at_equal_compute_the_oracle_beats_the_mix_and_every_assignment_tried() -> None:
    rng = np.random.default_rng(2)
    quality = rng.normal(size=(60, len(EXITS))).cumsum(1)
    # quality-coded confusions: cell [0, 0] of image i at exit k holds quality[i, k]
    confusions = np.zeros((60, len(EXITS), 2, 2))
    confusions[:, :, 0, 0] = quality
    depth = 3.4
    oracle = oracle_confusions(confusions, quality, EXITS, depth)[:, 0, 0].sum()
    mix = expected_confusions(confusions, EXITS, depth)[:, 0, 0].sum()
    assert oracle > mix
    grid = np.asarray(EXITS)
    for _ in range(200):  # random assignments with the same mean depth (up to the grid) never do better
        choice = rng.integers(0, len(EXITS), 60)
        if grid[choice].mean() <= depth:
            assert quality[np.arange(60), choice].sum() <= oracle + 1e-9


def test_a_depth_outside_the_exits_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the exits"):
        oracle_confusions(_depth_coded(3), np.zeros((3, len(EXITS))), EXITS, 7.0)
