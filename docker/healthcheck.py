"""Container health check: exit 0 when grpc.health.v1 reports SERVING, else 1.

Checks the overall status by default, or one service with INFERSUITE_HEALTH_SERVICE
(e.g. infersuite.ctr.v1.CtrService). Runs inside the image: imports only grpc and its health stubs.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    target = f"127.0.0.1:{os.environ.get('INFERSUITE_PORT', '50051')}"
    service = os.environ.get("INFERSUITE_HEALTH_SERVICE", "")
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=3)
    except grpc.RpcError as err:
        print(f"health {target} {service!r}: {err.code().name}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"health {target} {service!r}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
