"""A small typed asyncio client for the splitcompute service (payloads come from the edge SDK)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np

from protos import splitcompute_pb2, splitcompute_pb2_grpc
from services.channel import ChannelSecurity, aio_channel


class SplitComputeClientError(Exception):
    """A failed call: the gRPC status code and the server's message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


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


class SplitComputeClient:
    """`async with SplitComputeClient("localhost:50051") as sc: await sc.classify(payload)`."""

    def __init__(self, target: str, *, timeout_s: float = 5.0, channel: grpc.aio.Channel | None = None,
                 security: ChannelSecurity | None = None):
        self._channel = channel or aio_channel(target, security)
        self._metadata = (security or ChannelSecurity()).metadata
        self._stub = splitcompute_pb2_grpc.SplitComputeServiceStub(self._channel)
        self._timeout_s = timeout_s

    async def __aenter__(self) -> SplitComputeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def classify(self, payload: bytes, *, timeout_s: float | None = None) -> Classification:
        try:
            response = await self._stub.Classify(splitcompute_pb2.ClassifyRequest(payload=payload),
                                                 timeout=timeout_s or self._timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise SplitComputeClientError(err.code(), err.details() or "") from None
        return classification_from_proto(response)

    async def get_codec(self, *, timeout_s: float | None = None) -> CodecVersion:
        try:
            response = await self._stub.GetCodec(splitcompute_pb2.GetCodecRequest(),
                                                 timeout=timeout_s or self._timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise SplitComputeClientError(err.code(), err.details() or "") from None
        return codec_from_proto(response)
