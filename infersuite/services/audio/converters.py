"""protobuf <-> handler types for the audio service."""

from __future__ import annotations

import numpy as np

from infersuite.protos import audio_pb2, common_pb2
from infersuite.services.audio.handler import AudioInput, EmbedQuery, SceneResult, StreamOptions, TimestampResult


def audio_from_proto(audio: audio_pb2.Audio) -> AudioInput:
    source = audio.WhichOneof("source")
    if source == "wav":
        return AudioInput(wav=audio.wav)
    if source == "raw":
        return AudioInput(raw=audio.raw.samples_f32le, sample_rate=audio.raw.sample_rate,
                          channels=audio.raw.channels or 1)
    return AudioInput()


def scene_query(request: audio_pb2.EmbedSceneRequest) -> EmbedQuery:
    return EmbedQuery(audio_from_proto(request.audio), request.embedder)


def timestamps_query(request: audio_pb2.EmbedTimestampsRequest) -> EmbedQuery:
    return EmbedQuery(audio_from_proto(request.audio), request.embedder, request.hop_ms)


def stream_options(config: audio_pb2.StreamConfig) -> StreamOptions:
    return StreamOptions(config.sample_rate, config.channels or 1, config.embedder, config.hop_ms)


def _model(name: str, version: str) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=name, version=version)


def timestamp_embeddings(embeddings: np.ndarray, stamps: np.ndarray) -> list[audio_pb2.TimestampEmbedding]:
    return [audio_pb2.TimestampEmbedding(timestamp_ms=float(t), embedding=row.tolist())
            for t, row in zip(stamps, embeddings, strict=True)]


def scene_to_proto(result: SceneResult) -> audio_pb2.EmbedSceneResponse:
    return audio_pb2.EmbedSceneResponse(embedding=result.embedding.tolist(), duration_s=result.duration_s,
                                        model=_model(result.model, result.model_version))


def timestamps_to_proto(result: TimestampResult) -> audio_pb2.EmbedTimestampsResponse:
    return audio_pb2.EmbedTimestampsResponse(
        embeddings=timestamp_embeddings(result.embeddings, result.timestamps_ms), duration_s=result.duration_s,
        model=_model(result.model, result.model_version))


def stream_chunk_to_proto(embeddings: np.ndarray, stamps: np.ndarray, received_s: float, model: str,
                          version: str) -> audio_pb2.StreamTimestampsResponse:
    return audio_pb2.StreamTimestampsResponse(embeddings=timestamp_embeddings(embeddings, stamps),
                                              received_s=received_s, model=_model(model, version))
