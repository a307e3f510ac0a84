"""A click log as Parquet reads to the same events as its CSV twin; bad columns are refused by name and row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.ctr.user_data import COLUMNS, ClickLogError, read_click_log


def _csv_and_table(tmp_path: Path) -> tuple[Path, pa.Table]:
    rng = np.random.default_rng(1)
    n = 50
    users, items = rng.integers(10**12, 10**12 + 5, n), rng.integers(1, 10**15, n)  # large external ids
    categories, stamps, clicked = rng.integers(1, 9, n), np.round(rng.uniform(0, 1e6, n), 3), rng.integers(0, 2, n)
    csv = tmp_path / "log.csv"
    rows = zip(users, items, categories, stamps, clicked, strict=True)
    csv.write_text("user,item,category,timestamp,clicked\n" + "".join(f"{u},{i},{c},{float(t)!r},{k}\n"
                                                                      for u, i, c, t, k in rows))
    table = pa.table({"user": users, "item": items, "category": categories.astype(np.int32),
                      "timestamp": stamps, "clicked": clicked.astype(bool), "extra": ["x"] * n})
    return csv, table


def test_parquet_and_csv_give_the_same_events(tmp_path: Path) -> None:
    csv, table = _csv_and_table(tmp_path)
    pq.write_table(table, tmp_path / "log.parquet")
    a, b = read_click_log(csv), read_click_log(tmp_path / "log.parquet")
    for field in ("users", "items", "categories", "timestamps", "clicked"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert getattr(a, field).dtype == getattr(b, field).dtype


def test_an_arrow_timestamp_column_is_read_as_seconds(tmp_path: Path) -> None:
    table = pa.table({"user": [1, 1], "item": [5, 6], "category": [2, 2], "clicked": [1, 0],
                      "timestamp": pa.array([1_700_000_000_000, 1_700_000_001_500], pa.timestamp("ms"))})
    pq.write_table(table, tmp_path / "t.parquet")
    np.testing.assert_allclose(read_click_log(tmp_path / "t.parquet").timestamps, [1.7e9, 1.7e9 + 1.5])


@pytest.mark.parametrize("column, values, message", [
    ("item", pa.array([1, None]), r"column 'item' is null at row 1"),
    ("item", pa.array(["a", "b"]), r"column 'item' is string, not an integer \(string ids: pass --ids string\)"),
    ("clicked", pa.array([1, 2]), r"column 'clicked' must be 0 or 1, got 2 at row 1"),
    ("timestamp", pa.array([1.0, float("inf")]), r"column 'timestamp' must be finite \(row 1\)"),
    ("timestamp", pa.array(["x", "y"]), r"column 'timestamp' is string, not a number or a timestamp"),
])
def test_bad_columns_are_refused_naming_column_and_row(tmp_path: Path, column, values, message) -> None:
    good = {"user": [1, 1], "item": [5, 6], "category": [2, 2], "timestamp": [1.0, 2.0], "clicked": [1, 0]}
    pq.write_table(pa.table({**good, column: values}), tmp_path / "bad.parquet")
    with pytest.raises(ClickLogError, match=message):
        read_click_log(tmp_path / "bad.parquet")


def test_a_missing_column_or_a_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    pq.write_table(pa.table({c: [1] for c in COLUMNS if c != "category"}), tmp_path / "m.parquet")
    with pytest.raises(ClickLogError, match=r"lacks the column\(s\) \['category'\]"):
        read_click_log(tmp_path / "m.parquet")
    (tmp_path / "x.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ClickLogError, match=r"x\.parquet: not a readable Parquet file"):
        read_click_log(tmp_path / "x.parquet")
