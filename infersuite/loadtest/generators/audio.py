"""`audio`: clips of varied length, sample rate and channel count for the audio embedding service.

Each clip is a few tones with noise, min_s..max_s long, at one of 16/22.05/32/44.1/48 kHz,
mono or stereo, sent as a 16-bit PCM WAV file (stdlib `wave`) or raw float32 samples.
Method: `scene` (EmbedScene, default) or `timestamps` (EmbedTimestamps every hop_ms).
Checks: embeddings non-empty, one width, finite; duration_s within 2% (+ 1 frame) of the clip;
timestamps: about duration / hop + 1 of them, in order.
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass

import grpc
import numpy as np

from infersuite.loadtest.generators.base import GeneratorError, RequestPool, check_unknown, register

SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)
PARAMS = {"method", "embedder", "min_s", "max_s", "hop_ms", "wav_share"}


@dataclass(frozen=True)
class ClipShape:
    duration_s: float
    method: str
    hop_ms: float


def synthetic_clip(rng: np.random.Generator, seconds: float, sample_rate: int, channels: int) -> np.ndarray:
    """(frames, channels) float32 in [-1, 1]: 1..4 tones plus noise."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    signal = sum(rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(80, 4000) * t)
                 for _ in range(int(rng.integers(1, 5))))
    clip = np.stack([signal + rng.normal(0, 0.02, t.size) for _ in range(channels)], axis=1)
    return np.clip(clip, -1, 1).astype(np.float32)


def wav_bytes(clip: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(clip.shape[1])
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes((clip * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def _float(params: dict[str, str], key: str, default: float) -> float:
    try:
        value = float(params.get(key, default))
    except ValueError:
        raise GeneratorError(f"audio: --param {key} must be a number") from None
    if value < 0:
        raise GeneratorError(f"audio: --param {key} must be >= 0")
    return value


class AudioGenerator:
    name = "audio"
    grpc_service = "infersuite.audio.v1.AudioService"

    def __init__(self, params: dict[str, str]):
        check_unknown(params, PARAMS, self.name)
        self.method = params.get("method", "scene")
        if self.method not in ("scene", "timestamps"):
            raise GeneratorError("audio: --param method must be scene or timestamps")
        self.embedder = params.get("embedder", "")
        self.min_s, self.max_s = _float(params, "min_s", 1.0), _float(params, "max_s", 5.0)
        if not 0 < self.min_s <= self.max_s:
            raise GeneratorError("audio: need 0 < min_s <= max_s")
        self.hop_ms, self.wav_share = _float(params, "hop_ms", 50.0), _float(params, "wav_share", 0.5)

    async def build(self, channel: grpc.aio.Channel, rng: np.random.Generator, size: int) -> RequestPool:
        from infersuite.protos import audio_pb2

        payloads: list[bytes] = []
        shapes: list[ClipShape] = []
        for index in range(size):
            if index >= 32:  # synthesis is costly: cycle 32 distinct clips
                payloads.append(payloads[index % 32])
                shapes.append(shapes[index % 32])
                continue
            sample_rate, channels = int(rng.choice(SAMPLE_RATES)), int(rng.integers(1, 3))
            clip = synthetic_clip(rng, float(rng.uniform(self.min_s, self.max_s)), sample_rate, channels)
            audio = audio_pb2.Audio()
            if rng.random() < self.wav_share:
                audio.wav = wav_bytes(clip, sample_rate)
            else:
                audio.raw.samples_f32le, audio.raw.sample_rate, audio.raw.channels = (
                    clip.astype("<f4").tobytes(), sample_rate, channels)
            if self.method == "scene":
                request = audio_pb2.EmbedSceneRequest(audio=audio, embedder=self.embedder)
            else:
                request = audio_pb2.EmbedTimestampsRequest(audio=audio, embedder=self.embedder, hop_ms=self.hop_ms)
            payloads.append(request.SerializeToString())
            shapes.append(ClipShape(clip.shape[0] / sample_rate, self.method, self.hop_ms))
        method = "EmbedScene" if self.method == "scene" else "EmbedTimestamps"
        description = {"method": method, "embedder": self.embedder or "(service default)",
                       "seconds": [self.min_s, self.max_s], "sample_rates": list(SAMPLE_RATES),
                       "wav_share": self.wav_share}
        return RequestPool(f"/infersuite.audio.v1.AudioService/{method}", payloads, shapes, check_audio, description)


def _finite(vector: object) -> bool:
    return all(math.isfinite(x) for x in vector)  # type: ignore[attr-defined]


def check_audio(clip: ClipShape, response: bytes) -> str | None:
    from infersuite.protos import audio_pb2

    if clip.method == "scene":
        scene = audio_pb2.EmbedSceneResponse.FromString(response)
        vectors, duration = [scene.embedding], scene.duration_s
    else:
        stamps = audio_pb2.EmbedTimestampsResponse.FromString(response)
        vectors, duration = [e.embedding for e in stamps.embeddings], stamps.duration_s
        expected = clip.duration_s * 1000 / clip.hop_ms + 1
        if abs(len(vectors) - expected) > 0.05 * expected + 2:
            return "audio: timestamp count does not match duration / hop"
        times = [e.timestamp_ms for e in stamps.embeddings]
        if times != sorted(times):
            return "audio: timestamps out of order"
    if abs(duration - clip.duration_s) > 0.02 * clip.duration_s + 1e-3:
        return "audio: duration_s differs from the clip"
    if not vectors or not vectors[0] or len({len(v) for v in vectors}) != 1:
        return "audio: empty or ragged embeddings"
    if not all(_finite(v) for v in vectors):
        return "audio: non-finite embedding"
    return None


register("audio", "EmbedScene/EmbedTimestamps: clips 1..5 s at 16-48 kHz, mono/stereo, WAV or raw "
         "(--param method=scene|timestamps, embedder, min_s, max_s, hop_ms, wav_share)")(AudioGenerator)
