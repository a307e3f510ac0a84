"""Fake models and services shared by the tests (one module, MLServer style)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
from grpc import aio
from onnx import TensorProto, helper

from infersuite.services.runtime import (
    HandlerRegistry,
    InferSuiteServer,
    InvalidArgument,
    Runtime,
    RuntimeSettings,
    ServiceModule,
    build_server,
)
from infersuite.services.runtime.tensors import TensorSpec


def write_add_one_onnx(path: Path) -> Path:
    """A real ONNX graph y = x + 1 over a (batch, 4) float input."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "add_one", [x], [y], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_nan_embedder_onnx(path: Path, width: int = 4) -> Path:
    """A real ONNX graph whose output is NaN on every input: embedding = sqrt(-1 - waveform[:, :width]^2),
    over a (batch, samples) float `waveform` (the audio graphs' interface)."""
    x = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", "samples"])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", width])
    constants = [helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
                 helper.make_tensor("ends", TensorProto.INT64, [1], [width]),
                 helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
                 helper.make_tensor("minus_one", TensorProto.FLOAT, [1], [-1.0])]
    nodes = [helper.make_node("Slice", ["waveform", "starts", "ends", "axes"], ["head"]),
             helper.make_node("Mul", ["head", "head"], ["square"]),
             helper.make_node("Sub", ["minus_one", "square"], ["negative"]),
             helper.make_node("Sqrt", ["negative"], ["embedding"])]
    model = helper.make_model(helper.make_graph(nodes, "nan_embedder", [x], [y], constants),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


class FakeModel:
    """A LoadedModel that records its inputs and answers with a function of them."""

    def __init__(self, name: str, outputs: Any, meta: dict[str, Any] | None = None, delay_s: float = 0.0):
        self.name, self.version, self.meta, self.instance_count = name, "1", meta or {}, 1
        self.delay_s = delay_s
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self._outputs = outputs
        self.calls: list[dict[str, np.ndarray]] = []
        self.asked_outputs: list[list[str] | None] = []  # per execution: the outputs asked (None: all)

    async def infer(self, inputs: Mapping[str, np.ndarray],
                    outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        self.calls.append(dict(inputs))
        self.asked_outputs.append(None if outputs is None else list(outputs))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self._outputs(inputs)

    async def close(self) -> None:
        return None


class EchoService:
    """A test service over raw bytes: Sleep (sleeps the seconds it is sent), Boom (a bug),
    Bad (a domain error). Needs no model."""

    name = "echo"
    grpc_service_names = ("infersuite.test.Echo",)

    def required_models(self, repository: object) -> list[str]:
        return []

    def register(self, server: HandlerRegistry, runtime: Runtime) -> None:
        async def sleep(request: bytes, context: aio.ServicerContext) -> bytes:
            await asyncio.sleep(float(request.decode()))
            return b"done"

        async def boom(request: bytes, context: aio.ServicerContext) -> bytes:
            raise RuntimeError("secret internal detail /etc/passwd")

        async def bad(request: bytes, context: aio.ServicerContext) -> bytes:
            raise InvalidArgument("field 'x' must be positive, got -1")

        handlers = {
            "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
            "Boom": grpc.unary_unary_rpc_method_handler(boom),
            "Bad": grpc.unary_unary_rpc_method_handler(bad),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("infersuite.test.Echo", handlers),))


@dataclass(frozen=True)
class Serving:
    """A started, ready server on a port the OS picked."""

    server: InferSuiteServer
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.server.metrics_port}/metrics"


@contextlib.asynccontextmanager
async def serving(services: Sequence[ServiceModule], repository: Path | None = None, *, ready_timeout_s: float = 90.0,
                  wait_ready: bool = True, **settings: Any) -> AsyncIterator[Serving]:
    """The one way tests run a real server: port 0, metrics on a free port, always stopped, even
    when starting or a test fails."""
    options: dict[str, Any] = {"port": 0, "metrics_port": 0, "host": "127.0.0.1", "load_retry_s": 0.2}
    if repository is not None:
        options["model_repository"] = repository
    server, port = await build_server(RuntimeSettings(**{**options, **settings}), list(services))
    try:
        await server.start()
        if wait_ready:
            await server.wait_ready(timeout=ready_timeout_s)
        yield Serving(server, port)
    finally:
        await server.stop(0)
