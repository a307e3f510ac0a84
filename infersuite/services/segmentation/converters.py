"""protobuf <-> handler types for the segmentation service."""

from __future__ import annotations

from infersuite.protos import common_pb2, segmentation_pb2
from infersuite.services.segmentation.handler import Effort, RawPixels, SegmentQuery, SegmentResult

_ENCODING_NAMES = {segmentation_pb2.MASK_ENCODING_PNG: "png", segmentation_pb2.MASK_ENCODING_RAW: "raw"}
_ENCODING_VALUES = {name: value for value, name in _ENCODING_NAMES.items()}


def _effort(effort: segmentation_pb2.Effort) -> Effort:
    mode = effort.WhichOneof("mode")
    if mode == "exit_layer":
        return Effort("exit_layer", float(effort.exit_layer))
    if mode == "gflops_budget":
        return Effort("gflops_budget", effort.gflops_budget)
    return Effort("auto")


def query_from_proto(request: segmentation_pb2.SegmentRequest) -> SegmentQuery:
    which = request.WhichOneof("image")
    image: bytes | RawPixels | None = None
    if which == "encoded":
        image = request.encoded
    elif which == "raw":
        raw = request.raw
        image = RawPixels(raw.pixels, raw.height, raw.width, raw.channels)
    encoding = _ENCODING_NAMES.get(request.mask_encoding, f"enum value {request.mask_encoding}")
    return SegmentQuery(image, _effort(request.effort), encoding)


def result_to_proto(result: SegmentResult) -> segmentation_pb2.SegmentResponse:
    return segmentation_pb2.SegmentResponse(
        mask=result.mask, mask_encoding=_ENCODING_VALUES[result.mask_encoding], height=result.height,
        width=result.width, class_names=result.class_names, exit_layer=result.exit_layer, gflops=result.gflops,
        gflops_full_depth=result.gflops_full_depth,
        model=common_pb2.ModelRef(name=result.model, version=result.model_version))
