"""A small typed asyncio client for the audio service, on the suite's one client base
(infersuite/services/client.py)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Unpack

import numpy as np

from infersuite.protos import audio_pb2, audio_pb2_grpc
from infersuite.services.client import AsyncClient, AsyncClientOptions, InferSuiteClientError, each


class AudioClientError(InferSuiteClientError):
    """InferSuiteClientError raised by AudioClient (the name user code catches since the first release)."""


@dataclass(frozen=True)
class SceneEmbedding:
    embedding: np.ndarray  # (D,)
    duration_s: float
    model: str
    model_version: str


@dataclass(frozen=True)
class TimestampEmbeddings:
    embeddings: np.ndarray  # (T, D)
    timestamps_ms: np.ndarray  # (T,)
    model: str
    model_version: str


def wav_audio(wav: bytes) -> audio_pb2.Audio:
    return audio_pb2.Audio(wav=wav)


def raw_audio(samples: np.ndarray, sample_rate: int) -> audio_pb2.Audio:
    """(n,) mono or (n, channels) float samples."""
    frames = np.asarray(samples, dtype="<f4")
    channels = 1 if frames.ndim == 1 else frames.shape[1]
    return audio_pb2.Audio(raw=audio_pb2.RawAudio(samples_f32le=frames.tobytes(), sample_rate=sample_rate,
                                                  channels=channels))


def _timestamps(items: Iterable[audio_pb2.TimestampEmbedding]) -> tuple[np.ndarray, np.ndarray]:
    rows = list(items)
    embeddings = np.array([list(r.embedding) for r in rows], np.float32)
    return embeddings, np.array([r.timestamp_ms for r in rows], np.float64)


def _stream_config(sample_rate: int, channels: int, embedder: str, hop_ms: float,
                   ) -> audio_pb2.StreamTimestampsRequest:
    return audio_pb2.StreamTimestampsRequest(config=audio_pb2.StreamConfig(
        sample_rate=sample_rate, channels=channels, embedder=embedder, hop_ms=hop_ms))


async def _stream_requests(chunks: Iterable[np.ndarray] | AsyncIterable[np.ndarray], sample_rate: int,
                           embedder: str, hop_ms: float) -> AsyncIterator[audio_pb2.StreamTimestampsRequest]:
    """The config, then one message per chunk, each made when gRPC asks for it (the config waits only
    for the first chunk, which gives the channel count)."""
    channels: int | None = None
    index = 0
    async for chunk in each(chunks):
        frames = np.asarray(chunk, dtype="<f4")
        chunk_channels = 1 if frames.ndim == 1 else frames.shape[1]
        if channels is None:
            channels = chunk_channels
            yield _stream_config(sample_rate, channels, embedder, hop_ms)
        elif chunk_channels != channels:
            raise ValueError(f"chunk {index} has {chunk_channels} channels; the stream's first chunk had {channels}")
        yield audio_pb2.StreamTimestampsRequest(samples_f32le=frames.tobytes())
        index += 1
    if channels is None:  # no audio at all: the config alone, and the server says what an empty stream gets
        yield _stream_config(sample_rate, 1, embedder, hop_ms)


def _timestamp_embeddings(reply: audio_pb2.EmbedTimestampsResponse | audio_pb2.StreamTimestampsResponse,
                          ) -> TimestampEmbeddings:
    return TimestampEmbeddings(*_timestamps(reply.embeddings), reply.model.name, reply.model.version)


class AudioClient(AsyncClient):
    """`async with AudioClient("localhost:50051") as audio: await audio.embed_scene(wav_audio(data))`;
    options (security, timeout_s=30.0, stream_timeout_s=None, ...): `infersuite.services.client.AsyncClientOptions`."""

    error = AudioClientError

    def __init__(self, target: str, **options: Unpack[AsyncClientOptions]):
        options.setdefault("timeout_s", 30.0)  # a 600 s clip is resampled and windowed before it is embedded
        super().__init__(target, **options)
        self._stub = audio_pb2_grpc.AudioServiceStub(self._channel)

    async def embed_scene(self, audio: audio_pb2.Audio, embedder: str = "", *,
                          timeout_s: float | None = None) -> SceneEmbedding:
        request = audio_pb2.EmbedSceneRequest(audio=audio, embedder=embedder)
        reply = await self._unary(self._stub.EmbedScene, request, timeout_s)
        return SceneEmbedding(np.array(reply.embedding, np.float32), reply.duration_s, reply.model.name,
                              reply.model.version)

    async def embed_timestamps(self, audio: audio_pb2.Audio, embedder: str = "", hop_ms: float = 0.0, *,
                               timeout_s: float | None = None) -> TimestampEmbeddings:
        request = audio_pb2.EmbedTimestampsRequest(audio=audio, embedder=embedder, hop_ms=hop_ms)
        return _timestamp_embeddings(await self._unary(self._stub.EmbedTimestamps, request, timeout_s))

    def stream_timestamps(self, chunks: Iterable[np.ndarray] | AsyncIterable[np.ndarray], sample_rate: int,
                          embedder: str = "", hop_ms: float = 0.0, *,
                          timeout_s: float | None = None) -> AsyncIterator[TimestampEmbeddings]:
        """Sends (n,) or (n, channels) float chunks as they are produced (an async iterable may wait for
        audio, or for the answers); yields the embeddings as the server sends them. timeout_s bounds the
        whole stream (None: the client's stream_timeout_s, by default no deadline)."""
        requests = _stream_requests(chunks, sample_rate, embedder, hop_ms)
        responses = self._stream(self._stub.StreamTimestamps, requests, timeout_s)
        return (_timestamp_embeddings(reply) async for reply in responses)
