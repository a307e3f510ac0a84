"""A served model's ModelInfer plan: what every request to it is checked against, compiled once.

`converters.decode_inputs` checks a request step by step (raw or typed contents, the limits on the
declared shapes, then each input's name, datatype, shape and byte count) and names the first thing
wrong. Most requests are well formed and sent as tritonclient sends them (every input once, in
raw_input_contents), so the plan checks exactly the same conditions in one pass over the inputs,
with the model's names, datatypes, shapes and limits looked up once per version instead of per
request. Any request that fails one of them, or that sends typed contents or another datatype than
the graph's, is left to `decode_inputs`, which refuses it with the same code and message as before
(or decodes it): the plan only decides faster that nothing is wrong.

Answers are built the same way: every output's raw bytes once, and the message limit checked on the
arrays' sizes (reading `raw_output_contents` back would copy every output's bytes again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tritonclient.grpc import service_pb2

from infersuite.services.runtime.errors import ResourceExhausted
from infersuite.services.runtime.limits import ModelLimits
from infersuite.services.runtime.oip.converters import requested_outputs
from infersuite.services.runtime.tensors import DATATYPE_TO_NUMPY, NUMPY_TO_DATATYPE, TensorSpec

_OutputTensor = service_pb2.ModelInferResponse.InferOutputTensor


@dataclass(frozen=True, slots=True)
class _InputPlan:
    """One input as a request must declare it: its datatype, and per axis the size the graph fixes
    (-1: any) and the largest size the model's limits allow."""

    datatype: str
    dtype: np.dtype
    fixed: tuple[int, ...]
    most: tuple[int, ...]

    def fits(self, shape: tuple[int, ...]) -> bool:
        if len(shape) != len(self.fixed):
            return False
        for size, fixed, most in zip(shape, self.fixed, self.most, strict=True):
            if size < 0 or size > most or (fixed >= 0 and size != fixed):
                return False
        return True


class InferPlan:
    """Decodes a served version's ModelInfer requests and encodes its answers."""

    def __init__(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], limits: ModelLimits,
                 max_message_bytes: int):
        self._specs, self._output_specs = list(inputs), list(outputs)
        self._limits, self._max_bytes = limits, max_message_bytes
        most = {limit.name: limit.max_shape for limit in limits.inputs}
        # An input the limits do not name (none today: every input gets one) is bounded by the message only.
        self._inputs = {spec.name: _InputPlan(spec.datatype, spec.dtype, spec.shape,
                                              most.get(spec.name, (max_message_bytes,) * len(spec.shape)))
                        for spec in inputs}
        self._products = [(product.axes, product.max) for product in limits.products]
        self.output_names = [spec.name for spec in outputs]

    def decoded_raw(self, request: service_pb2.ModelInferRequest) -> dict[str, np.ndarray] | None:
        """The request's inputs as arrays (views of its bytes) when it passes every check of
        `decode_inputs` with raw contents; None when it does not, or sends typed or BYTES contents:
        `decode_inputs` then refuses it (or decodes it). Nothing is allocated before every input passed."""
        tensors, raw = request.inputs, request.raw_input_contents
        count = len(self._inputs)
        if len(tensors) != count or len(raw) != count:
            return None
        shapes = []
        elements = 0
        for tensor in tensors:
            plan = self._inputs.get(tensor.name)
            if plan is None or tensor.datatype != plan.datatype or tensor.HasField("contents"):
                return None
            shape = tuple(tensor.shape)  # protobuf int64s: Python ints, so no overflow below
            if not plan.fits(shape):
                return None
            size = 1
            for axis in shape:
                size *= axis
            elements += size
            shapes.append((tensor.name, plan.dtype, shape, size * plan.dtype.itemsize))
        if elements > self._limits.max_elements or not self._products_fit(dict((n, s) for n, _, s, _ in shapes)):
            return None
        decoded: dict[str, np.ndarray] = {}
        for (name, dtype, shape, need), payload in zip(shapes, raw, strict=True):  # equal lengths, checked above
            if name in decoded or len(payload) != need or need > self._max_bytes:  # twice; not its shape's bytes
                return None
            decoded[name] = np.frombuffer(payload, dtype=dtype).reshape(shape)
        return decoded

    def _products_fit(self, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        for axes, most in self._products:
            value = 1
            for name, axis in axes:
                shape = shapes.get(name)
                if shape is None or axis >= len(shape):  # as ModelLimits: such a product bounds nothing
                    value = 0
                    break
                value *= shape[axis]
            if value > most:
                return False
        return True

    def requested(self, request: service_pb2.ModelInferRequest) -> list[str]:
        """The outputs to answer (every output when the request names none); unknown names refused."""
        if not request.outputs:
            return self.output_names
        return requested_outputs(request, self._output_specs)

    def encode(self, request: service_pb2.ModelInferRequest, version: str, outputs: Mapping[str, np.ndarray],
               names: Sequence[str]) -> service_pb2.ModelInferResponse:
        """The answer, each output's bytes in raw_output_contents; ResourceExhausted past the message limit."""
        tensors, contents, answer_bytes = [], [], 0
        for name in names:
            value = np.ascontiguousarray(outputs[name])
            datatype = NUMPY_TO_DATATYPE.get(value.dtype)
            if datatype is None or datatype not in DATATYPE_TO_NUMPY:
                raise TypeError(f"output {name} has unsupported dtype {value.dtype}")
            tensors.append(_OutputTensor(name=name, datatype=datatype, shape=value.shape))
            contents.append(value.tobytes())
            answer_bytes += value.nbytes
        if answer_bytes > self._max_bytes:  # gRPC would refuse to send it, after our metrics counted OK
            raise ResourceExhausted(
                f"the answer holds {answer_bytes} bytes of outputs, over the server's message limit of "
                f"{self._max_bytes}: ask for fewer outputs or send fewer rows", retry_after_s=None)
        return service_pb2.ModelInferResponse(model_name=request.model_name, model_version=version, id=request.id,
                                              outputs=tensors, raw_output_contents=contents)
