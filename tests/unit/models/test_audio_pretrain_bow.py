"""The bag of words fitted on the corpus (models/audio/pretrain_bow.py): the shipped architecture refitted on the
pretraining clips only, every seed scored beside the shipped embedders on the held-out tasks, and its per-task
differences computed from the per-clip results the evaluation records. Also: the idf counted in batches equals
one pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.audio.bow import BagOfWords, BowConfig
from models.audio.corpus import builder as corpus_build
from models.audio.user_data import BASELINE
from tests.unit.models.test_audio_corpus import FEW_MIXTURES, _fake_speech

ROOT = Path(__file__).resolve().parents[3]


def test_the_idf_counted_in_batches_equals_one_pass() -> None:
    torch.manual_seed(0)
    model = BagOfWords(BowConfig(codebooks=(4, 8)))
    for centroids in model.codebooks():  # words some windows hold and others do not
        centroids.copy_(3 * torch.randn_like(centroids))
    mel = torch.randn(10, 1, 128, 100)
    model.fit_idf(mel, batch=3)
    batched = model.idf.clone()
    model.fit_idf(mel, batch=100)
    assert torch.equal(batched, model.idf) and not torch.equal(batched, torch.ones_like(batched))


def test_each_seed_is_fitted_on_pretraining_clips_and_compared_clip_by_clip(tmp_path: Path) -> None:
    from models.audio import pretrain_bow

    corpus_build.build(tmp_path / "corpus", seed=0, sources=[_fake_speech(36 * 20)], onset_mixtures=FEW_MIXTURES)
    report = tmp_path / "bow.md"
    found = pretrain_bow.main(["--corpus", str(tmp_path / "corpus"), "--repository", str(ROOT / "shipped_models"),
                               "--seeds", "0", "1", "--max-clips", "80", "--out", str(tmp_path / "out"),
                               "--report", str(report), "--threads", "1"])
    assert [f["windows"] for f in found["fits"]] == [80, 80]
    assert (tmp_path / "out" / "bow-seed1.pt").is_file()
    shipped = json.loads((ROOT / "shipped_models" / "audio-bow-fp32" / "1" / "meta.json").read_text())
    assert found["bow_config"]["codebooks"] == tuple(shipped["model_config"]["bow"]["codebooks"])
    tasks = found["evaluation"]["tasks"]
    assert set(tasks) == {"word_unseen_voice", "voice_unseen_word"}
    for name, task in tasks.items():
        accuracy = {t: r["accuracy"] for t, r in task["embedders"].items()}
        for key, other in (("minus_shipped_bow", "bag of words"), ("minus_log_mel", BASELINE),
                           ("minus_passt", "PaSST")):
            found_here = found[key][name]
            expected = [accuracy[pretrain_bow.title(s)] - accuracy[other] for s in (0, 1)]
            assert found_here["per_seed"] == pytest.approx(expected, abs=2e-4)  # per-clip results = the accuracies
            low, high = found_here["interval_95"]
            assert low <= found_here["mean"] <= high
    text = report.read_text()
    assert "| word_unseen_voice |" in text and "minus the shipped bag of words" in text
