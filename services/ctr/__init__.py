"""The ctr service: click-through-rate scoring with the Deep Interest Network."""

from __future__ import annotations

from protos import ctr_pb2, ctr_pb2_grpc
from services.ctr.handler import CtrHandler, ScoreQuery, ScoreResult
from services.ctr.servicer import CtrServicer
from services.ctr.settings import CtrSettings
from services.runtime import HandlerRegistry, Runtime
from services.runtime.streaming import RequestStream


class CtrService:
    name = "ctr"
    grpc_service_names = (ctr_pb2.DESCRIPTOR.services_by_name["CtrService"].full_name,)

    def __init__(self, settings: CtrSettings | None = None):
        self.settings = settings or CtrSettings()

    def required_models(self) -> list[str]:
        return [self.settings.model, *self.settings.extra_models]

    def register(self, server: HandlerRegistry, runtime: Runtime) -> None:
        stream = RequestStream(runtime.metrics, self.grpc_service_names[0], "ScoreStream",
                               runtime.settings.stream_max_inflight)
        servicer = CtrServicer(CtrHandler(self.settings, runtime), stream)
        ctr_pb2_grpc.add_CtrServiceServicer_to_server(servicer, server)


SERVICE = CtrService()

__all__ = ["SERVICE", "CtrHandler", "CtrService", "CtrSettings", "ScoreQuery", "ScoreResult"]
