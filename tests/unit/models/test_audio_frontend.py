"""The one log-mel front end: matches an independent numpy STFT, crops consistently (what
training relies on), is gain invariant, and is what the exported graphs compute."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.audio.frontend import FrontEndConfig, LogMel, log_mel_reference, mel_filterbank


def _audio(samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 32000
    return (0.3 * np.sin(2 * np.pi * 1234 * t) + 0.05 * rng.standard_normal(samples)).astype(np.float32)[None]


def test_matches_the_numpy_fft_reference() -> None:
    audio = np.concatenate([_audio(32000), 0.01 * _audio(32000, seed=1)])
    got = LogMel()(torch.from_numpy(audio)).numpy()
    assert got.shape == (2, 1, 128, 98)
    np.testing.assert_allclose(got, log_mel_reference(audio), atol=1e-4)


def test_a_crop_at_a_hop_multiple_equals_the_clip_spectrogram_crop() -> None:
    clip = _audio(64000)
    front = FrontEndConfig()
    whole = LogMel(replace(front, window_samples=64000))(torch.from_numpy(clip))
    # per-window peak normalisation differs between clip and crop: compare up to that offset
    crop = LogMel()(torch.from_numpy(clip[:, 320 * 37:320 * 37 + 32000]))
    part = whole[..., 37:37 + front.frames]
    np.testing.assert_allclose((crop - crop.amax()).numpy(), (part - part.amax()).numpy(), atol=1e-4)


def test_gain_invariant() -> None:
    audio = _audio(32000)
    loud, quiet = LogMel()(torch.from_numpy(audio)), LogMel()(torch.from_numpy(audio * 1e-3))
    np.testing.assert_allclose(loud.numpy(), quiet.numpy(), atol=1e-3)


def test_a_tone_lights_the_mel_bin_of_its_frequency() -> None:
    config = FrontEndConfig()
    mel = LogMel()(torch.from_numpy(_audio(32000))).numpy()[0, 0].mean(1)  # (128,)
    filters = mel_filterbank(config)
    tone_bin = round(1234 / (config.sample_rate / config.n_fft))
    assert int(np.argmax(mel)) == int(np.argmax(filters[tone_bin]))


@pytest.mark.parametrize("silent", [np.zeros((1, 32000), np.float32)])
def test_silence_is_finite(silent) -> None:
    assert np.isfinite(LogMel()(torch.from_numpy(silent)).numpy()).all()
