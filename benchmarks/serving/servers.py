"""The servers a benchmark run measures, each in its own process pinned to the server cores:
the suite (`python -m services`, one worker unless asked), and the empty-RPC floor (a grpc.aio
server whose one generic unary method returns its request: gRPC's own cost, nothing else).

`python -m benchmarks.serving.servers echo` runs the floor server alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

ECHO_METHOD = "/infersuite.bench.Echo/Echo"


@dataclass
class RunningServer:
    name: str
    process: subprocess.Popen
    port: int
    metrics_port: int | None
    configuration: dict[str, str] = field(default_factory=dict)  # what a report prints about it

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics" if self.metrics_port else ""


def _pinned(command: list[str], cores: set[int]) -> list[str]:
    return ["taskset", "--cpu-list", ",".join(map(str, sorted(cores))), *command]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_serving(port: int, timeout_s: float = 180.0) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                serving = health_pb2.HealthCheckResponse.SERVING
                if health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == serving:
                    return
            time.sleep(0.2)
    raise RuntimeError(f"the suite on port {port} never became SERVING")


@contextlib.contextmanager
def suite(repository: Path, cores: set[int], name: str = "infersuite", tree: Path | None = None,
          **env: str) -> Iterator[RunningServer]:
    """The suite serving ctr only, pinned to `cores`, metrics on a free port, SERVING on return.
    `tree`: another checkout of the project to run instead of this one (a before/after profile)."""
    environment = {**os.environ, "INFERSUITE_PORT": "0", "INFERSUITE_METRICS_PORT": "0",
                   "INFERSUITE_METRICS_HOST": "127.0.0.1", "INFERSUITE_HOST": "127.0.0.1",
                   "INFERSUITE_SERVICES": '["ctr"]', "INFERSUITE_CTR_MODEL": "din-fp32",
                   "INFERSUITE_MODEL_REPOSITORY": str(repository), "INFERSUITE_LOG_LEVEL": "WARNING",
                   "INFERSUITE_WORKERS": "1", **env}
    if tree is not None:
        environment["PYTHONPATH"] = str(tree.resolve())
    process = subprocess.Popen(_pinned([sys.executable, "-m", "services"], cores), env=environment,
                               stdout=subprocess.PIPE, text=True, cwd=tree)
    try:
        line = process.stdout.readline() if process.stdout else ""
        match = re.search(r"gRPC on port (\d+), metrics on port (\d+)", line)
        if not match:
            raise RuntimeError(f"the suite did not start: {line!r}")
        settings = " ".join(f"{k}={v}" for k, v in sorted(environment.items())
                            if k.startswith("INFERSUITE_") and not k.endswith(("PORT", "HOST", "REPOSITORY")))
        server = RunningServer(name, process, int(match.group(1)), int(match.group(2)),
                               {"cores": ",".join(map(str, sorted(cores))), "settings": settings,
                                "model": "the runtime's embedded onnxruntime backend (INFERSUITE_INTRA_OP_THREADS "
                                         "default 1)"})
        _wait_serving(server.port)
        yield server
    finally:
        _stop(process)


SYNC_ECHO_THREADS = 4

ECHO_TRANSPORTS = {
    "aio": ("empty RPC (grpc.aio echo)", "grpc.aio server, one generic unary method that returns its request"),
    "sync": ("empty RPC (grpcio sync echo)", f"grpcio's synchronous server, a thread pool of {SYNC_ECHO_THREADS}, "
             "one generic unary method that returns its request"),
}


@contextlib.contextmanager
def echo(cores: set[int], transport: str = "aio") -> Iterator[RunningServer]:
    """The transport floor: an empty unary RPC on grpc.aio or on grpcio's synchronous server."""
    name, settings = ECHO_TRANSPORTS[transport]
    process = subprocess.Popen(_pinned([sys.executable, "-m", "benchmarks.serving.servers", "echo", transport],
                                       cores), stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        match = re.search(r"port (\d+)", line)
        if not match:
            raise RuntimeError(f"the echo server did not start: {line!r}")
        yield RunningServer(name, process, int(match.group(1)), None,
                            {"cores": ",".join(map(str, sorted(cores))), "settings": settings})
    finally:
        _stop(process)


async def _serve_echo() -> None:
    async def echo_bytes(request: bytes, context: aio.ServicerContext) -> bytes:
        return request

    server = aio.server()
    service, method = ECHO_METHOD.strip("/").split("/")
    handlers = {method: grpc.unary_unary_rpc_method_handler(echo_bytes)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"port {port}", flush=True)
    await server.wait_for_termination()


def _serve_echo_sync() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def echo_bytes(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    server = grpc.server(ThreadPoolExecutor(SYNC_ECHO_THREADS))
    service, method = ECHO_METHOD.strip("/").split("/")
    handlers = {method: grpc.unary_unary_rpc_method_handler(echo_bytes)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__" and sys.argv[1:2] == ["echo"]:
    if sys.argv[2:] == ["sync"]:
        _serve_echo_sync()
    else:
        asyncio.run(_serve_echo())
