"""Fuzzes the audio service's WAV and raw-PCM decoding (infersuite/services/audio/decoding.py)."""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["infersuite"]):
    from infersuite.services.audio.decoding import decode_raw, decode_wav
    from infersuite.services.audio.settings import AudioSettings
    from infersuite.services.runtime import InvalidArgument

from fuzz._harness import main

SETTINGS = AudioSettings(max_duration_s=30.0)


def test_one_input(data: bytes) -> None:
    try:
        if data[:1] == b"\x00":  # raw float32 samples: rate and channels from the next 5 bytes
            provider = atheris.FuzzedDataProvider(data[1:])
            rate, channels = provider.ConsumeIntInRange(0, 400_000), provider.ConsumeIntInRange(-2, 40)
            decoded = decode_raw(provider.ConsumeBytes(1 << 16), rate, channels, SETTINGS)
        else:
            decoded = decode_wav(data, SETTINGS)
    except InvalidArgument as exc:
        assert exc.message
        return
    assert decoded.samples.ndim == 1 and decoded.samples.dtype.name == "float32"
    assert decoded.samples.size <= decoded.sample_rate * SETTINGS.max_duration_s


if __name__ == "__main__":
    main(test_one_input)
