"""Per-request shapes and realistic values for the `oip` generator, from the model's meta.json.

Without a model repository every dynamic dimension is one fixed size and tensors are random. With
`--param repository=DIR` the generator reads `<model>/<version>/meta.json` (the file the runtime
batches by) and sends what a real caller would:

- shapes drawn per request: `batch=1..8`, `dim=1..50`, `dim.<ragged group>=LOW..HIGH` (e.g. DIN's
  `dim.history` and `dim.candidates`), `dim.rows=LOW..HIGH` for inputs in `batching.rows`;
  inputs of one ragged group share the draw, as they must;
- values: integer ids inside the model's vocabulary (`n_items` for *item* inputs, `n_categories` for
  *categor* inputs), masks of ones (every position valid), row -> group indices in range
  (`batching.rows.group_index`), waveforms in [-0.5, 0.5) when the model has a sample rate, other
  floats in [0, 1) (pixels, probabilities), never unbounded normals; and always inside the ranges
  meta.json declares (`limits.inputs.<name>.range` / `below_dim`, which the server enforces).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infersuite.loadtest.generators.base import GeneratorError


@dataclass(frozen=True)
class Span:
    """An inclusive size range drawn uniformly per request (low == high: a fixed size)."""

    low: int
    high: int

    def draw(self, rng: np.random.Generator) -> int:
        return self.low if self.low == self.high else int(rng.integers(self.low, self.high + 1))


def parse_span(key: str, text: str) -> Span:
    """`8` or `1..50`."""
    low_text, sep, high_text = text.partition("..")
    try:
        low = int(low_text)
        high = int(high_text) if sep else low
    except ValueError:
        raise GeneratorError(f"--param {key}={text!r}: expected N or LOW..HIGH") from None
    if low < 1 or high < low:
        raise GeneratorError(f"--param {key}={text!r}: expected 1 <= LOW <= HIGH")
    return Span(low, high)


@dataclass(frozen=True)
class ModelLayout:
    """What meta.json says about a model's inputs (all empty for a model without meta)."""

    ragged: dict[str, tuple[str, int]] = field(default_factory=dict)  # input -> (group, axis)
    rows: frozenset[str] = frozenset()  # inputs concatenated along axis 0 (one row per item)
    group_index: dict[str, str] = field(default_factory=dict)  # row input -> group input it indexes
    vocabulary: dict[str, int] = field(default_factory=dict)
    waveform: bool = False  # the model takes audio samples
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)  # input -> declared range / below_dim

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ModelLayout:
        batching = meta.get("batching", {})
        ragged = {name: (group, int(axis)) for group, spec in batching.get("ragged_dims", {}).items()
                  for name, axis in spec.get("inputs", {}).items()}
        rows = batching.get("rows", {})
        vocabulary = {k: int(v) for k, v in meta.get("vocabulary", {}).items() if isinstance(v, int)}
        return cls(ragged, frozenset(rows.get("inputs", [])), dict(rows.get("group_index", {})), vocabulary,
                   "sample_rate" in meta, dict(meta.get("limits", {}).get("inputs", {})))

    def bounds(self, name: str, shapes: dict[str, list[int]]) -> tuple[float | None, float | None]:
        """The inclusive value range meta.json declares for an input at these shapes (None: open)."""
        declared = self.limits.get(name, {})
        low, high = declared.get("range", [None, None])
        below = declared.get("below_dim")
        if below and below[0] in shapes:
            top = shapes[below[0]][int(below[1])] - 1
            high = top if high is None else min(high, top)
        return low, high

    @property
    def groups(self) -> set[str]:
        return {group for group, _ in self.ragged.values()}

    def id_bound(self, name: str) -> int | None:
        """The vocabulary an integer input indexes, by its name; None: unknown."""
        for fragment, key in (("item", "n_items"), ("categor", "n_categories")):
            if fragment in name and key in self.vocabulary:
                return self.vocabulary[key]
        return min(self.vocabulary.values()) if self.vocabulary else None


def read_meta(repository: str | None, model: str) -> dict[str, Any]:
    if not repository:
        return {}
    metas = sorted(Path(repository, model).glob("[0-9]*/meta.json"), key=lambda p: int(p.parent.name))
    try:
        return json.loads(metas[-1].read_text()) if metas else {}  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class ShapePlan:
    """How every request's shapes are drawn."""

    batch: Span
    default: Span  # every other dynamic dimension
    named: dict[str, Span]  # ragged group (or "rows") -> its span
    fixed: dict[str, list[int]]  # shape.<input>=AxB

    def draw(self, inputs: list[tuple[str, list[int]]], layout: ModelLayout,
             rng: np.random.Generator) -> dict[str, list[int]]:
        batch, other = self.batch.draw(rng), self.default.draw(rng)
        sizes = {g: self.named.get(g, self.default).draw(rng) for g in layout.groups | {"rows"}}
        shapes = {}
        for name, dims in inputs:
            if name in self.fixed:
                shapes[name] = self.fixed[name]
                continue
            ragged = layout.ragged.get(name)
            shapes[name] = [d if d >= 0 else
                            (sizes["rows"] if name in layout.rows else batch) if i == 0 else
                            sizes[ragged[0]] if ragged is not None and ragged[1] == i else other
                            for i, d in enumerate(dims)]
        return shapes


def values(name: str, dtype: np.dtype, shapes: dict[str, list[int]], layout: ModelLayout,
           int_range: tuple[int, int] | None, rng: np.random.Generator) -> np.ndarray:
    """A realistic tensor for one input (see the module docstring), clipped to its declared range."""
    tensor = _typical(name, dtype, shapes, layout, int_range, rng)
    low, high = layout.bounds(name, shapes)
    if low is None and high is None:
        return tensor
    return np.clip(tensor, low, high).astype(dtype)


def _typical(name: str, dtype: np.dtype, shapes: dict[str, list[int]], layout: ModelLayout,
             int_range: tuple[int, int] | None, rng: np.random.Generator) -> np.ndarray:
    shape = shapes[name]
    if name in layout.group_index:
        groups = shapes.get(layout.group_index[name], [1])[0]
        return rng.integers(0, max(groups, 1), shape).astype(dtype)
    if "mask" in name:
        return np.ones(shape, dtype)
    if dtype.kind == "f":
        low, high = (-0.5, 0.5) if layout.waveform else (0.0, 1.0)
        return rng.uniform(low, high, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    low, high = int_range if int_range is not None else (1, layout.id_bound(name) or 10)
    return rng.integers(low, high + 1, shape).astype(dtype)
