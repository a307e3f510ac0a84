"""DIN on a user's own click log: reading it, the id vocabulary that ships with the model, and the
time split into training, validation and test rows.

The format (`--format clicklog`): a CSV file with a header naming at least `user`, `item`,
`category`, `timestamp` and `clicked` (other columns are ignored). `user`, `item` and `category`
are the ids of the user's own systems: integers (any int64, not necessarily dense; the default,
`ids="int"`) or strings (`ids="string"`, `--ids string`: asins, SKUs, UUIDs, taken as written after
stripping surrounding blanks, never empty, at most MAX_ID_BYTES UTF-8 bytes each); `timestamp` is any
number that orders events (seconds, milliseconds); `clicked` is 1 for a click and 0 for an
impression without one. A Parquet file (`.parquet`, models/ctr/click_log_parquet.py) holds the same columns:
integer ids (string columns with `ids="string"`; an integer column is then read as its decimal text),
a numeric timestamp or an Arrow timestamp (read as seconds), `clicked` as an integer or boolean;
nulls are refused. String ids are interned once as they are read: the arrays hold catalogue codes
(1, 2, ... in order of first appearance) and `ClickLog.item_keys` / `category_keys` the strings.
The Amazon reviews layout the DIN paper used (`--format amazon`, string ids) is read by
models/ctr/amazon.py; `detect_format` tells the two apart where the name is unambiguous.

The vocabulary (`infersuite.modelmeta.families.ExternalIds`, meta.json `vocabulary.external`) maps the
external item and category ids to embedding rows: ids seen at least `min_count` times in the
training period get rows 1..n in order of their first appearance (0 stays padding); a log with string
ids ships a vocabulary of those strings, which the ctr service maps directly (Score's `*_keys` fields,
OIP BYTES tensors). What happens to
any other id is chosen at training and shipped with the model (`oov`): `reject` (training drops the
events that hold one; serving answers INVALID_ARGUMENT naming the field and index) or `bucket` (one
shared row n+1, learned from the rare ids of training; serving maps every unknown id to it).

The split is by time, so the model is judged on the future of the users it learned from. Two cut
points at the `1 - valid - test` and `1 - test` quantiles of the timestamps give three periods, and
each user gives up to three rows (the layout of `models.ctr.data.ClickData`: one behaviour history,
then impressions scored against it):
- training: the user's training-period events, split at their middle: the clicks of the first half
  are the history, every event of the second half an impression;
- validation: the clicks before the first cut are the history, the events between the cuts the
  impressions (model selection: the epoch with the best validation GAUC);
- test: the clicks before the second cut are the history, the events after it the impressions
  (the reported figures).
A row needs at least one behaviour and one impression; histories keep the last `max_history` clicks.
"""

from __future__ import annotations

import array
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from infersuite.modelmeta.families import ExternalIds
from models.ctr.data import ClickData, ClickDataConfig

COLUMNS = ("user", "item", "category", "timestamp", "clicked")
_ARRAY_CODES = {"user": "q", "item": "q", "category": "q", "timestamp": "d", "clicked": "f"}  # int64, float64, float32
_NUMPY_TYPES = {"user": np.int64, "item": np.int64, "category": np.int64, "timestamp": np.float64,
                "clicked": np.float32}
ID_COLUMNS = ("user", "item", "category")
OovPolicy = Literal["reject", "bucket"]
IdKind = Literal["int", "string"]
MAX_ID_BYTES = 256  # the longest string id read at training (UTF-8 bytes); the ctr service's default bound too


class ClickLogError(ValueError):
    """The file is not a click log this reader understands; the message says where and why."""


@dataclass(frozen=True)
class ClickLog:
    users: np.ndarray  # (E,) int64 external user ids (string ids: codes)
    items: np.ndarray  # (E,) int64 external item ids (string ids: codes 1.. into item_keys)
    categories: np.ndarray  # (E,) int64 external category ids (string ids: codes 1.. into category_keys)
    timestamps: np.ndarray  # (E,) float64
    clicked: np.ndarray  # (E,) float32 1.0 / 0.0
    item_keys: list[str] | None = None  # string ids: code c -> item_keys[c - 1]; None: the ids are integers
    category_keys: list[str] | None = None

    def __len__(self) -> int:
        return len(self.users)


class _Interned:
    """String ids -> codes 1, 2, ... in order of first appearance (each string kept once)."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def code(self, key: str) -> int:
        return self.codes.setdefault(key, len(self.codes) + 1)

    def keys(self) -> list[str]:
        return list(self.codes)


def checked_string_id(path: Path, where: str, column: str, text: str) -> str:
    """A string id as read (blanks around it stripped); empty or too long ids are refused."""
    if not text:
        raise ClickLogError(f"{path}:{where}: column {column!r} is empty (a string id needs at least one character)")
    if len(text) > MAX_ID_BYTES // 4 and len(text.encode()) > MAX_ID_BYTES:
        raise ClickLogError(f"{path}:{where}: column {column!r} holds a {len(text.encode())}-byte id, over the "
                            f"limit of {MAX_ID_BYTES} bytes")
    return text


def read_click_log(path: Path, ids: IdKind = "int") -> ClickLog:
    """The click log at `path`, CSV or Parquet by suffix (see the module docstring), its ids integers or
    strings (`ids`); a bad file raises ClickLogError naming the line (row) and the column."""
    if ids not in ("int", "string"):
        raise ValueError(f"ids must be 'int' or 'string', got {ids!r}")
    if path.suffix.lower() in (".parquet", ".pq"):
        from models.ctr.click_log_parquet import read_parquet

        return read_parquet(path, ids)
    interned = {column: _Interned() for column in ID_COLUMNS} if ids == "string" else None
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ClickLogError(f"{path}: the header lacks the column(s) {missing} (needs {list(COLUMNS)})")
        # Typed arrays, not lists of Python numbers: 36 bytes per event while reading, handed to numpy uncopied.
        columns = {c: array.array(_ARRAY_CODES[c]) for c in COLUMNS}
        for line, row in enumerate(reader, start=2):
            for column in COLUMNS:
                text = (row.get(column) or "").strip()
                if interned is not None and column in interned:
                    columns[column].append(interned[column].code(checked_string_id(path, str(line), column, text)))
                    continue
                try:
                    value: Any = float(text) if column == "timestamp" else int(text)
                except ValueError:
                    hint = " (string ids: pass --ids string)" if column in ID_COLUMNS and text else ""
                    raise ClickLogError(f"{path}:{line}: column {column!r} holds {text!r}, not "
                                        f"{'a number' if column == 'timestamp' else 'an integer'}{hint}") from None
                if column == "clicked" and value not in (0, 1):
                    raise ClickLogError(f"{path}:{line}: column 'clicked' must be 0 or 1, got {value}")
                if column == "timestamp" and not np.isfinite(value):
                    raise ClickLogError(f"{path}:{line}: column 'timestamp' must be finite, got {text!r}")
                try:
                    columns[column].append(value)
                except OverflowError:
                    raise ClickLogError(f"{path}:{line}: column {column!r} holds {text!r}, outside the 64-bit "
                                        "integers (string ids: pass --ids string)") from None
    if not columns["user"]:
        raise ClickLogError(f"{path}: no events after the header")
    arrays = {c: np.frombuffer(columns[c], _NUMPY_TYPES[c]) for c in COLUMNS}
    return ClickLog(arrays["user"], arrays["item"], arrays["category"], arrays["timestamp"], arrays["clicked"],
                    *((interned["item"].keys(), interned["category"].keys()) if interned is not None else ()))


def _first_seen_ids(ids: np.ndarray, counts_from: np.ndarray, min_count: int) -> np.ndarray:
    """Ids of `counts_from` seen at least `min_count` times, in order of first appearance."""
    unique, first, counts = np.unique(counts_from, return_index=True, return_counts=True)
    keep = counts >= min_count
    return unique[keep][np.argsort(first[keep], kind="stable")]


def build_vocabulary(log: ClickLog, in_training: np.ndarray, min_count: int, oov: OovPolicy) -> ExternalIds:
    """The vocabulary of the training period's events (items: `min_count`; categories: every one seen),
    in the log's codes for string ids (`string_vocabulary` turns it into the strings)."""
    return build_vocabulary_of_ids(log.items, log.categories, in_training, min_count, oov)


def string_vocabulary(log: ClickLog, coded: ExternalIds) -> ExternalIds:
    """`coded` (a vocabulary of the log's string-id codes) with the strings themselves, same rows."""
    if log.item_keys is None or log.category_keys is None:
        return coded
    items, categories = log.item_keys, log.category_keys
    return ExternalIds(items=[items[int(code) - 1] for code in coded.items],
                       categories=[categories[int(code) - 1] for code in coded.categories],
                       oov=coded.oov, min_count=coded.min_count)


def build_vocabulary_of_ids(item_ids: np.ndarray, category_ids: np.ndarray, in_training: np.ndarray,
                            min_count: int, oov: OovPolicy) -> ExternalIds:
    """`build_vocabulary` on the events' integer item and category ids (the Amazon reader's catalogue ids too)."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if oov not in ("reject", "bucket"):
        raise ValueError(f"oov must be 'reject' or 'bucket', got {oov!r}")
    items = _first_seen_ids(item_ids, item_ids[in_training], min_count)
    categories = _first_seen_ids(category_ids, category_ids[in_training], 1)
    if not len(items) or not len(categories):
        raise ClickLogError(f"no item is seen {min_count} or more times in the training period: lower --min-count")
    return ExternalIds(items=items.tolist(), categories=categories.tolist(), oov=oov, min_count=min_count)


@dataclass(frozen=True)
class TimeSplit:
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    max_history: int = 50
    min_count: int = 1
    oov: OovPolicy = "reject"


def _row(events: np.ndarray, history_from: np.ndarray, max_history: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(history event indices, impression event indices), or None when either is empty."""
    history = history_from[-max_history:]
    return (history, events) if len(history) and len(events) else None


def click_data(log: ClickLog, split: TimeSplit) -> tuple[ClickData, ExternalIds, dict[str, Any]]:
    """The log as DIN's training data (rows as in the module docstring), its vocabulary and a summary."""
    valid_cut, test_cut = np.quantile(log.timestamps, [1 - split.valid_fraction - split.test_fraction,
                                                       1 - split.test_fraction])
    vocabulary = build_vocabulary(log, log.timestamps < valid_cut, split.min_count, split.oov)
    item_rows, _ = vocabulary.rows("items", log.items)
    category_rows, _ = vocabulary.rows("categories", log.categories)
    usable = (item_rows > 0) & (category_rows > 0)  # under `reject`, events with unknown ids are dropped
    n_items, n_categories = vocabulary.table_rows("items"), vocabulary.table_rows("categories")
    order = np.lexsort((np.arange(len(log)), log.timestamps, log.users))
    rows: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "valid": [], "test": []}
    boundaries = np.flatnonzero(np.diff(log.users[order])) + 1
    for events in np.split(order, boundaries):
        events = events[usable[events]]
        times, clicks = log.timestamps[events], log.clicked[events] > 0
        early = events[times < valid_cut]
        middle = len(early) // 2
        first_half_clicks = early[:middle][clicks[:middle]]
        for name, row in (
                ("train", _row(early[middle:], first_half_clicks, split.max_history)),
                ("valid", _row(events[(times >= valid_cut) & (times < test_cut)],
                               events[(times < valid_cut) & clicks], split.max_history)),
                ("test", _row(events[times >= test_cut], events[(times < test_cut) & clicks], split.max_history))):
            if row is not None:
                rows[name].append(row)
    if not all(rows.values()):
        raise ClickLogError(f"the time split leaves no {[k for k, v in rows.items() if not v]} rows: the log needs "
                            "users with clicks before and events after each cut point")
    every = rows["train"] + rows["valid"] + rows["test"]
    history = np.zeros((len(every), split.max_history), np.int64)
    history_categories = np.zeros_like(history)
    lengths = np.array([len(h) for h, _ in every], np.int64)
    for index, (behaviours, _) in enumerate(every):
        history[index, :len(behaviours)] = item_rows[behaviours]
        history_categories[index, :len(behaviours)] = category_rows[behaviours]
    impressions = np.concatenate([i for _, i in every])
    counts = [len(i) for _, i in every]
    item_category = np.zeros(n_items + 1, np.int64)
    item_category[item_rows[usable]] = category_rows[usable]
    n_train, n_valid = len(rows["train"]), len(rows["valid"])
    config = ClickDataConfig(n_users=len(every), n_items=n_items, n_categories=n_categories,
                             max_history=split.max_history, valid_fraction=split.valid_fraction,
                             test_fraction=split.test_fraction)
    data = ClickData(
        config=config, item_category=item_category, item_latent=np.zeros((n_items + 1, 1)),
        history_items=history, history_categories=history_categories, history_lengths=lengths,
        candidate_items=item_rows[impressions], candidate_categories=category_rows[impressions],
        labels=log.clicked[impressions], click_probability=np.full(len(impressions), np.nan),
        user_index=np.repeat(np.arange(len(every)), counts),
        impression_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        train_users=np.arange(n_train), valid_users=np.arange(n_train, n_train + n_valid),
        test_users=np.arange(n_train + n_valid, len(every)))
    summary = {"events": len(log), "users": len(np.unique(log.users)),
               "ids": "int" if log.item_keys is None else "string",
               "events_dropped_oov": int((~usable).sum()), "cuts": [float(valid_cut), float(test_cut)],
               "rows": {k: len(v) for k, v in rows.items()},
               "impressions": {k: int(sum(len(i) for _, i in v)) for k, v in rows.items()},
               "vocabulary": {"items": len(vocabulary.items), "categories": len(vocabulary.categories),
                              "oov": vocabulary.oov, "min_count": vocabulary.min_count}}
    return data, string_vocabulary(log, vocabulary), summary


DataFormat = Literal["clicklog", "amazon"]


def detect_format(path: Path) -> DataFormat:
    """The format a file's name says (a trailing .gz aside): .csv, .parquet, .pq -> clicklog; .json,
    .jsonl -> amazon (the reviews file); anything else is refused, asking for --format."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".csv", ".parquet", ".pq")):
        return "clicklog"
    if name.endswith((".json", ".jsonl")):
        return "amazon"
    raise ClickLogError(f"{path}: cannot tell the format from the name: pass --format clicklog or --format amazon")


@dataclass(frozen=True)
class UserData:
    data: ClickData
    vocabulary: ExternalIds
    summary: dict[str, Any]
    beside_model: dict[str, dict[str, Any]]  # file name -> JSON shipped beside the exported model


def load_user_data(path: Path, data_format: DataFormat | None, split: TimeSplit, meta: Path | None = None,
                   seed: int = 0, ids: IdKind = "int") -> UserData:
    """The user's data in `data_format` (None: `detect_format`) as DIN's rows. The Amazon layout also
    ships string_ids.json (models/ctr/amazon.py); `meta` is its metadata file, `seed` its negatives'.
    `ids`: a click log's ids are integers or strings (the vocabulary then holds the strings); for the
    Amazon layout, "string" ships the asins and category names as the vocabulary instead of string_ids.json."""
    data_format = data_format or detect_format(path)
    if data_format == "amazon":
        from models.ctr.amazon import AmazonSplit, amazon_click_data, find_metadata, read_amazon

        meta = meta or find_metadata(path)
        amazon = AmazonSplit(split.max_history, split.min_count, split.oov, seed)
        data, vocabulary, summary, catalogue = amazon_click_data(read_amazon(path, meta), amazon)
        if ids == "string":  # the asins and category names themselves, served directly
            return UserData(data, catalogue.string_vocabulary(vocabulary), {**summary, "meta": str(meta),
                                                                            "ids": "string"}, {})
        return UserData(data, vocabulary, {**summary, "meta": str(meta)}, {"string_ids.json": catalogue.to_json()})
    if meta is not None:
        raise ClickLogError(f"{meta}: a metadata file is read with --format amazon only, not with a click log")
    data, vocabulary, summary = click_data(read_click_log(path, ids), split)
    return UserData(data, vocabulary, summary, {})


def write_click_log(path: Path, data: ClickData, item_ids: Sequence[int | str], category_ids: Sequence[int | str],
                    seed: int = 0) -> None:
    """A synthetic world (models.ctr.data) written as a click log with external ids (`item_ids[i]` for
    item i): every user's behaviours as clicks, then their impressions, on one time line per user."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(COLUMNS)
        for user in range(data.n_users):
            start = float(rng.uniform(0, 100))
            length = int(data.history_lengths[user])
            events = [(int(data.history_items[user, t]), int(data.history_categories[user, t]), 1)
                      for t in range(length)]
            lo, hi = data.impression_offsets[user], data.impression_offsets[user + 1]
            events += [(int(data.candidate_items[r]), int(data.candidate_categories[r]), int(data.labels[r]))
                       for r in range(lo, hi)]
            times = start + np.sort(rng.uniform(0, 100, len(events)))
            for (item, category, clicked), time in zip(events, times, strict=True):
                out.writerow([10_000 + user, item_ids[item], category_ids[category], f"{time:.3f}", clicked])


def main(argv: list[str] | None = None) -> None:
    """`python -m models.ctr.user_data example PATH [--string-ids]`: the synthetic world as a click log with
    external ids (items 1,000,000 + 7 i, categories 500 + i; with --string-ids items "sku-<7 i>" and
    categories "cat-<i>"), to try `--data` on a log with known structure."""
    import argparse

    from models.ctr.data import make_click_data

    parser = argparse.ArgumentParser(prog="python -m models.ctr.user_data", description=main.__doc__)
    parser.add_argument("command", choices=["example"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--string-ids", action="store_true",
                        help="string item and category ids (train with --ids string)")
    args = parser.parse_args(argv)
    data = make_click_data(ClickDataConfig(n_users=args.users, seed=args.seed))
    items: list[int | str] = [0, *(1_000_000 + 7 * i for i in range(1, data.config.n_items + 1))]
    categories: list[int | str] = [0, *(500 + i for i in range(1, data.config.n_categories + 1))]
    if args.string_ids:
        items = [0, *(f"sku-{7 * i:06d}" for i in range(1, data.config.n_items + 1))]
        categories = [0, *(f"cat-{i}" for i in range(1, data.config.n_categories + 1))]
    args.path.parent.mkdir(parents=True, exist_ok=True)
    write_click_log(args.path, data, items, categories, seed=args.seed)
    print(f"wrote {args.path}: {data.n_users} users, {len(data.labels) + int(data.history_lengths.sum())} events")


if __name__ == "__main__":
    main()
