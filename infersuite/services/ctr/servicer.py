"""Thin gRPC adapter: proto -> handler -> proto."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc import aio

from infersuite.protos import ctr_pb2, ctr_pb2_grpc
from infersuite.services.ctr.converters import query_from_proto, result_to_proto, stream_error_to_proto
from infersuite.services.ctr.handler import CtrHandler
from infersuite.services.runtime.streaming import RequestStream


class CtrServicer(ctr_pb2_grpc.CtrServiceServicer):
    def __init__(self, handler: CtrHandler, stream: RequestStream):
        self._handler = handler
        self._stream = stream

    async def Score(self, request: ctr_pb2.ScoreRequest, context: aio.ServicerContext) -> ctr_pb2.ScoreResponse:
        result = await self._handler.score(query_from_proto(request))
        return result_to_proto(result)

    async def ScoreStream(self, requests: AsyncIterator[ctr_pb2.ScoreRequest],
                          context: aio.ServicerContext) -> AsyncIterator[ctr_pb2.ScoreStreamResponse]:
        async for response in self._stream.responses(requests, self._score_one, stream_error_to_proto):
            yield response

    async def _score_one(self, request: ctr_pb2.ScoreRequest) -> ctr_pb2.ScoreStreamResponse:
        result = await self._handler.score(query_from_proto(request))
        return ctr_pb2.ScoreStreamResponse(request_id=request.request_id, result=result_to_proto(result))
