"""Ask any model the server serves for an answer, with NVIDIA's own client (README: "Serve your own model").

    python -m infersuite.examples.own_model MODEL       # INFERSUITE_TARGET=host:port, default localhost:50051

Reads the model's metadata and config over the Open Inference Protocol, sends one request of the
right names, datatypes and shapes (dynamic axes of size 1; random floats, zero integers) and prints
each output's shape. Works the same against infersuite and against NVIDIA Triton.
"""

import os
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import triton_to_np_dtype


def main(model: str) -> None:
    client = grpcclient.InferenceServerClient(os.environ.get("INFERSUITE_TARGET", "localhost:50051"))
    config = client.get_model_config(model, as_json=True)["config"]
    metadata = client.get_model_metadata(model, as_json=True)
    rng = np.random.default_rng(0)
    inputs = []
    for spec in metadata["inputs"]:
        shape = [max(int(size), 1) for size in spec["shape"]]  # -1 (dynamic) -> 1
        dtype = triton_to_np_dtype(spec["datatype"])
        value = rng.normal(size=shape).astype(dtype) if np.issubdtype(dtype, np.floating) else np.zeros(shape, dtype)
        tensor = grpcclient.InferInput(spec["name"], shape, spec["datatype"])
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    result = client.infer(model, inputs, timeout=30)
    print(f"model {model} v{result.get_response().model_version}: max_batch_size {config.get('max_batch_size', 0)}, "
          f"dynamic batching {'on' if 'dynamic_batching' in config else 'off'}")
    for spec in metadata["outputs"]:
        print(f"output {spec['name']}: shape {list(result.as_numpy(spec['name']).shape)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m infersuite.examples.own_model MODEL")
    main(sys.argv[1])
