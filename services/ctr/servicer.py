"""Thin gRPC adapter: proto -> handler -> proto."""

from __future__ import annotations

from grpc import aio

from protos import ctr_pb2, ctr_pb2_grpc
from services.ctr.converters import query_from_proto, result_to_proto
from services.ctr.handler import CtrHandler


class CtrServicer(ctr_pb2_grpc.CtrServiceServicer):
    def __init__(self, handler: CtrHandler):
        self._handler = handler

    async def Score(self, request: ctr_pb2.ScoreRequest, context: aio.ServicerContext) -> ctr_pb2.ScoreResponse:
        result = await self._handler.score(query_from_proto(request))
        return result_to_proto(result)
