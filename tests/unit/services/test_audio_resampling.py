"""Polyphase resampling: streamed equals whole, and a tone keeps its frequency."""

import numpy as np
import pytest

from infersuite.services.audio.resampling import StreamingResampler, resample


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000, 96000, 32000])
def test_streaming_in_random_chunks_equals_the_whole_signal(rate) -> None:
    rng = np.random.default_rng(rate)
    signal = rng.standard_normal(rate + 777).astype(np.float32)
    resampler, parts, start = StreamingResampler(rate, 32000), [], 0
    while start < signal.size:
        size = int(rng.integers(0, 3000))
        parts.append(resampler.push(signal[start:start + size]))
        start += size
    parts.append(resampler.finish())
    streamed, whole = np.concatenate(parts), resample(signal, rate, 32000)
    assert streamed.shape == whole.shape == (int(np.ceil(signal.size * 32000 / rate)),)
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_a_tone_keeps_its_frequency(rate) -> None:
    t = np.arange(rate) / rate
    out = resample(np.sin(2 * np.pi * 1000.0 * t).astype(np.float32), rate, 32000)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    assert abs(np.argmax(spectrum) * 32000 / out.size - 1000.0) <= 1.0
