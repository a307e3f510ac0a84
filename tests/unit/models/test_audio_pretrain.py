"""PaSST pretraining on the audio corpus (models/audio/pretrain.py): which heads a clip's labels fill,
that held-out clips never reach pretraining, and that one training step on a few synthetic windows
lowers nothing to NaN and moves the loss."""

from __future__ import annotations

import numpy as np
import torch

from models.audio import pretrain
from models.audio.corpus import evaluate as corpus_eval
from models.audio.frontend import FrontEndConfig
from models.audio.passt import Passt, PasstConfig

RECORDS = [
    {"file": "speech/a/yes.wav", "source": "speech", "split": "pretrain", "labels": {"word": "yes", "voice": "a"}},
    {"file": "speech/b/no.wav", "source": "speech", "split": "pretrain", "labels": {"word": "no", "voice": "b"}},
    {"file": "speech/a/no.wav", "source": "speech", "split": "pretrain", "labels": {"word": "no", "voice": "a"}},
    {"file": "speech/b/yes.wav", "source": "speech", "split": "pretrain", "labels": {"word": "yes", "voice": "b"}},
    {"file": "speech/z/go.wav", "source": "speech", "split": "held_out", "labels": {"word": "go", "voice": "z"}},
    {"file": "notes/0/60.wav", "source": "notes", "split": "pretrain",
     "labels": {"family": "piano", "pitch_class": "C", "octave": 4}},
    {"file": "notes/0/61.wav", "source": "notes", "split": "pretrain",
     "labels": {"family": "piano", "pitch_class": "C#", "octave": 4}},
    {"file": "notes/8/60.wav", "source": "notes", "split": "pretrain",
     "labels": {"family": "organ", "pitch_class": "C", "octave": 5}},
    {"file": "notes/8/61.wav", "source": "notes", "split": "pretrain",
     "labels": {"family": "organ", "pitch_class": "C#", "octave": 5}},
    {"file": "notes/9/62.wav", "source": "notes", "split": "held_out",
     "labels": {"family": "reed", "pitch_class": "D", "octave": 6}},
    {"file": "events/p/bell.wav", "source": "events", "split": "pretrain", "labels": {"kind": "bell"}},
    {"file": "events/p/bell2.wav", "source": "events", "split": "pretrain", "labels": {"kind": "bell"}},
    {"file": "events/p/error.wav", "source": "events", "split": "pretrain", "labels": {"kind": "error"}},
    {"file": "events/q/error.wav", "source": "events", "split": "pretrain", "labels": {"kind": "error"}},
    {"file": "events/p/alien.wav", "source": "events", "split": "pretrain", "labels": {"kind": "alien"}},
    {"file": "events/y/bell.wav", "source": "events", "split": "held_out", "labels": {"kind": "bell"}},
]


def _records() -> list[dict]:
    return pretrain.pretrain_records({"clips": RECORDS})


def test_held_out_clips_never_reach_pretraining() -> None:
    records = _records()
    assert len(records) == 13
    assert all(r["split"] == "pretrain" for r in records)
    vocabularies = pretrain.build_vocabularies(records)
    # the held-out word, voice, family, pitch class and octave are in no vocabulary
    assert "go" not in vocabularies["word"] and "z" not in vocabularies["voice"]
    assert "reed" not in vocabularies["family"] and "D" not in vocabularies["pitch_class"]
    assert "6" not in vocabularies["octave"]


def test_vocabularies_drop_single_clip_classes() -> None:
    vocabularies = pretrain.build_vocabularies(_records())
    assert vocabularies["source"] == ["events", "notes", "speech"]
    assert vocabularies["word"] == ["no", "yes"]
    assert vocabularies["octave"] == ["4", "5"]
    assert vocabularies["event_kind"] == ["bell", "error"]  # "alien" occurs once


def test_each_clip_fills_the_heads_of_its_source() -> None:
    records = _records()
    vocabularies = pretrain.build_vocabularies(records)
    targets = pretrain.encode_targets(records, vocabularies)
    order = list(vocabularies)
    assert order == list(pretrain.HEADS)
    filled = {r["file"]: {h for h, t in zip(order, row.tolist(), strict=True) if t != pretrain.MISSING}
              for r, row in zip(records, targets, strict=True)}
    assert filled["speech/a/yes.wav"] == {"source", "word", "voice"}
    assert filled["notes/0/61.wav"] == {"source", "family", "pitch_class", "octave"}
    assert filled["events/p/bell.wav"] == {"source", "event_kind"}
    assert filled["events/p/alien.wav"] == {"source"}  # its kind has no class
    row = targets[[r["file"] for r in records].index("notes/8/61.wav")].tolist()
    assert row[order.index("family")] == vocabularies["family"].index("organ")
    assert row[order.index("pitch_class")] == vocabularies["pitch_class"].index("C#")
    assert row[order.index("source")] == vocabularies["source"].index("notes")


def test_loss_skips_unlabelled_clips() -> None:
    vocabularies = {"a": ["x", "y"], "b": ["u", "v", "w"]}
    logits = {"a": torch.tensor([[5.0, -5.0], [0.0, 0.0]]), "b": torch.tensor([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]])}
    targets = torch.tensor([[0, pretrain.MISSING], [pretrain.MISSING, 0]])
    loss, parts = pretrain.multitask_loss(logits, targets, list(vocabularies))
    # head a sees only clip 0 (confidently right), head b only clip 1 (confidently right)
    assert parts["a"] < 1e-3 and parts["b"] < 1e-3
    assert abs(float(loss) - sum(parts.values())) < 1e-6
    _, parts = pretrain.multitask_loss(logits, torch.tensor([[1, pretrain.MISSING]] * 2), list(vocabularies))
    assert set(parts) == {"a"}


def test_one_training_step_changes_the_loss_and_stays_finite() -> None:
    torch.manual_seed(0)
    records = _records()
    vocabularies = pretrain.build_vocabularies(records)
    targets = pretrain.encode_targets(records, vocabularies)
    front = FrontEndConfig()
    rng = np.random.default_rng(0)
    t = np.arange(front.window_samples) / front.sample_rate
    audio = [(np.sin(2 * np.pi * 200 * (i + 1) * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)
             for i in range(len(records))]
    audio[0] = audio[0][:8000]  # a short clip is zero padded to one window
    windows = pretrain.first_windows(audio, front.window_samples)
    assert windows.shape == (len(records), front.window_samples) and not windows[0, 8000:].any()
    mels = pretrain.window_mels(windows, front)
    model = Passt(PasstConfig(dim=32, depth=1, heads=2))
    heads = pretrain.MultiTaskHeads(model.embedding_size, vocabularies)
    optimizer = torch.optim.AdamW([*model.parameters(), *heads.parameters()], lr=1e-2)
    order = list(vocabularies)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(pretrain.multitask_loss(heads(model.embed(mels)), targets, order)[0])

    before = eval_loss()
    loss, parts = pretrain.train_step(model, heads, optimizer, mels, targets, order)
    after = eval_loss()
    assert np.isfinite([before, loss, after]).all()
    assert set(parts) == set(pretrain.HEADS)
    assert after != before
    for p in model.parameters():
        assert torch.isfinite(p).all()
    embedding = pretrain.torch_scene_embedder(model)(np.stack(audio[1:4]))
    assert embedding.shape == (3, model.embedding_size) and np.isfinite(embedding).all()


def test_paired_difference_of_a_feature_set_with_itself_is_zero_and_noise_loses() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    informative = labels[:, None] + 0.1 * rng.standard_normal((60, 4))
    noise = rng.standard_normal((60, 4))
    train, test = list(range(0, 60, 2)), list(range(1, 60, 2))
    same = corpus_eval.paired_difference(informative, informative, labels, train, test, seed=0)
    assert same == {"difference": 0.0, "interval_95": [0.0, 0.0]}
    better = corpus_eval.paired_difference(informative, noise, labels, train, test, seed=0)
    assert better["difference"] > 0.3 and better["interval_95"][0] > 0


def test_validation_split_reads_only_train_clips_and_keeps_groups_whole() -> None:
    from pathlib import Path

    from models.audio.user_data import Clip

    clips = [Clip(Path(f"{g}-{k}.wav"), f"label{k % 3}", g, "train") for g in "abcdefghij" for k in range(6)]
    clips += [Clip(Path(f"t{k}.wav"), f"label{k % 3}", "t", "test") for k in range(6)]
    fit, validation = corpus_eval.validation_split(clips, seed=0)
    assert sorted(fit + validation) == list(range(60))  # every train clip, no test clip
    fit_groups, validation_groups = {clips[i].group for i in fit}, {clips[i].group for i in validation}
    assert not fit_groups & validation_groups and len(validation_groups) == 3  # 30% of 10 groups
    assert corpus_eval.validation_split(clips, seed=0) == (fit, validation)
    one_group_per_label = [Clip(Path(f"{g}-{k}.wav"), f"family{g}", g, "train") for g in "abcd" for k in range(3)]
    one_group_per_label += [Clip(Path(f"e-{k}.wav"), "familya", "e", "train") for k in range(3)]
    fit, validation = corpus_eval.validation_split(one_group_per_label, seed=0)
    assert {one_group_per_label[i].group for i in validation} in ({"a"}, {"e"})  # only family a has a spare group
    assert {one_group_per_label[i].label for i in fit} == {"familya", "familyb", "familyc", "familyd"}


def test_statistics_pooling_appends_the_patch_tokens_std() -> None:
    torch.manual_seed(0)
    mean_model = Passt(PasstConfig(dim=16, depth=1, heads=2)).eval()
    stats_model = Passt(PasstConfig(dim=16, depth=1, heads=2, pooling="stats")).eval()
    stats_model.load_state_dict(mean_model.state_dict())  # pooling adds no parameter
    waveform = torch.randn(3, FrontEndConfig().window_samples) * 0.1
    with torch.no_grad():
        mean_embedding, stats_embedding = mean_model(waveform), stats_model(waveform)
        tokens = mean_model.forward_features(mean_model.front_end(waveform))[:, 1:]
    assert stats_model.embedding_size == stats_embedding.shape[1] == 48
    torch.testing.assert_close(stats_embedding[:, :32], mean_embedding)
    torch.testing.assert_close(stats_embedding[:, 32:], tokens.std(dim=1, unbiased=False), atol=1e-5, rtol=1e-4)
