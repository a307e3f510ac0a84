"""WAV / raw decoding and every bad input the audio service must reject (no sockets)."""

import io
import struct

import numpy as np
import pytest
import soundfile

from infersuite.services.audio.decoding import decode_raw, decode_wav
from infersuite.services.audio.settings import AudioSettings
from infersuite.services.runtime import InvalidArgument

SETTINGS = AudioSettings(max_duration_s=10.0)


def _wav(samples: np.ndarray, rate: int, subtype: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


def _tone(rate: int, seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t)
    return mono if channels == 1 else np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1)


@pytest.mark.parametrize(("subtype", "atol"), [("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-7),
                                               ("FLOAT", 0), ("DOUBLE", 1e-7)])
def test_supported_encodings_decode_to_the_same_samples(subtype, atol) -> None:
    tone = _tone(16000)
    decoded = decode_wav(_wav(tone, 16000, subtype), SETTINGS)
    assert decoded.sample_rate == 16000 and decoded.samples.dtype == np.float32
    np.testing.assert_allclose(decoded.samples, tone, atol=atol + 1e-7)


def test_multichannel_is_downmixed_to_the_channel_mean() -> None:
    stereo = _tone(22050, channels=3)
    decoded = decode_wav(_wav(stereo, 22050, "FLOAT"), SETTINGS)
    np.testing.assert_allclose(decoded.samples, stereo.mean(axis=1), atol=1e-6)


def _bad(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        decode_wav(data, SETTINGS)


def test_not_a_wav() -> None:
    _bad(b"ID3\x03 this is an mp3, honest" * 4, "not a WAV file")
    _bad(b"", "not a WAV file")


def test_truncated_wav_is_named_truncated() -> None:
    data = _wav(_tone(16000), 16000, "PCM_16")
    _bad(data[: len(data) // 2], "truncated: its data chunk declares 16000 bytes but only")
    _bad(data[:30], "truncated|no data chunk")


@pytest.mark.parametrize(("subtype", "name"), [("ULAW", "mu-law"), ("ALAW", "A-law"), ("PCM_U8", "PCM, 8-bit"),
                                               ("IMA_ADPCM", "IMA ADPCM")])
def test_unsupported_encodings_are_named(subtype, name) -> None:
    _bad(_wav(_tone(8000), 8000, subtype), f"unsupported encoding \\({name}")


def test_zero_length_wav() -> None:
    _bad(_wav(np.zeros(0), 16000, "PCM_16"), "holds no samples")


def test_too_long_is_rejected_from_the_declared_length_before_decoding() -> None:
    header = _wav(_tone(8000, 0.01), 8000, "PCM_16")[:44]
    declared = bytearray(header)
    struct.pack_into("<I", declared, 40, 8000 * 2 * 3600)  # data chunk: one hour, body absent
    _bad(bytes(declared), "3600.0 s long, more than the maximum of 10 s")


def test_absurd_sample_rates() -> None:
    _bad(_wav(_tone(1000, 1.0), 1000, "PCM_16"), "sample rate 1000 Hz is outside")
    data = bytearray(_wav(_tone(8000), 8000, "PCM_16"))
    struct.pack_into("<I", data, 24, 50_000_000)
    _bad(bytes(data), "sample rate 50000000 Hz is outside")


def test_nan_and_inf_samples() -> None:
    tone = _tone(16000).astype(np.float32)
    tone[100], tone[200] = np.nan, np.inf
    _bad(_wav(tone, 16000, "FLOAT"), "2 NaN/Inf sample\\(s\\), the first at frame 100")


def test_raw_samples_and_their_errors() -> None:
    stereo = np.random.default_rng(0).standard_normal((100, 2)).astype(np.float32)
    decoded = decode_raw(stereo.tobytes(), 16000, 2, SETTINGS)
    np.testing.assert_allclose(decoded.samples, stereo.mean(1), atol=1e-7)
    with pytest.raises(InvalidArgument, match="not a whole number of 2-channel float32 frames"):
        decode_raw(stereo.tobytes()[:-4], 16000, 2, SETTINGS)
    with pytest.raises(InvalidArgument, match="holds no samples"):
        decode_raw(b"", 16000, 1, SETTINGS)
    with pytest.raises(InvalidArgument, match="sample rate 0 Hz"):
        decode_raw(stereo.tobytes(), 0, 2, SETTINGS)
    with pytest.raises(InvalidArgument, match="more than the maximum of 10 s"):
        decode_raw(bytes(4 * 16000 * 11), 16000, 1, SETTINGS)
    with pytest.raises(InvalidArgument, match="NaN/Inf"):
        decode_raw(np.array([0.0, np.nan], np.float32).tobytes(), 16000, 1, SETTINGS)


def test_denormal_samples_are_flushed_to_zero_before_any_filtering() -> None:
    from infersuite.services.audio.resampling import StreamingResampler, resample

    samples = np.array([1e-44, -3e-39, 1.5e-38, 0.25, 1e-30], np.float32)  # two denormals, three normals
    raw = decode_raw(samples.tobytes(), 16000, 1, SETTINGS).samples
    np.testing.assert_array_equal(raw, np.array([0.0, 0.0, 1.5e-38, 0.25, 1e-30], np.float32))
    wav = decode_wav(_wav(samples, 16000, "FLOAT"), SETTINGS).samples
    np.testing.assert_array_equal(wav, raw)
    tiny = np.full(3000, 1e-36, np.float32)  # normal, but its filtered tails reach the denormal range
    whole = resample(tiny, 16000, 44100)
    streamed = np.concatenate([StreamingResampler(16000, 44100).push(tiny)])
    for out in (whole, streamed):
        assert not np.any((out != 0) & (np.abs(out) < np.finfo(np.float32).tiny))


def test_samples_too_large_to_filter_are_invalid_argument() -> None:
    square = np.sign(np.sin(np.arange(4410) / 3.0)).astype(np.float32)
    with pytest.raises(InvalidArgument, match=r"magnitude above 1e\+30, the first at frame 1"):
        decode_raw((3.4e38 * square).tobytes(), 44100, 1, SETTINGS)
    assert np.isfinite(decode_raw((1e20 * square).tobytes(), 44100, 1, SETTINGS).samples).all()
