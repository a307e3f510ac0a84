"""The HEAR 2021 API (Turian et al., "HEAR: Holistic Evaluation of Audio Representations") over
the suite's exported graphs, on numpy + onnxruntime (no torch, no server):

    model = load_model("model_repository/audio-passt-fp32")      # or a model.onnx path
    scene = get_scene_embeddings(audio, model)                    # (n_sounds, scene_embedding_size)
    emb, ts = get_timestamp_embeddings(audio, model)              # (n_sounds, T, D), (n_sounds, T) in ms

`audio` is (n_sounds, n_samples) at `model.sample_rate` (32 kHz), numpy or anything
`np.asarray` accepts (a CPU torch tensor included). The windows are those of the gRPC service
(`services.audio.windows`), run in batches.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from services.audio import windows

TIMESTAMP_HOP_MS = 50.0
TIMESTAMP_WINDOW_MS = 500.0  # the service's default (AudioSettings.timestamp_window_ms)
BATCH_WINDOWS = 64
DEFAULT_MODEL = Path("model_repository/audio-passt-fp32")


class HearModel:
    """An exported embedder with the attributes HEAR requires."""

    def __init__(self, onnx_path: Path, meta: dict, threads: int = 0):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.sample_rate = int(meta.get("sample_rate", 32000))
        self.window = int(meta.get("window_samples", self.sample_rate))
        self.scene_embedding_size = self.timestamp_embedding_size = int(self.session.get_outputs()[0].shape[1])
        self.timestamp_hop_ms = TIMESTAMP_HOP_MS
        self.timestamp_window_ms = TIMESTAMP_WINDOW_MS
        self.name = meta.get("name", onnx_path.parent.parent.name)

    def embed_windows(self, batch: np.ndarray) -> np.ndarray:
        """(N, window) -> (N, D), BATCH_WINDOWS at a time."""
        parts = [self.session.run(["embedding"], {"waveform": batch[part]})[0]
                 for part in windows.batched(len(batch), BATCH_WINDOWS)]
        return np.concatenate(parts)


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
    """A repository model directory (latest version), or a model.onnx next to its meta.json."""
    onnx_path = _onnx_path(model_file_path or DEFAULT_MODEL)
    meta_path = onnx_path.parent / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return HearModel(onnx_path, meta, threads)


def _sounds(audio: object) -> np.ndarray:
    sounds = np.asarray(audio, dtype=np.float32)
    if sounds.ndim != 2:
        raise ValueError(f"audio must be (n_sounds, n_samples), got shape {sounds.shape}")
    return sounds


def get_scene_embeddings(audio: object, model: HearModel) -> np.ndarray:
    """(n_sounds, n_samples) -> (n_sounds, scene_embedding_size): mean of the 1 s window embeddings,
    every window of every sound in one batched pass."""
    sounds = _sounds(audio)
    per_sound = [windows.scene_windows(sound, model.window) for sound in sounds]
    embeddings = model.embed_windows(np.concatenate(per_sound))
    bounds = np.cumsum([0, *(len(w) for w in per_sound)])
    return np.stack([embeddings[a:b].mean(0) for a, b in itertools.pairwise(bounds)])


def get_timestamp_embeddings(audio: object, model: HearModel) -> tuple[np.ndarray, np.ndarray]:
    """(n_sounds, n_samples) -> embeddings (n_sounds, T, D) and timestamps (n_sounds, T) in ms,
    each embedding centred on its timestamp, timestamps every model.timestamp_hop_ms."""
    sounds = _sounds(audio)
    count = windows.timestamp_count(sounds.shape[1], model.sample_rate, model.timestamp_hop_ms)
    stamps = windows.timestamps_ms(count, model.timestamp_hop_ms)
    centres = windows.centre_sample(stamps, model.sample_rate)
    active = round(model.timestamp_window_ms * model.sample_rate / 1000)
    embeddings = np.stack([
        np.concatenate([model.embed_windows(windows.centred_windows(sound, 0, centres[part], model.window, active))
                        for part in windows.batched(count, BATCH_WINDOWS)])
        for sound in sounds])
    return embeddings, np.broadcast_to(stamps, (len(sounds), count)).copy()
