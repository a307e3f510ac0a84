"""Worst-case request bounds (infersuite/services/runtime/limits.py): derived from config dims, declared in
meta.json, checked on declared shapes before anything is allocated and on decoded arrays."""

from __future__ import annotations

import numpy as np
import pytest

from exporters.ctr import din_limits
from infersuite.services.runtime import InvalidArgument
from infersuite.services.runtime.limits import model_limits
from infersuite.services.runtime.tensors import TensorSpec

# DIN's rows layout: histories (U, T) per user, one row per candidate with its user's index.
DIN = [TensorSpec("history_items", "INT64", (-1, -1)), TensorSpec("history_categories", "INT64", (-1, -1)),
       TensorSpec("history_mask", "FP32", (-1, -1)), TensorSpec("candidate_items", "INT64", (-1,)),
       TensorSpec("candidate_categories", "INT64", (-1,)), TensorSpec("candidate_user", "INT64", (-1,))]


def _din(users: int, history: int, candidates: int, item: int = 1) -> dict[str, np.ndarray]:
    return {"history_items": np.full((users, history), item, np.int64),
            "history_categories": np.ones((users, history), np.int64),
            "history_mask": np.ones((users, history), np.float32),
            "candidate_items": np.full(candidates, item, np.int64),
            "candidate_categories": np.ones(candidates, np.int64),
            "candidate_user": np.arange(candidates, dtype=np.int64) % users}


def _din_limits():
    return model_limits("din", DIN, {"limits": din_limits(120, 8)}, 4096, 1 << 22)


def test_limits_without_a_block_come_from_config_dims_and_the_default_budget() -> None:
    specs = [TensorSpec("image", "FP32", (-1, 3, 64, 64)), TensorSpec("tokens", "FP32", (-1, -1))]
    limits = model_limits("seg", specs, {}, max_batch_size=8, default_max_elements=10_000_000)
    assert [limit.max_shape for limit in limits.inputs] == [(8, 3, 64, 64), (8, 10_000_000)]
    assert limits.max_elements == 10_000_000 and limits.products == ()
    with pytest.raises(InvalidArgument, match="'image' dimension 0 is 9, over the limit of 8"):
        limits.check_shapes({"image": (9, 3, 64, 64)})
    with pytest.raises(InvalidArgument, match="'image' dimension 2 is 65, over the limit of 64"):
        limits.check_shapes({"image": (1, 3, 65, 64)})
    with pytest.raises(InvalidArgument, match="elements, over the limit of 10000000 per request"):
        limits.check_shapes({"image": (1, 3, 64, 64), "tokens": (8, 2_000_000)})


def test_the_144_kb_request_is_refused_by_its_declared_shape() -> None:
    """History = candidates = 4000 at batch 1 drove the server past 10 GiB (issue 14): refused unread."""
    limits = _din_limits()
    shapes = {name: (1, 4000) if name.startswith("history") else (4000,) for name in _din(1, 1, 1)}
    with pytest.raises(InvalidArgument, match="'history_items' dimension 1 is 4000, over the limit of 1024"):
        limits.check_shapes(shapes)


def test_attention_cells_bound_candidate_rows_times_history() -> None:
    limits = _din_limits()
    limits.check(_din(2, 500, 500))  # 250,000 cells: within 262,144
    with pytest.raises(InvalidArgument, match=r"attention_cells .* is 500000, over the limit of 262144"):
        limits.check(_din(2, 500, 1000))
    with pytest.raises(InvalidArgument, match="attention_cells"):
        limits.check_shapes({"candidate_items": (4096,), "history_items": (1, 1024)})


@pytest.mark.parametrize(("item", "shown"), [(-1, "-1"), (121, "121"), (2**63 - 1, str(2**63 - 1)),
                                             (-(2**63), str(-(2**63)))])
def test_ids_outside_the_vocabulary_are_refused_with_index_and_range(item: int, shown: str) -> None:
    inputs = _din(1, 3, 2)
    inputs["history_items"][0, 1] = item
    with pytest.raises(InvalidArgument) as err:
        _din_limits().check(inputs)
    assert err.value.message.startswith(f"input 'history_items' value {shown} at index [0, 1] is outside "
                                        "the model's range [0, 120]"), err.value.message


def test_padding_ids_and_bounds_are_inside_and_nan_is_outside() -> None:
    limits = _din_limits()
    inputs = _din(2, 3, 2, item=120)
    inputs["history_items"][1] = 0  # padding
    limits.check(inputs)
    inputs["history_mask"][1, 2] = np.nan
    with pytest.raises(InvalidArgument, match=r"'history_mask' value nan at index \[1, 2\]"):
        limits.check(inputs)


def test_a_range_can_end_below_another_inputs_axis() -> None:
    """The rows layout: candidate_user (R,) indexes a row of history_items (U, T)."""
    with pytest.raises(InvalidArgument, match=r"'candidate_user' value 2 at index \[2\] .* range \[0, 1\]"):
        _din_limits().check({**_din(2, 3, 4), "candidate_user": np.array([0, 1, 2, 0])})
    specs = [TensorSpec("history_items", "INT64", (-1, -1)), TensorSpec("candidate_user", "INT64", (-1,))]
    meta = {"limits": {"inputs": {"candidate_user": {"max_shape": [4096], "range": [0, None],
                                                     "below_dim": ["history_items", 0]}}}}
    limits = model_limits("din", specs, meta, 0, 1 << 20)
    limits.check({"history_items": np.ones((3, 5), np.int64), "candidate_user": np.array([0, 2, 2])})
    with pytest.raises(InvalidArgument, match=r"'candidate_user' value 3 at index \[1\] .* range \[0, 2\]"):
        limits.check({"history_items": np.ones((3, 5), np.int64), "candidate_user": np.array([0, 3, 2])})


def test_limits_naming_an_unknown_input_fail_the_load() -> None:
    with pytest.raises(ValueError, match="unknown input"):
        model_limits("m", DIN, {"limits": {"inputs": {"user_age": {"range": [0, 1]}}}}, 0, 100)
    with pytest.raises(ValueError, match="rank"):
        model_limits("m", DIN, {"limits": {"inputs": {"history_items": {"max_shape": [5]}}}}, 0, 100)


def test_ranks_and_negative_dimensions_are_named() -> None:
    limits = _din_limits()
    with pytest.raises(InvalidArgument, match=r"'history_items' has shape \[6\] but the model expects rank 2"):
        limits.check_shapes({"history_items": (6,)})
    with pytest.raises(InvalidArgument, match="negative dimension"):
        limits.check_shapes({"history_items": (1, -6)})
