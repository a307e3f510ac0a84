"""A HEAR API module run out of process by its own interpreter (models/audio/hear_module_embed.py, how the
corpus evaluation probes the public HEAR 2021 baseline): files read as mono, resampled to the module's rate,
embedded in the order asked (scene embeddings, or timestamp embeddings split back per file), on a stand-in
module this test writes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from models.audio.user_data import hear_module_features, hear_module_timestamps

ROOT = Path(__file__).resolve().parents[3]

STAND_IN = '''
import torch

class Model(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = 2

def load_model(model_file_path=""):
    return Model()

def get_scene_embeddings(audio, model):
    return torch.stack([torch.tensor([float(a.numel()), float(a.mean())]) for a in audio])

def get_timestamp_embeddings(audio, model):  # every 100 ms: the window's RMS and its index
    hop = model.sample_rate // 10
    count = audio.shape[1] // hop
    windows = audio[:, : count * hop].reshape(audio.shape[0], count, hop)
    index = torch.arange(count, dtype=torch.float32).expand(audio.shape[0], count)
    embeddings = torch.stack([windows.pow(2).mean(-1).sqrt(), index], dim=-1)
    return embeddings, (index * 100.0 + 50.0)
'''


def test_files_are_embedded_in_order_at_the_module_rate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stand_in_hear.py").write_text(STAND_IN)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    files = []
    for name, seconds, channels in (("a.wav", 1.0, 1), ("b.wav", 0.5, 2)):
        audio = np.full((int(32000 * seconds), channels), 0.25, dtype=np.float32)
        if channels == 2:
            audio[:, 1] = 0.75  # the channel mean: 0.5
        soundfile.write(str(tmp_path / name), audio, 32000)
        files.append(str(tmp_path / name))
    work = tmp_path / "work"
    work.mkdir()
    features = hear_module_features(files, sys.executable, "stand_in_hear", work)
    assert list(features) == files
    assert features[files[0]][0] == 16000 and features[files[1]][0] == 8000  # resampled 32 -> 16 kHz
    assert features[files[0]][1] == pytest.approx(0.25, abs=0.01)
    assert features[files[1]][1] == pytest.approx(0.5, abs=0.01)  # stereo read as the mean of its channels


def test_the_user_path_probes_a_hear_module_beside_the_shipped_embedders(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from models.audio.user_data import evaluate_prepared, prepare_csv

    (tmp_path / "stand_in_hear.py").write_text(STAND_IN)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    data = tmp_path / "data"
    data.mkdir()
    rows = ["file,label,group"]
    for group in range(6):
        for label, seconds in (("short", 0.5), ("long", 1.0)):  # the stand-in's first dimension: the length
            soundfile.write(str(data / f"{label}{group}.wav"), np.full(int(32000 * seconds), 0.1, np.float32), 32000)
            rows.append(f"{label}{group}.wav,{label},g{group}")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    prepared = prepare_csv(data, data / "labels.csv", test_fraction=0.34, seed=0)
    result, _ = evaluate_prepared(prepared, ROOT / "shipped_models",
                                  hear_modules={"stand-in": (sys.executable, "stand_in_hear")})
    assert list(result["embedders"])[-1] == "stand-in"
    assert result["embedders"]["stand-in"]["accuracy"] == 1.0  # the lengths tell the labels apart


def test_timestamp_embeddings_come_back_per_file_with_their_times(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stand_in_hear.py").write_text(STAND_IN)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    files = []
    for name, seconds, level in (("a.wav", 1.0, 0.1), ("b.wav", 0.5, 0.4)):
        soundfile.write(str(tmp_path / name), np.full(int(32000 * seconds), level, np.float32), 32000)
        files.append(str(tmp_path / name))
    work = tmp_path / "work"
    work.mkdir()
    (first, first_times), (second, second_times) = hear_module_timestamps(files, sys.executable, "stand_in_hear", work)
    assert first.shape == (10, 2) and second.shape == (5, 2)  # 100 ms windows of each file, not pooled
    assert np.allclose(first[:, 0], 0.1, atol=0.01) and np.allclose(second[:, 0], 0.4, atol=0.01)
    assert np.allclose(first_times, np.arange(10) * 100 + 50) and np.allclose(second_times, np.arange(5) * 100 + 50)


def test_an_event_task_probes_a_hear_module_beside_the_shipped_embedders(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from models.audio.hear_module_embed import read_at
    from models.audio.user_data import BASELINE, evaluate_prepared, event_probe, prepare_task
    from tests.unit.models.test_audio_hear_task import event_task

    (tmp_path / "stand_in_hear.py").write_text(STAND_IN)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    prepared = prepare_task(event_task(tmp_path / "task"))
    result, _ = evaluate_prepared(prepared, ROOT / "shipped_models",
                                  hear_modules={"stand-in": (sys.executable, "stand_in_hear")})
    assert list(result["embedders"]) == [BASELINE, "PaSST", "bag of words", "stand-in"]
    monkeypatch.syspath_prepend(str(tmp_path))  # the same module in this process, on the same files
    import stand_in_hear  # type: ignore[import-not-found]

    model = stand_in_hear.load_model()
    here = [stand_in_hear.get_timestamp_embeddings(torch.from_numpy(read_at(f, 16000))[None], model)
            for f in prepared.files]
    assert prepared.task is not None
    expected = event_probe([e[0].numpy() for e, _ in here], [t[0].numpy().astype(np.float64) for _, t in here],
                           prepared.task, prepared.folds, seed=0)
    assert result["embedders"]["stand-in"] == expected
    assert len(expected["per_clip_counts"]) == result["test"]
    paired = result["paired"]["PaSST - stand-in"]
    assert paired["interval_95"][0] <= paired["difference"] <= paired["interval_95"][1]
