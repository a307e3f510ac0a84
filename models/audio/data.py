"""Synthetic 32 kHz audio with known labels and known event onsets, from a seed. No downloads.

Ten sound classes, each a family of signals with random parameters, so that a class is a
*kind* of sound, not one waveform:

    0 tone            a pure tone, 200-4000 Hz
    1 harmonic        a harmonic stack: f0 100-400 Hz, 4-10 partials with decaying amplitude
    2 chirp_up        an exponential sweep upwards over the event
    3 chirp_down      the same, downwards
    4 am_slow         a tone amplitude-modulated at 2-5 Hz
    5 am_fast         a tone amplitude-modulated at 15-30 Hz
    6 clicks_slow     a click train at 4-12 clicks/s
    7 clicks_fast     a click train at 40-80 clicks/s
    8 noise_low       band-limited noise, 150-1200 Hz
    9 noise_high      band-limited noise, 3-9 kHz

Every clip gets a random gain (-30..0 dB), white background noise at a random SNR and a random
time shift (the event starts 0-0.4 s into the clip). Event clips are sequences of different
classes back to back, each segment starting at a known onset (the onsets that timestamp
embeddings must find).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import signal

SAMPLE_RATE = 32000
CLASSES = (
    "tone",
    "harmonic",
    "chirp_up",
    "chirp_down",
    "am_slow",
    "am_fast",
    "clicks_slow",
    "clicks_fast",
    "noise_low",
    "noise_high",
)


@dataclass(frozen=True)
class AudioDataConfig:
    clips_per_class: int = 120  # labelled clips per class
    clip_seconds: float = 2.0  # length of a labelled clip
    snr_db: tuple[float, float] = (10.0, 30.0)  # background white noise SNR range
    gain_db: tuple[float, float] = (-30.0, 0.0)  # overall gain range
    max_shift_s: float = 0.4  # latest start of the event inside its clip
    event_clips: int = 40  # clips with events at known onsets
    event_clip_seconds: float = 8.0  # length of an event clip
    segment_seconds: tuple[float, float] = (1.2, 2.5)  # length of one event in an event clip
    test_share: float = 0.3  # share of labelled clips held out
    seed: int = 0


def _tone(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * rng.uniform(200, 4000) * t + rng.uniform(0, 2 * np.pi))


def _harmonic(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    f0, partials = rng.uniform(100, 400), rng.integers(4, 11)
    k = np.arange(1, partials + 1)[:, None]
    return (np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi, (partials, 1))) / k).sum(0)


def _chirp(rng: np.random.Generator, t: np.ndarray, up: bool) -> np.ndarray:
    low, high = rng.uniform(200, 800), rng.uniform(3000, 8000)
    f_start, f_end = (low, high) if up else (high, low)
    return signal.chirp(t, f_start, max(t[-1], 1e-3), f_end, method="logarithmic")


def _am(rng: np.random.Generator, t: np.ndarray, rates: tuple[float, float]) -> np.ndarray:
    modulation = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(*rates) * t + rng.uniform(0, 2 * np.pi)))
    return modulation * _tone(rng, t)


def _clicks(rng: np.random.Generator, t: np.ndarray, rates: tuple[float, float]) -> np.ndarray:
    period = int(SAMPLE_RATE / rng.uniform(*rates))
    out = np.zeros_like(t)
    out[rng.integers(0, period) :: period] = 1.0
    decay = np.exp(-np.arange(64) / 8.0)  # a short decaying click, not a single sample
    return np.convolve(out, decay)[: t.size] * 3.0


def _band_noise(rng: np.random.Generator, t: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    sos = signal.butter(4, band, btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(t.size)) * 4.0


GENERATORS: tuple[Callable[[np.random.Generator, np.ndarray], np.ndarray], ...] = (
    _tone,
    _harmonic,
    lambda rng, t: _chirp(rng, t, True),
    lambda rng, t: _chirp(rng, t, False),
    lambda rng, t: _am(rng, t, (2, 5)),
    lambda rng, t: _am(rng, t, (15, 30)),
    lambda rng, t: _clicks(rng, t, (4, 12)),
    lambda rng, t: _clicks(rng, t, (40, 80)),
    lambda rng, t: _band_noise(rng, t, (150, 1200)),
    lambda rng, t: _band_noise(rng, t, (3000, 9000)),
)


def synth_event(rng: np.random.Generator, label: int, samples: int) -> np.ndarray:
    """One event of class `label`, unit RMS, `samples` long, with 10 ms fades."""
    t = np.arange(samples) / SAMPLE_RATE
    event = GENERATORS[label](rng, t)
    fade = min(320, samples // 2)
    ramp = np.linspace(0.0, 1.0, fade)
    event[:fade] *= ramp
    event[samples - fade :] *= ramp[::-1]
    return event / (np.sqrt(np.mean(event**2)) + 1e-12)


def _finish(rng: np.random.Generator, clip: np.ndarray, config: AudioDataConfig) -> np.ndarray:
    """Background noise at a random SNR and a random gain; float32."""
    noise_rms = 10 ** (-rng.uniform(*config.snr_db) / 20)
    clip = clip + noise_rms * rng.standard_normal(clip.size)
    clip *= 10 ** (rng.uniform(*config.gain_db) / 20) * 0.1
    return clip.astype(np.float32)


def labelled_clip(rng: np.random.Generator, label: int, config: AudioDataConfig) -> np.ndarray:
    samples = int(config.clip_seconds * SAMPLE_RATE)
    start = int(rng.uniform(0, config.max_shift_s) * SAMPLE_RATE)
    clip = np.zeros(samples)
    clip[start:] = synth_event(rng, label, samples - start)
    return _finish(rng, clip, config)


def event_clip(rng: np.random.Generator, config: AudioDataConfig) -> tuple[np.ndarray, list[float], list[int]]:
    """A clip of back-to-back events of different classes -> (audio, onsets in s, labels).
    The first event starts at 0 and is not an onset to detect; every onset is at least
    segment_seconds[0] from both ends of the clip."""
    total = int(config.event_clip_seconds * SAMPLE_RATE)
    clip, onsets, labels, position, label = np.zeros(total), [], [], 0, -1
    while position < total:
        label = int(rng.choice([c for c in range(len(CLASSES)) if c != label]))
        length = min(int(rng.uniform(*config.segment_seconds) * SAMPLE_RATE), total - position)
        if total - position - length < config.segment_seconds[0] * SAMPLE_RATE:
            length = total - position  # no onset in the clip's last segment_seconds[0]: the last event runs on
        clip[position : position + length] = synth_event(rng, label, length)
        if position > 0:
            onsets.append(position / SAMPLE_RATE)
        labels.append(label)
        position += length
    return _finish(rng, clip, config), onsets, labels


@dataclass
class AudioData:
    config: AudioDataConfig
    train_audio: np.ndarray  # (N_train, samples) float32
    train_labels: np.ndarray  # (N_train,) int64
    test_audio: np.ndarray  # (N_test, samples)
    test_labels: np.ndarray
    event_audio: np.ndarray  # (E, event samples)
    event_onsets: list[list[float]]  # onsets in seconds per event clip


def make_audio_data(config: AudioDataConfig = AudioDataConfig()) -> AudioData:
    rng = np.random.default_rng(config.seed)
    labels = np.repeat(np.arange(len(CLASSES)), config.clips_per_class)
    rng.shuffle(labels)
    audio = np.stack([labelled_clip(rng, int(label), config) for label in labels])
    n_test = round(labels.size * config.test_share)
    events = [event_clip(rng, config) for _ in range(config.event_clips)]
    return AudioData(
        config,
        audio[n_test:],
        labels[n_test:].astype(np.int64),
        audio[:n_test],
        labels[:n_test].astype(np.int64),
        np.stack([e[0] for e in events]) if events else np.zeros((0, 0), np.float32),
        [e[1] for e in events],
    )
