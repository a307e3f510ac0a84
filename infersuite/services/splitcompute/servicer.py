"""Thin gRPC adapter: proto -> handler -> proto."""

from __future__ import annotations

from grpc import aio

from infersuite.protos import splitcompute_pb2, splitcompute_pb2_grpc
from infersuite.services.splitcompute.converters import codec_to_proto, result_to_proto
from infersuite.services.splitcompute.handler import SplitComputeHandler


class SplitComputeServicer(splitcompute_pb2_grpc.SplitComputeServiceServicer):
    def __init__(self, handler: SplitComputeHandler):
        self._handler = handler

    async def Classify(self, request: splitcompute_pb2.ClassifyRequest,
                       context: aio.ServicerContext) -> splitcompute_pb2.ClassifyResponse:
        return result_to_proto(await self._handler.classify(request.payload))

    async def GetCodec(self, request: splitcompute_pb2.GetCodecRequest,
                       context: aio.ServicerContext) -> splitcompute_pb2.GetCodecResponse:
        return codec_to_proto(self._handler.codec_info())
