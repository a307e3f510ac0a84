"""Thin gRPC adapter: proto -> handler -> proto."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc import aio

from infersuite.protos import audio_pb2, audio_pb2_grpc
from infersuite.services.audio import converters
from infersuite.services.audio.handler import AudioHandler
from infersuite.services.runtime import InvalidArgument


class AudioServicer(audio_pb2_grpc.AudioServiceServicer):
    def __init__(self, handler: AudioHandler):
        self._handler = handler

    async def EmbedScene(self, request: audio_pb2.EmbedSceneRequest,
                         context: aio.ServicerContext) -> audio_pb2.EmbedSceneResponse:
        return converters.scene_to_proto(await self._handler.embed_scene(converters.scene_query(request)))

    async def EmbedTimestamps(self, request: audio_pb2.EmbedTimestampsRequest,
                              context: aio.ServicerContext) -> audio_pb2.EmbedTimestampsResponse:
        result = await self._handler.embed_timestamps(converters.timestamps_query(request))
        return converters.timestamps_to_proto(result)

    async def StreamTimestamps(self, requests: AsyncIterator[audio_pb2.StreamTimestampsRequest],
                               context: aio.ServicerContext) -> AsyncIterator[audio_pb2.StreamTimestampsResponse]:
        stream = None
        try:
            async for request in requests:
                if request.WhichOneof("payload") == "config":
                    if stream is not None:
                        raise InvalidArgument("config may only be the first message of the stream")
                    stream = self._handler.open_stream(converters.stream_options(request.config))
                    continue
                if stream is None:
                    raise InvalidArgument("the first message of the stream must be a config")
                embeddings, stamps = await stream.push(request.samples_f32le)
                if len(stamps):
                    yield converters.stream_chunk_to_proto(embeddings, stamps, stream.received_s, stream.model,
                                                           stream.model_version)
            if stream is None:
                raise InvalidArgument("the stream was empty: send a config, then samples")
            embeddings, stamps = await stream.finish()
            yield converters.stream_chunk_to_proto(embeddings, stamps, stream.received_s, stream.model,
                                                   stream.model_version)
        finally:
            if stream is not None:
                stream.close()  # the stream's model set may retire now
