"""Ragged batching: pads variable-length dimensions to the batch maximum and slices outputs back.

A model declares its ragged dimensions in meta.json (`batching.ragged_dims`), e.g. DIN's history
length (history_* axis 1 -> activation_weights axis 2) and candidate count. The padding value is
0, which every model here treats as "absent" (mask 0, padding id 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.runtime.errors import InvalidArgument


@dataclass(frozen=True)
class RaggedDim:
    name: str
    inputs: dict[str, int]  # input name -> axis that varies
    outputs: dict[str, int]  # output name -> axis that follows it


def ragged_dims_from_meta(meta: Mapping[str, Any]) -> list[RaggedDim]:
    dims = meta.get("batching", {}).get("ragged_dims", {})
    return [RaggedDim(name, dict(spec.get("inputs", {})), dict(spec.get("outputs", {}))) for name, spec in dims.items()]


def request_rows(inputs: Mapping[str, np.ndarray]) -> int:
    rows = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
    if len(rows) != 1 or -1 in rows:
        raise InvalidArgument(f"inputs disagree on the batch dimension (dim 0 sizes: {sorted(rows)})")
    return rows.pop()


def ragged_sizes(inputs: Mapping[str, np.ndarray], dims: Sequence[RaggedDim]) -> tuple[int, ...]:
    """The request's size along each ragged dimension (its inputs must agree)."""
    sizes = []
    for dim in dims:
        found = {name: inputs[name].shape[axis] for name, axis in dim.inputs.items() if name in inputs}
        if len(set(found.values())) > 1:
            raise InvalidArgument(f"inputs {sorted(found)} must have the same {dim.name} length, got {found}")
        sizes.append(next(iter(found.values()), 0))
    return tuple(sizes)


def fixed_signature(inputs: Mapping[str, np.ndarray], dims: Sequence[RaggedDim]) -> tuple:
    """What must be equal for two requests to share a batch: dtypes and non-ragged dims."""
    ragged = {(n, a) for d in dims for n, a in d.inputs.items()}
    return tuple(sorted(
        (name, str(a.dtype), tuple(-1 if (name, i) in ragged else s for i, s in enumerate(a.shape[1:], 1)))
        for name, a in inputs.items()))


def padding_fraction(rows: Sequence[int], sizes: Sequence[tuple[int, ...]]) -> float:
    """Share of a padded batch's cells that are padding (0 when all requests are alike)."""
    if not sizes or not sizes[0]:
        return 0.0
    useful = sum(r * float(np.prod(s)) for r, s in zip(rows, sizes, strict=True))
    padded = sum(rows) * float(np.prod(np.max(np.array(sizes), axis=0)))
    return 1.0 - useful / padded if padded else 0.0


def pad_and_concat(requests: Sequence[Mapping[str, np.ndarray]], dims: Sequence[RaggedDim]) -> dict[str, np.ndarray]:
    """One batch: ragged axes padded with zeros to the batch maximum, requests stacked on dim 0."""
    batch: dict[str, np.ndarray] = {}
    for name in requests[0]:
        arrays = [r[name] for r in requests]
        target = np.max(np.array([a.shape for a in arrays]), axis=0)
        target[0] = sum(a.shape[0] for a in arrays)
        out = np.zeros(tuple(target), dtype=arrays[0].dtype)
        row = 0
        for a in arrays:
            out[(slice(row, row + a.shape[0]), *(slice(0, s) for s in a.shape[1:]))] = a
            row += a.shape[0]
        batch[name] = out
    return batch


def split_outputs(outputs: Mapping[str, np.ndarray], rows: Sequence[int], sizes: Sequence[tuple[int, ...]],
                  dims: Sequence[RaggedDim]) -> list[dict[str, np.ndarray]]:
    """Undoes pad_and_concat on the outputs: each request gets its rows, ragged axes cut to its sizes."""
    results, start = [], 0
    for n, own in zip(rows, sizes, strict=True):
        result = {}
        for name, value in outputs.items():
            index = [slice(start, start + n)] + [slice(None)] * (value.ndim - 1)
            for dim, size in zip(dims, own, strict=True):
                if name in dim.outputs:
                    index[dim.outputs[name]] = slice(0, size)
            result[name] = value[tuple(index)]
        results.append(result)
        start += n
    return results
