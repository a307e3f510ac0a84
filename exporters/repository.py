"""Writes one model version into a Triton-layout repository.

config.pbtxt is built as Triton's own `ModelConfig` protobuf and printed in text format, so
a field Triton does not know cannot be written; the runtime parses it with the same schema.
meta.json is validated against its own schema (modelmeta) before it is written, and the runtime
validates it again when it loads the version.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from infersuite.modelmeta import SCHEMA_VERSION, validate_meta

ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.FLOAT16: mc.TYPE_FP16,
    onnx.TensorProto.DOUBLE: mc.TYPE_FP64, onnx.TensorProto.INT64: mc.TYPE_INT64,
    onnx.TensorProto.INT32: mc.TYPE_INT32, onnx.TensorProto.INT8: mc.TYPE_INT8,
    onnx.TensorProto.UINT8: mc.TYPE_UINT8, onnx.TensorProto.BOOL: mc.TYPE_BOOL,
}


@dataclass
class ServingConfig:
    """How Triton (and the embedded runtime) should serve a model."""

    max_batch_size: int = 64  # 0 = the model has no batch dimension
    max_queue_delay_us: int = 2000  # dynamic batching: longest wait to fill a batch
    preferred_batch_sizes: list[int] = field(default_factory=lambda: [8, 16, 32])
    instance_count: int = 1  # concurrent executions (Triton instance_group count)
    max_queue_size: int = 256  # queued requests before RESOURCE_EXHAUSTED (bounded queue)
    tensorrt_precision: str | None = "FP32"  # TensorRT accelerator on GPU instances; None = CUDA EP only


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tensor_configs(values: Any, batched: bool, kind: type) -> list[Any]:
    tensors = []
    for value in values:
        shape = value.type.tensor_type.shape.dim
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in shape]
        tensors.append(kind(name=value.name, data_type=ONNX_TO_TRITON[value.type.tensor_type.elem_type],
                            dims=dims[1:] if batched else dims))
    return tensors


def model_config(name: str, onnx_path: Path, serving: ServingConfig) -> mc.ModelConfig:
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    batched = serving.max_batch_size > 0
    config = mc.ModelConfig(name=name, platform="onnxruntime_onnx", backend="onnxruntime",
                            max_batch_size=serving.max_batch_size)
    config.input.extend(_tensor_configs(graph.input, batched, mc.ModelInput))
    config.output.extend(_tensor_configs(graph.output, batched, mc.ModelOutput))
    if batched:
        config.dynamic_batching.max_queue_delay_microseconds = serving.max_queue_delay_us
        config.dynamic_batching.preferred_batch_size.extend(
            [b for b in serving.preferred_batch_sizes if b <= serving.max_batch_size])
        config.dynamic_batching.default_queue_policy.max_queue_size = serving.max_queue_size
    # KIND_AUTO: GPU instances where Triton has GPUs (then the TensorRT accelerator applies), CPU elsewhere.
    config.instance_group.add(count=serving.instance_count, kind=mc.ModelInstanceGroup.KIND_AUTO)
    set_tensorrt(config, serving.tensorrt_precision)
    return config


def set_tensorrt(config: mc.ModelConfig, precision: str | None) -> None:
    """The onnxruntime backend's TensorRT accelerator block (engine cache on) for GPU deployments."""
    config.ClearField("optimization")
    if precision is None:
        return
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    accelerator.parameters["precision_mode"] = precision
    accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
    accelerator.parameters["trt_engine_cache_enable"] = "true"
    accelerator.parameters["trt_engine_cache_path"] = "/tmp/infersuite-trt-cache"


def write_model(repository: Path, name: str, onnx_path: Path, meta: dict[str, Any],
                serving: ServingConfig, version: int = 1) -> Path:
    """Copies the graph into <repository>/<name>/<version>/ with config.pbtxt and meta.json; a meta
    its schema refuses (modelmeta.MetaError) is refused before anything is written."""
    full_meta = checked_meta(name, version, {**meta, "model_sha256": sha256_file(onnx_path),
                                             "size_bytes": onnx_path.stat().st_size})
    model_dir = repository / name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    target = version_dir / "model.onnx"
    if onnx_path.resolve() != target.resolve():
        shutil.copyfile(onnx_path, target)
    config = model_config(name, target, serving)
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    _write_meta(version_dir, full_meta)
    return version_dir


def write_variant(repository: Path, source: str, name: str, onnx_path: Path, meta: dict[str, Any],
                  version: int = 1, tensorrt_precision: str | None = "FP32") -> Path:
    """Writes another form of `source` (e.g. a quantization recipe) as model `name`, with
    source's serving configuration and its meta.json merged under `meta`."""
    source_dir = repository / source
    config = text_format.Parse((source_dir / "config.pbtxt").read_text(), mc.ModelConfig())
    config.name = name
    set_tensorrt(config, tensorrt_precision)
    source_meta = json.loads((source_dir / str(version) / "meta.json").read_text())
    merged = checked_meta(name, version, {**source_meta, **meta, "source_model": source,
                                          "model_sha256": sha256_file(onnx_path),
                                          "size_bytes": onnx_path.stat().st_size})
    version_dir = repository / name / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    target = version_dir / "model.onnx"
    shutil.copyfile(onnx_path, target)
    (repository / name / "config.pbtxt").write_text(text_format.MessageToString(config))
    _write_meta(version_dir, merged)
    return version_dir


def checked_meta(name: str, version: int, meta: dict[str, Any]) -> dict[str, Any]:
    """meta.json's content at the current schema version, once the schema accepts it (MetaError
    names the model, the version and the field otherwise). Every exporter writes through here."""
    stamped = {**meta, "schema_version": SCHEMA_VERSION}
    validate_meta(stamped, model=name, version=version)
    return stamped


def record_quantization_gate(version_dir: Path, verdict: dict[str, Any]) -> None:
    """A model version's meta.json gets `quantization_gate`: the verdicts of the recipes run on it."""
    meta = json.loads((version_dir / "meta.json").read_text())
    meta["quantization_gate"] = verdict
    _write_meta(version_dir, checked_meta(version_dir.parent.name, int(version_dir.name), meta))


def _write_meta(version_dir: Path, meta: dict[str, Any]) -> None:
    (version_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def set_default_alias(repository: Path, alias: str, model: str, overwrite: bool = True) -> None:
    """Points `alias` at `model` in <repository>/aliases.json (the runtime resolves it)."""
    path = repository / "aliases.json"
    aliases = json.loads(path.read_text()) if path.is_file() else {}
    if overwrite or alias not in aliases or not (repository / aliases[alias]).is_dir():
        aliases[alias] = model
    path.write_text(json.dumps(aliases, indent=2, sort_keys=True) + "\n")
