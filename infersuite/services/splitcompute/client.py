"""A small typed asyncio client for the splitcompute service (payloads come from the edge SDK), on the
suite's one client base (infersuite/services/client.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Unpack

import numpy as np

from infersuite.protos import splitcompute_pb2, splitcompute_pb2_grpc
from infersuite.services.client import AsyncClient, AsyncClientOptions, InferSuiteClientError


class SplitComputeClientError(InferSuiteClientError):
    """InferSuiteClientError raised by SplitComputeClient and EdgeDevice (the name user code catches since
    the first release)."""


@dataclass(frozen=True)
class Classification:
    probabilities: np.ndarray  # (K,)
    top_class: int
    top_class_name: str
    codec_version: int
    payload_bytes: int
    model: str
    model_version: str


@dataclass(frozen=True)
class CodecVersion:
    version: int
    served_versions: tuple[int, ...]
    latent_shape: tuple[int, ...]
    encoder_model: str
    wire_format: int
    class_names: tuple[str, ...]


def classification_from_proto(response: splitcompute_pb2.ClassifyResponse) -> Classification:
    return Classification(np.array(response.probabilities, np.float32), response.top_class,
                          response.top_class_name, response.codec_version, response.payload_bytes,
                          response.model.name, response.model.version)


def codec_from_proto(response: splitcompute_pb2.GetCodecResponse) -> CodecVersion:
    return CodecVersion(response.codec_version, tuple(response.served_versions), tuple(response.latent_shape),
                        response.encoder_model, response.wire_format, tuple(response.class_names))


class SplitComputeClient(AsyncClient):
    """`async with SplitComputeClient("localhost:50051") as sc: await sc.classify(payload)`; options
    (security, timeout_s=5.0, ...): `infersuite.services.client.AsyncClientOptions`."""

    error = SplitComputeClientError

    def __init__(self, target: str, **options: Unpack[AsyncClientOptions]):
        super().__init__(target, **options)
        self._stub = splitcompute_pb2_grpc.SplitComputeServiceStub(self._channel)

    async def classify(self, payload: bytes, *, timeout_s: float | None = None) -> Classification:
        request = splitcompute_pb2.ClassifyRequest(payload=payload)
        return classification_from_proto(await self._unary(self._stub.Classify, request, timeout_s))

    async def get_codec(self, *, timeout_s: float | None = None) -> CodecVersion:
        return codec_from_proto(await self._unary(self._stub.GetCodec, splitcompute_pb2.GetCodecRequest(), timeout_s))
