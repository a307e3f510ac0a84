"""Turns infersuite model-repository entries into Triton python-backend models.

The `tritonserver` binary in the nvidia-pytriton wheel (Triton 2.51) has only the python
backend. To serve our ONNX models through a real Triton on a CPU machine, each model gets the
same config.pbtxt with `backend: "python"` and a model.py that runs the ONNX graph with
onnxruntime. On GPU nodes the official Triton container serves the original repository with its
onnxruntime backend (and the TensorRT accelerator) unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

MODEL_PY = Path(__file__).with_name("triton_python_model.py")


def python_backend_config(config: mc.ModelConfig) -> mc.ModelConfig:
    converted = mc.ModelConfig()
    converted.CopyFrom(config)
    converted.platform = ""
    converted.backend = "python"
    converted.ClearField("optimization")  # TensorRT accelerator settings are for the onnxruntime backend
    return converted


def write_python_backend_model(source: Path, target_repository: Path, version: str = "1") -> Path:
    """Copies <source>/config.pbtxt and <source>/<version>/model.onnx as a python-backend model."""
    config = text_format.Parse((source / "config.pbtxt").read_text(), mc.ModelConfig())
    target = target_repository / source.name
    (target / version).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / version / "model.onnx", target / version / "model.onnx")
    shutil.copyfile(MODEL_PY, target / version / "model.py")
    (target / "config.pbtxt").write_text(text_format.MessageToString(python_backend_config(config)))
    return target
