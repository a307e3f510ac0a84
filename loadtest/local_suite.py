"""`suite --start-server ctr,audio`: runs `python -m services` as a child process on free local
ports for the duration of the load test (a subprocess, not an import: the harness stays
independent of the service code), waits until it reports SERVING, and stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
SETTLE_S = 20.0  # after a service failed to load: time the others get to finish loading


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def health(address: str, service: str = "", timeout_s: float = 2.0) -> int | None:
    """The health status of `service` ("" = the whole server), None if it cannot be asked."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                             timeout=timeout_s)
        except grpc.RpcError:
            return None
    return int(reply.status)


class LocalSuite:
    """`with LocalSuite(["ctr"], Path("model_repository")) as suite: suite.address, suite.metrics_url`."""

    def __init__(self, services: list[str], repository: Path, ready_timeout_s: float = 300.0, log: Path | None = None):
        self.services, self.repository, self.ready_timeout_s = services, repository, ready_timeout_s
        self.port, self.metrics_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalSuite:
        # One serving process unless the caller's environment asks for more (INFERSUITE_WORKERS).
        env = {"INFERSUITE_WORKERS": "1", **os.environ,
               "INFERSUITE_HOST": "127.0.0.1", "INFERSUITE_PORT": str(self.port),
               "INFERSUITE_METRICS_HOST": "127.0.0.1", "INFERSUITE_METRICS_PORT": str(self.metrics_port),
               "INFERSUITE_MODEL_REPOSITORY": str(self.repository), "INFERSUITE_SERVICES": json.dumps(self.services)}
        output = self.log.open("wb") if self.log else subprocess.DEVNULL
        self._process = subprocess.Popen([sys.executable, "-m", "services"], env=env, stdout=output,
                                         stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Waits for overall SERVING. A service whose models fail to load keeps the server
        NOT_SERVING for good (the runtime logs "could not load its models"): once the log says so
        and nothing changed for SETTLE_S, the suite goes on and that service is skipped later."""
        deadline = time.monotonic() + self.ready_timeout_s
        failed_since: float | None = None
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"the suite exited with code {self._process.returncode} before serving"
                                   + (f" (log: {self.log})" if self.log else ""))
            if health(self.address, timeout_s=1.0) == SERVING:
                return
            if failed_since is None and self.log and "could not load its models" in self.log.read_text(errors="ignore"):
                failed_since = time.monotonic()
            if failed_since is not None and time.monotonic() - failed_since > SETTLE_S:
                return
            time.sleep(0.5)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_code(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
