"""Session fixtures: tiny audio embedders (PaSST and bag of words) trained in seconds on a few
synthetic clips and exported into a real model repository."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class TinyAudio:
    repository: Path
    passt_checkpoint: Path
    bow_checkpoint: Path


@pytest.fixture(scope="session")
def tiny_audio(tmp_path_factory: pytest.TempPathFactory) -> TinyAudio:
    import torch

    root = tmp_path_factory.mktemp("audio")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on shared cores 2 spinning threads cost far more CPU than they save
    try:
        return _train_and_export(root)
    finally:
        torch.set_num_threads(threads)


def _train_and_export(root: Path) -> TinyAudio:
    from exporters.audio import export_embedder
    from models.audio.bow import BowConfig
    from models.audio.data import AudioDataConfig, make_audio_data
    from models.audio.frontend import FrontEndConfig
    from models.audio.passt import PasstConfig
    from models.audio.train import TrainConfig, clip_mels, save_checkpoint, train_bow, train_passt

    data_config = AudioDataConfig(clips_per_class=4, event_clips=0, seed=5)
    data = make_audio_data(data_config)
    front = FrontEndConfig()
    mels = {"train": clip_mels(data.train_audio, front), "test": clip_mels(data.test_audio, front)}
    config = TrainConfig(passt_epochs=1, autoencoder_epochs=1, head_epochs=2, kmeans_codes=2000)
    passt, passt_metrics = train_passt(data, mels, config, PasstConfig(dim=32, depth=1, heads=2), progress=False)
    bow, bow_metrics = train_bow(data, mels, config, BowConfig(hidden=32, latent=8, codebooks=(8, 16)), progress=False)
    passt_checkpoint = save_checkpoint(root / "passt.pt", passt, passt_metrics, data_config)
    bow_checkpoint = save_checkpoint(root / "bow.pt", bow, bow_metrics, data_config)
    export_embedder(passt_checkpoint, root / "repo", "audio-passt-fp32")
    export_embedder(bow_checkpoint, root / "repo", "audio-bow-fp32")
    return TinyAudio(root / "repo", passt_checkpoint, bow_checkpoint)
