"""Starts the suite in its own process for a benchmark and waits until it is SERVING."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def start_server(repository: Path, services: str = '["ctr"]', **env: str) -> tuple[subprocess.Popen, int]:
    environment = {**os.environ, "INFERSUITE_PORT": "0", "INFERSUITE_METRICS_PORT": "-1",
                   "INFERSUITE_SERVICES": services, "INFERSUITE_MODEL_REPOSITORY": str(repository),
                   "INFERSUITE_LOG_LEVEL": "WARNING", "INFERSUITE_WORKERS": "1", **env}
    proc = subprocess.Popen([sys.executable, "-m", "services"], env=environment, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    match = re.search(r"gRPC on port (\d+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    port = int(match.group(1))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 120
        while health.Check(health_pb2.HealthCheckRequest(), timeout=5).status != health_pb2.HealthCheckResponse.SERVING:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("server never became SERVING")
            time.sleep(0.2)
    return proc, port


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
