"""Tensor descriptions shared by backends and the Open Inference Protocol (KServe v2 names)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# KServe v2 / Triton datatype name <-> numpy dtype.
DATATYPE_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}
NUMPY_TO_DATATYPE = {dtype: name for name, dtype in DATATYPE_TO_NUMPY.items()}

# onnxruntime's type strings, e.g. "tensor(float)".
ONNX_TYPE_TO_DATATYPE = {
    "tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(int8)": "INT8",
    "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
}


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output; -1 marks a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return DATATYPE_TO_NUMPY[self.datatype]

    def example(self, dynamic_size: int = 1) -> np.ndarray:
        """A zero tensor of this spec with every dynamic dimension set to `dynamic_size`."""
        shape = tuple(dynamic_size if d < 0 else d for d in self.shape)
        return np.zeros(shape, dtype=self.dtype)
