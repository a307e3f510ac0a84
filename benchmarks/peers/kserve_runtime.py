"""A KServe 0.21 custom model server that serves one ONNX file with onnxruntime.

Runs inside the KServe venv (.peers/kserve):
    python -m benchmarks.peers.kserve_runtime --onnx model.onnx --model_name din-fp32 --grpc_port P --http_port Q
(--intra_op_threads N; every other KServe ModelServer flag is KServe's own). `predict` is synchronous, as in KServe's
own sklearn/xgboost servers, so KServe runs it on the event loop's thread.

KServe's servers bind every interface (gRPC "[::]:port", REST "0.0.0.0"); a benchmark on a shared machine has no
business listening beyond loopback, so both are bound to 127.0.0.1 here (see _bind_loopback_only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.errors import InvalidInput
from kserve.protocol.grpc import server as grpc_server
from kserve.protocol.rest import server as rest_server
from kserve.utils.numpy_codec import from_np_dtype

from benchmarks.peers.onnx_model import BadInputs, OnnxModel, TensorSpec

LOOPBACK = "127.0.0.1"


class OnnxRuntimeModel(Model):
    def __init__(self, name: str, onnx_path: Path, intra_op_threads: int = 1):
        super().__init__(name)
        self._onnx_path = onnx_path
        self._intra_op_threads = intra_op_threads
        self.load()

    def load(self) -> bool:
        self._model = OnnxModel(self._onnx_path, intra_op_threads=self._intra_op_threads)
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return [_metadata(spec) for spec in self._model.inputs]

    def get_output_types(self) -> list[dict]:
        return [_metadata(spec) for spec in self._model.outputs]

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        inputs = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        requested = [output.name for output in payload.request_outputs or ()]
        try:
            results = self._model.run(inputs, requested)
        except BadInputs as exc:
            raise InvalidInput(str(exc)) from None
        binary = payload.use_binary_outputs
        outputs = []
        for name, value in results.items():
            output = InferOutput(name=name, shape=list(value.shape), datatype=from_np_dtype(value.dtype))
            output.set_data_from_numpy(value, binary_data=binary)
            outputs.append(output)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs,
                             use_binary_outputs=binary)


def _metadata(spec: TensorSpec) -> dict:
    return {"name": spec.name, "datatype": from_np_dtype(spec.dtype), "shape": list(spec.shape)}


class _LoopbackRestServer(rest_server.RESTServer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.host = LOOPBACK


class _LoopbackAio:
    """grpc.aio as kserve.protocol.grpc.server sees it, except that its servers listen on loopback only."""

    def __getattr__(self, name: str):
        return getattr(grpc.aio, name)

    @staticmethod
    def server(*args, **kwargs) -> grpc.aio.Server:
        server = grpc.aio.server(*args, **kwargs)
        add_port = server.add_insecure_port
        server.add_insecure_port = lambda address: add_port(address.replace("[::]", LOOPBACK, 1))  # type: ignore[method-assign]
        return server


def _bind_loopback_only() -> None:
    # KServe 0.21 has no host setting: GRPCServer.start hard-codes f"[::]:{port}" and RESTServer uvicorn's "0.0.0.0".
    grpc_server.aio = _LoopbackAio()  # type: ignore[assignment]
    model_server.RESTServer = _LoopbackRestServer  # type: ignore[misc]


def main() -> None:
    # KServe's ModelServer reads its own flags (--grpc_port, --http_port, --model_name, ...) from sys.argv itself.
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--onnx", type=Path, required=True, help="the ONNX file to serve")
    parser.add_argument("--intra_op_threads", type=int, default=1, help="onnxruntime intra-op threads")
    args, _ = parser.parse_known_args()
    _bind_loopback_only()
    model = OnnxRuntimeModel(args.model_name, args.onnx, args.intra_op_threads)
    ModelServer().start([model])


if __name__ == "__main__":
    main()
