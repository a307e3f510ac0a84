"""Thin gRPC adapter: proto -> handler -> proto."""

from __future__ import annotations

from grpc import aio

from infersuite.protos import segmentation_pb2, segmentation_pb2_grpc
from infersuite.services.segmentation.converters import query_from_proto, result_to_proto
from infersuite.services.segmentation.handler import SegmentationHandler


class SegmentationServicer(segmentation_pb2_grpc.SegmentationServiceServicer):
    def __init__(self, handler: SegmentationHandler):
        self._handler = handler

    async def Segment(self, request: segmentation_pb2.SegmentRequest,
                      context: aio.ServicerContext) -> segmentation_pb2.SegmentResponse:
        result = await self._handler.segment(query_from_proto(request))
        return result_to_proto(result)
