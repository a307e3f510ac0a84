"""Container health check: exit 0 when grpc.health.v1 reports SERVING, else 1.

Checks the overall status by default, or one service with INFERSUITE_HEALTH_SERVICE
(e.g. infersuite.ctr.v1.CtrService). Runs inside the image: imports only grpc and its health stubs.

TLS follows the server's own settings: when INFERSUITE_TLS_CERT_FILE is set the check connects with
TLS, trusting INFERSUITE_HEALTH_ROOT_CERTS (default: the server's certificate chain, enough for a
self-signed certificate) and verifying the name INFERSUITE_HEALTH_SERVER_NAME (default: the address).
When the server requires client certificates (INFERSUITE_TLS_CLIENT_CA_FILE), the check presents
INFERSUITE_HEALTH_CLIENT_CERT / INFERSUITE_HEALTH_CLIENT_KEY. INFERSUITE_AUTH_TOKEN, when set, is sent
as a bearer token (health is open without it; a proxy in front may not be).
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _read(variable: str) -> bytes | None:
    path = os.environ.get(variable)
    return open(path, "rb").read() if path else None


def open_channel(target: str) -> grpc.Channel:
    if not os.environ.get("INFERSUITE_TLS_CERT_FILE"):
        return grpc.insecure_channel(target)
    roots = _read("INFERSUITE_HEALTH_ROOT_CERTS") or _read("INFERSUITE_TLS_CERT_FILE")
    credentials = grpc.ssl_channel_credentials(roots, _read("INFERSUITE_HEALTH_CLIENT_KEY"),
                                               _read("INFERSUITE_HEALTH_CLIENT_CERT"))
    name = os.environ.get("INFERSUITE_HEALTH_SERVER_NAME")
    return grpc.secure_channel(target, credentials, [("grpc.ssl_target_name_override", name)] if name else [])


def main() -> int:
    target = f"127.0.0.1:{os.environ.get('INFERSUITE_PORT', '50051')}"
    service = os.environ.get("INFERSUITE_HEALTH_SERVICE", "")
    token = os.environ.get("INFERSUITE_AUTH_TOKEN")
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    try:
        with open_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=3, metadata=metadata)
    except grpc.RpcError as err:
        print(f"health {target} {service!r}: {err.code().name}", file=sys.stderr)
        return 1
    except OSError as err:  # an unreadable certificate file
        print(f"health {target} {service!r}: {err}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"health {target} {service!r}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
