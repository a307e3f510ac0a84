"""`oip`: the Open Inference Protocol (KServe v2 `inference.GRPCInferenceService/ModelInfer`),
for infersuite's OIP servicer, NVIDIA Triton, or any server speaking the protocol.

The generator asks the target for the model's metadata (ModelMetadata), then sends tensors of
those names, datatypes and shapes as raw_input_contents (what tritonclient does). Variable
dimensions (-1) become --param batch=N (or LOW..HIGH, drawn per request) on dim 0 and --param
dim=N (or LOW..HIGH) elsewhere, or an explicit --param shape.<input>=2x16. With --param
repository=DIR the model's meta.json gives per-group sizes (dim.<group>=LOW..HIGH), vocabularies,
masks and index inputs (infersuite/loadtest/generators/oip_layout.py). int_low/int_high override the id range.
Responses are checked: every output present, byte size = product(shape) x element size, float
outputs finite.

Stubs: `infersuite/protos/grpc_service.proto` (package `inference`) when the repository has it, else the
identical messages shipped with tritonclient (same package and wire format).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
import numpy as np

from infersuite.loadtest.generators.base import GeneratorError, RequestPool, check_unknown, int_param, register
from infersuite.loadtest.generators.oip_layout import ModelLayout, ShapePlan, parse_span, read_meta, values

DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
          "INT64": np.int64, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
METHOD = "/inference.GRPCInferenceService/ModelInfer"


def oip_messages() -> ModuleType:
    """The `inference` package's messages: the repository's stubs first, then tritonclient's."""
    try:
        from infersuite.protos import grpc_service_pb2  # type: ignore[attr-defined]  # when the lead adds the proto
        return grpc_service_pb2  # type: ignore[no-any-return]
    except ImportError:
        pass
    try:
        from tritonclient.grpc import service_pb2
        return service_pb2
    except ImportError:
        raise GeneratorError("oip: no Open Inference Protocol stubs: add infersuite/protos/grpc_service.proto and run "
                             "`make protos` (or install tritonclient[grpc])") from None


@dataclass(frozen=True)
class OutputSpec:
    """What the response must hold: output names and their datatypes."""

    outputs: tuple[tuple[str, str], ...]


class OipGenerator:
    name = "oip"
    grpc_service = "inference.GRPCInferenceService"

    def __init__(self, params: dict[str, str]):
        shapes = {k for k in params if k.startswith("shape.")}
        named = {k for k in params if k.startswith("dim.")}
        check_unknown(params, {"model", "version", "batch", "dim", "int_low", "int_high", "repository"} | shapes
                      | named, self.name)
        if not params.get("model"):
            raise GeneratorError("oip: name the model to load: --param model=<name in the repository>")
        self.model, self.version = params["model"], params.get("version", "")
        self.layout = ModelLayout.from_meta(read_meta(params.get("repository"), self.model))
        self.plan = ShapePlan(parse_span("batch", params.get("batch", "1")), parse_span("dim", params.get("dim", "8")),
                              {k.removeprefix("dim."): parse_span(k, params[k]) for k in named},
                              {k.removeprefix("shape."): _parse_shape(k, v) for k, v in params.items() if k in shapes})
        self.int_range: tuple[int, int] | None = None
        if "int_low" in params or "int_high" in params:
            low = int_param(params, "int_low", 1, low=0)
            self.int_range = (low, int_param(params, "int_high", 10, low=low))

    async def metadata(self, channel: grpc.aio.Channel) -> Any:
        messages = oip_messages()
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelMetadata",
                                   request_serializer=messages.ModelMetadataRequest.SerializeToString,
                                   response_deserializer=messages.ModelMetadataResponse.FromString)
        try:
            return await call(messages.ModelMetadataRequest(name=self.model, version=self.version), timeout=10)
        except grpc.aio.AioRpcError as err:
            raise GeneratorError(f"oip: ModelMetadata({self.model!r}) failed: {err.code().name}: "
                                 f"{err.details()}") from None

    def _request(self, messages: ModuleType, inputs: list[tuple[str, str, list[int]]],
                 rng: np.random.Generator) -> tuple[bytes, dict[str, list[int]]]:
        shapes = self.plan.draw([(name, dims) for name, _, dims in inputs], self.layout, rng)
        request = messages.ModelInferRequest(model_name=self.model, model_version=self.version)
        for name, datatype, _ in inputs:
            dtype = np.dtype(DTYPES[datatype])
            request.inputs.add(name=name, datatype=datatype, shape=shapes[name])
            tensor = values(name, dtype, shapes, self.layout, self.int_range, rng)
            request.raw_input_contents.append(tensor.astype(dtype.newbyteorder("<")).tobytes())
        return request.SerializeToString(), shapes

    async def build(self, channel: grpc.aio.Channel, rng: np.random.Generator, size: int) -> RequestPool:
        messages = oip_messages()
        meta = await self.metadata(channel)
        inputs = [(t.name, t.datatype, list(t.shape)) for t in meta.inputs]
        unsupported = sorted({d for _, d, _ in inputs} - set(DTYPES))
        if unsupported:
            raise GeneratorError(f"oip: input datatype {unsupported[0]} is not supported by the generator")
        drawn = [self._request(messages, inputs, rng) for _ in range(size)]
        expectation = OutputSpec(tuple((t.name, t.datatype) for t in meta.outputs))
        ranges = {name: [[min(s[name][i] for _, s in drawn), max(s[name][i] for _, s in drawn)]
                         for i in range(len(dims))] for name, _, dims in inputs}
        description = {"model": self.model, "inputs": {n: [d, ranges[n]] for n, d, _ in inputs},
                       "outputs": dict(expectation.outputs), "meta": bool(self.layout.vocabulary or self.layout.ragged)}
        return RequestPool(METHOD, [p for p, _ in drawn], [expectation] * size, check_infer, description)


def check_infer(expected: OutputSpec, response: bytes) -> str | None:
    answer = oip_messages().ModelInferResponse.FromString(response)
    names = {t.name: i for i, t in enumerate(answer.outputs)}
    for name, _ in expected.outputs:
        if name not in names:
            return "oip: an output is missing"
    if answer.raw_output_contents and len(answer.raw_output_contents) != len(answer.outputs):
        return "oip: raw_output_contents does not pair with outputs"
    for tensor, raw in zip(answer.outputs, answer.raw_output_contents, strict=False):
        if tensor.datatype not in DTYPES:
            continue
        dtype = np.dtype(DTYPES[tensor.datatype]).newbyteorder("<")
        if len(raw) != int(np.prod(tensor.shape)) * dtype.itemsize:
            return "oip: output byte size does not match its shape"
        if dtype.kind == "f" and not np.isfinite(np.frombuffer(raw, dtype)).all():
            return "oip: non-finite output"
    return None


def _parse_shape(key: str, text: str) -> list[int]:
    try:
        shape = [int(d) for d in text.lower().split("x")]
    except ValueError:
        raise GeneratorError(f"--param {key}={text!r}: expected dims like 2x16") from None
    if any(d < 0 for d in shape):
        raise GeneratorError(f"--param {key}={text!r}: dims must be >= 0")
    return shape


register("oip", "Open Inference Protocol ModelInfer with random tensors from ModelMetadata "
         "(--param model=NAME, repository=DIR, batch=N|LOW..HIGH, dim=.., dim.<group>=.., shape.<input>=AxB, "
         "int_low, int_high)")(OipGenerator)
