"""The ctr service: click-through-rate scoring with the Deep Interest Network.

Exports resolve on first access (PEP 562) so that `infersuite.services.ctr.client` imports with grpc, protobuf and
numpy only: the installed client needs neither the runtime nor pydantic.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infersuite.services.ctr.handler import CtrHandler, ScoreQuery, ScoreResult
    from infersuite.services.ctr.settings import CtrSettings
    from infersuite.services.runtime import HandlerRegistry, Runtime
    from infersuite.services.runtime.repository import ModelRepository


class CtrService:
    name = "ctr"
    grpc_service_names = ("infersuite.ctr.v1.CtrService",)

    def __init__(self, settings: CtrSettings | None = None):
        from infersuite.services.ctr.settings import CtrSettings

        self.settings = settings or CtrSettings()

    def required_models(self, repository: ModelRepository) -> list[str]:
        return [self.settings.model, *self.settings.extra_models]

    def register(self, server: HandlerRegistry, runtime: Runtime) -> None:
        from infersuite.protos import ctr_pb2_grpc
        from infersuite.services.ctr.handler import CtrHandler
        from infersuite.services.ctr.servicer import CtrServicer
        from infersuite.services.ctr.string_ids import string_id_inputs
        from infersuite.services.runtime.streaming import RequestStream

        stream = RequestStream(runtime.metrics, self.grpc_service_names[0], "ScoreStream",
                               runtime.settings.stream_max_inflight, runtime.inflight_bytes)
        servicer = CtrServicer(CtrHandler(self.settings, runtime), stream)
        ctr_pb2_grpc.add_CtrServiceServicer_to_server(servicer, server)
        runtime.models.bytes_inputs.add(string_id_inputs(self.settings))  # OIP BYTES ids of string vocabularies


_EXPORTS = {"CtrHandler": "handler", "ScoreQuery": "handler", "ScoreResult": "handler", "CtrSettings": "settings"}


def __getattr__(name: str) -> Any:
    if name == "SERVICE":
        return CtrService()
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SERVICE", "CtrHandler", "CtrService", "CtrSettings", "ScoreQuery", "ScoreResult"]
