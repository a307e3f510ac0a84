"""TLS / mutual TLS server credentials and the optional bearer-token check."""

from __future__ import annotations

import hmac

import grpc
from grpc import aio

from infersuite.services.runtime.settings import RuntimeSettings

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


UNAUTHENTICATED_MESSAGE = "missing or invalid bearer token"


class BearerToken:
    """`authorization: Bearer <token>` on every call outside OPEN_SERVICES (constant-time comparison);
    checked by the handler wrapper (infersuite/services/runtime/handler_wrapper.py)."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    @staticmethod
    def guards(full_method: str) -> bool:
        return not full_method.startswith(OPEN_SERVICES)

    def accepts(self, context: aio.ServicerContext) -> bool:
        presented = next((str(value) for key, value in context.invocation_metadata() or ()
                          if key == "authorization"), "")
        return hmac.compare_digest(presented.encode(), self._expected)
