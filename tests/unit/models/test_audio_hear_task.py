"""A HEAR 2021 task folder as input of models/audio/user_data.py (`--format hear`, models/audio/hear_task.py), on
folders this test writes (tones of two registers and noise at 32 and 16 kHz): the reader, each validation problem
naming its file, the scene probes end to end (train/valid/test and folds), and an event task's onset F-measure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from hear_infersuite import api as hear
from models.audio.hear_task import EVENT, FOLDS, HearTaskError, read_task
from models.audio.metrics import onset_f_measure, onset_matches
from models.audio.user_data import (
    BASELINE,
    EMBEDDERS,
    FINE_TUNED_TITLES,
    TRAIN_FRAME_STRIDE,
    frame_targets,
    main,
    predicted_onsets,
    prepare_task,
)

ROOT = Path(__file__).resolve().parents[3]
LABELS = ("low", "high", "noise")


def _sound(label: str, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    if label == "noise":
        return 0.2 * rng.standard_normal(t.size)
    low, high = (150, 300) if label == "low" else (2000, 4000)
    return 0.3 * np.sin(2 * np.pi * rng.uniform(low, high) * t) + 0.01 * rng.standard_normal(t.size)


def _write(root: Path, split: str, name: str, audio_at: dict[int, np.ndarray]) -> None:
    for rate, audio in audio_at.items():
        path = root / str(rate) / split / name
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(path), audio.astype(np.float32), rate)


def scene_task(root: Path, mode: str = "train/valid/test", rates: tuple[int, ...] = (32000, 16000),
               per_split: dict[str, int] | None = None) -> Path:
    """Clips of LABELS in each split (per label), at each rate; task_metadata.json in HEAR's keys."""
    rng = np.random.default_rng(0)
    splits = per_split or ({"train": 3, "valid": 1, "test": 2} if mode != FOLDS else
                           {f"fold{k:02d}": 2 for k in range(3)})
    for split, count in splits.items():
        labels = {}
        for label in LABELS:
            for take in range(count):
                name = f"{label}{take}.wav"
                sound = _sound(label, rng.uniform(0.6, 1.4), 48000, rng)
                _write(root, split, name, {rate: sound[:: 48000 // rate] if 48000 % rate == 0
                                           else sound for rate in rates})
                labels[name] = [label]
        (root / f"{split}.json").write_text(json.dumps(labels))
    metadata = {"task_name": "tiny-scene", "mode": mode, "embedding_type": "scene", "prediction_type": "multiclass",
                "label_vocabulary": list(LABELS), "sample_rates": list(rates)}
    if mode == FOLDS:
        metadata["nfolds"] = len(splits)
    (root / "task_metadata.json").write_text(json.dumps(metadata))
    return root


def test_the_reader_gives_splits_vocabulary_and_the_audio_at_the_model_rate(tmp_path: Path) -> None:
    task = read_task(scene_task(tmp_path, rates=(16000, 48000)))
    assert task.name == "tiny-scene" and task.splits == ("train", "valid", "test")
    assert task.vocabulary == LABELS and task.sample_rates == (16000, 48000)
    assert [len(task.indices(s)) for s in task.splits] == [9, 3, 6]
    (train, test), = task.folds()
    assert sorted(train + test) == list(range(len(task.clips)))
    assert {task.clips[i].split for i in train} == {"train", "valid"}
    clip = task.clips[test[0]]
    assert task.audio_path(clip, 48000) == tmp_path / "48000" / "test" / clip.file
    assert task.rate_for(48000) == 48000
    with pytest.warns(UserWarning, match="no 32000 Hz audio folder; resampling the 48000 Hz one"):
        assert task.rate_for(32000) == 48000  # nearest; 16 kHz would lose the band above 8 kHz


def test_folds_hold_each_fold_out_in_turn(tmp_path: Path) -> None:
    task = read_task(scene_task(tmp_path, mode=FOLDS, rates=(32000,)))
    folds = task.folds()
    assert task.splits == ("fold00", "fold01", "fold02") and len(folds) == 3
    tested = sorted(i for _, test in folds for i in test)
    assert tested == list(range(len(task.clips)))  # every clip tested exactly once
    for k, (train, test) in enumerate(folds):
        assert {task.clips[i].split for i in test} == {task.splits[k]} and not set(train) & set(test)


def test_fine_tuning_validates_on_the_valid_split_or_the_next_fold(tmp_path: Path) -> None:
    prepared = prepare_task(scene_task(tmp_path / "tvt", rates=(32000,)))
    task = prepared.task
    assert task is not None
    (fit, validation), = prepared.validation
    assert validation == task.indices("valid") and fit == task.indices("train")
    prepared = prepare_task(scene_task(tmp_path / "folds", mode=FOLDS, rates=(32000,)))
    task = prepared.task
    assert task is not None and len(prepared.validation) == 3
    for k, ((fit, validation), (train, test)) in enumerate(zip(prepared.validation, prepared.folds, strict=True)):
        assert validation == task.indices(task.splits[(k + 1) % 3])
        assert sorted(fit + validation) == sorted(train) and not set(fit + validation) & set(test)


def test_a_missing_metadata_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(HearTaskError, match=r"task_metadata.json: missing"):
        read_task(tmp_path)
    (tmp_path / "task_metadata.json").write_text(json.dumps({"mode": "sideways"}))
    with pytest.raises(HearTaskError) as raised:
        read_task(tmp_path)
    problems = raised.value.problems
    assert any("missing key 'task_name'" in p for p in problems)
    assert any("missing key 'embedding_type'" in p for p in problems)
    assert any("'mode' must be" in p and "'sideways'" in p for p in problems)
    assert all(p.startswith(str(tmp_path)) for p in problems)


def test_every_problem_of_the_label_files_is_reported_naming_its_file(tmp_path: Path) -> None:
    root = scene_task(tmp_path, rates=(32000,))
    train = json.loads((root / "train.json").read_text())
    train["gone.wav"] = ["low"]  # no audio
    train["low0.wav"] = ["squeak"]  # outside the vocabulary
    (root / "train.json").write_text(json.dumps(train))
    (root / "valid.json").write_text("{}")  # an empty split
    (root / "32000" / "test" / "high0.wav").write_bytes(b"not audio at all")  # unreadable
    with pytest.raises(HearTaskError) as raised:
        read_task(root)
    problems = raised.value.problems
    assert f"{root / 'train.json'}: names 'gone.wav', but there is no {root / '32000' / 'train' / 'gone.wav'}" \
        in problems
    assert f"{root / 'train.json'}: 'low0.wav': label(s) ['squeak'] not in the label vocabulary" in problems
    assert f"{root / 'valid.json'}: the split 'valid' is empty" in problems
    assert any(p.startswith(f"{root / '32000' / 'test' / 'high0.wav'}: unreadable audio") for p in problems)
    assert len(problems) == 4
    assert str(raised.value).count("\n- ") == 4  # one line each in the message


def test_the_command_line_names_the_problem_and_exits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = scene_task(tmp_path, rates=(32000,))
    (root / "test.json").unlink()
    with pytest.raises(SystemExit) as raised:
        main(["--format", "hear", "--data", str(root), "--report", str(tmp_path / "r.md")])
    assert raised.value.code == 2
    assert f"{root / 'test.json'}: missing" in capsys.readouterr().err


def test_scene_task_end_to_end_beside_log_mel_statistics(tmp_path: Path) -> None:
    root = scene_task(tmp_path / "task", rates=(16000, 44100))  # no 32 kHz folder: resampled, with a warning
    report = tmp_path / "report.md"
    with pytest.warns(UserWarning, match="resampling the 44100 Hz one to 32000 Hz"):
        result = main(["--format", "hear", "--data", str(root), "--repository", str(ROOT / "shipped_models"),
                       "--report", str(report)])
    assert set(result["embedders"]) == {BASELINE, *EMBEDDERS}
    assert (result["train"], result["test"]) == (12, 6) and result["labels"] == list(LABELS)  # the vocabulary's order
    assert result["embedders"][BASELINE]["accuracy"] == 1.0  # low tone, high tone, noise: a mel spectrum tells
    assert result["audio_folder_rate"] == {title: 44100 for title in EMBEDDERS}
    for figures in result["embedders"].values():
        low, high = figures["interval_95"]
        assert 0.0 <= low <= figures["accuracy"] <= high <= 1.0
    text = report.read_text()
    assert "HEAR task 'tiny-scene' (scene)" in text and "train + valid -> test (12 train, 6 test clips)" in text


def test_folds_pool_every_clip_once(tmp_path: Path) -> None:
    root = scene_task(tmp_path / "task", mode=FOLDS, rates=(32000,))
    result = main(["--format", "hear", "--data", str(root), "--repository", str(ROOT / "shipped_models"),
                   "--report", str(tmp_path / "report.md")])
    assert result["split"].startswith("3 folds") and result["clips"] == 18
    correct = {t: f["accuracy"] * 18 for t, f in result["embedders"].items()}
    assert all(abs(c - round(c)) < 0.01 for c in correct.values())  # accuracies over all 18 pooled clips
    assert result["embedders"][BASELINE]["accuracy"] == 1.0


def test_folds_export_an_embedder_fine_tuned_once_more_on_every_clip(tmp_path: Path) -> None:
    root = scene_task(tmp_path / "task", mode=FOLDS, rates=(32000,))
    report, out = tmp_path / "report.md", tmp_path / "user_models"
    result = main(["--format", "hear", "--data", str(root), "--repository", str(ROOT / "shipped_models"),
                   "--fine-tune", "1", "--learning-rate", "1e-4", "3e-4", "--out-repository", str(out),
                   "--no-progress", "--report", str(report)])
    tuned = result["fine_tune"]
    assert len(tuned["folds"]) == 3
    final = tuned["final_fit"]
    chosen = [run["learning_rate"] for run in tuned["folds"]]
    assert final["clips"] == 18 and chosen.count(final["learning_rate"]) == max(chosen.count(r) for r in chosen)
    assert final["epochs"] == int(np.round(np.median([run["chosen_epoch"] for run in tuned["folds"]])))
    meta = json.loads((out / "audio-bow-fp32" / "1" / "meta.json").read_text())
    assert meta["parity_max_abs_diff"] <= 1e-4 and meta["model_config"]["bow"]["n_classes"] == 3
    assert hear.load_model(str(out / "audio-bow-fp32"), threads=1).scene_embedding_size == 320
    assert "fine-tuned once more on all 18 clips" in report.read_text()


def event_task(root: Path) -> Path:
    """Clips of 3 s: near silence, then two bursts (low tone, high tone or noise) at known onsets."""
    rng = np.random.default_rng(1)
    rate = 32000
    for split, count in (("train", 6), ("test", 3)):
        labels = {}
        for take in range(count):
            audio = 0.001 * rng.standard_normal(3 * rate)
            events = []
            for start_s, label in ((0.6 + 0.2 * rng.random(), LABELS[take % 3]),
                                   (1.8 + 0.2 * rng.random(), LABELS[(take + 1) % 3])):
                burst = _sound(label, 0.8, rate, rng)
                audio[int(start_s * rate):int(start_s * rate) + burst.size] += burst
                events.append({"label": label, "start": 1000 * start_s, "end": 1000 * (start_s + 0.8)})
            _write(root, split, f"clip{take}.wav", {rate: audio})
            labels[f"clip{take}.wav"] = events
        (root / f"{split}.json").write_text(json.dumps(labels))
    (root / "task_metadata.json").write_text(json.dumps(
        {"task_name": "tiny-events", "mode": "train/valid/test", "embedding_type": "event",
         "prediction_type": "multilabel", "label_vocabulary": list(LABELS)}))  # no sample rates: the folders
    return root


def test_event_frames_onsets_and_matching() -> None:
    stamps = np.arange(0, 2000, 50.0)
    probabilities = np.zeros((len(stamps), 2))
    probabilities[10:20, 0] = 0.9  # 500 .. 950 ms
    probabilities[30:32, 0] = 0.9  # 100 ms: the 250 ms median filter removes it
    probabilities[25:40, 1] = 0.8
    onsets = predicted_onsets(probabilities, stamps)
    assert np.allclose(onsets[0], [0.5]) and np.allclose(onsets[1], [1.25])
    reference, estimated = np.array([1.0, 1.3]), np.array([1.18, 1.42])
    assert onset_matches(reference, estimated, 0.2) == 2  # 1.18 <-> 1.0 and 1.42 <-> 1.3
    assert onset_f_measure([reference], [estimated])["f_measure"] == 0.5  # greedy: 1.18 takes 1.3, 1.42 finds none
    assert onset_matches(np.array([1.0]), np.array([1.25]), 0.2) == 0


def test_event_task_end_to_end(tmp_path: Path) -> None:
    root = event_task(tmp_path / "task")
    task = read_task(root)
    assert task.embedding_type == EVENT and task.sample_rates == (32000,)
    targets = frame_targets(task, [np.arange(0, 3001, 50.0)] * len(task.clips))
    first = task.clips[0].events[0]
    active = targets[0][:, task.vocabulary.index(first.label)]
    assert active[int(np.ceil(first.start_ms / 50))] == 1 and active[int(first.start_ms // 50)] == 0
    result = main(["--format", "hear", "--data", str(root), "--repository", str(ROOT / "shipped_models"),
                   "--report", str(tmp_path / "report.md")])
    assert result["test_onsets"] == 6 and next(iter(result["embedders"])) == BASELINE
    for figures in result["embedders"].values():
        low, high = figures["interval_95"]
        assert 0.0 <= low <= figures["onset_f_measure"] <= high <= 1.0
    assert result["embedders"][BASELINE]["onset_f_measure"] >= 0.5  # loud bursts after near silence
    assert "onset F-measure" in (tmp_path / "report.md").read_text()


def test_an_event_task_fine_tunes_on_frame_targets_and_chooses_by_validation_onset_f(tmp_path: Path) -> None:
    root = event_task(tmp_path / "task")
    report, out = tmp_path / "report.md", tmp_path / "user_models"
    result = main(["--format", "hear", "--data", str(root), "--repository", str(ROOT / "shipped_models"),
                   "--fine-tune", "1", "--out-repository", str(out), "--no-progress", "--report", str(report)])
    run, = result["fine_tune"]["folds"]
    assert run["validation_metric"] == "onset F-measure" and run["chosen_epoch"] in (0, 1)
    assert run["fit"] + run["validation"] == 6 and run["validation"] > 0
    frames = 3000 // 50 + 1  # 3 s clips, a timestamp every 50 ms
    assert run["fit_frames"] == run["fit"] * -(-frames // TRAIN_FRAME_STRIDE)
    head, epoch = run["history"]
    assert np.isfinite(head["head_loss"]) and np.isfinite(epoch["train_loss"])
    assert all(0.0 <= h["validation_score"] <= 1.0 for h in run["history"])
    tuned = FINE_TUNED_TITLES["bow"]
    figures = result["embedders"][tuned]
    assert 0.0 <= figures["interval_95"][0] <= figures["onset_f_measure"] <= figures["interval_95"][1] <= 1.0
    assert f"PaSST - {tuned}" in result["paired"]
    exported = hear.load_model(str(out / "audio-bow-fp32"), threads=1)
    assert exported.timestamp_embedding_size == 320
    text = report.read_text()
    assert "frame targets of the fit clips' timestamp windows" in text and "validation onset F-measure by epoch" in text


COMBINATIONS = (("low",), ("high",), ("noise",), ("high", "low"), ("high", "noise"))


def multilabel_task(root: Path) -> Path:
    """A multilabel scene task: each clip holds one or two of LABELS at once (a tone over noise, two tones)."""
    rng = np.random.default_rng(1)
    for split, count in (("train", 4), ("test", 2)):
        labels = {}
        for combination in COMBINATIONS:
            for take in range(count):
                seconds = rng.uniform(0.8, 1.2)
                sound = sum(_sound(label, seconds, 32000, rng) for label in combination)
                name = f"{'+'.join(combination)}{take}.wav"
                _write(root, split, name, {32000: sound})
                labels[name] = list(reversed(combination))  # any order in the file: read sorted
        (root / f"{split}.json").write_text(json.dumps(labels))
    (root / "task_metadata.json").write_text(json.dumps(
        {"task_name": "tiny-multilabel", "mode": "train/valid/test", "embedding_type": "scene",
         "prediction_type": "multilabel", "label_vocabulary": list(LABELS), "sample_rate": 32000}))
    return root


def test_a_multilabel_scene_task_is_scored_by_mean_average_precision(tmp_path: Path) -> None:
    root = multilabel_task(tmp_path / "task")
    task = read_task(root)
    assert task.prediction_type == "multilabel" and {c.labels for c in task.clips} == set(COMBINATIONS)
    prepared = prepare_task(root)
    assert prepared.y.shape == (len(task.clips), len(LABELS)) and set(prepared.y.sum(axis=1)) == {1, 2}
    report = tmp_path / "report.md"
    result = main(["--format", "hear", "--data", str(root), "--repository", str(ROOT / "shipped_models"),
                   "--report", str(report)])
    assert set(result["embedders"]) == {BASELINE, *EMBEDDERS}
    baseline = result["embedders"][BASELINE]
    assert baseline["mAP"] >= 0.9 and baseline["labels_scored"] == 3  # tones and noise: a mel spectrum tells
    assert baseline["shuffled_label_control"] < baseline["mAP"]
    for figures in result["embedders"].values():
        low, high = figures["interval_95"]
        assert 0.0 <= low <= high <= 1.0 and 0.0 <= figures["mAP"] <= 1.0
    assert "| test mAP |" in report.read_text()


def test_a_multilabel_scene_task_fine_tunes_on_label_rows_and_chooses_by_validation_map(tmp_path: Path) -> None:
    root = multilabel_task(tmp_path / "task")
    report = tmp_path / "report.md"
    result = main(["--format", "hear", "--data", str(root), "--repository", str(ROOT / "shipped_models"),
                   "--report", str(report), "--fine-tune", "1", "--no-progress"])
    run, = result["fine_tune"]["folds"]
    assert run["validation_metric"] == "mAP" and run["chosen_epoch"] in (0, 1)
    assert run["fit"] + run["validation"] == 4 * len(COMBINATIONS) and run["validation"] > 0
    head, epoch = run["history"]
    assert np.isfinite(head["head_loss"]) and np.isfinite(epoch["train_loss"])
    assert all(0.0 <= h["validation_score"] <= 1.0 for h in run["history"])
    tuned = result["embedders"][FINE_TUNED_TITLES["bow"]]
    assert 0.0 <= tuned["interval_95"][0] <= tuned["mAP"] <= tuned["interval_95"][1] <= 1.0
    text = report.read_text()
    assert "per-label binary cross-entropy" in text and "validation mAP by epoch" in text


def test_multilabel_files_need_labels_and_refuse_the_mlp_probe_built_for_one_label(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = multilabel_task(tmp_path / "task")
    with pytest.raises(SystemExit) as raised:
        main(["--format", "hear", "--data", str(root), "--repository", str(ROOT / "shipped_models"),
              "--report", str(tmp_path / "report.md"), "--probe", "both"])
    assert raised.value.code == 2
    assert f"{root} is a multilabel scene task" in capsys.readouterr().err
    train = json.loads((root / "train.json").read_text())
    train["low0.wav"], train["low1.wav"] = [], ["low", "low"]
    (root / "train.json").write_text(json.dumps(train))
    with pytest.raises(HearTaskError) as raised:
        read_task(root)
    assert len(raised.value.problems) == 2
    assert all("multilabel scene tasks need one or more distinct labels per file" in p for p in raised.value.problems)
