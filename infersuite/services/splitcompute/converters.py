"""protobuf <-> handler types for the splitcompute service."""

from __future__ import annotations

from infersuite.protos import common_pb2, splitcompute_pb2
from infersuite.services.splitcompute.handler import ClassifyResult, CodecInfo


def result_to_proto(result: ClassifyResult) -> splitcompute_pb2.ClassifyResponse:
    return splitcompute_pb2.ClassifyResponse(
        probabilities=result.probabilities.tolist(), top_class=result.top_class,
        top_class_name=result.top_class_name, codec_version=result.codec_version,
        payload_bytes=result.payload_bytes,
        model=common_pb2.ModelRef(name=result.model, version=result.model_version))


def codec_to_proto(info: CodecInfo) -> splitcompute_pb2.GetCodecResponse:
    return splitcompute_pb2.GetCodecResponse(
        codec_version=info.version, served_versions=info.served_versions, latent_shape=list(info.latent_shape),
        encoder_model=info.encoder_model, wire_format=info.wire_format, class_names=info.class_names)
