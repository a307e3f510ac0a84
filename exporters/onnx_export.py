"""Export with the dynamo exporter (the legacy one bakes transformer shapes) and check parity.

Parity treats NaN and Inf as a mismatch: an output that is not finite on either side makes
the difference infinite, so `check_parity` fails (Python's `max(0.0, nan)` is 0.0, which once
let an all-NaN output pass).

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


def reference_session(path: Path) -> ort.InferenceSession:
    """A plain CPU session. Not with `session.set_denormal_as_zero`, which the serving runtime
    sets: onnxruntime also applies it, once per process and for good, to the thread that creates
    the first session, which here is the caller's (it changed hypothesis' floats in the tests)."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def max_abs_diff(want: np.ndarray, have: np.ndarray) -> float:
    """max |want - have|, and +inf when either side holds a NaN or an Inf anywhere."""
    want, have = np.asarray(want, np.float64), np.asarray(have, np.float64)
    if not (np.isfinite(want).all() and np.isfinite(have).all()):
        return float("inf")
    return float(np.max(np.abs(want - have), initial=0.0))


def _as_numpy(inputs: Sequence[torch.Tensor], names: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: t.detach().cpu().numpy() for name, t in zip(names, inputs, strict=True)}


def parity_max_abs_diff(model: Any, path: Path, input_sets: Iterable[Sequence[torch.Tensor]]) -> float:
    """Largest |torch - onnxruntime| over every output of every input set (+inf on NaN/Inf)."""
    model = model.eval()
    session = reference_session(path)
    worst = 0.0
    for inputs in input_sets:
        with torch.no_grad():
            expected = model(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(list(model.output_names), _as_numpy(inputs, model.input_names))
        for want, have in zip(expected, got, strict=True):
            worst = float(np.fmax(worst, max_abs_diff(want.numpy(), have)))
    return worst


def check_parity(model: Any, path: Path, input_sets: Iterable[Sequence[torch.Tensor]],
                 atol: float = 1e-5) -> float:
    """Raises ParityError (failing the export) when the graph drifts from torch beyond atol."""
    worst = parity_max_abs_diff(model, path, input_sets)
    if not worst <= atol:
        what = "an output is NaN/Inf (torch or onnxruntime)" if not np.isfinite(worst) else f"max abs diff {worst:.3g}"
        raise ParityError(f"{path}: {what} vs torch, tolerance {atol:g}")
    return worst
