"""How a model's requests combine into one execution, declared in its meta.json `batching` block.

Two declarations, both generic (no model family is named here):

- `ragged_dims`: variable-length axes (e.g. DIN's history length) that are padded with zeros to
  the batch maximum and cut back on the outputs (`outputs`: output name -> axis that follows it).
  Padding value 0 means "absent" for every model here (mask 0, padding id 0).
- `rows` (optional): inputs that are concatenated along axis 0 instead of stacked per request, so
  a request with N rows costs N rows, not the batch's largest N. Every other input is a "group"
  input stacked along axis 0 (e.g. one history per user). `group_index` names the row inputs
  that hold an index into axis 0 of a group input; the batcher offsets them by the groups of the
  requests before. Outputs listed in `outputs` are split by rows, the others by groups.

  ```
  "rows": {"inputs": ["candidate_items", "candidate_categories", "candidate_user"],
           "outputs": ["click_probability", "activation_weights"],
           "group_index": {"candidate_user": "history_items"},
           "max_rows": 4096, "max_cells": 65536, "max_queue_delay_us": 2000}
  ```

A batch's cost is counted in cells: rows x the product of its padded ragged sizes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from infersuite.services.runtime.errors import InvalidArgument


@dataclass(frozen=True)
class RaggedDim:
    name: str
    inputs: dict[str, int]  # input name -> axis that varies
    outputs: dict[str, int]  # output name -> axis that follows it


@dataclass(frozen=True)
class RowsSpec:
    inputs: frozenset[str]  # concatenated along axis 0
    outputs: frozenset[str]  # split by rows (the rest by groups)
    group_index: dict[str, str]  # row input -> the group input whose axis 0 it indexes
    max_rows: int = 4096  # rows per execution
    max_cells: int = 1 << 30  # rows x padded ragged sizes per execution (keeps a batch cache-sized)
    max_queue_delay_us: int = 2000  # longest a request waits for company

    @classmethod
    def from_meta(cls, spec: Mapping[str, Any]) -> RowsSpec:
        return cls(frozenset(spec["inputs"]), frozenset(spec.get("outputs", ())), dict(spec.get("group_index", {})),
                   int(spec.get("max_rows", 4096)), int(spec.get("max_cells", 1 << 30)),
                   int(spec.get("max_queue_delay_us", 2000)))


@dataclass(frozen=True, slots=True)
class RequestShape:
    groups: int  # size of axis 0 of the group inputs
    rows: int  # the request's weight in a batch: its rows (rows layout) or its groups
    sizes: tuple[int, ...]  # size along each ragged dimension
    signature: tuple  # what must be equal to share a batch: dtypes and fixed dims


def ragged_dims_from_meta(meta: Mapping[str, Any]) -> list[RaggedDim]:
    dims = meta.get("batching", {}).get("ragged_dims", {})
    return [RaggedDim(name, dict(spec.get("inputs", {})), dict(spec.get("outputs", {}))) for name, spec in dims.items()]


class BatchLayout:
    """Describes, combines and splits the requests of one model (built once per model version)."""

    def __init__(self, dims: Sequence[RaggedDim], rows: RowsSpec | None = None):
        self.dims, self.rows = list(dims), rows
        self._ragged_axes = {(n, a) for d in self.dims for n, a in d.inputs.items()}
        self._row_inputs = rows.inputs if rows else frozenset()
        self._row_outputs = rows.outputs if rows else frozenset()

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> BatchLayout:
        rows = meta.get("batching", {}).get("rows")
        return cls(ragged_dims_from_meta(meta), RowsSpec.from_meta(rows) if rows else None)

    # --- one request ----------------------------------------------------------------------
    def describe(self, inputs: Mapping[str, np.ndarray], signature: bool = True) -> RequestShape:
        """The request's size; `signature` False: a request that is never combined (its signature is ())."""
        groups, rows = self._axis0(inputs)
        sizes = self._sizes(inputs)
        if self.rows is not None:
            self._check_indices(inputs, groups)
        return RequestShape(groups, rows if self.rows is not None else groups, sizes,
                            self._signature(inputs) if signature else ())

    def _axis0(self, inputs: Mapping[str, np.ndarray]) -> tuple[int, int]:
        group_sizes: set[int] = set()
        row_sizes: set[int] = set()
        for name, value in inputs.items():
            if value.ndim == 0:
                raise InvalidArgument(f"input {name!r} is a scalar; every input needs a leading dimension")
            (row_sizes if name in self._row_inputs else group_sizes).add(value.shape[0])
        if len(group_sizes) > 1:
            raise InvalidArgument(f"inputs disagree on the batch dimension (dim 0 sizes: {sorted(group_sizes)})")
        if len(row_sizes) > 1:
            raise InvalidArgument(f"row inputs disagree on their number of rows (dim 0 sizes: {sorted(row_sizes)})")
        groups = next(iter(group_sizes), 0)
        return groups, next(iter(row_sizes), groups)

    def _sizes(self, inputs: Mapping[str, np.ndarray]) -> tuple[int, ...]:
        sizes = []
        for dim in self.dims:
            found = {name: inputs[name].shape[axis] for name, axis in dim.inputs.items()
                     if name in inputs and inputs[name].ndim > axis}
            if len(set(found.values())) > 1:
                raise InvalidArgument(f"inputs {sorted(found)} must have the same {dim.name} length, got {found}")
            sizes.append(next(iter(found.values()), 0))
        return tuple(sizes)

    def _check_indices(self, inputs: Mapping[str, np.ndarray], groups: int) -> None:
        """A row must point into its own request's groups, never into another request's."""
        assert self.rows is not None
        for name, target in self.rows.group_index.items():
            index = inputs.get(name)
            if index is None or index.size == 0:
                continue
            low, high = int(index.min()), int(index.max())
            if low < 0 or high >= groups:
                raise InvalidArgument(f"input {name!r} holds indices into {target!r} from {low} to {high}, "
                                      f"but the request has {groups} {target!r} entries (valid: 0..{groups - 1})")

    def _signature(self, inputs: Mapping[str, np.ndarray]) -> tuple:
        ragged = self._ragged_axes
        return tuple(
            (name, a.dtype.num, tuple(-1 if (name, i) in ragged else s for i, s in enumerate(a.shape[1:], 1)))
            for name, a in sorted(inputs.items()))

    # --- a batch --------------------------------------------------------------------------
    @staticmethod
    def cells(rows: int, sizes: Sequence[int]) -> int:
        return rows * math.prod(sizes)

    def combine(self, requests: Sequence[Mapping[str, np.ndarray]], shapes: Sequence[RequestShape]
                ) -> dict[str, np.ndarray]:
        """One batch: group inputs stacked (ragged axes padded with 0), row inputs concatenated,
        group indices offset by the groups of the requests before."""
        batch: dict[str, np.ndarray] = {}
        offsets = np.cumsum([0] + [s.groups for s in shapes[:-1]])
        for name in requests[0]:
            arrays = [r[name] for r in requests]
            if name in self._row_inputs:
                if self.rows is not None and name in self.rows.group_index:
                    arrays = [a + np.asarray(o, a.dtype) for a, o in zip(arrays, offsets, strict=True)]
                batch[name] = np.concatenate(arrays, axis=0)
            else:
                batch[name] = _stack_padded(arrays)
        return batch

    def split(self, outputs: Mapping[str, np.ndarray], shapes: Sequence[RequestShape]) -> list[dict[str, np.ndarray]]:
        """Undoes `combine` on the outputs: each request gets its rows/groups, ragged axes cut to its sizes."""
        results = []
        row_start = group_start = 0
        for shape in shapes:
            result = {}
            for name, value in outputs.items():
                by_rows = name in self._row_outputs
                start, n = (row_start, shape.rows) if by_rows else (group_start, shape.groups)
                index = [slice(start, start + n)] + [slice(None)] * (value.ndim - 1)
                for dim, size in zip(self.dims, shape.sizes, strict=True):
                    if name in dim.outputs:
                        index[dim.outputs[name]] = slice(0, size)
                result[name] = value[tuple(index)]
            results.append(result)
            row_start += shape.rows
            group_start += shape.groups
        return results


def _stack_padded(arrays: Sequence[np.ndarray]) -> np.ndarray:
    first = arrays[0]
    if all(a.shape[1:] == first.shape[1:] for a in arrays):
        return np.concatenate(arrays, axis=0)
    target = list(np.max(np.array([a.shape for a in arrays]), axis=0))
    target[0] = sum(a.shape[0] for a in arrays)
    out = np.zeros(tuple(target), dtype=first.dtype)
    row = 0
    for a in arrays:
        out[(slice(row, row + a.shape[0]), *(slice(0, s) for s in a.shape[1:]))] = a
        row += a.shape[0]
    return out


def padding_fraction(rows: Sequence[int], sizes: Sequence[tuple[int, ...]]) -> float:
    """Share of a batch's cells that are padding (0 when all requests are alike)."""
    if not sizes or not sizes[0]:
        return 0.0
    useful = sum(r * math.prod(s) for r, s in zip(rows, sizes, strict=True))
    padded = sum(rows) * math.prod(max(column) for column in zip(*sizes, strict=True))
    return 1.0 - useful / padded if padded else 0.0
