"""An MLServer 1.7 custom runtime that serves one ONNX file with onnxruntime.

Runs inside the MLServer venv (.peers/mlserver); launch.py writes the model-settings.json that names this class:
parameters.uri is the ONNX file, parameters.extra.intra_op_threads the session's intra-op threads. Like MLServer's own
runtimes (mlserver-sklearn, mlserver-xgboost), `predict` runs the model on the event loop's thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.codecs.numpy import to_datatype
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor, ResponseOutput

from benchmarks.peers.onnx_model import BadInputs, OnnxModel, TensorSpec


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        parameters = self.settings.parameters
        if parameters is None or not parameters.uri:
            raise InferenceError("model-settings.json needs parameters.uri: the ONNX file")
        threads = int((parameters.extra or {}).get("intra_op_threads", 1))
        self._model = OnnxModel(Path(parameters.uri), intra_op_threads=threads)
        self.inputs = [_metadata(spec) for spec in self._model.inputs]
        self.outputs = [_metadata(spec) for spec in self._model.outputs]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        requested = [output.name for output in payload.outputs or ()]
        try:
            results = self._model.run(inputs, requested)
        except BadInputs as exc:
            raise InferenceError(str(exc)) from None
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            model_version=self.version,
            outputs=[_encode(name, value) for name, value in results.items()],
        )


def _encode(name: str, value: np.ndarray) -> ResponseOutput:
    output = NumpyCodec.encode_output(name, value)
    # NumpyCodec reports a 1-D (R,) output as (R, 1) (mlserver.codecs.utils.inject_batch_dimension); the graph's
    # outputs go back with their own shapes, as the suite and KServe send them.
    output.shape = list(value.shape)
    return output


def _metadata(spec: TensorSpec) -> MetadataTensor:
    return MetadataTensor(name=spec.name, datatype=to_datatype(spec.dtype), shape=list(spec.shape))
