"""Triton's auto-complete for ONNX models: a model's config derived from its graph, merged with
whatever config.pbtxt declares (nothing, or a partial config).

What the graph fills in, as Triton's onnxruntime backend does (`--disable-auto-complete-config`
off, its default):
- platform `onnxruntime_onnx` / backend `onnxruntime` when neither is set;
- `max_batch_size`: when config.pbtxt declares no inputs/outputs and sets none, and the first axis
  of every input and output is dynamic (shared by all, the batch axis), the model batches up to
  `RuntimeSettings.default_max_batch_size` (Triton's `--backend-config=default-max-batch-size`, 4);
  otherwise 0 (no batch axis);
- every input and output config.pbtxt does not name, with its datatype and dims (without the batch
  axis when max_batch_size > 0: Triton's convention);
- `dynamic_batching {}` when the model batches (max_batch_size > 1) and config.pbtxt chose no scheduler.
What config.pbtxt declares is checked against the graph (names, datatypes, ranks, fixed sizes), and
a mismatch fails the load with a message naming the tensor: the graph is what runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tritonclient.grpc import model_config_pb2
from tritonclient.grpc.model_config_pb2 import ModelConfig

from infersuite.services.runtime.errors import RepositoryError
from infersuite.services.runtime.repository import CONFIG_FILE, ONNX_PLATFORM
from infersuite.services.runtime.tensors import TensorSpec


def _batchable(specs: Sequence[TensorSpec]) -> bool:
    return bool(specs) and all(len(s.shape) >= 1 and s.shape[0] < 0 for s in specs)


def _data_type(spec: TensorSpec) -> int:
    return model_config_pb2.DataType.Value(f"TYPE_{spec.datatype}")


Declared = Iterable[model_config_pb2.ModelInput | model_config_pb2.ModelOutput]


def _check_declared(model: str, kind: str, declared: Declared, specs: Sequence[TensorSpec], batch: bool) -> None:
    by_name = {s.name: s for s in specs}
    for tensor in declared:
        spec = by_name.get(tensor.name)
        where = f"{model}/{CONFIG_FILE} {kind} {tensor.name!r}"
        if spec is None:
            raise RepositoryError(f"{where} is not an {kind} of the graph (it has {', '.join(by_name) or 'none'})")
        if tensor.data_type != model_config_pb2.TYPE_INVALID and tensor.data_type != _data_type(spec):
            raise RepositoryError(f"{where} is {model_config_pb2.DataType.Name(tensor.data_type)} but the graph's "
                                  f"is TYPE_{spec.datatype}")
        graph_dims = spec.shape[1:] if batch else spec.shape
        if batch and (not spec.shape or spec.shape[0] >= 0):
            raise RepositoryError(f"{where}: max_batch_size > 0 needs a dynamic first axis, the graph's shape is "
                                  f"{list(spec.shape)} (set max_batch_size: 0)")
        dims = list(tensor.dims)
        if dims and (len(dims) != len(graph_dims) or any(
                d >= 0 and g >= 0 and d != g for d, g in zip(dims, graph_dims, strict=True))):
            raise RepositoryError(f"{where} has dims {dims} but the graph's are {list(graph_dims)}"
                                  f"{' (without the batch axis)' if batch else ''}")


def complete_config(config: ModelConfig, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                    default_max_batch_size: int) -> ModelConfig:
    """config.pbtxt (possibly empty) completed from the graph's tensors; raises RepositoryError on a mismatch."""
    completed = ModelConfig()
    completed.CopyFrom(config)
    if not completed.platform and not completed.backend:
        completed.platform, completed.backend = ONNX_PLATFORM, "onnxruntime"
    declares_tensors = bool(config.input) or bool(config.output)
    if (completed.max_batch_size == 0 and not declares_tensors and default_max_batch_size > 0
            and _batchable([*inputs, *outputs])):
        completed.max_batch_size = default_max_batch_size
    batch = completed.max_batch_size > 0
    _check_declared(completed.name, "input", config.input, inputs, batch)
    _check_declared(completed.name, "output", config.output, outputs, batch)
    named = {t.name for t in [*config.input, *config.output]}
    for tensors, specs in ((completed.input, inputs), (completed.output, outputs)):
        for spec in specs:
            if spec.name not in named:
                tensors.add(name=spec.name, data_type=_data_type(spec), dims=spec.shape[1:] if batch else spec.shape)
    scheduler = completed.WhichOneof("scheduling_choice")
    if completed.max_batch_size > 1 and scheduler is None:
        completed.dynamic_batching.SetInParent()
    return completed
