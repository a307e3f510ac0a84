"""A small typed asyncio client for the segmentation service, on the suite's one client base
(infersuite/services/client.py)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Unpack

import numpy as np
from PIL import Image

from infersuite.protos import segmentation_pb2, segmentation_pb2_grpc
from infersuite.services.client import AsyncClient, AsyncClientOptions, InferSuiteClientError


class SegmentationClientError(InferSuiteClientError):
    """InferSuiteClientError raised by SegmentationClient (the name user code catches since the first release)."""


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


class SegmentationClient(AsyncClient):
    """`async with SegmentationClient("localhost:50051") as seg: await seg.segment(png_bytes)`; options
    (security, timeout_s=10.0, ...): `infersuite.services.client.AsyncClientOptions`."""

    error = SegmentationClientError

    def __init__(self, target: str, **options: Unpack[AsyncClientOptions]):
        options.setdefault("timeout_s", 10.0)  # a large image at full depth takes longer than a ctr score
        super().__init__(target, **options)
        self._stub = segmentation_pb2_grpc.SegmentationServiceStub(self._channel)

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
        response = await self._unary(self._stub.Segment, request, timeout_s)
        return Segmentation(_mask(response), list(response.class_names), response.exit_layer, response.gflops,
                            response.gflops_full_depth, response.model.name, response.model.version)
