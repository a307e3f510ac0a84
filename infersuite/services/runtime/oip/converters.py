"""OIP ModelInfer requests -> numpy, each malformed request turned into a clear INVALID_ARGUMENT."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from tritonclient.grpc import service_pb2

from infersuite.services.runtime import bytes_inputs
from infersuite.services.runtime.bytes_inputs import BytesInputs
from infersuite.services.runtime.errors import InvalidArgument
from infersuite.services.runtime.limits import ModelLimits
from infersuite.services.runtime.tensors import TensorSpec

# Which typed `contents` field carries each datatype (FP16 travels only as raw bytes).
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}


def _check_shape(name: str, shape: tuple[int, ...], spec: TensorSpec) -> None:
    if len(shape) == len(spec.shape) and min(shape, default=0) >= 0 and all(
            want < 0 or got == want for got, want in zip(shape, spec.shape, strict=True)):
        return  # the usual case, checked in one pass (this runs for every input of every request)
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {name!r} has a negative dimension in shape {list(shape)}")
    if len(shape) != len(spec.shape):
        raise InvalidArgument(f"input {name!r} has shape {list(shape)} but the model expects rank "
                              f"{len(spec.shape)} {list(spec.shape)} (-1 = any size)")
    for axis, (got, want) in enumerate(zip(shape, spec.shape, strict=True)):
        if want >= 0 and got != want:
            raise InvalidArgument(f"input {name!r} dimension {axis} is {got}, the model expects {want}")


def _decode_one(tensor: service_pb2.ModelInferRequest.InferInputTensor, spec: TensorSpec,
                raw: bytes | None, max_bytes: int) -> np.ndarray:
    if tensor.datatype != spec.datatype:
        raise InvalidArgument(f"input {tensor.name!r} has datatype {tensor.datatype or '(empty)'}, "
                              f"the model expects {spec.datatype}")
    shape = tuple(tensor.shape)  # protobuf int64s: already Python ints
    _check_shape(tensor.name, shape, spec)
    count = math.prod(shape)  # exact (no int64 overflow on hostile shapes)
    need = count * spec.dtype.itemsize
    if need > max_bytes:
        raise InvalidArgument(
            f"input {tensor.name!r} shape {list(shape)} needs {need} bytes, over the limit {max_bytes}")
    if raw is not None:
        if len(raw) != need:
            raise InvalidArgument(f"input {tensor.name!r}: raw content is {len(raw)} bytes but shape {list(shape)} "
                                  f"of {spec.datatype} needs {need}")
        return np.frombuffer(raw, dtype=spec.dtype).reshape(shape)
    field = CONTENTS_FIELD.get(spec.datatype)
    if field is None:
        raise InvalidArgument(f"input {tensor.name!r}: {spec.datatype} must be sent in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidArgument(f"input {tensor.name!r}: contents.{field} has {len(values)} values but shape "
                              f"{list(shape)} needs {count}")
    return np.asarray(values, dtype=spec.dtype).reshape(shape)


def _has_typed_contents(tensor: service_pb2.ModelInferRequest.InferInputTensor) -> bool:
    return tensor.HasField("contents") and tensor.contents.ByteSize() > 0


def check_declared(request: service_pb2.ModelInferRequest, limits: ModelLimits) -> None:
    """Refuses a request by the shapes it declares, before any of its contents is decoded."""
    raw = request.raw_input_contents
    if raw and any(_has_typed_contents(t) for t in request.inputs):
        raise InvalidArgument("the request has both typed contents and raw_input_contents; the protocol "
                              "allows one or the other")
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs")
    limits.check_shapes({t.name: tuple(t.shape) for t in request.inputs})


def _decode_bytes(tensor: service_pb2.ModelInferRequest.InferInputTensor, spec: TensorSpec, raw: bytes | None,
                  strings: BytesInputs | None, model: str) -> np.ndarray:
    """A BYTES tensor for an input the model's family maps (infersuite/services/runtime/bytes_inputs.py)."""
    shape = tuple(tensor.shape)
    _check_shape(tensor.name, shape, spec)
    return bytes_inputs.decode(tensor.name, spec.datatype, shape, raw, tensor.contents.bytes_contents, strings, model)


def decode_inputs(request: service_pb2.ModelInferRequest, specs: Sequence[TensorSpec],
                  max_bytes: int, limits: ModelLimits, strings: BytesInputs | None = None) -> dict[str, np.ndarray]:
    """The request's inputs as numpy; `strings`: the inputs the model also takes as BYTES (None: none)."""
    check_declared(request, limits)
    expected = {s.name: s for s in specs}
    raw = list(request.raw_input_contents)
    decoded: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        spec = expected.get(tensor.name)
        if spec is None:
            raise InvalidArgument(f"{tensor.name!r} is not an input of model {request.model_name!r} "
                                  f"(inputs: {', '.join(expected)})")
        if tensor.name in decoded:
            raise InvalidArgument(f"input {tensor.name!r} is given twice")
        if tensor.datatype == bytes_inputs.BYTES and spec.datatype != bytes_inputs.BYTES:
            decoded[tensor.name] = _decode_bytes(tensor, spec, raw[i] if raw else None, strings, request.model_name)
            continue
        decoded[tensor.name] = _decode_one(tensor, spec, raw[i] if raw else None, max_bytes)
    missing = [name for name in expected if name not in decoded]
    if missing:
        raise InvalidArgument(f"missing input(s) {', '.join(missing)} for model {request.model_name!r}")
    return decoded


def requested_outputs(request: service_pb2.ModelInferRequest, specs: Sequence[TensorSpec]) -> list[str]:
    names = [s.name for s in specs]
    wanted = [o.name for o in request.outputs] or names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise InvalidArgument(f"unknown output(s) {', '.join(unknown)} (outputs: {', '.join(names)})")
    return wanted

