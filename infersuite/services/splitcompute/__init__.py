"""The splitcompute service (server side of the Entropic Student) and its edge SDK.

Server: `SERVICE` decodes entropy-coded latents and runs decoder + tail. Device: `edge.EdgeDevice`
(onnxruntime + constriction + numpy, no torch and no server code needed) runs the encoder graph,
quantizes, codes and sends. `wire` and `codec` are shared by both sides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:

    from infersuite.services.runtime import HandlerRegistry, Runtime
    from infersuite.services.runtime.repository import ModelRepository
    from infersuite.services.splitcompute.settings import SplitComputeSettings


class SplitComputeService:
    name: str = "splitcompute"
    grpc_service_names: tuple[str, ...] = ("infersuite.splitcompute.v1.SplitComputeService",)

    def __init__(self, settings: SplitComputeSettings | None = None):
        from infersuite.services.splitcompute.settings import SplitComputeSettings

        self.settings = settings or SplitComputeSettings()

    def required_models(self, repository: ModelRepository) -> list[str]:
        return [self.settings.model, *self.settings.extra_models]

    def register(self, server: HandlerRegistry, runtime: Runtime) -> None:
        # Imported here so that a device importing the SDK (infersuite.services.splitcompute.edge) does not
        # pull in the server runtime and its dependencies.
        from infersuite.protos import splitcompute_pb2_grpc
        from infersuite.services.splitcompute.handler import SplitComputeHandler
        from infersuite.services.splitcompute.servicer import SplitComputeServicer

        splitcompute_pb2_grpc.add_SplitComputeServiceServicer_to_server(
            SplitComputeServicer(SplitComputeHandler(self.settings, runtime)), server)


def __getattr__(name: str) -> SplitComputeService:
    # `SERVICE` is built on first access (PEP 562): building it reads pydantic settings, which a
    # device importing only the SDK does not have.
    if name == "SERVICE":
        return SplitComputeService()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["SERVICE", "SplitComputeService"]
