"""Turning a rendered or decoded recording into a corpus clip: mono, the suite's sample rate, and for
words and notes exactly one second that starts at the sound's onset.

The fit (documented in the manifest): silence before the onset (the first sample within 40 dB of the
recording's peak) is dropped, except 10 ms kept before it; the next second is kept; a shorter sound is
padded with zeros at its end. Levels are kept as rendered (no normalisation): velocity and loudness
stay in the data. A recording whose peak is below 1e-4 (-80 dBFS) counts as silent and is dropped."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly

from models.audio.data import SAMPLE_RATE

CLIP_SECONDS = 1.0
ONSET_DB = -40.0  # onset: first sample within this many dB of the recording's peak
PRE_ONSET_SECONDS = 0.010
SILENT_PEAK = 1e-4
FIT_RULE = (f"mono (channel mean), resampled to {SAMPLE_RATE} Hz (scipy polyphase); for words and notes the "
            f"first sample within {-ONSET_DB:g} dB of the peak is the onset, {PRE_ONSET_SECONDS * 1000:g} ms are kept "
            f"before it and {CLIP_SECONDS:g} s from there (zeros pad a shorter sound); levels as rendered; "
            f"a recording with peak < {SILENT_PEAK:g} is dropped as silent")


def to_mono_at_rate(samples: np.ndarray, source_rate: int, rate: int = SAMPLE_RATE) -> np.ndarray:
    """(N,) or (N, channels) at `source_rate` -> (M,) float32 at `rate`."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    if source_rate != rate:
        common = gcd(int(source_rate), rate)
        mono = resample_poly(mono, rate // common, int(source_rate) // common)
    return np.asarray(mono, dtype=np.float32)


def read_mono(path: Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    samples, source_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return to_mono_at_rate(samples, source_rate, rate)


def is_silent(samples: np.ndarray) -> bool:
    return samples.size == 0 or float(np.max(np.abs(samples))) < SILENT_PEAK


def fit_to_window(samples: np.ndarray, rate: int = SAMPLE_RATE, seconds: float = CLIP_SECONDS) -> np.ndarray:
    """The onset-aligned window of exactly `seconds` (see the module docstring); (N,) -> (rate * seconds,)."""
    length = round(rate * seconds)
    window = np.zeros(length, dtype=np.float32)
    if is_silent(samples):
        return window
    magnitude = np.abs(samples)
    onset = int(np.argmax(magnitude >= magnitude.max() * 10 ** (ONSET_DB / 20)))
    start = max(0, onset - round(PRE_ONSET_SECONDS * rate))
    kept = samples[start:start + length]
    window[:kept.size] = kept
    return window


def write_clip(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Writes 16-bit PCM WAV (HEAR's format), clipping at full scale; returns the duration in seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16")
    return round(samples.size / rate, 6)
