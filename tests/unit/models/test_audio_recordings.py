"""Audio embedders on a user's labelled recordings (models/audio/user_data.py), on files this test
writes (tones of two registers at several sample rates, mono and stereo, in groups): the split keeps
every group on one side, a bad labels file names its line, and the report compares the exported
embedders with log-mel statistics, with intervals and a shuffled-label control."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from models.audio.user_data import BASELINE, LabelsError, main, read_labels, split_clips

ROOT = Path(__file__).resolve().parents[3]


def _recordings(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = ["file,label,group"]
    for group in range(8):
        rate = (16_000, 44_100, 32_000)[group % 3]
        for label, low, high in (("low", 150, 300), ("high", 2000, 4000)):
            for take in range(2):
                t = np.arange(int(rate * rng.uniform(0.6, 1.5))) / rate
                tone = 0.3 * np.sin(2 * np.pi * rng.uniform(low, high) * t) + 0.01 * rng.standard_normal(t.size)
                audio = np.stack([tone, tone], axis=1) if take else tone  # stereo and mono
                name = f"g{group}/{label}{take}.wav"
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(str(folder / name), audio.astype(np.float32), rate)
                rows.append(f"{name},{label},speaker{group}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


def test_groups_stay_on_one_side_and_bad_labels_name_their_line(tmp_path: Path) -> None:
    labels = _recordings(tmp_path)
    clips = read_labels(tmp_path, labels)
    train, test = split_clips(clips, test_fraction=0.25, seed=1)
    assert not {clips[i].group for i in train} & {clips[i].group for i in test}
    assert len({clips[i].group for i in test}) == 2 and len(train) + len(test) == len(clips)
    (tmp_path / "bad.csv").write_text("file,label\ng0/low0.wav,low\nmissing.wav,high\n")
    with pytest.raises(LabelsError, match=r"bad.csv:3: no file .*missing.wav"):
        read_labels(tmp_path, tmp_path / "bad.csv")
    (tmp_path / "one.csv").write_text("file,label\ng0/low0.wav,low\n")
    with pytest.raises(LabelsError, match="at least two labels"):
        read_labels(tmp_path, tmp_path / "one.csv")


def test_the_report_compares_the_embedders_with_log_mel_statistics(tmp_path: Path) -> None:
    labels = _recordings(tmp_path)
    report = tmp_path / "report.md"
    result = main(["--data", str(tmp_path), "--labels", str(labels), "--repository", str(ROOT / "shipped_models"),
                   "--report", str(report)])
    assert set(result["embedders"]) == {BASELINE, "PaSST", "bag of words"}
    assert result["embedders"][BASELINE]["accuracy"] == 1.0  # two registers a mel spectrum tells apart
    for figures in result["embedders"].values():
        low, high = figures["interval_95"]
        assert 0.0 <= low <= figures["accuracy"] <= high <= 1.0
        assert 0.0 <= figures["shuffled_label_control"] <= 1.0
    text = report.read_text()
    assert "| PaSST |" in text and f"({result['train']} train, {result['test']} test clips)" in text


def test_the_mlp_probe_is_chosen_on_validation_clips_of_the_train_split_and_reported_beside_the_linear_one(
        tmp_path: Path) -> None:
    from models.audio.user_data import prepare_csv, validation_parts

    labels = _recordings(tmp_path)
    prepared = prepare_csv(tmp_path, labels, test_fraction=0.25, seed=0)
    (train, _), = prepared.folds
    (fit, validation), = validation_parts(prepared, seed=0)
    assert sorted(fit + validation) == sorted(train) and not set(fit) & set(validation)
    assert not {prepared.groups[i] for i in fit} & {prepared.groups[i] for i in validation}  # whole groups
    report = tmp_path / "report.md"
    result = main(["--data", str(tmp_path), "--labels", str(labels), "--repository", str(ROOT / "shipped_models"),
                   "--report", str(report), "--probe", "both"])
    assert set(result["mlp_probe"]) == set(result["embedders"]) == {BASELINE, "PaSST", "bag of words"}
    assert result["mlp_validation"] == [{"fit": len(fit), "validation": len(validation)}]
    assert result["mlp_probe"][BASELINE]["accuracy"] == 1.0  # the two registers, as the linear probe finds
    for figures in result["mlp_probe"].values():
        low, high = figures["interval_95"]
        assert 0.0 <= low <= figures["accuracy"] <= high <= 1.0 and 0.0 <= figures["shuffled_label_control"] <= 1.0
        assert len(figures["chosen"]) == 1 and figures["chosen"][0]["hidden"] in (256, 1024)
    assert "MLP probe (hear-eval-kit's protocol" in report.read_text()


def test_a_file_that_is_not_audio_is_refused_naming_it(tmp_path: Path) -> None:
    from models.audio.user_data import load_audio

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(LabelsError, match=r"broken.wav: not readable as audio \("):
        load_audio(broken, 16_000)
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros(0, np.float32), 16_000)
    with pytest.raises(LabelsError, match=r"empty.wav: holds no samples"):
        load_audio(empty, 16_000)
