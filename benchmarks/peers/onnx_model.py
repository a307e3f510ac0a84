"""One ONNX file in one onnxruntime session: what both peers' runtimes serve.

Runs inside the peers' own venvs (numpy and onnxruntime only, nothing from infersuite). The session options are the
ones the suite's embedded backend uses (infersuite/services/runtime/backends/onnxruntime.py): intra-op threads as
configured,
one inter-op thread, no spinning, denormals flushed to zero, every graph optimisation, the CPU provider, so that a
benchmark compares serving stacks and not session settings. Keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

# ONNX element types (as onnxruntime names them) -> numpy dtypes, for the ones a served graph can take.
_ORT_TO_NUMPY = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16, "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64, "tensor(uint32)": np.uint32, "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 where the graph's dimension is symbolic (batch, history, candidates)


def _spec(arg: ort.NodeArg) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in arg.shape)
    return TensorSpec(arg.name, np.dtype(_ORT_TO_NUMPY[arg.type]), shape)


class BadInputs(ValueError):
    """The request's tensors do not fit the graph; each peer maps it to its own invalid-input error."""


# Session config entries every peer sets. set_denormal_as_zero: the peers create the session on the thread that
# runs it (their event loop's), so it covers both.
SESSION_CONFIG = {"session.intra_op.allow_spinning": "0", "session.set_denormal_as_zero": "1"}


def describe_session(intra_op_threads: int) -> str:
    """The session settings OnnxModel uses, in words, for a benchmark report."""
    entries = ", ".join(f"{key}={value}" for key, value in SESSION_CONFIG.items())
    return (f"onnxruntime intra_op_num_threads={intra_op_threads}, inter_op_num_threads=1, {entries}, "
            "graph_optimization_level=ORT_ENABLE_ALL, CPUExecutionProvider")


class OnnxModel:
    def __init__(self, onnx_path: Path, intra_op_threads: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        for key, value in SESSION_CONFIG.items():
            options.add_session_config_entry(key, value)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = [_spec(arg) for arg in self.session.get_inputs()]
        self.outputs = [_spec(arg) for arg in self.session.get_outputs()]
        self.input_dtypes = {spec.name: spec.dtype for spec in self.inputs}
        self.output_names = [spec.name for spec in self.outputs]

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Every graph output, or only those named in `outputs`; inputs as the graph declares them."""
        self._check(inputs, outputs)
        names = list(outputs) or self.output_names
        try:
            results = self.session.run(names, dict(inputs))
        except (ort.capi.onnxruntime_pybind11_state.InvalidArgument,
                ort.capi.onnxruntime_pybind11_state.RuntimeException) as exc:
            raise BadInputs(f"the model rejected the inputs: {exc}") from None
        return dict(zip(names, results, strict=True))

    def _check(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> None:
        if set(inputs) != set(self.input_dtypes):
            raise BadInputs(f"inputs must be exactly {sorted(self.input_dtypes)}, got {sorted(inputs)}")
        for name, array in inputs.items():
            if array.dtype != self.input_dtypes[name]:
                raise BadInputs(f"input {name!r} must be {self.input_dtypes[name]}, got {array.dtype}")
        unknown = set(outputs) - set(self.output_names)
        if unknown:
            raise BadInputs(f"unknown outputs {sorted(unknown)}; the model has {self.output_names}")
