"""`oip`: the Open Inference Protocol (KServe v2 `inference.GRPCInferenceService/ModelInfer`),
for infersuite's OIP servicer, NVIDIA Triton, or any server speaking the protocol.

The generator asks the target for the model's metadata (ModelMetadata), then sends random
tensors of those names, datatypes and shapes as raw_input_contents (what tritonclient does).
Variable dimensions (-1) become --param batch=N on dim 0 and --param dim=N elsewhere, or an
explicit --param shape.<input>=2x16. Integer inputs draw from [int_low, int_high] (inclusive;
keep it inside any embedding vocabulary). With --param repository=DIR, the value ranges the model's
meta.json declares (`limits.inputs.<name>.range` / `below_dim`, which the server enforces) bound each
input instead. Responses are checked: every output present, byte
size = product(shape) x element size, float outputs finite.

Stubs: `protos/grpc_service.proto` (package `inference`) when the repository has it, else the
identical messages shipped with tritonclient (same package and wire format).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import numpy as np

from loadtest.generators.base import GeneratorError, RequestPool, check_unknown, int_param, register

DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
          "INT64": np.int64, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
METHOD = "/inference.GRPCInferenceService/ModelInfer"


def oip_messages() -> ModuleType:
    """The `inference` package's messages: the repository's stubs first, then tritonclient's."""
    try:
        from protos import grpc_service_pb2  # type: ignore[attr-defined]  # when the lead adds the proto
        return grpc_service_pb2  # type: ignore[no-any-return]
    except ImportError:
        pass
    try:
        from tritonclient.grpc import service_pb2
        return service_pb2
    except ImportError:
        raise GeneratorError("oip: no Open Inference Protocol stubs: add protos/grpc_service.proto and run "
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
        check_unknown(params, {"model", "version", "batch", "dim", "int_low", "int_high", "repository"} | shapes,
                      self.name)
        if not params.get("model"):
            raise GeneratorError("oip: name the model to load: --param model=<name in the repository>")
        self.model, self.version = params["model"], params.get("version", "")
        self.batch, self.dim = int_param(params, "batch", 1), int_param(params, "dim", 8)
        self.int_low = int_param(params, "int_low", 1, low=0)
        self.int_high = int_param(params, "int_high", _vocabulary_bound(params) or 10, low=self.int_low)
        self.shapes = {k.removeprefix("shape."): _parse_shape(k, v) for k, v in params.items() if k in shapes}
        self.ranges = _declared_ranges(params)

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

    def _shape(self, name: str, dims: list[int]) -> list[int]:
        if name in self.shapes:
            return self.shapes[name]
        return [d if d >= 0 else (self.batch if i == 0 else self.dim) for i, d in enumerate(dims)]

    def _bounds(self, name: str, shapes: dict[str, list[int]]) -> tuple[float | None, float | None]:
        declared = self.ranges.get(name, {})
        low, high = declared.get("range", [None, None])
        below = declared.get("below_dim")
        if below and below[0] in shapes:
            top = shapes[below[0]][int(below[1])] - 1
            high = top if high is None else min(high, top)
        return low, high

    def _tensor(self, datatype: str, shape: list[int], rng: np.random.Generator,
                bounds: tuple[float | None, float | None] = (None, None)) -> bytes:
        if datatype not in DTYPES:
            raise GeneratorError(f"oip: input datatype {datatype} is not supported by the generator")
        dtype = np.dtype(DTYPES[datatype])
        low, high = bounds
        if dtype.kind == "f":
            values = (rng.uniform(low, high, shape) if low is not None and high is not None
                      else rng.standard_normal(shape)).astype(dtype)
        elif dtype.kind == "b":
            values = rng.integers(0, 2, shape).astype(dtype)
        else:
            int_low = self.int_low if low is None else int(low)
            int_high = self.int_high if high is None else int(high)
            values = rng.integers(min(int_low, int_high), int_high + 1, shape).astype(dtype)
        return values.astype(dtype.newbyteorder("<")).tobytes()

    async def build(self, channel: grpc.aio.Channel, rng: np.random.Generator, size: int) -> RequestPool:
        messages = oip_messages()
        meta = await self.metadata(channel)
        inputs = [(t.name, t.datatype, self._shape(t.name, list(t.shape))) for t in meta.inputs]
        payloads = []
        for _ in range(size):
            request = messages.ModelInferRequest(model_name=self.model, model_version=self.version)
            shapes = {name: shape for name, _, shape in inputs}
            for name, datatype, shape in inputs:
                request.inputs.add(name=name, datatype=datatype, shape=shape)
                request.raw_input_contents.append(self._tensor(datatype, shape, rng, self._bounds(name, shapes)))
            payloads.append(request.SerializeToString())
        expectation = OutputSpec(tuple((t.name, t.datatype) for t in meta.outputs))
        description = {"model": self.model, "inputs": {n: [d, s] for n, d, s in inputs},
                       "outputs": dict(expectation.outputs)}
        return RequestPool(METHOD, payloads, [expectation] * size, check_infer, description)


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


def _latest_meta(params: dict[str, str]) -> dict[str, Any]:
    metas = sorted(Path(params["repository"], params["model"]).glob("[0-9]*/meta.json"),
                   key=lambda p: int(p.parent.name))
    try:
        return dict(json.loads(metas[-1].read_text())) if metas else {}
    except (OSError, ValueError):
        return {}


def _declared_ranges(params: dict[str, str]) -> dict[str, dict[str, Any]]:
    """With --param repository=DIR: each input's declared value range (services/runtime/limits.py)."""
    if "repository" not in params:
        return {}
    return dict(_latest_meta(params).get("limits", {}).get("inputs", {}))


def _vocabulary_bound(params: dict[str, str]) -> int | None:
    """With --param repository=DIR: the smallest vocabulary in the model's meta.json, so random ids
    stay valid for embedding inputs (a DIN's item and category ids)."""
    if "repository" not in params:
        return None
    metas = sorted(Path(params["repository"], params["model"]).glob("[0-9]*/meta.json"),
                   key=lambda p: int(p.parent.name))
    try:
        vocabulary = json.loads(metas[-1].read_text()).get("vocabulary", {}) if metas else {}
    except (OSError, ValueError):
        return None
    sizes = [int(v) for v in vocabulary.values() if isinstance(v, int)]
    return min(sizes) if sizes else None


def _parse_shape(key: str, text: str) -> list[int]:
    try:
        shape = [int(d) for d in text.lower().split("x")]
    except ValueError:
        raise GeneratorError(f"--param {key}={text!r}: expected dims like 2x16") from None
    if any(d < 0 for d in shape):
        raise GeneratorError(f"--param {key}={text!r}: dims must be >= 0")
    return shape


register("oip", "Open Inference Protocol ModelInfer with random tensors from ModelMetadata "
         "(--param model=NAME, batch, dim, shape.<input>=AxB, int_low, int_high)")(OipGenerator)
