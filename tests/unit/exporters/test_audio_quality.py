"""Quantization quality of the audio embedders sees a loss: the fp32 probe on quantized
embeddings, cosine and SQNR against fp32, with intervals."""

from dataclasses import replace

import numpy as np
import pytest

from exporters.audio_quality import QUALITY_DATA, ProbeBench, bootstrap_interval
from exporters.family_quant import AudioQuantization
from exporters.quantize.recipes import RECIPES


def test_the_default_scores_at_least_a_thousand_windows() -> None:
    scored_clips = round(QUALITY_DATA.clips_per_class * 10 * QUALITY_DATA.test_share)
    assert scored_clips * int(QUALITY_DATA.clip_seconds) >= 1000


def test_bootstrap_interval_brackets_the_mean() -> None:
    hits = np.array([1.0] * 90 + [0.0] * 10)
    low, high = bootstrap_interval(hits)
    assert low < 0.9 < high and high - low < 0.15


@pytest.fixture(scope="module")
def bench(tiny_audio):
    graph = tiny_audio.repository / "audio-passt-fp32" / "1" / "model.onnx"
    return graph, ProbeBench.fit(graph, replace(QUALITY_DATA, clips_per_class=8))


@pytest.mark.slow  # a torch export or training of several seconds: not in `make test-fast`
def test_fp32_against_itself_is_exact(bench) -> None:
    graph, probe = bench
    same = probe.score(graph)
    assert same["agreement"] == 1.0 and same["sqnr_db"] == float("inf")
    assert same["cosine_mean"] == pytest.approx(1.0, abs=1e-6) and same["windows"] == 80


@pytest.mark.slow  # a torch export or training of several seconds: not in `make test-fast`
def test_a_quantized_graph_shows_its_distance_from_fp32(bench, tiny_audio, tmp_path) -> None:
    graph, probe = bench
    family = AudioQuantization(tiny_audio.repository, "passt")
    quantized = RECIPES["int8-dynamic"](graph, tmp_path / "int8.onnx", family, "audio-passt").path
    moved = probe.score(quantized)
    assert moved["cosine_mean"] < 1.0 and 0 < moved["sqnr_db"] < 200
    assert 0.0 <= moved["accuracy_ci95"][0] <= moved["accuracy"] <= moved["accuracy_ci95"][1] <= 1.0
    assert moved["log_loss"] > 0
