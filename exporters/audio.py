"""Exports the trained audio embedders (PaSST, bag of words) into the model repository.

Each graph takes `waveform` (batch, 32000): a batch of fixed 1 s windows at 32 kHz, the log-mel
front end included, and returns `embedding` (batch, D). Dim 0 is the batch, so the service
cuts long clips into windows and runs them in batches (and dynamic batching can merge requests).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
import torch

from exporters.onnx_export import OPSET, check_parity, export_onnx, reference_session
from exporters.repository import ServingConfig, sha256_file, write_model
from models.audio.bow import BagOfWords
from models.audio.data import AudioDataConfig, make_audio_data
from models.audio.metrics import linear_probe_accuracy, retrieval_map
from models.audio.passt import Passt
from models.audio.train import load_checkpoint

if TYPE_CHECKING:
    from exporters.quantize.family import QuantFamily

PARITY_BATCHES = (1, 3, 8)
# PaSST: float32 reassociation of a 3-block transformer; BoW: histograms are exact counts / P,
# a word flips only on a near tie, so the same tolerance holds in practice (the check fails loudly if not).
PARITY_ATOL = 1e-4
SERVING = ServingConfig(max_batch_size=64, max_queue_delay_us=2000, preferred_batch_sizes=[8, 16, 32, 64])


def edge_windows(window: int, sample_rate: int) -> dict[str, np.ndarray]:
    """Windows at the edges of float32 audio, each of which must embed to finite values:
    digital silence, one lone sample, a tone at 1e-30 (tiny), at 1e20 (huge, its power overflows
    float32), denormal samples (1e-44), and a full-scale tone."""
    tone = np.sin(2 * np.pi * 1000 * np.arange(window) / sample_rate)
    click = np.zeros(window)
    click[0] = 0.5
    edges = {"silence": np.zeros(window), "one sample": click, "tiny": 1e-30 * tone, "huge": 1e20 * tone,
             "denormal": np.full(window, 1e-44), "tone": tone}
    return {name: samples.astype(np.float32) for name, samples in edges.items()}


def parity_inputs(model: Passt | BagOfWords, seed: int = 0) -> list[tuple[torch.Tensor]]:
    """Real synthetic windows (the graphs' input distribution), plus every edge window in one batch."""
    data = make_audio_data(AudioDataConfig(clips_per_class=2, event_clips=0, test_share=0.0, seed=seed))
    windows = data.train_audio.reshape(-1, model.front_config.window_samples)
    sets = [(torch.from_numpy(windows[:b].copy()),) for b in PARITY_BATCHES]
    edges = edge_windows(model.front_config.window_samples, model.front_config.sample_rate)
    return [*sets, (torch.from_numpy(np.stack(list(edges.values()))),)]


def export_embedder(checkpoint: Path, repository: Path, name: str, serving: ServingConfig = SERVING,
                    quality: dict[str, Any] | None = None) -> Path:
    """Exports, fails on a parity miss, writes <repository>/<name>/1/ with its meta.json; its `quality` is
    the checkpoint's training metrics unless given (the corpus-pretrained PaSST: exporters/audio_pretrained.py)."""
    model, ckpt = load_checkpoint(checkpoint)
    architecture = "passt" if isinstance(model, Passt) else "bow"
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx")
        parity = check_parity(model, onnx_path, parity_inputs(model), atol=PARITY_ATOL)
        meta = {
            "family": "audio", "architecture": architecture, "recipe": "fp32",
            "sample_rate": model.front_config.sample_rate,
            "window_samples": model.front_config.window_samples,
            "embedding_size": model.embedding_size,
            "front_end": asdict(model.front_config),
            "model_config": ckpt["config"],
            "source_checkpoint": checkpoint.name, "source_checkpoint_sha256": sha256_file(checkpoint),
            "quality": ckpt.get("metrics", {}) if quality is None else quality,
            "parity_max_abs_diff": parity, "onnx_opset": OPSET, "torch_version": torch.__version__,
        }
        return write_model(repository, name, onnx_path, meta, serving)


def calibration_batches(count: int, batch_size: int, seed: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-shape {"waveform": (batch_size, 32000)} batches of synthetic training-like audio."""
    per_class = -(-count * batch_size // 20)  # 2 windows per 2 s clip, 10 classes
    data = make_audio_data(AudioDataConfig(clips_per_class=per_class, event_clips=0, test_share=0.0, seed=seed))
    windows = data.train_audio.reshape(-1, 32000)
    for i in range(count):
        yield {"waveform": windows[i * batch_size:(i + 1) * batch_size]}


def scene_embeddings(session: ort.InferenceSession, clips: np.ndarray, window: int = 32000,
                     batch: int = 64) -> np.ndarray:
    """(N, samples) clips whose length is a multiple of the window -> (N, D) mean window embedding."""
    windows = clips.reshape(-1, window)
    out = np.concatenate([session.run(["embedding"], {"waveform": windows[i:i + batch]})[0]
                          for i in range(0, len(windows), batch)])
    return out.reshape(len(clips), -1, out.shape[-1]).mean(1)


def quality(onnx_path: Path, data_config: AudioDataConfig | None = None) -> dict[str, Any]:
    """Scores a graph on held-out synthetic clips (seed 7, not the training seed): linear-probe
    accuracy and retrieval mAP."""
    data = make_audio_data(data_config or AudioDataConfig(seed=7))
    session = reference_session(onnx_path)
    train, test = scene_embeddings(session, data.train_audio), scene_embeddings(session, data.test_audio)
    return {"linear_probe_accuracy": linear_probe_accuracy(train, data.train_labels, test, data.test_labels),
            "retrieval_map": retrieval_map(test, data.test_labels)}


def build(artifacts: Path, repository: Path, quick: bool) -> Path:
    """`python -m exporters.build --families audio`: trains when no checkpoint exists, then exports
    audio-passt-fp32 and audio-bow-fp32."""
    checkpoints = artifacts / "audio"
    if not ((checkpoints / "passt.pt").is_file() and (checkpoints / "bow.pt").is_file()):
        from models.audio import train  # torch training only when needed

        train.main(["--out", str(checkpoints), *(["--quick"] if quick else [])])
    export_embedder(checkpoints / "bow.pt", repository, "audio-bow-fp32")
    return export_embedder(checkpoints / "passt.pt", repository, "audio-passt-fp32").parent


def quant_families(repository: Path, artifacts: Path) -> list[QuantFamily]:
    """What the quantization report measures: each embedder that is built (PaSST, then bag-of-words), scored on
    the audio corpus's held-out tasks where `artifacts`/audio-corpus is built (`make audio-corpus`), else on
    held-out synthetic windows (the report's metric line says which)."""
    from exporters.audio_quality import corpus_available
    from exporters.family_quant import AudioQuantization

    corpus = artifacts / "audio-corpus"
    return [AudioQuantization(repository, embedder, corpus if corpus_available(corpus) else None)
            for embedder in ("passt", "bow") if (repository / f"audio-{embedder}-fp32").is_dir()]


def seed_configs() -> list[Any]:
    """The default data and training configs, whose seeds the shipped manifests record."""
    from models.audio.train import TrainConfig

    return [AudioDataConfig(), TrainConfig()]
