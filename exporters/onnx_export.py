"""Export with the dynamo exporter (the legacy one bakes transformer shapes) and check parity.

The model carries its own export metadata (STYLE.md): `input_names`, `output_names`,
`dynamic_shapes()` (torch.export Dims per input axis) and `example_inputs()`. The exporter
hard-codes nothing about a family.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

OPSET = 18


class ParityError(AssertionError):
    """The exported graph does not reproduce the torch model within tolerance."""


def export_onnx(model: Any, path: Path, opset: int = OPSET) -> Path:
    """Exports `model` (in eval mode) to `path` as one self-contained ONNX file."""
    model = model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, tuple(model.example_inputs()), dynamo=True, opset_version=opset,
            input_names=list(model.input_names), output_names=list(model.output_names),
            dynamic_shapes=model.dynamic_shapes(), verbose=False,
        )
    if program is None:
        raise RuntimeError(f"the exporter returned no program for {type(model).__name__}")
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def _as_numpy(inputs: Sequence[torch.Tensor], names: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: t.detach().cpu().numpy() for name, t in zip(names, inputs, strict=True)}


def parity_max_abs_diff(model: Any, path: Path, input_sets: Iterable[Sequence[torch.Tensor]]) -> float:
    """Largest |torch - onnxruntime| over every output of every input set."""
    model = model.eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for inputs in input_sets:
        with torch.no_grad():
            expected = model(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(list(model.output_names), _as_numpy(inputs, model.input_names))
        for want, have in zip(expected, got, strict=True):
            worst = max(worst, float(np.max(np.abs(want.numpy() - have), initial=0.0)))
    return worst


def check_parity(model: Any, path: Path, input_sets: Iterable[Sequence[torch.Tensor]],
                 atol: float = 1e-5) -> float:
    """Raises ParityError (failing the export) when the graph drifts from torch beyond atol."""
    worst = parity_max_abs_diff(model, path, input_sets)
    if not worst <= atol:
        raise ParityError(f"{path}: max abs diff {worst:.3g} vs torch exceeds {atol:g}")
    return worst
