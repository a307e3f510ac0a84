"""The Parquet form of a click log (models/ctr/user_data.py has the format): the same columns, read
with pyarrow; integer ids, or with `ids="string"` string columns (an integer column then read as its
decimal text), a numeric or Arrow timestamp (read as seconds), `clicked` an integer or a boolean;
nulls refused, naming the column and the first null's row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.ctr.user_data import (
    COLUMNS,
    ID_COLUMNS,
    MAX_ID_BYTES,
    ClickLog,
    ClickLogError,
    IdKind,
    checked_string_id,
)


def read_parquet(path: Path, ids: IdKind) -> ClickLog:
    """The click log in the Parquet file at `path` (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise ClickLogError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise ClickLogError(f"{path}: the file lacks the column(s) {missing} (needs {list(COLUMNS)})")
    table = pq.read_table(path, columns=list(COLUMNS))
    if not table.num_rows:
        raise ClickLogError(f"{path}: no events")
    arrays: dict[str, np.ndarray] = {}
    keys: dict[str, list[str]] = {}
    for column in COLUMNS:
        chunked = table.column(column)
        if chunked.null_count:
            first = int(np.flatnonzero(chunked.is_null().to_numpy(zero_copy_only=False))[0])
            raise ClickLogError(f"{path}: column {column!r} is null at row {first} ({chunked.null_count} nulls)")
        kind = chunked.type
        if column == "timestamp":
            if pa.types.is_timestamp(kind):
                seconds = chunked.cast(pa.timestamp("us")).cast(pa.int64()).to_numpy() / 1e6
            elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
                seconds = chunked.to_numpy().astype(np.float64)
            else:
                raise ClickLogError(f"{path}: column 'timestamp' is {kind}, not a number or a timestamp")
            if not np.isfinite(seconds).all():
                raise ClickLogError(f"{path}: column 'timestamp' must be finite (row "
                                    f"{int(np.flatnonzero(~np.isfinite(seconds))[0])})")
            arrays[column] = seconds
        elif ids == "string" and column in ID_COLUMNS:
            arrays[column], keys[column] = _parquet_string_ids(path, column, chunked)
        elif column == "clicked" and pa.types.is_boolean(kind):
            arrays[column] = chunked.to_numpy(zero_copy_only=False).astype(np.float32)
        elif pa.types.is_integer(kind):
            values = chunked.to_numpy().astype(np.int64)
            if column == "clicked" and not np.isin(values, (0, 1)).all():
                bad = int(np.flatnonzero(~np.isin(values, (0, 1)))[0])
                raise ClickLogError(f"{path}: column 'clicked' must be 0 or 1, got {values[bad]} at row {bad}")
            arrays[column] = values.astype(np.float32) if column == "clicked" else values
        else:
            raise ClickLogError(f"{path}: column {column!r} is {kind}, not an integer"
                                + (" or a boolean" if column == "clicked" else "")
                                + (" (string ids: pass --ids string)" if _is_text(kind) else ""))
    return ClickLog(arrays["user"], arrays["item"], arrays["category"], arrays["timestamp"], arrays["clicked"],
                    keys.get("item"), keys.get("category"))


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _parquet_string_ids(path: Path, column: str, chunked: Any) -> tuple[np.ndarray, list[str]]:
    """(codes 1.. in order of first appearance, the strings) of a string or integer Parquet column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = chunked.type
    if pa.types.is_integer(kind):
        chunked = chunked.cast(pa.string())
    elif not _is_text(kind):
        raise ClickLogError(f"{path}: column {column!r} is {kind}, not strings or integers (--ids string)")
    chunked = pc.utf8_trim_whitespace(chunked)
    encoded = chunked.combine_chunks().dictionary_encode()  # dictionary in order of first appearance
    strings = encoded.dictionary.to_pylist()
    for row, key in enumerate(strings):
        if not key or len(key.encode()) > MAX_ID_BYTES:
            first = int(np.flatnonzero(encoded.indices.to_numpy() == row)[0])
            checked_string_id(path, f"row {first}", column, key)
    return encoded.indices.to_numpy().astype(np.int64) + 1, strings
