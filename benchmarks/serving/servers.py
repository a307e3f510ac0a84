"""The servers a benchmark run measures, each in its own process pinned to the server cores:
the suite (`python -m infersuite.services`, one worker unless asked), the empty-RPC floor (a grpc.aio
or grpcio synchronous server whose one generic unary method returns its request: gRPC's own cost,
nothing else), and the minimal OIP server: what any Python server on grpcio's synchronous transport
must do for a ModelInfer at the least (parse, view the raw inputs, onnxruntime, raw outputs), with
none of the suite's checks, limits, admission, statistics or metrics. It is a yardstick, not a server
to deploy: it trusts every request.

`python -m benchmarks.serving.servers echo [sync]` runs a floor server alone;
`python -m benchmarks.serving.servers minimal MODEL.onnx` the minimal OIP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc import aio

from benchmarks.serving.report import MINIMAL
from infersuite.loadtest.local_suite import ServerProcess, loopback_settings

ECHO_METHOD = "/infersuite.bench.Echo/Echo"
ECHO_STARTED = re.compile(r"port (?P<port>\d+)")  # what _serve_echo prints once bound


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


def _configuration(cores: set[int], settings: dict[str, str]) -> dict[str, str]:
    """What a report prints about a suite process: its cores, the INFERSUITE_* it ran with (the caller's
    environment included), its model backend."""
    environment = {**os.environ, **settings}
    described = " ".join(f"{k}={v}" for k, v in sorted(environment.items())
                         if k.startswith("INFERSUITE_") and not k.endswith(("_PORT", "_HOST", "_REPOSITORY")))
    return {"cores": ",".join(map(str, sorted(cores))), "settings": described,
            "model": "the runtime's embedded onnxruntime backend (INFERSUITE_INTRA_OP_THREADS default 1)"}


@contextlib.contextmanager
def suite(repository: Path, cores: set[int], name: str = "infersuite", tree: Path | None = None,
          **env: str) -> Iterator[RunningServer]:
    """The suite serving ctr only, pinned to `cores`, metrics on a free port, SERVING on return.
    `tree`: another checkout of the project to run instead of this one (a before/after profile)."""
    settings = {**loopback_settings(repository, INFERSUITE_CTR_MODEL="din-fp32"), **env}
    if tree is not None:
        settings["PYTHONPATH"] = str(tree.resolve())
    with ServerProcess(settings, cores=cores, cwd=tree) as process:
        process.wait_ready(timeout_s=180)
        yield RunningServer(name, process.proc, process.port, process.metrics_port, _configuration(cores, settings))


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
    command = [sys.executable, "-m", "benchmarks.serving.servers", "echo", transport]
    with ServerProcess(command=command, cores=cores, started=ECHO_STARTED) as process:
        yield RunningServer(name, process.proc, process.port, None,
                            {"cores": ",".join(map(str, sorted(cores))), "settings": settings})


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


MINIMAL_THREADS = 8  # the suite's sync transport's default pool


@contextlib.contextmanager
def minimal(repository: Path, cores: set[int], model: str = "din-fp32") -> Iterator[RunningServer]:
    """The minimal OIP server (the module docstring) on `cores`, serving `model`'s ONNX file."""
    onnx = repository / model / "1" / "model.onnx"
    command = [sys.executable, "-m", "benchmarks.serving.servers", "minimal", str(onnx)]
    with ServerProcess(command=command, cores=cores, started=ECHO_STARTED) as process:
        yield RunningServer(MINIMAL, process.proc, process.port, None, {
            "cores": ",".join(map(str, sorted(cores))),
            "settings": f"grpcio's synchronous server, a thread pool of {MINIMAL_THREADS}; ModelInfer: parse, "
                        "np.frombuffer per raw input, session.run of every output, raw outputs; no checks, limits, "
                        "admission, statistics or metrics",
            "model": "onnxruntime intra_op_num_threads=1, inter_op_num_threads=1, CPUExecutionProvider"})


def _serve_minimal(onnx: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import onnxruntime as ort
    from tritonclient.grpc import service_pb2

    from infersuite.services.runtime.tensors import DATATYPE_TO_NUMPY, NUMPY_TO_DATATYPE

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    outputs = [output.name for output in session.get_outputs()]

    def infer(request: service_pb2.ModelInferRequest, context: grpc.ServicerContext) -> service_pb2.ModelInferResponse:
        feeds = {tensor.name: np.frombuffer(raw, DATATYPE_TO_NUMPY[tensor.datatype]).reshape(tuple(tensor.shape))
                 for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True)}
        answer = service_pb2.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        for name, value in zip(outputs, session.run(outputs, feeds), strict=True):
            answer.outputs.add(name=name, datatype=NUMPY_TO_DATATYPE[value.dtype], shape=value.shape)
            answer.raw_output_contents.append(value.tobytes())
        return answer

    handler = grpc.unary_unary_rpc_method_handler(infer, service_pb2.ModelInferRequest.FromString,
                                                  service_pb2.ModelInferResponse.SerializeToString)
    server = grpc.server(ThreadPoolExecutor(MINIMAL_THREADS))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__" and sys.argv[1:2] == ["minimal"]:
    _serve_minimal(sys.argv[2])
elif __name__ == "__main__" and sys.argv[1:2] == ["echo"]:
    if sys.argv[2:] == ["sync"]:
        _serve_echo_sync()
    else:
        asyncio.run(_serve_echo())
