"""The blocks of meta.json the serving runtime enforces: `limits` and `batching`.

Unknown keys are refused here (extra="forbid"), unlike the family blocks: these blocks bound what a
request may cost and how requests combine, so a misspelt key ("max_shap") would silently drop a
bound. A new key the runtime must honour comes with a new schema_version, never as an extra key
an older runtime would ignore.

Readers: infersuite/services/runtime/limits.py (`model_limits`) and infersuite/services/runtime/batch_layout.py
(`BatchLayout.from_meta`); their docstrings show the blocks with comments.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)

TensorName = Annotated[str, Field(min_length=1)]
Bound = FiniteFloat | None  # an inclusive value bound (an integer id reads as a float); null: unbounded
AxisSize = Annotated[int, Field(ge=-1)]  # -1: no own bound on that axis


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputLimit(_Strict):
    """One input's bounds: `limits.inputs.<name>`."""

    max_shape: list[AxisSize] | None = None  # largest size per axis (its rank must be the input's)
    range: tuple[Bound, Bound] | None = None  # inclusive [low, high] of the values
    below_dim: tuple[TensorName, NonNegativeInt] | None = None  # values < that input axis's size

    @field_validator("range")
    @classmethod
    def _low_not_above_high(cls, bounds: tuple[Bound, Bound] | None) -> tuple[Bound, Bound] | None:
        low, high = bounds or (None, None)
        if low is not None and high is not None and low > high:
            raise ValueError(f"low bound {low:g} is above high bound {high:g}")
        return bounds


class AxisProduct(_Strict):
    """A bound on a product of axes (DIN's candidates x history): `limits.products.<name>`."""

    axes: list[tuple[TensorName, NonNegativeInt]] = Field(min_length=1)  # [input name, axis] pairs
    max: PositiveInt


class Limits(_Strict):
    """The `limits` block (infersuite/services/runtime/limits.py)."""

    max_elements: PositiveInt | None = None  # all inputs of one request together
    inputs: dict[TensorName, InputLimit] = Field(default_factory=dict)
    products: dict[TensorName, AxisProduct] = Field(default_factory=dict)


class RaggedDim(_Strict):
    """A variable-length axis padded to the batch maximum: `batching.ragged_dims.<name>`."""

    inputs: dict[TensorName, NonNegativeInt] = Field(min_length=1)  # input name -> the axis that varies
    outputs: dict[TensorName, NonNegativeInt] = Field(default_factory=dict)  # output name -> the axis that follows


class Rows(_Strict):
    """Inputs concatenated along axis 0 instead of stacked per request: `batching.rows`."""

    inputs: list[TensorName] = Field(min_length=1)
    outputs: list[TensorName] = Field(default_factory=list)  # split by rows (the others by groups)
    group_index: dict[TensorName, TensorName] = Field(default_factory=dict)  # row input -> the group input it indexes
    max_rows: PositiveInt = 4096  # rows per execution
    max_cells: PositiveInt = 1 << 30  # rows x padded ragged sizes per execution
    max_queue_delay_us: NonNegativeInt = 2000  # longest a request waits for company

    @model_validator(mode="after")
    def _index_points_from_rows_into_groups(self) -> Rows:
        if strays := sorted(set(self.group_index) - set(self.inputs)):
            raise ValueError(f"group_index names {', '.join(strays)}, which are not row inputs")
        if rows := sorted(set(self.group_index.values()) & set(self.inputs)):
            raise ValueError(f"group_index points into {', '.join(rows)}, which are row inputs, not group inputs")
        return self


class Batching(_Strict):
    """The `batching` block (infersuite/services/runtime/batch_layout.py)."""

    ragged_dims: dict[TensorName, RaggedDim] = Field(default_factory=dict)
    rows: Rows | None = None
