"""The segmentation service: adaptive-depth segmentation after ECO-M2F (staged graphs, gated depth)."""

from __future__ import annotations

from protos import segmentation_pb2, segmentation_pb2_grpc
from services.runtime import HandlerRegistry, Runtime
from services.segmentation.handler import Effort, RawPixels, SegmentationHandler, SegmentQuery, SegmentResult
from services.segmentation.servicer import SegmentationServicer
from services.segmentation.settings import SegmentationSettings


class SegmentationService:
    name = "segmentation"
    grpc_service_names = (segmentation_pb2.DESCRIPTOR.services_by_name["SegmentationService"].full_name,)

    def __init__(self, settings: SegmentationSettings | None = None):
        self.settings = settings or SegmentationSettings()
        self._runtime: Runtime | None = None

    def required_models(self) -> list[str]:
        """The backbone, then the encoder-layer and head graphs its meta.json names."""
        repository = self._runtime.models.repository if self._runtime is not None else None
        if repository is None or self.settings.backbone_model not in repository.names():
            return [self.settings.backbone_model]  # loading it fails with the repository's own message
        stages = repository.resolve(self.settings.backbone_model).meta["pipeline"]["stages"]
        return [self.settings.backbone_model, *stages["encoder_layers"], stages["head"]]

    def register(self, server: HandlerRegistry, runtime: Runtime) -> None:
        self._runtime = runtime
        handler = SegmentationHandler(self.settings, runtime)
        segmentation_pb2_grpc.add_SegmentationServiceServicer_to_server(SegmentationServicer(handler), server)


SERVICE = SegmentationService()

__all__ = ["SERVICE", "Effort", "RawPixels", "SegmentQuery", "SegmentResult", "SegmentationHandler",
           "SegmentationService", "SegmentationSettings"]
