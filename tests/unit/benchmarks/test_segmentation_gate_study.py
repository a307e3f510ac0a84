"""The gate study's comparison: the equal-compute mix per seed and the seed-mean bootstrap interval."""

from __future__ import annotations

import numpy as np

from benchmarks.segmentation.gate_study import seed_mean_interval, versus_mix
from models.segmentation.gating import ExitTable
from models.segmentation.metrics import mean_iou


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
    assert all(m.shape == (400, 2, 2) for m in result["mixes"])  # expected confusions: half of each depth
    assert result["mix"] == mean_iou(table.confusions.mean(1).sum(0))
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
    same = [table.confusions[np.arange(400), c] for c in result["choices"]]
    assert seed_mean_interval(table, result["choices"], same) == (0.0, 0.0)


def test_the_study_selects_a_setting_per_design_on_validation_and_renders_every_beta() -> None:
    from benchmarks.segmentation.gate_study import GateDesign, render, study
    from benchmarks.segmentation.report import BETAS
    from models.segmentation.eco_m2f import EcoM2F, EcoM2FConfig

    rng = np.random.default_rng(0)
    cfg = EcoM2FConfig(d_model=8, gate_hidden=8)

    def split(n: int) -> ExitTable:
        confusions = rng.integers(0, 30, (n, len(cfg.exits), 3, 3)).astype(np.int32)
        return ExitTable(cfg.exits, rng.uniform(0, 1, (n, len(cfg.exits))), confusions,
                         rng.normal(size=(n, 2 * 4 * cfg.d_model)).astype(np.float32))

    tables = {name: {("input", 2): split(n)} for name, n in (("train", 60), ("valid", 30), ("test", 30))}
    designs = (GateDesign("k*", "image_miou", "ideal_exit", pools=(2,), weight_decays=(0.01,), epochs=(1,)),
               GateDesign("gains", "dataset_miou", "gain", pools=(2,), weight_decays=(0.01, 1.0), epochs=(1,)))
    results = study(EcoM2F(cfg), tables, designs)
    assert [len(r["scored"]) for r in results] == [1, 2] and results[0]["r2"] is None
    assert len(results[1]["r2"]) == len(cfg.exits) - 1 and np.isfinite(results[1]["r2"]).all()
    assert all(len(r["test"]) == len(BETAS) and r["test"][0]["interval"][0] <= r["test"][0]["interval"][1]
               for r in results)
    text = render(results, "python -m benchmarks.segmentation.gate_study", "ckpt.pt", {"train": 60, "valid": 30,
                                                                                      "test": 30})
    assert text.count("| gains |") == 5 and "| k* | pool 2, wd 0.01, 1 epochs |" in text
