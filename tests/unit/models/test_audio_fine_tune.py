"""Fine-tuning the bag of words and PaSST on a user's train split (models/audio/fine_tune.py, `--fine-tune` and
`--fine-tune-embedder` of models/audio/user_data.py): the shipped weights read back from the ONNX graph, the
straight-through gradient, the from-scratch fallback, and one epoch end to end with the export into an output
repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from hear_infersuite import api as hear
from models.audio import fine_tune as tuning
from models.audio.frontend import FrontEndConfig
from models.audio.passt import Passt
from models.audio.user_data import BASELINE, EMBEDDERS, FINE_TUNED, FINE_TUNED_TITLES, main

ROOT = Path(__file__).resolve().parents[3]
SHIPPED_BOW = ROOT / "shipped_models" / "audio-bow-fp32"
SHIPPED_PASST = ROOT / "shipped_models" / "audio-passt-fp32"


def _clips(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(1.5 * 32000)) / 32000
    return [(0.3 * np.sin(2 * np.pi * rng.uniform(150, 4000) * t) + 0.05 * rng.standard_normal(t.size))
            .astype(np.float32) for _ in range(count)]


def _two_tones() -> tuple[tuning.Windows, np.ndarray]:
    """12 clips, 6 with a 200 Hz tone and 6 with a 6 kHz one over noise: their windows and labels (0, 1)."""
    low, high = _clips(6, seed=1), _clips(6, seed=2)
    t = np.arange(len(low[0])) / 32000
    audio = [(a + 0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32) for a, f in
             [*((a, 200.0) for a in low), *((a, 6000.0) for a in high)]]
    return tuning.Windows(audio, FrontEndConfig()), np.array([0] * 6 + [1] * 6)


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_shipped_weights_read_back_from_the_graph() -> None:
    windows = tuning.Windows(_clips(3), FrontEndConfig())
    assert len(windows.mels) == 6 and windows.owner.tolist() == [0, 0, 1, 1, 2, 2]  # 1.5 s: 2 windows each
    model, start = tuning.read_back(SHIPPED_BOW, classes=3, check=windows.waveforms)
    assert model is not None, start
    assert "read back" in start and model.head[-1].out_features == 3
    session = hear.load_model(str(SHIPPED_BOW), threads=1)
    shipped = np.stack([hear.get_scene_embeddings(torch.from_numpy(a)[None], session).numpy()[0]
                        for a in _clips(3)])
    assert np.abs(tuning.scene_embeddings(model, windows) - shipped).max() < 1e-4


def test_the_shipped_passt_reads_back_every_linear_layer_in_graph_order() -> None:
    windows = tuning.Windows(_clips(3), FrontEndConfig())
    model, start = tuning.read_back(SHIPPED_PASST, classes=3, check=windows.waveforms, architecture="passt")
    assert isinstance(model, Passt), start
    assert "read back" in start and model.head.out_features == 3
    session = hear.load_model(str(SHIPPED_PASST), threads=1)
    shipped = np.stack([hear.get_scene_embeddings(torch.from_numpy(a)[None], session).numpy()[0]
                        for a in _clips(3)])
    assert np.abs(tuning.scene_embeddings(model, windows) - shipped).max() < 1e-4
    # the bag of words' graph is not PaSST's: nothing reads back from it as PaSST
    other, why = tuning.read_back(SHIPPED_BOW, classes=3, check=windows.waveforms, architecture="passt")
    assert other is None and "no PaSST graph" in why


def test_passt_fine_tuning_trains_with_patchout_and_keeps_the_best_validation_epoch() -> None:
    windows, y = _two_tones()
    model, _ = tuning.read_back(SHIPPED_PASST, classes=2, check=windows.waveforms[:2], architecture="passt")
    assert isinstance(model, Passt)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    kept: list[int] = []  # tokens per training forward pass: fewer than the grid's with patchout on
    model.blocks[0].register_forward_hook(lambda module, inputs, output: kept.append(output.shape[1]))
    fit, validation = [0, 1, 2, 3, 6, 7, 8, 9], [4, 5, 10, 11]
    tuned, run = tuning.fine_tune(model, windows, y, fit, validation, epochs=2, seed=0, progress=False,
                                  learning_rate=1e-3)
    grid = model.grid[0] * model.grid[1] + 1  # every patch and the class token
    assert grid in kept and min(kept) < grid  # evaluation saw every patch, training fewer
    assert run["history"][0]["head_loss"] < 0.3  # the head alone first: 200 Hz against 6 kHz (chance: ln 2)
    losses = [h["train_loss"] for h in run["history"][1:]]
    assert len(losses) == 2 and all(np.isfinite(losses))
    best = max(run["history"], key=lambda h: h["validation_score"])
    assert run["chosen_epoch"] == best["epoch"]
    changed = not torch.equal(tuned.blocks[0].attn.qkv.weight, start["blocks.0.attn.qkv.weight"])
    assert changed == (run["chosen_epoch"] > 0)  # the chosen epoch's weights, the start's when epoch 0 won
    assert not tuned.training


def test_without_a_bow_graph_nothing_reads_back_and_scratch_training_works(tmp_path: Path) -> None:
    model, why = tuning.read_back(tmp_path / "audio-bow-fp32", classes=2, check=np.zeros((1, 32000), np.float32))
    assert model is None and "no bag-of-words graph" in why
    config, front, _ = tuning.shipped_config(SHIPPED_BOW)
    windows = tuning.Windows(_clips(40), front)
    scratch = tuning.from_scratch(config, front, 2, windows.mels, seed=0)
    embedded = tuning.scene_embeddings(scratch, windows)
    assert embedded.shape == (40, scratch.embedding_size) and np.isfinite(embedded).all()
    assert not torch.equal(scratch.idf, torch.ones_like(scratch.idf))  # idf fitted on these windows


def test_the_straight_through_embedding_has_the_exported_value_and_a_gradient() -> None:
    windows = tuning.Windows(_clips(2), FrontEndConfig())
    model, _ = tuning.read_back(SHIPPED_BOW, classes=2, check=windows.waveforms)
    assert model is not None
    for codebook in model.codebooks():
        codebook.requires_grad_(True)
    embedded = tuning.straight_through_embed(model, windows.mels)
    with torch.no_grad():
        assert torch.allclose(embedded, model.embed(windows.mels), atol=1e-6)
    embedded.pow(2).sum().backward()
    encoder_gradient = model.autoencoder.encoder[0].weight.grad
    assert encoder_gradient is not None and torch.isfinite(encoder_gradient).all()
    assert float(encoder_gradient.abs().sum()) > 0
    assert all(c.grad is not None and float(c.grad.abs().sum()) > 0 for c in model.codebooks())


def test_the_head_learns_first_and_the_best_validation_epoch_is_kept() -> None:
    windows, y = _two_tones()
    model, _ = tuning.read_back(SHIPPED_BOW, classes=2, check=windows.waveforms[:2])
    assert model is not None
    start = {k: v.clone() for k, v in model.state_dict().items()}
    fit, validation = [0, 1, 2, 3, 6, 7, 8, 9], [4, 5, 10, 11]
    tuned, run = tuning.fine_tune(model, windows, y, fit, validation, epochs=3, seed=0, progress=False)
    assert run["history"][0]["head_loss"] < 0.3  # the head alone first: 200 Hz against 6 kHz (chance: ln 2)
    losses = [h["train_loss"] for h in run["history"][1:]]
    assert len(losses) == 3 and all(np.isfinite(losses)) and max(losses) < 0.5
    best = max(run["history"], key=lambda h: h["validation_score"])
    assert run["chosen_epoch"] == best["epoch"]
    changed = not torch.equal(tuned.autoencoder.encoder[0].weight, start["autoencoder.encoder.0.weight"])
    assert changed == (run["chosen_epoch"] > 0)  # the chosen epoch's weights, the start's when epoch 0 won
    assert all(not c.requires_grad for c in tuned.codebooks())


def _recordings(folder: Path) -> Path:
    rng = np.random.default_rng(3)
    rows = ["file,label,group"]
    for group in range(8):
        for label, low, high in (("low", 150, 300), ("high", 2000, 4000)):
            t = np.arange(int(32000 * rng.uniform(0.8, 1.6))) / 32000
            tone = 0.3 * np.sin(2 * np.pi * rng.uniform(low, high) * t) + 0.02 * rng.standard_normal(t.size)
            name = f"g{group}/{label}.wav"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(str(folder / name), tone.astype(np.float32), 32000)
            rows.append(f"{name},{label},speaker{group}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


def test_one_epoch_end_to_end_with_export(tmp_path: Path) -> None:
    labels = _recordings(tmp_path / "data")
    report, out = tmp_path / "report" / "quality.md", tmp_path / "user_models"
    result = main(["--data", str(tmp_path / "data"), "--labels", str(labels), "--repository",
                   str(ROOT / "shipped_models"), "--report", str(report), "--fine-tune", "1", "--out-repository",
                   str(out), "--no-progress"])
    assert set(result["embedders"]) == {BASELINE, *EMBEDDERS, FINE_TUNED}
    run, = result["fine_tune"]["folds"]
    assert "read back" in run["start"] and run["chosen_epoch"] in (0, 1)
    assert [h["epoch"] for h in run["history"]] == [0, 1] and np.isfinite(run["history"][1]["train_loss"])
    assert run["fit"] + run["validation"] == result["train"] and run["validation"] > 0
    for figures in result["embedders"].values():
        low, high = figures["interval_95"]
        assert 0.0 <= low <= figures["accuracy"] <= high <= 1.0
    meta = json.loads((out / "audio-bow-fp32" / "1" / "meta.json").read_text())
    assert meta["source_checkpoint"] == "bow_fine_tuned.pt" and meta["parity_max_abs_diff"] <= 1e-4
    assert meta["model_config"]["bow"]["n_classes"] == 2
    exported = hear.load_model(str(out / "audio-bow-fp32"), threads=1)
    assert exported.scene_embedding_size == 320
    text = report.read_text()
    assert f"| {FINE_TUNED} |" in text and "chosen epoch" in text and "exported" in text


def test_passt_one_epoch_end_to_end_with_export(tmp_path: Path) -> None:
    labels = _recordings(tmp_path / "data")
    report, out = tmp_path / "report" / "quality.md", tmp_path / "user_models"
    result = main(["--data", str(tmp_path / "data"), "--labels", str(labels), "--repository",
                   str(ROOT / "shipped_models"), "--report", str(report), "--fine-tune", "1",
                   "--fine-tune-embedder", "passt", "--out-repository", str(out), "--no-progress"])
    title = FINE_TUNED_TITLES["passt"]
    assert set(result["embedders"]) == {BASELINE, *EMBEDDERS, title}
    run, = result["fine_tune"]["folds"]
    assert result["fine_tune"]["embedder"] == "passt" and "read back" in run["start"]
    assert [h["epoch"] for h in run["history"]] == [0, 1] and np.isfinite(run["history"][1]["train_loss"])
    meta = json.loads((out / "audio-passt-fp32" / "1" / "meta.json").read_text())
    assert meta["architecture"] == "passt" and meta["source_checkpoint"] == "passt_fine_tuned.pt"
    assert meta["parity_max_abs_diff"] <= 1e-4 and meta["model_config"]["passt"]["n_classes"] == 2
    exported = hear.load_model(str(out / "audio-passt-fp32"), threads=1)
    assert exported.scene_embedding_size == 128
    text = report.read_text()
    assert f"| {title} |" in text and "Fine-tuning PaSST" in text and "exported" in text


def test_several_learning_rates_are_each_tried_and_the_validation_clips_choose(tmp_path: Path) -> None:
    labels = _recordings(tmp_path / "data")
    report = tmp_path / "quality.md"
    result = main(["--data", str(tmp_path / "data"), "--labels", str(labels), "--repository",
                   str(ROOT / "shipped_models"), "--report", str(report), "--fine-tune", "1",
                   "--learning-rate", "1e-7", "3e-3", "--no-progress"])
    run, = result["fine_tune"]["folds"]
    grid = run["learning_rate_grid"]
    assert [g["learning_rate"] for g in grid] == [1e-7, 3e-3]
    best = max(g["validation_score"] for g in grid)
    kept = next(g for g in grid if g["validation_score"] == best)  # the first of a tie
    assert run["learning_rate"] == kept["learning_rate"] and run["chosen_epoch"] == kept["chosen_epoch"]
    assert max(h["validation_score"] for h in run["history"]) == best  # the kept rate's own curve
    assert "chosen on the validation clips among 1e-07 (validation" in report.read_text()


def test_a_learning_rate_that_is_not_positive_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    labels = _recordings(tmp_path / "data")
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path / "data"), "--labels", str(labels), "--repository", str(ROOT / "shipped_models"),
              "--report", str(tmp_path / "r.md"), "--fine-tune", "1", "--learning-rate", "1e-4", "0",
              "--no-progress"])
    assert "--learning-rate takes one or more rates > 0, got [0.0001, 0.0]" in capsys.readouterr().err


def test_fine_tuning_refuses_a_train_split_too_small_to_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                 ) -> None:
    data = tmp_path / "data"
    labels = _recordings(data)
    lines = labels.read_text().splitlines()
    split = ["file,label,group,split"] + [f"{line},{'train' if i < 2 else 'test'}" for i, line in enumerate(lines[1:])]
    labels.write_text("\n".join(split) + "\n")  # two train clips, one group each: no validation part
    with pytest.raises(SystemExit):
        main(["--data", str(data), "--labels", str(labels), "--repository", str(ROOT / "shipped_models"),
              "--report", str(tmp_path / "r.md"), "--fine-tune", "1", "--no-progress"])
    assert "fine-tuning and the MLP probe need a validation part of the train split" in capsys.readouterr().err


def test_without_shipped_weights_the_report_says_it_trained_from_scratch(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(ROOT / "shipped_models" / EMBEDDERS["PaSST"], repository / EMBEDDERS["PaSST"])
    shutil.copytree(SHIPPED_BOW, repository / EMBEDDERS["bag of words"])
    meta_path = repository / EMBEDDERS["bag of words"] / "1" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["architecture"]  # the graph still serves, but nothing says how to read its weights back
    meta_path.write_text(json.dumps(meta))
    labels = _recordings(tmp_path / "data")
    report = tmp_path / "quality.md"
    result = main(["--data", str(tmp_path / "data"), "--labels", str(labels), "--repository", str(repository),
                   "--report", str(report), "--fine-tune", "1", "--no-progress"])
    run, = result["fine_tune"]["folds"]
    assert run["start"].startswith("trained from scratch on your fit clips (no shipped torch weights:")
    assert FINE_TUNED in result["embedders"] and "trained from scratch" in report.read_text()


def test_without_shipped_passt_weights_it_starts_from_a_random_passt(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(SHIPPED_PASST, repository / EMBEDDERS["PaSST"])
    shutil.copytree(SHIPPED_BOW, repository / EMBEDDERS["bag of words"])
    meta_path = repository / EMBEDDERS["PaSST"] / "1" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["architecture"]
    meta_path.write_text(json.dumps(meta))
    labels = _recordings(tmp_path / "data")
    result = main(["--data", str(tmp_path / "data"), "--labels", str(labels), "--repository", str(repository),
                   "--report", str(tmp_path / "quality.md"), "--fine-tune", "1", "--fine-tune-embedder", "passt",
                   "--no-progress"])
    run, = result["fine_tune"]["folds"]
    assert run["start"].startswith("trained from scratch on your fit clips, from a random start")
    figures = result["embedders"][FINE_TUNED_TITLES["passt"]]
    assert 0.0 <= figures["interval_95"][0] <= figures["accuracy"] <= figures["interval_95"][1] <= 1.0


def test_the_fine_tuning_study_compares_seeds_against_the_frozen_embedder(tmp_path: Path) -> None:
    from models.audio import fine_tune_study
    from tests.unit.models.test_audio_hear_task import scene_task

    corpus = tmp_path / "corpus"
    scene_task(corpus / "tasks" / "tones", rates=(32000,), per_split={"train": 6, "valid": 2, "test": 3})
    report = tmp_path / "fine_tune.md"
    found = fine_tune_study.main(["--corpus", str(corpus), "--tasks", "tones", "--seeds", "0", "1", "--epochs", "1",
                                  "--threads", "1", "--no-progress", "--report", str(report)])
    task = found["tasks"]["tones"]
    assert task["train"] == 3 * 8 and task["test"] == 3 * 3 and [r["seed"] for r in task["runs"]] == [0, 1]
    assert all(r["validation"] == 6 and r["chosen_epoch"] in (0, 1) for r in task["runs"])  # HEAR's valid split
    for key in ("minus_frozen", "minus_log_mel"):
        c = task[key]
        assert len(c["per_seed"]) == 2 and c["interval_95"][0] <= c["mean"] <= c["interval_95"][1]
        assert c["verdict"]
    text = report.read_text()
    assert "| tones | 3 | 24 / 9 |" in text and "PaSST fine-tuned" in text and "seed 1" in text


def test_the_fine_tuning_study_reads_the_corpus_csv_layout(tmp_path: Path) -> None:
    from models.audio import fine_tune_study

    corpus = tmp_path / "corpus"
    labels = _recordings(corpus)  # 8 speakers x (low, high): the groups the validation part holds out
    rows = labels.read_text().splitlines()
    (corpus / "tasks").mkdir()
    (corpus / "tasks" / "pitch.csv").write_text("\n".join(
        [rows[0] + ",split", *(f"{row},{'test' if 'g6/' in row or 'g7/' in row else 'train'}" for row in rows[1:])])
        + "\n")
    found = fine_tune_study.main(["--corpus", str(corpus), "--tasks", "pitch", "--seeds", "0", "--epochs", "1",
                                  "--embedder", "bow", "--threads", "1", "--no-progress",
                                  "--report", str(tmp_path / "r.md")])
    task = found["tasks"]["pitch"]
    assert (task["train"], task["test"]) == (12, 4) and task["runs"][0]["validation"] > 0
    assert set(task["frozen_accuracy"]) == {BASELINE, *EMBEDDERS}
    assert "| pitch | 2 | 12 / 4 |" in (tmp_path / "r.md").read_text()


def test_the_fine_tuning_study_names_a_missing_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from models.audio import fine_tune_study

    with pytest.raises(SystemExit):
        fine_tune_study.main(["--corpus", str(tmp_path), "--tasks", "nowhere", "--report", str(tmp_path / "r.md")])
    assert "no such task" in capsys.readouterr().err


def test_the_validation_part_never_holds_out_a_labels_last_group() -> None:
    from models.audio.user_data import validation_part

    # a family per label, one instrument (group) each: no group can go, so a fifth of the clips does
    groups = [f"instrument{i // 10}" for i in range(40)]
    y = np.array([i // 10 for i in range(40)])
    fit, validation = validation_part(list(range(40)), groups, y, seed=0)
    assert len(validation) == 8 and set(y[fit]) == {0, 1, 2, 3} and not set(fit) & set(validation)
    # two instruments for label 0, one for label 1: only label 0's can be held out, and one of them only
    groups = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    y = np.array([0] * 20 + [1] * 10)
    for seed in range(5):
        fit, validation = validation_part(list(range(30)), groups, y, seed)
        held = {groups[i] for i in validation}
        assert len(held) == 1 and held <= {"a", "b"} and set(y[fit]) == {0, 1}
