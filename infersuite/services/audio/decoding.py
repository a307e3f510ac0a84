"""Audio input -> mono float32 samples and their rate, validated BEFORE anything is allocated.

WAV bytes: the RIFF header is parsed here (a few dozen bytes) to check the encoding, channel
count, rate and the declared length against the limits, and that the data chunk really holds
what it declares; only then does soundfile decode. Raw samples: the byte count gives the
length. Every failure is an InvalidArgument that says what is wrong.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import soundfile

from infersuite.services.audio.samples import MAX_MAGNITUDE, flush_denormals
from infersuite.services.audio.settings import AudioSettings
from infersuite.services.runtime import InvalidArgument

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
SUPPORTED = {(PCM, 16), (PCM, 24), (PCM, 32), (IEEE_FLOAT, 32), (IEEE_FLOAT, 64)}
FORMAT_NAMES = {PCM: "PCM", IEEE_FLOAT: "IEEE float", 0x0006: "A-law", 0x0007: "mu-law", 0x0002: "MS ADPCM",
                0x0011: "IMA ADPCM", 0x0055: "MP3"}


@dataclass(frozen=True)
class WavHeader:
    format_tag: int  # PCM or IEEE_FLOAT (WAVE_FORMAT_EXTENSIBLE resolved to its sub-format)
    channels: int
    sample_rate: int
    bits: int
    data_bytes: int  # as declared by the data chunk
    available_bytes: int  # what really follows the data chunk header

    @property
    def frames(self) -> int:
        return self.data_bytes // (self.channels * self.bits // 8)


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # (n,) float32 mono
    sample_rate: int  # Hz


def _chunks(data: bytes) -> dict[bytes, tuple[int, int]]:
    """RIFF chunk id -> (payload offset, declared size), stopping at the data chunk."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InvalidArgument("audio.wav is not a WAV file (no RIFF/WAVE header)")
    found: dict[bytes, tuple[int, int]] = {}
    offset = 12
    while offset + 8 <= len(data):
        chunk_id, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        found.setdefault(chunk_id, (offset + 8, size))
        if chunk_id == b"data":
            break
        offset += 8 + size + (size & 1)
    return found


def _format(data: bytes, offset: int, size: int) -> tuple[int, int, int, int]:
    if size < 16 or offset + 16 > len(data):
        raise InvalidArgument("audio.wav is truncated: its fmt chunk is incomplete")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, offset)
    if tag == EXTENSIBLE:
        if size < 40 or offset + 26 > len(data):
            raise InvalidArgument("audio.wav is truncated: its WAVE_FORMAT_EXTENSIBLE fmt chunk is incomplete")
        tag = struct.unpack_from("<H", data, offset + 24)[0]  # first 2 bytes of the sub-format GUID
    return tag, channels, rate, bits


def read_header(data: bytes) -> WavHeader:
    chunks = _chunks(data)
    if b"fmt " not in chunks:
        raise InvalidArgument("audio.wav has no fmt chunk (not a valid WAV file, or truncated)")
    if b"data" not in chunks:
        raise InvalidArgument("audio.wav has no data chunk (truncated, or not a valid WAV file)")
    tag, channels, rate, bits = _format(data, *chunks[b"fmt "])
    offset, size = chunks[b"data"]
    if (tag, bits) not in SUPPORTED:
        raise InvalidArgument(
            f"audio.wav uses an unsupported encoding ({FORMAT_NAMES.get(tag, f'format 0x{tag:04x}')}, "
            f"{bits}-bit); supported: PCM 16/24/32-bit and IEEE float 32/64-bit")
    if channels < 1:
        raise InvalidArgument("audio.wav declares 0 channels")
    return WavHeader(tag, channels, rate, bits, size, len(data) - offset)


def check_layout(settings: AudioSettings, sample_rate: int, channels: int, frames: int, field: str) -> None:
    """Rate, channels and duration limits, from declared sizes only."""
    if not settings.min_sample_rate <= sample_rate <= settings.max_sample_rate:
        raise InvalidArgument(f"{field} sample rate {sample_rate} Hz is outside "
                              f"[{settings.min_sample_rate}, {settings.max_sample_rate}] Hz")
    if channels > settings.max_channels:
        raise InvalidArgument(f"{field} has {channels} channels, more than the maximum of {settings.max_channels}")
    if frames <= 0:
        raise InvalidArgument(f"{field} holds no samples (zero-length audio)")
    if frames / sample_rate > settings.max_duration_s:
        raise InvalidArgument(f"{field} is {frames / sample_rate:.1f} s long, more than the maximum of "
                              f"{settings.max_duration_s:g} s")


def _finite(samples: np.ndarray, field: str) -> np.ndarray:
    """Rejects NaN/Inf and absurdly large samples; flushes denormal ones to zero
    (infersuite/services/audio/samples.py)."""
    bad = np.flatnonzero(~np.isfinite(samples))
    if bad.size:
        raise InvalidArgument(f"{field} has {bad.size} NaN/Inf sample(s), the first at frame {int(bad[0])}")
    huge = np.flatnonzero(np.abs(samples) > MAX_MAGNITUDE)
    if huge.size:
        raise InvalidArgument(f"{field} has {huge.size} sample(s) of magnitude above {MAX_MAGNITUDE:g}, "
                              f"the first at frame {int(huge[0])}")
    return flush_denormals(samples)


def decode_wav(data: bytes, settings: AudioSettings) -> DecodedAudio:
    header = read_header(data)
    check_layout(settings, header.sample_rate, header.channels, header.frames, "audio.wav")  # declared length
    if header.data_bytes > header.available_bytes:
        raise InvalidArgument(f"audio.wav is truncated: its data chunk declares {header.data_bytes} bytes "
                              f"but only {header.available_bytes} follow")
    try:
        frames, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as exc:  # its str() names the file object (a heap address): libsndfile's text only
        raise InvalidArgument(f"audio.wav could not be decoded: {exc.error_string}") from None
    except RuntimeError:
        raise InvalidArgument("audio.wav could not be decoded") from None
    return DecodedAudio(_finite(frames.mean(axis=1, dtype=np.float32), "audio.wav"), int(rate))


def samples_from_f32le(data: bytes, channels: int, field: str) -> np.ndarray:
    """Interleaved float32 little-endian bytes -> (frames,) mono float32; checks whole frames."""
    frame_bytes = 4 * channels
    if len(data) % frame_bytes:
        raise InvalidArgument(f"{field} has {len(data)} bytes, not a whole number of {channels}-channel "
                              f"float32 frames ({frame_bytes} bytes each)")
    frames = np.frombuffer(data, dtype="<f4").reshape(-1, channels)
    return _finite(frames.mean(axis=1, dtype=np.float32), field)


def decode_raw(data: bytes, sample_rate: int, channels: int, settings: AudioSettings) -> DecodedAudio:
    channels = channels or 1
    if channels < 0:
        raise InvalidArgument(f"audio.raw.channels must be positive, got {channels}")
    check_layout(settings, sample_rate, channels, len(data) // (4 * channels), "audio.raw")
    return DecodedAudio(samples_from_f32le(data, channels, "audio.raw.samples_f32le"), sample_rate)
