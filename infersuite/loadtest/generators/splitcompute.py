"""`splitcompute`: Classify calls carrying edge payloads made by the real edge SDK.

The harness imports no service code, so it cannot run the edge encoder itself: the payloads are
files the SDK wrote (`--param payloads=DIR`, every `*.bin` in it is one wire frame; make frames
at several rates/codec versions to mix them). The server is asked for its codec first
(GetCodec); checks: one probability per class, each in [0, 1], summing to 1, top_class = argmax,
payload_bytes = the frame's size, codec_version among the served versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from infersuite.loadtest.generators.base import GeneratorError, RequestPool, check_unknown, register


@dataclass(frozen=True)
class FrameShape:
    classes: int
    payload_bytes: int
    served_versions: frozenset[int]


class SplitComputeGenerator:
    name = "splitcompute"
    grpc_service = "infersuite.splitcompute.v1.SplitComputeService"

    def __init__(self, params: dict[str, str]):
        check_unknown(params, {"payloads"}, self.name)
        if "payloads" not in params:
            raise GeneratorError("splitcompute: needs --param payloads=DIR of wire frames (*.bin) written by the "
                                 "edge SDK (infersuite/services/splitcompute/edge.py: "
                                 "EdgeEncoder(bundle).encode(image))")
        self.files = sorted(Path(params["payloads"]).glob("*.bin"))
        if not self.files:
            raise GeneratorError(f"splitcompute: no *.bin payloads in {params['payloads']}")

    async def build(self, channel: grpc.aio.Channel, rng: np.random.Generator, size: int) -> RequestPool:
        from infersuite.protos import splitcompute_pb2

        get_codec = channel.unary_unary("/infersuite.splitcompute.v1.SplitComputeService/GetCodec",
                                        request_serializer=splitcompute_pb2.GetCodecRequest.SerializeToString,
                                        response_deserializer=splitcompute_pb2.GetCodecResponse.FromString)
        try:
            codec = await get_codec(splitcompute_pb2.GetCodecRequest(), timeout=10)
        except grpc.aio.AioRpcError as err:
            raise GeneratorError(f"splitcompute: GetCodec failed: {err.code().name}: {err.details()}") from None
        frames = [path.read_bytes() for path in self.files]
        order = rng.permutation(size) % len(frames)
        payloads = [splitcompute_pb2.ClassifyRequest(payload=frames[i]).SerializeToString() for i in order]
        served = frozenset(codec.served_versions)
        shapes = [FrameShape(len(codec.class_names), len(frames[i]), served) for i in order]
        sizes = [len(f) for f in frames]
        description = {"payload_files": len(frames), "payload_bytes": [min(sizes), max(sizes)],
                       "codec_version": codec.codec_version, "classes": len(codec.class_names)}
        return RequestPool("/infersuite.splitcompute.v1.SplitComputeService/Classify", payloads, shapes,
                           check_classify, description)


def check_classify(frame: FrameShape, response: bytes) -> str | None:
    from infersuite.protos import splitcompute_pb2

    answer = splitcompute_pb2.ClassifyResponse.FromString(response)
    probabilities = np.asarray(answer.probabilities, np.float64)
    if probabilities.size != frame.classes:
        return "splitcompute: wrong number of class probabilities"
    if not (np.all((probabilities >= 0) & (probabilities <= 1)) and abs(probabilities.sum() - 1) < 1e-3):
        return "splitcompute: probabilities are not a distribution"
    if answer.top_class != int(np.argmax(probabilities)):
        return "splitcompute: top_class is not the argmax"
    if answer.payload_bytes != frame.payload_bytes:
        return "splitcompute: payload_bytes differs from the frame sent"
    if frame.served_versions and answer.codec_version not in frame.served_versions:
        return "splitcompute: codec_version not among the served versions"
    return None


register("splitcompute", "Classify with edge-SDK wire frames (--param payloads=DIR of *.bin frames)")(
    SplitComputeGenerator)
