"""Generators that need no service stubs: `health` (grpc.health.v1 Check, present on every
infersuite server) and `raw` (fixed bytes to any method). Both measure the transport and the
generator itself: the floor under every service's latency and the ceiling of its rate."""

from __future__ import annotations

import grpc
import numpy as np
from grpc_health.v1 import health_pb2

from infersuite.loadtest.generators.base import GeneratorError, RequestPool, check_unknown, int_param, register


class HealthGenerator:
    name = "health"
    grpc_service = "grpc.health.v1.Health"

    def __init__(self, params: dict[str, str]):
        check_unknown(params, {"service"}, self.name)
        self._service = params.get("service", "")

    async def build(self, channel: grpc.aio.Channel, rng: np.random.Generator, size: int) -> RequestPool:
        payload = health_pb2.HealthCheckRequest(service=self._service).SerializeToString()
        return RequestPool("/grpc.health.v1.Health/Check", [payload] * size, [None] * size, _check_serving,
                           {"service": self._service or "(overall)"})


def _check_serving(_: object, response: bytes) -> str | None:
    status = health_pb2.HealthCheckResponse.FromString(response).status
    return None if status == health_pb2.HealthCheckResponse.SERVING else "health: not SERVING"


class RawGenerator:
    name = "raw"
    grpc_service = ""  # any: never discovered, always named

    def __init__(self, params: dict[str, str]):
        check_unknown(params, {"method", "payload_bytes"}, self.name)
        self._method = params.get("method", "/infersuite.test.Echo/Echo")
        if not self._method.startswith("/") or self._method.count("/") != 2:
            raise GeneratorError(f"--param method={self._method!r}: expected /package.Service/Method")
        self._payload_bytes = int_param(params, "payload_bytes", 16, low=0)

    async def build(self, channel: grpc.aio.Channel, rng: np.random.Generator, size: int) -> RequestPool:
        payloads = [rng.bytes(self._payload_bytes) for _ in range(size)]
        return RequestPool(self._method, payloads, [None] * size, lambda _, __: None,
                           {"method": self._method, "payload_bytes": self._payload_bytes})


register("health", "grpc.health.v1 Check (every infersuite server): transport floor and generator ceiling")(
    HealthGenerator)
register("raw", "fixed random bytes to any unary method: --param method=/pkg.Svc/M --param payload_bytes=N")(
    RawGenerator)
