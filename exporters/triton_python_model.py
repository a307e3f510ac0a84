"""Triton python-backend model that runs an ONNX graph with onnxruntime.

Copied as `<model>/1/model.py` by exporters/triton_python.py for Triton builds that ship only
the python backend (the `tritonserver` inside the nvidia-pytriton wheel, used on CPU machines
and in CI). GPU deployments use the official Triton container's onnxruntime/TensorRT backend on
the unchanged model repository instead.
"""

import json
import os
import sys

# The python backend stub starts its interpreter without honouring PYTHONPATH; the launcher
# passes the serving environment's site-packages here instead.
# Prepended: its first entry holds numpy 1.x, which the stub's tensor bridge needs.
sys.path[:0] = [p for p in os.environ.get("INFERSUITE_TRITON_PYTHONPATH", "").split(os.pathsep) if p]

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        here = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("INFERSUITE_TRITON_THREADS", "1"))
        self.session = ort.InferenceSession(os.path.join(here, "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
            try:
                outputs = self.session.run(self.output_names, feeds)
            except Exception as exc:  # reported to the caller as a Triton error, the server keeps running
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value))
                       for name, value in zip(self.output_names, outputs, strict=True)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
