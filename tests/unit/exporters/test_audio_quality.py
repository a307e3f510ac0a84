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


def _corpus(root, tasks, clips_per_label: int = 6):
    """A corpus folder in the CSV layout the corpus writes (tasks/<name>.csv: file,label,split,group): tones of
    two registers, 1.5 s at 32 kHz (two scene windows each)."""
    import soundfile

    rng = np.random.default_rng(0)
    t = np.arange(48000) / 32000
    (root / "tasks").mkdir(parents=True)
    for task in tasks:
        rows = ["file,label,split,group"]
        for label, (low, high) in (("low", (200, 400)), ("high", (3000, 5000))):
            for k in range(clips_per_label):
                name = f"{task}/{label}{k}.wav"
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                tone = 0.3 * np.sin(2 * np.pi * rng.uniform(low, high) * t) + 0.01 * rng.standard_normal(t.size)
                soundfile.write(str(root / name), tone.astype(np.float32), 32000)
                rows.append(f"{name},{label},{'test' if k >= clips_per_label - 2 else 'train'},g{k}")
        (root / "tasks" / f"{task}.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.slow  # a torch export or training of several seconds: not in `make test-fast`
def test_with_the_corpus_built_the_gate_scores_its_held_out_tasks(tiny_audio, tmp_path) -> None:
    from exporters.audio import quant_families
    from exporters.audio_quality import CORPUS_TASKS, corpus_available

    artifacts = tmp_path / "artifacts"
    plain, = [f for f in quant_families(tiny_audio.repository, artifacts) if f.family == "audio-passt"]
    assert "1,000 held-out windows" in plain.metric  # no corpus: the synthetic windows
    corpus = _corpus(artifacts / "audio-corpus", CORPUS_TASKS)
    assert corpus_available(corpus)
    family, = [f for f in quant_families(tiny_audio.repository, artifacts) if f.family == "audio-passt"]
    assert "held-out tasks" in family.metric and all(task in family.metric for task in CORPUS_TASKS)
    graph = tiny_audio.repository / "audio-passt-fp32" / "1" / "model.onnx"
    same = family.quality({"audio-passt": graph})
    assert set(same["tasks"]) == set(CORPUS_TASKS) and same["windows"] == len(CORPUS_TASKS) * 2 * 2 * 2
    assert same["agreement"] == 1.0 and same["sqnr_db"] == float("inf")
    assert same["accuracy"] == pytest.approx(np.mean([t["accuracy"] for t in same["tasks"].values()]))
    assert family.evaluate({"audio-passt": graph}) == same["accuracy"]
