"""TensorRT's entropy calibration (exporters/quantize/schemes.py): the KL threshold on |x| histograms."""

from __future__ import annotations

import numpy as np
import pytest

from exporters.quantize.schemes import ABLATIONS, TENSORRT_BINS, tensorrt_entropy_threshold


def _histogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.histogram(np.abs(values), bins=TENSORRT_BINS, range=(0.0, float(np.abs(values).max())))


def test_a_long_tail_is_clipped_and_a_bounded_distribution_is_not() -> None:
    rng = np.random.default_rng(0)
    # Gaussian bulk plus a few huge outliers: the threshold sits far inside the maximum (clip the tail).
    tailed = np.concatenate([rng.normal(0.0, 1.0, 200_000), [60.0, -80.0, 100.0]])
    hist, edges = _histogram(tailed)
    threshold = tensorrt_entropy_threshold(hist, edges)
    assert 3.0 < threshold < 20.0, threshold
    # Uniform on [-1, 1]: every value matters equally, the threshold is (nearly) the maximum.
    uniform = rng.uniform(-1.0, 1.0, 200_000)
    hist, edges = _histogram(uniform)
    assert tensorrt_entropy_threshold(hist, edges) > 0.95


def test_narrow_histograms_keep_their_whole_range() -> None:
    hist = np.zeros(TENSORRT_BINS, np.int64)
    hist[:100] = 5  # fewer occupied bins than int8 levels: nothing to merge, nothing to clip
    edges = np.linspace(0.0, 2.0, TENSORRT_BINS + 1)
    assert tensorrt_entropy_threshold(hist, edges) == pytest.approx(edges[100])
    assert tensorrt_entropy_threshold(np.zeros(TENSORRT_BINS), edges) == pytest.approx(2.0)  # all zero


def test_the_ablation_changes_only_the_calibration_of_the_per_channel_recipe() -> None:
    from exporters.quantize.schemes import PER_CHANNEL_SCHEME

    ablation = ABLATIONS["abl-entropy-tensorrt"]
    assert ablation.reference == "int8-static-perchannel"
    differing = {field for field in ablation.scheme.__dataclass_fields__
                 if getattr(ablation.scheme, field) != getattr(PER_CHANNEL_SCHEME, field)}
    assert differing == {"calibration"}
    assert "TensorRT's entropy (KL over a 2,048-bin |x| histogram, 64 batches)" in ablation.scheme.describe()
