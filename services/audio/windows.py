"""Where the 1 s model windows of a clip lie (HEAR conventions), shared by the service and the
HEAR module so that both embed exactly the same windows.

- Scene: windows start at 0, W, 2W, ...; the last one is flush with the clip's end (so no
  window is mostly padding); a clip shorter than W is zero-padded at its end. The scene
  embedding is the mean of the window embeddings.
- Timestamps: t_k = k * hop for k = 0 .. floor(duration / hop); the embedding of t_k is that
  of the window CENTRED on t_k, zero-padded outside the clip.
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


def centred_windows(audio: np.ndarray, audio_start: int, centres: np.ndarray, window: int) -> np.ndarray:
    """Windows of `window` samples centred on global sample indices `centres`, cut from `audio`
    whose first sample has global index `audio_start`; zeros where `audio` has no sample."""
    half = window // 2
    first = centres[:, None] - half + np.arange(window)[None, :] - audio_start  # (N, window) local indices
    inside = (first >= 0) & (first < audio.size)
    out = np.zeros(first.shape, np.float32)
    out[inside] = audio[first[inside]]
    return out


def batched(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))
