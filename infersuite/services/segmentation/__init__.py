"""The segmentation service: adaptive-depth segmentation after ECO-M2F (staged graphs, gated depth).

Exports resolve on first access (PEP 562) so that `infersuite.services.segmentation.client` imports without the
runtime or pydantic (the installed client).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infersuite.services.runtime import HandlerRegistry, Runtime
    from infersuite.services.runtime.repository import ModelRepository
    from infersuite.services.segmentation.handler import (
        Effort,
        RawPixels,
        SegmentationHandler,
        SegmentQuery,
        SegmentResult,
    )
    from infersuite.services.segmentation.settings import SegmentationSettings


class SegmentationService:
    name = "segmentation"
    grpc_service_names = ("infersuite.segmentation.v1.SegmentationService",)

    def __init__(self, settings: SegmentationSettings | None = None):
        from infersuite.services.segmentation.settings import SegmentationSettings

        self.settings = settings or SegmentationSettings()

    def required_models(self, repository: ModelRepository) -> list[str]:
        """The backbone, then the encoder-layer, head (and gate) graphs its meta.json names."""
        if self.settings.backbone_model not in repository.names():
            return [self.settings.backbone_model]  # loading it fails with the repository's own message
        from infersuite.services.segmentation.handler import Pipeline

        return Pipeline.from_meta(self.settings.backbone_model,
                                  repository.resolve(self.settings.backbone_model).meta).models

    def register(self, server: HandlerRegistry, runtime: Runtime) -> None:
        from infersuite.protos import segmentation_pb2_grpc
        from infersuite.services.segmentation.handler import SegmentationHandler
        from infersuite.services.segmentation.servicer import SegmentationServicer

        handler = SegmentationHandler(self.settings, runtime)
        segmentation_pb2_grpc.add_SegmentationServiceServicer_to_server(SegmentationServicer(handler), server)


_EXPORTS = {"Effort": "handler", "RawPixels": "handler", "SegmentQuery": "handler", "SegmentResult": "handler",
            "SegmentationHandler": "handler", "SegmentationSettings": "settings"}


def __getattr__(name: str) -> Any:
    if name == "SERVICE":
        return SegmentationService()
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SERVICE", "Effort", "RawPixels", "SegmentQuery", "SegmentResult", "SegmentationHandler",
           "SegmentationService", "SegmentationSettings"]
