"""TLS / mutual TLS server credentials and the optional bearer-token interceptor."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import grpc
from grpc import aio

from services.runtime.settings import RuntimeSettings

# Probes and discovery stay open so load balancers and tools work without the token; inference does not.
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")


def server_credentials(settings: RuntimeSettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("TLS needs both INFERSUITE_TLS_CERT_FILE and INFERSUITE_TLS_KEY_FILE")
    pair = [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())]
    if settings.tls_client_ca_file is None:
        return grpc.ssl_server_credentials(pair)
    return grpc.ssl_server_credentials(pair, root_certificates=settings.tls_client_ca_file.read_bytes(),
                                       require_client_auth=True)


MESSAGE = "missing or invalid bearer token"


async def _unary_deny(request: object, context: aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)


async def _stream_deny(request: object, context: aio.ServicerContext):  # type: ignore[no-untyped-def]
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)
    yield  # pragma: no cover (makes this an async generator, as streaming handlers are)


def _deny_like(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind that refuses the call without reading it."""
    if handler is not None and handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(_stream_deny)
    if handler is not None and handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(_stream_deny)
    if handler is not None and handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_unary_deny)
    return grpc.unary_unary_rpc_method_handler(_unary_deny)


class BearerTokenInterceptor(aio.ServerInterceptor):
    """UNAUTHENTICATED unless `authorization: Bearer <token>` matches (constant-time comparison)."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method.startswith(OPEN_SERVICES):
            return await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        presented = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(presented, self._expected):
            return await continuation(details)
        return _deny_like(await continuation(details))
