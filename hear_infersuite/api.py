"""The HEAR 2021 API (Turian et al., "HEAR: Holistic Evaluation of Audio Representations",
PMLR 176, 2022; hearbenchmark.com/hear-api) over the suite's exported ONNX embedders.

- `load_model(model_file_path="")` -> a `torch.nn.Module` (`HearModel`) wrapping an onnxruntime
  session, with the attributes `sample_rate`, `scene_embedding_size`, `timestamp_embedding_size`;
- `get_scene_embeddings(audio, model)`: (n_sounds, n_samples) -> (n_sounds, scene_embedding_size);
- `get_timestamp_embeddings(audio, model)` -> embeddings (n_sounds, n_timestamps, size) and
  timestamps (n_sounds, n_timestamps) in milliseconds, every 50 ms, each embedding centred on its
  timestamp.

Audio comes in as a torch tensor (any device, `requires_grad` allowed: the graph is not
differentiable, so the embeddings are constants) at `model.sample_rate` (32 kHz); outputs are
float32 tensors on the input's device. The windows are those of the gRPC service
(`infersuite.services.audio.windows`), run in batches, so both give the same embeddings.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from infersuite.services.audio import windows
from infersuite.services.audio.samples import flush_denormals

TIMESTAMP_HOP_MS = 50.0
TIMESTAMP_WINDOW_MS = 500.0  # the service's default (AudioSettings.timestamp_window_ms)
BATCH_WINDOWS = 64


def default_model(name: str) -> Path:
    """<repository>/<name>, the repository from INFERSUITE_MODEL_REPOSITORY as the server reads it."""
    return Path(os.environ.get("INFERSUITE_MODEL_REPOSITORY", "model_repository")) / name


class HearModel(nn.Module):
    """An exported embedder as a torch module: `forward` maps (N, window) windows to (N, D)."""

    device_anchor: torch.Tensor  # empty buffer: follows .to(device)

    def __init__(self, onnx_path: Path, meta: dict[str, Any], threads: int = 0):
        super().__init__()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # no set_denormal_as_zero: it would flush the caller's thread too
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.sample_rate = int(meta.get("sample_rate", 32000))
        self.window = int(meta.get("window_samples", self.sample_rate))
        self.scene_embedding_size = int(self.session.get_outputs()[0].shape[1])
        self.timestamp_embedding_size = self.scene_embedding_size
        self.timestamp_hop_ms = TIMESTAMP_HOP_MS
        self.timestamp_window_ms = TIMESTAMP_WINDOW_MS
        self.name = str(meta.get("name", onnx_path.parent.parent.name))
        self.register_buffer("device_anchor", torch.zeros(0), persistent=False)

    def extra_repr(self) -> str:
        return f"{self.name}, sample_rate={self.sample_rate}, embedding_size={self.scene_embedding_size}"

    def embed_windows(self, batch: np.ndarray) -> np.ndarray:
        """(N, window) float32 -> (N, D), BATCH_WINDOWS at a time."""
        parts = [self.session.run(["embedding"], {"waveform": batch[part]})[0]
                 for part in windows.batched(len(batch), BATCH_WINDOWS)]
        embeddings = np.concatenate(parts)
        if not np.isfinite(embeddings).all():  # the serving runtime's rule: never a NaN answer
            raise RuntimeError(f"{self.name} produced NaN/Inf embeddings")
        return embeddings

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return _tensor(self.embed_windows(_samples(batch, 2, "windows")), batch)


def _onnx_path(model_file_path: str | Path) -> Path:
    path = Path(model_file_path)
    if path.is_dir():
        versions = sorted((p for p in path.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        if not versions:
            raise FileNotFoundError(f"{path} has no numeric version directory")
        path = versions[-1] / "model.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}")
    return path


def load_model(model_file_path: str = "", threads: int = 0) -> HearModel:
    """A repository model directory (its latest version) or a model.onnx next to its meta.json;
    "" loads the suite's default embedder (PaSST) from the model repository."""
    onnx_path = _onnx_path(model_file_path or default_model("audio-passt-fp32"))
    meta_path = onnx_path.parent / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return HearModel(onnx_path, meta, threads)


def _samples(audio: Any, ndim: int, what: str) -> np.ndarray:
    """A tensor (any device, grad or not) or array -> C-contiguous float32 numpy, finite, denormals flushed,
    in a copy: the caller's tensor or array is never written (a CPU tensor's .numpy() shares its memory)."""
    values = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    values = np.array(values, dtype=np.float32, order="C", copy=True)
    if values.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {tuple(values.shape)}")
    if not np.isfinite(values).all():
        raise ValueError(f"{what} holds NaN/Inf samples")
    return flush_denormals(values)


def _tensor(values: np.ndarray, like: Any) -> torch.Tensor:
    out = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    return out.to(like.device) if isinstance(like, torch.Tensor) else out


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, n_samples) -> (n_sounds, scene_embedding_size): the mean of the 1 s window
    embeddings, every window of every sound in one batched pass."""
    sounds = _samples(audio, 2, "audio (n_sounds, n_samples)")
    per_sound = [windows.scene_windows(sound, model.window) for sound in sounds]
    embeddings = model.embed_windows(np.concatenate(per_sound))
    bounds = np.cumsum([0, *(len(w) for w in per_sound)])
    return _tensor(np.stack([embeddings[a:b].mean(0) for a, b in itertools.pairwise(bounds)]), audio)


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_sounds, n_samples) -> embeddings (n_sounds, T, D) and timestamps (n_sounds, T) in ms
    (float32), each embedding centred on its timestamp, timestamps every model.timestamp_hop_ms."""
    sounds = _samples(audio, 2, "audio (n_sounds, n_samples)")
    count = windows.timestamp_count(sounds.shape[1], model.sample_rate, model.timestamp_hop_ms)
    stamps = windows.timestamps_ms(count, model.timestamp_hop_ms)
    centres = windows.centre_sample(stamps, model.sample_rate)
    active = round(model.timestamp_window_ms * model.sample_rate / 1000)
    embeddings = np.stack([
        np.concatenate([model.embed_windows(windows.centred_windows(sound, 0, centres[part], model.window, active))
                        for part in windows.batched(count, BATCH_WINDOWS)])
        for sound in sounds]).reshape(len(sounds), count, model.timestamp_embedding_size)
    return _tensor(embeddings, audio), _tensor(np.broadcast_to(stamps, (len(sounds), count)), audio)
