"""Training seeds on the segmentation user path: `--seeds N` trains N parents and gates, and the report gives the
gate against the equal-compute mix and against full depth as a hierarchical bootstrap over seeds x test images of
dataset mIoU (models.statistics.hierarchical_bootstrap_pooled on models.segmentation.metrics.iou_counts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.segmentation.metrics import iou_counts, mean_iou, mean_iou_of_counts
from models.segmentation.train import main
from models.segmentation.user_data import write_example
from models.statistics import hierarchical_bootstrap_pooled

TINY = ["n_layers=3", "d_model=32", "n_heads=2", "ffn_dim=64", "head_dim=16", "gate_hidden=16", "batch_size=8",
        "gate_epochs=10"]


def _confusions(rng: np.random.Generator, shape: tuple[int, ...], classes: int = 4) -> np.ndarray:
    matrices = rng.integers(0, 40, (*shape, classes, classes))
    matrices[..., 2, :] = 0  # class 2 never in the ground truth ...
    matrices[..., :, 2] = 0  # ... nor predicted: left out of the mean
    return matrices


def test_pooled_counts_give_the_datasets_miou() -> None:
    matrices = _confusions(np.random.default_rng(0), (9,))
    assert mean_iou_of_counts(iou_counts(matrices).sum(0)) == pytest.approx(mean_iou(matrices.sum(0)))
    assert np.isnan(mean_iou_of_counts(np.zeros(12)))


def test_the_pooled_bootstrap_reads_the_seed_mean_of_dataset_miou_differences() -> None:
    rng = np.random.default_rng(1)
    control = _confusions(rng, (3, 30))
    better = control.copy()
    better[..., 0, 0] += 30  # more of class 0 right, nothing else changed: a higher IoU on every image
    a, b = iou_counts(better), iou_counts(control)
    interval = hierarchical_bootstrap_pooled(a, b, mean_iou_of_counts, resamples=500)
    expected = np.mean([mean_iou(better[s].sum(0)) - mean_iou(control[s].sum(0)) for s in range(3)])
    assert interval.estimate == pytest.approx(expected)
    assert interval.low > 0 and interval.verdict == "supported"
    assert (interval.seeds, interval.units) == (3, 30)
    same = hierarchical_bootstrap_pooled(b, b, mean_iou_of_counts, resamples=200)
    assert same.estimate == 0 and same.low == same.high == 0
    noisy = hierarchical_bootstrap_pooled(iou_counts(_confusions(rng, (3, 30))), b, mean_iou_of_counts,
                                          resamples=500)
    assert noisy.low < noisy.estimate < noisy.high


def test_the_pooled_bootstrap_refuses_what_it_cannot_compare() -> None:
    counts = iou_counts(_confusions(np.random.default_rng(2), (2, 5)))
    with pytest.raises(ValueError, match="both be"):
        hierarchical_bootstrap_pooled(counts, counts[:, :4], mean_iou_of_counts)
    broken = counts.copy()
    broken[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        hierarchical_bootstrap_pooled(broken, counts, mean_iou_of_counts)


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("seg-seeds")
    write_example(root / "data", n_images=60, seed=4)
    metrics = main(["--data", str(root / "data"), "--image-size", "32", "--out", str(root / "out"), "--epochs", "2",
                    "--seed", "5", "--seeds", "2", "--no-progress", *[a for s in TINY for a in ("--set", s)]])
    return root / "out", metrics


def test_every_seed_is_trained_and_the_first_is_the_one_reported(two_seeds: tuple[Path, dict]) -> None:
    out, metrics = two_seeds
    study = json.loads((out / "seeds.json").read_text())
    assert [row["seed"] for row in study["seeds"]] == [5, 6]
    assert (out / "seeds" / "seed6" / "eco_m2f.pt").is_file() and not (out / "seeds" / "seed5").exists()
    assert metrics["train_config"]["seed"] == 5
    # the first seed's gate and fixed depths are the run's own test policies, computed the same way
    policies = {row["policy"]: row for row in metrics["test"]}
    first = study["seeds"][0]
    assert first["gate_miou"] == pytest.approx(policies["gate"]["miou"])
    assert first["gate_layers"] == pytest.approx(policies["gate"]["mean_layers"])
    for depth, miou in first["fixed_miou"].items():
        assert miou == pytest.approx(policies[f"fixed {depth}"]["miou"])
    for comparison in study["comparisons"].values():
        low, high = comparison["interval_95"]
        assert low <= comparison["estimate"] <= high and comparison["seeds"] == 2
        assert comparison["verdict"] in {"supported", "contradicted", "unresolved"}


def test_the_report_shows_the_seeds_and_their_intervals(two_seeds: tuple[Path, dict]) -> None:
    out, _ = two_seeds
    report = (out / "quality.md").read_text()
    assert "## Training seeds (2)" in report
    assert "| gate - equal-compute mix |" in report and "| gate - full depth |" in report
    assert "hierarchical bootstrap over training seeds and test units" in report
    assert "--seeds 2`" in report


def test_a_single_seed_run_clears_an_earlier_seed_study(two_seeds: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = two_seeds
    data = out.parent / "data"
    main(["--data", str(data), "--image-size", "32", "--out", str(out), "--epochs", "1", "--no-progress",
          *[a for s in TINY for a in ("--set", s)]])
    assert not (out / "seeds.json").exists() and not (out / "seeds").exists()
    assert "## Training seeds" not in (out / "quality.md").read_text()


def test_seeds_are_refused_with_a_regate(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--regate", str(tmp_path / "eco_m2f.pt"), "--seeds", "2"])
    assert exit_info.value.code == 2
