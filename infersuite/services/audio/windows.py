"""Where the 1 s model windows of a clip lie (HEAR conventions), shared by the service and the
HEAR module so that both embed exactly the same windows.

- Scene: windows start at 0, W, 2W, ...; the last one is flush with the clip's end (so no
  window is mostly padding); a clip shorter than W is zero-padded at its end. The scene
  embedding is the mean of the window embeddings.
- Timestamps: t_k = k * hop for k = 0 .. floor(duration / hop); the embedding of t_k is that
  of the model window CENTRED on t_k, zero-padded outside the clip. Only the central `active`
  samples (the timestamp window, 500 ms by default) carry audio, the rest is silence: a whole
  1 s of context blurs an onset over +-0.5 s, beyond HEAR's 200 ms onset tolerance (measured
  in reports/audio.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def scene_starts(length: int, window: int) -> list[int]:
    if length <= window:
        return [0]
    last = length - window
    return sorted({*range(0, last + 1, window), last})


def scene_windows(audio: np.ndarray, window: int) -> np.ndarray:
    """(n,) -> (W, window) float32."""
    if audio.size < window:
        return np.pad(audio, (0, window - audio.size))[None].astype(np.float32)
    return np.stack([audio[s:s + window] for s in scene_starts(audio.size, window)]).astype(np.float32)


def timestamp_count(length: int, sample_rate: int, hop_ms: float) -> int:
    duration_ms = 1000.0 * length / sample_rate
    return int(np.floor(duration_ms / hop_ms + 1e-9)) + 1


def timestamps_ms(count: int, hop_ms: float, first: int = 0) -> np.ndarray:
    return (np.arange(first, first + count) * hop_ms).astype(np.float64)


def centre_sample(timestamp_ms: np.ndarray, sample_rate: int) -> np.ndarray:
    return np.round(timestamp_ms * sample_rate / 1000.0).astype(np.int64)


def centred_windows(audio: np.ndarray, audio_start: int, centres: np.ndarray, window: int,
                    active: int | None = None) -> np.ndarray:
    """Windows of `window` samples centred on global sample indices `centres`, cut from `audio`
    whose first sample has global index `audio_start`, holding audio only in their central
    `active` samples (all of them by default); zeros elsewhere and where `audio` has no sample."""
    active = window if active is None else min(active, window)
    offset = (window - active) // 2
    index = centres[:, None] - window // 2 + offset + np.arange(active)[None, :] - audio_start  # (N, active)
    inside = (index >= 0) & (index < audio.size)
    out = np.zeros((len(centres), window), np.float32)
    part = out[:, offset:offset + active]
    part[inside] = audio[index[inside]]
    return out


def batched(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))
