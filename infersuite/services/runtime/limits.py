"""The worst-case cost of one request, bounded before anything is allocated for it.

Every input of every model gets a largest size per axis and every request an element budget;
models may also bound products of axes (DIN's attention cost grows with candidates x history,
so each axis alone is not enough) and the values of an input (id ranges: an id past the
embedding table is a silent wrong answer or a library error, never a client's fault to leak).

Where the limits come from, per model, once at load (nothing is built per request):
- config.pbtxt / the graph: a fixed dimension is its own maximum; the batch axis is bounded by
  max_batch_size;
- the `limits` block of the version's meta.json, written by the family's exporter:

      "limits": {
        "max_elements": 262144,                       # all inputs of one request together
        "inputs": {
          "history_items": {"max_shape": [64, 1024],  # -1: no own bound on that axis
                            "range": [0, 120]},       # inclusive; null: unbounded on that side
          "candidate_user": {"max_shape": [4096], "range": [0, null],
                             "below_dim": ["history_items", 0]}},  # and < that axis's size
        "products": {"attention_cells": {"axes": [["candidate_items", 0], ["history_items", 1]],
                                         "max": 262144}}}

- RuntimeSettings.max_request_elements: the element budget of a model whose meta.json sets none,
  and the bound of any dynamic axis nothing else bounds.

The Open Inference Protocol checks the shapes a request DECLARES before decoding a byte
(`check_shapes`); `ModelManager.infer` checks every request of every path (`check`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from infersuite.services.runtime.errors import InvalidArgument
from infersuite.services.runtime.tensors import TensorSpec

_UNSIGNED = {np.dtype(t): np.dtype(t.replace("i", "u")) for t in ("<i1", "<i2", "<i4", "<i8")}


@dataclass(frozen=True)
class ValueRange:
    """Inclusive bounds of an input's values; NaN is outside every range."""

    low: float | None
    high: float | None
    below_dim: tuple[str, int] | None = None  # values must also be < this input axis's size

    def _high(self, inputs: Mapping[str, np.ndarray]) -> float | None:
        if self.below_dim is None or self.below_dim[0] not in inputs:
            return self.high
        bound = inputs[self.below_dim[0]].shape[self.below_dim[1]] - 1
        return bound if self.high is None else min(self.high, bound)

    def check(self, name: str, values: np.ndarray, inputs: Mapping[str, np.ndarray]) -> None:
        if values.size == 0:
            return
        low, high = self.low, self._high(inputs)
        unsigned = _UNSIGNED.get(values.dtype) if low == 0 and high is not None else None
        if unsigned is not None:  # one pass: a negative id viewed as unsigned is larger than any bound
            inside = bool(values.view(unsigned).max() <= high)
        else:
            inside = bool((low is None or values.min() >= low) and (high is None or values.max() <= high))
        if not inside:
            self._refuse(name, values, low, high)

    def _refuse(self, name: str, values: np.ndarray, low: float | None, high: float | None) -> None:
        bad = np.zeros(values.shape, bool)
        if low is not None:
            bad |= ~(values >= low)  # NaN is outside too
        if high is not None:
            bad |= ~(values <= high)
        index = np.unravel_index(int(np.flatnonzero(bad)[0]), values.shape)
        where = ", ".join(str(int(i)) for i in index)
        raise InvalidArgument(
            f"input {name!r} value {values[index].item()!r} at index [{where}] is outside the model's range "
            f"[{'-inf' if low is None else _number(low)}, {'inf' if high is None else _number(high)}] "
            f"({int(bad.sum())} value(s) out of range)")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class InputLimit:
    name: str
    max_shape: tuple[int, ...]  # largest size per axis, every axis bounded
    values: ValueRange | None = None


@dataclass(frozen=True)
class AxisProduct:
    """A bound on the product of several axes (of one or more inputs)."""

    name: str
    axes: tuple[tuple[str, int], ...]
    max: int


@dataclass(frozen=True)
class ModelLimits:
    model: str
    inputs: tuple[InputLimit, ...]
    max_elements: int  # all inputs of one request together
    products: tuple[AxisProduct, ...] = ()

    def check_shapes(self, shapes: Mapping[str, Sequence[int]]) -> None:
        """Checks declared shapes (nothing allocated yet); inputs the model lacks are the caller's to refuse."""
        for limit in self.inputs:
            shape = shapes.get(limit.name)
            if shape is not None:
                _check_axes(self.model, limit, shape)
        total = 0
        for shape in shapes.values():
            total += _elements(shape)
        if total > self.max_elements:
            raise InvalidArgument(f"the request's inputs hold {total} elements, over the limit of "
                                  f"{self.max_elements} per request of model {self.model!r}")
        for product in self.products:
            _check_product(self.model, product, shapes.get)

    def check(self, inputs: Mapping[str, np.ndarray], shapes_checked: bool = False) -> None:
        """Shapes, element budget and value ranges of decoded inputs (every path, before queueing);
        `shapes_checked`: the caller ran `check_shapes` on these inputs' declared shapes before decoding
        them, so only the values are left."""
        if shapes_checked:
            for limit in self.inputs:
                if limit.values is not None and (array := inputs.get(limit.name)) is not None:
                    limit.values.check(limit.name, array, inputs)
            return
        total = 0
        for value in inputs.values():
            total += value.size
        if total > self.max_elements:
            raise InvalidArgument(f"the request's inputs hold {total} elements, over the limit of "
                                  f"{self.max_elements} per request of model {self.model!r}")
        for limit in self.inputs:
            array = inputs.get(limit.name)
            if array is None:
                continue
            _check_axes(self.model, limit, array.shape)
            if limit.values is not None:
                limit.values.check(limit.name, array, inputs)
        for product in self.products:
            _check_product(self.model, product, lambda name: inputs[name].shape if name in inputs else None)

    def worst_case_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each input at its largest shape (the products and element budget may forbid them together)."""
        return {limit.name: limit.max_shape for limit in self.inputs}


def _elements(shape: Sequence[int]) -> int:
    count = 1
    for size in shape:
        count *= max(int(size), 0)
    return count


def _check_axes(model: str, limit: InputLimit, shape: Sequence[int]) -> None:
    if len(shape) != len(limit.max_shape):
        raise InvalidArgument(f"input {limit.name!r} has shape {[int(s) for s in shape]} but the model expects rank "
                              f"{len(limit.max_shape)}")
    for axis, (size, most) in enumerate(zip(shape, limit.max_shape, strict=True)):
        if size > most:
            raise InvalidArgument(f"input {limit.name!r} dimension {axis} is {int(size)}, over the limit of {most} "
                                  f"of model {model!r}")
        if size < 0:
            raise InvalidArgument(f"input {limit.name!r} has a negative dimension in shape {[int(s) for s in shape]}")


def _check_product(model: str, product: AxisProduct, shape_of: Callable[[str], Sequence[int] | None]) -> None:
    value = 1
    for name, axis in product.axes:
        shape = shape_of(name)
        if shape is None or axis >= len(shape):
            return  # a missing input or a rank error is refused elsewhere
        value *= int(shape[axis])
    if value > product.max:
        sizes = " x ".join(f"{name}[{axis}]" for name, axis in product.axes)
        raise InvalidArgument(f"{product.name} ({sizes}) is {value}, over the limit of {product.max} per "
                              f"request of model {model!r}")


def _value_range(spec: Mapping[str, Any]) -> ValueRange | None:
    if "range" not in spec and "below_dim" not in spec:
        return None
    low, high = spec.get("range", [None, None])
    below = spec.get("below_dim")
    return ValueRange(low, high, (str(below[0]), int(below[1])) if below else None)


def _input_limit(spec: TensorSpec, declared: Mapping[str, Any], max_batch_size: int, default_max: int) -> InputLimit:
    wanted = list(declared.get("max_shape", [-1] * len(spec.shape)))
    if len(wanted) != len(spec.shape):
        raise ValueError(f"limits for input {spec.name!r}: max_shape {wanted} has not the rank {len(spec.shape)}")
    shape = []
    for axis, (size, most) in enumerate(zip(spec.shape, wanted, strict=True)):
        bounds = [b for b in (size, int(most)) if b >= 0]
        if axis == 0 and max_batch_size > 0:
            bounds.append(max_batch_size)
        shape.append(min(bounds, default=default_max))
    return InputLimit(spec.name, tuple(shape), _value_range(declared))


def model_limits(model: str, specs: Sequence[TensorSpec], meta: Mapping[str, Any], max_batch_size: int,
                 default_max_elements: int) -> ModelLimits:
    """A model's limits from its tensors (config dims), max_batch_size and meta.json's `limits` block."""
    block = meta.get("limits", {})
    declared = block.get("inputs", {})
    unknown = sorted(set(declared) - {s.name for s in specs}) if specs else []
    if unknown:
        raise ValueError(f"meta.json limits name unknown input(s) {', '.join(unknown)}")
    inputs = tuple(_input_limit(s, declared.get(s.name, {}), max_batch_size, default_max_elements) for s in specs)
    products = tuple(AxisProduct(name, tuple((str(n), int(a)) for n, a in p["axes"]), int(p["max"]))
                     for name, p in block.get("products", {}).items())
    return ModelLimits(model, inputs, int(block.get("max_elements", default_max_elements)), products)
