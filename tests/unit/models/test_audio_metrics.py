"""Quality figures of the audio report on inputs with known answers."""

import numpy as np
import pytest

from models.audio.metrics import detect_onsets, linear_probe_accuracy, onset_f_measure, retrieval_map


def test_retrieval_map_is_one_for_separated_classes_and_low_for_noise() -> None:
    labels = np.repeat(np.arange(4), 10)
    separated = np.eye(4)[labels] + 0.01 * np.random.default_rng(0).standard_normal((40, 4))
    assert retrieval_map(separated, labels) == pytest.approx(1.0)
    noise = np.random.default_rng(1).standard_normal((40, 8))
    assert retrieval_map(noise, labels) < 0.5


def test_linear_probe_separates_separable_classes() -> None:
    labels = np.repeat(np.arange(3), 30)
    features = np.eye(3)[labels] + 0.1 * np.random.default_rng(0).standard_normal((90, 3))
    assert linear_probe_accuracy(features[::2], labels[::2], features[1::2], labels[1::2]) == 1.0


def test_onset_f_measure_uses_a_one_to_one_200ms_tolerance() -> None:
    reference = [np.array([1.0, 2.0, 3.0])]
    assert onset_f_measure(reference, [np.array([1.1, 2.19, 3.3])])["f_measure"] == pytest.approx(2 / 3)
    assert onset_f_measure(reference, [np.array([1.0, 1.05])])["precision"] == 0.5  # one match per onset


def test_novelty_peaks_at_a_change_of_embedding() -> None:
    times_ms = np.arange(0, 4000, 50.0)
    embeddings = np.where((times_ms < 2000)[:, None], [1.0, 0.0], [0.0, 1.0])
    # a 1 s window blurs the change over +-0.5 s, as real timestamp embeddings do
    blend = np.clip((times_ms - 1500) / 1000, 0, 1)[:, None]
    embeddings = (1 - blend) * np.array([1.0, 0.0]) + blend * np.array([0.0, 1.0])
    onsets = detect_onsets(embeddings, times_ms, window_s=1.0, threshold=0.1)
    np.testing.assert_allclose(onsets, [2.0], atol=0.05)
