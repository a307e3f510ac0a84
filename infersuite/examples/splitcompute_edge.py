"""The edge SDK: encode an image on the device, send the entropy-coded payload, get class
probabilities (README: "Split computing in a few lines"). Needs onnxruntime, constriction, numpy,
grpcio and protobuf only (`pip install ".[edge]"`).

    python -m infersuite.examples.splitcompute_edge BUNDLE   # BUNDLE: <repository>/splitcompute-encoder-fp32/1
"""

import os
import sys

import numpy as np

from infersuite.clients import EdgeDevice, security_from_env


def main() -> None:
    bundle = sys.argv[1] if len(sys.argv) > 1 else "shipped_models/splitcompute-encoder-fp32/1"
    target = os.environ.get("INFERSUITE_TARGET", "localhost:50051")
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)  # (H, W, 3) uint8
    with EdgeDevice(bundle, target, security=security_from_env()) as device:
        result = device.classify(image)
    print("top class:", result.top_class_name, "payload bytes:", result.payload_bytes)
    print("stage seconds:", {k: round(v, 4) for k, v in result.stage_seconds.items()})


if __name__ == "__main__":
    main()
