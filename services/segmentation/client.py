"""A small typed asyncio client for the segmentation service."""

from __future__ import annotations

import io
from dataclasses import dataclass

import grpc
import numpy as np
from PIL import Image

from protos import segmentation_pb2, segmentation_pb2_grpc
from services.channel import ChannelSecurity, aio_channel


class SegmentationClientError(Exception):
    """A failed call: the gRPC status code name and the server's message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Segmentation:
    mask: np.ndarray  # (H, W) uint8 class ids, the input image's size
    class_names: list[str]
    exit_layer: int
    gflops: float
    gflops_full_depth: float
    model: str
    model_version: str


def _effort(exit_layer: int | None, gflops_budget: float | None) -> segmentation_pb2.Effort:
    if exit_layer is not None and gflops_budget is not None:
        raise ValueError("give exit_layer or gflops_budget, not both")
    if exit_layer is not None:
        return segmentation_pb2.Effort(exit_layer=exit_layer)
    if gflops_budget is not None:
        return segmentation_pb2.Effort(gflops_budget=gflops_budget)
    return segmentation_pb2.Effort(auto=segmentation_pb2.Effort.Auto())


def _mask(response: segmentation_pb2.SegmentResponse) -> np.ndarray:
    if response.mask_encoding == segmentation_pb2.MASK_ENCODING_RAW:
        return np.frombuffer(response.mask, np.uint8).reshape(response.height, response.width)
    return np.asarray(Image.open(io.BytesIO(response.mask)))


class SegmentationClient:
    """`async with SegmentationClient("localhost:50051") as seg: await seg.segment(png_bytes)`."""

    def __init__(self, target: str, *, timeout_s: float = 10.0, channel: grpc.aio.Channel | None = None,
                 security: ChannelSecurity | None = None):
        self._channel = channel or aio_channel(target, security)
        self._metadata = (security or ChannelSecurity()).metadata
        self._stub = segmentation_pb2_grpc.SegmentationServiceStub(self._channel)
        self._timeout_s = timeout_s

    async def __aenter__(self) -> SegmentationClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def segment(self, image: bytes | np.ndarray, *, exit_layer: int | None = None,
                      gflops_budget: float | None = None, raw_mask: bool = False,
                      timeout_s: float | None = None) -> Segmentation:
        """`image`: PNG/JPEG bytes, or an (H, W) / (H, W, C) uint8 array sent raw. Default effort: auto."""
        request = segmentation_pb2.SegmentRequest(
            effort=_effort(exit_layer, gflops_budget),
            mask_encoding=segmentation_pb2.MASK_ENCODING_RAW if raw_mask else segmentation_pb2.MASK_ENCODING_PNG)
        if isinstance(image, bytes):
            request.encoded = image
        else:
            pixels = np.ascontiguousarray(image, dtype=np.uint8)
            pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
            request.raw.CopyFrom(segmentation_pb2.RawImage(pixels=pixels.tobytes(), height=pixels.shape[0],
                                                           width=pixels.shape[1], channels=pixels.shape[2]))
        try:
            response = await self._stub.Segment(request, timeout=timeout_s or self._timeout_s,
                                                metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise SegmentationClientError(err.code(), err.details() or "") from None
        return Segmentation(_mask(response), list(response.class_names), response.exit_layer, response.gflops,
                            response.gflops_full_depth, response.model.name, response.model.version)
