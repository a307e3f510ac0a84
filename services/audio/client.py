"""A small typed asyncio client for the audio service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import grpc
import numpy as np

from protos import audio_pb2, audio_pb2_grpc
from services.channel import ChannelSecurity, aio_channel


class AudioClientError(Exception):
    """A failed call: the gRPC status code name and the server's message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


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


class AudioClient:
    """`async with AudioClient("localhost:50051") as audio: await audio.embed_scene(wav_audio(data))`."""

    def __init__(self, target: str, *, timeout_s: float = 30.0, channel: grpc.aio.Channel | None = None,
                 security: ChannelSecurity | None = None):
        self._channel = channel or aio_channel(target, security)
        self._metadata = (security or ChannelSecurity()).metadata
        self._stub = audio_pb2_grpc.AudioServiceStub(self._channel)
        self._timeout_s = timeout_s

    async def __aenter__(self) -> AudioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def embed_scene(self, audio: audio_pb2.Audio, embedder: str = "") -> SceneEmbedding:
        try:
            reply = await self._stub.EmbedScene(audio_pb2.EmbedSceneRequest(audio=audio, embedder=embedder),
                                                timeout=self._timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise AudioClientError(err.code(), err.details() or "") from None
        return SceneEmbedding(np.array(reply.embedding, np.float32), reply.duration_s, reply.model.name,
                              reply.model.version)

    async def embed_timestamps(self, audio: audio_pb2.Audio, embedder: str = "",
                               hop_ms: float = 0.0) -> TimestampEmbeddings:
        request = audio_pb2.EmbedTimestampsRequest(audio=audio, embedder=embedder, hop_ms=hop_ms)
        try:
            reply = await self._stub.EmbedTimestamps(request, timeout=self._timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise AudioClientError(err.code(), err.details() or "") from None
        return TimestampEmbeddings(*_timestamps(reply.embeddings), reply.model.name, reply.model.version)

    async def stream_timestamps(self, chunks: Iterable[np.ndarray], sample_rate: int, embedder: str = "",
                                hop_ms: float = 0.0) -> AsyncIterator[TimestampEmbeddings]:
        """Sends (n,) or (n, channels) float chunks; yields the embeddings as the server sends them."""
        chunk_list = [np.asarray(c, dtype="<f4") for c in chunks]
        channels = 1 if not chunk_list or chunk_list[0].ndim == 1 else chunk_list[0].shape[1]

        async def requests() -> AsyncIterator[audio_pb2.StreamTimestampsRequest]:
            yield audio_pb2.StreamTimestampsRequest(config=audio_pb2.StreamConfig(
                sample_rate=sample_rate, channels=channels, embedder=embedder, hop_ms=hop_ms))
            for chunk in chunk_list:
                yield audio_pb2.StreamTimestampsRequest(samples_f32le=chunk.tobytes())

        try:
            async for reply in self._stub.StreamTimestamps(requests(), timeout=self._timeout_s,
                                                          metadata=self._metadata):
                yield TimestampEmbeddings(*_timestamps(reply.embeddings), reply.model.name, reply.model.version)
        except grpc.aio.AioRpcError as err:
            raise AudioClientError(err.code(), err.details() or "") from None
