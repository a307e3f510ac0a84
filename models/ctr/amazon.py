"""DIN on the Amazon review layout the paper used (Zhou et al., KDD 2018, section 6.1 "Amazon Dataset").

The format (`--format amazon`): a reviews file and a metadata file, both JSON lines, plain or gzip
(told apart by their first bytes), with the field names of the 2014 dumps (`reviews_<Category>_5.json.gz`,
`meta_<Category>.json.gz`):
- reviews: `reviewerID` (string), `asin` (string), `unixReviewTime` (integer seconds) on every line;
  other fields (reviewText, overall, ...) are ignored;
- metadata: `asin` on every line, `categories` a list of category paths (lists of strings). The paper's
  category of an item is the **last category of its first path** (`[["Electronics", "Computers",
  "Laptops"], ...]` -> "Laptops"). An item whose `categories` is missing or empty, or whose first path
  is empty, gets the shared category `UNCATEGORISED`; so does a reviewed asin the metadata does not
  list (counted in the summary, not refused). The 2014 metadata dumps are Python literals rather than
  JSON (single quotes); a line JSON cannot read is read as such a literal.

Both files are streamed: the reviews are kept as three integer arrays (user, item, time) with the
strings interned once, and only the metadata of reviewed asins is kept.

The samples are built the way the paper builds them: each user's reviews sorted by time (ties in file
order); for every position k >= 1 one row whose history is the reviews before k (the last
`max_history`), with two impressions: the item reviewed at k (label 1) and one item the user never
reviewed, drawn uniformly from the vocabulary's items (label 0, seeded). Each user's last review
(k = n - 1) is the test row and the one before it (k = n - 2, users with 3 or more reviews) the
validation row; every other position is a training row. Reviews held out as a validation or test
positive are outside the training period, which is what the vocabulary counts.

String ids: the model's vocabulary (`infersuite.modelmeta.families.ExternalIds`) and the Score API take integer
ids, so each reviewed asin and each category name gets a catalogue id (1, 2, ... in order of first
appearance in the reviews; categories in the order their items appear), and the vocabulary maps those.
`string_ids.json` beside the exported model maps the strings back to those ids (`StringIds`); a client
sends 0 for a string the file does not list, which the model's OOV policy then refuses or buckets.
With `--ids string` the vocabulary holds the asins and category names themselves instead (the same
rows, no string_ids.json), and the ctr service takes the strings directly.
Under `--oov reject`, rows whose positive or its category is out of vocabulary are dropped and such
reviews leave the histories; under `bucket` they use the shared rows.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from infersuite.modelmeta.families import ExternalIds
from models.ctr.data import ClickData, ClickDataConfig
from models.ctr.user_data import MAX_ID_BYTES, ClickLogError, OovPolicy, build_vocabulary_of_ids

REVIEW_FIELDS = ("reviewerID", "asin", "unixReviewTime")
UNCATEGORISED = "(uncategorised)"  # the category of items without one (see the module docstring)
UNKNOWN_ID = 0  # what a client sends for a string that string_ids.json does not list
_BLOCK_ROWS = 65_536  # rows whose histories are gathered at once


class AmazonFormatError(ClickLogError):
    """The files are not the Amazon layout this reader understands; the message names file, line and field."""


@dataclass(frozen=True)
class AmazonReviews:
    users: np.ndarray  # (E,) int64 user index (0-based, order of first appearance)
    items: np.ndarray  # (E,) int64 catalogue id of each review's asin (1-based)
    timestamps: np.ndarray  # (E,) int64 unixReviewTime
    asins: list[str]  # catalogue id i + 1 -> asin
    item_category: np.ndarray  # (len(asins) + 1,) int64 catalogue id of each item's category, [0] = 0
    category_names: list[str]  # category catalogue id j + 1 -> name
    counts: dict[str, int] = field(default_factory=dict)  # what the reader met (see read_amazon)

    def __len__(self) -> int:
        return len(self.users)


def _open_text(path: Path) -> IO[str]:
    try:
        with path.open("rb") as probe:
            compressed = probe.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rt", encoding="utf-8") if compressed else path.open(encoding="utf-8")
    except OSError as exc:
        raise AmazonFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line; JSON, or a Python literal as in the 2014 metadata."""
    with _open_text(path) as handle:
        try:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as exc:
                    try:
                        record = ast.literal_eval(text.strip())
                    except (ValueError, SyntaxError, MemoryError, RecursionError):
                        raise AmazonFormatError(f"{path}:{line}: not a JSON object ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise AmazonFormatError(f"{path}:{line}: not a JSON object (a {type(record).__name__})")
                yield line, record
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise AmazonFormatError(f"{path}: unreadable ({exc})") from None


def _string_field(path: Path, line: int, record: dict[str, Any], name: str) -> str:
    if name not in record:
        raise AmazonFormatError(f"{path}:{line}: no field {name!r}")
    value = record[name]
    if not isinstance(value, str) or not value:
        raise AmazonFormatError(f"{path}:{line}: field {name!r} is {value!r}, not a non-empty string")
    return value


def _time_field(path: Path, line: int, record: dict[str, Any]) -> int:
    if "unixReviewTime" not in record:
        raise AmazonFormatError(f"{path}:{line}: no field 'unixReviewTime'")
    value = record["unixReviewTime"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise AmazonFormatError(f"{path}:{line}: field 'unixReviewTime' is {value!r}, not an integer (seconds)")
    return value


def _paper_category(path: Path, line: int, record: dict[str, Any]) -> str:
    """The last category of the first path; UNCATEGORISED when there is none."""
    paths = record.get("categories")
    if paths is None or paths == [] or paths == [[]]:
        return UNCATEGORISED
    if not (isinstance(paths, list) and all(isinstance(p, list) for p in paths)
            and all(isinstance(c, str) for p in paths for c in p)):
        raise AmazonFormatError(f"{path}:{line}: field 'categories' is {str(paths)[:80]}, "
                                "not a list of lists of strings")
    return paths[0][-1] if paths[0] else UNCATEGORISED


def read_amazon(reviews_path: Path, meta_path: Path) -> AmazonReviews:
    """The reviews (streamed, strings interned) and the paper category of every reviewed asin.

    counts: reviews, users, items, items_without_metadata (reviewed asins the metadata lacks),
    reviews_without_metadata, uncategorised_items (no category path), metadata_lines."""
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    users, items, times = array("q"), array("q"), array("q")
    for line, record in json_lines(reviews_path):
        user = _string_field(reviews_path, line, record, "reviewerID")
        asin = _string_field(reviews_path, line, record, "asin")
        times.append(_time_field(reviews_path, line, record))
        users.append(user_index.setdefault(user, len(user_index)))
        items.append(item_index.setdefault(asin, len(item_index) + 1))
    if not users:
        raise AmazonFormatError(f"{reviews_path}: no reviews")
    del user_index  # the model never sees users: only their number is reported
    category_of: dict[str, str] = {}
    seen_on: dict[str, int] = {}
    metadata_lines = 0
    for line, record in json_lines(meta_path):
        metadata_lines += 1
        asin = _string_field(meta_path, line, record, "asin")
        category = _paper_category(meta_path, line, record)
        if asin not in item_index:
            continue  # metadata of items nobody reviewed is not kept
        if asin in seen_on:
            raise AmazonFormatError(f"{meta_path}:{line}: asin {asin!r} is listed again "
                                    f"(first on line {seen_on[asin]})")
        seen_on[asin], category_of[asin] = line, category
    if not metadata_lines:
        raise AmazonFormatError(f"{meta_path}: no metadata lines")
    category_index: dict[str, int] = {}
    item_category = np.zeros(len(item_index) + 1, np.int64)
    for asin, catalogue_id in item_index.items():
        name = category_of.get(asin, UNCATEGORISED)
        item_category[catalogue_id] = category_index.setdefault(name, len(category_index) + 1)
    item_array = np.frombuffer(items, np.int64).copy()
    without = np.array([asin not in category_of for asin in item_index], bool)
    counts = {"reviews": len(users), "users": int(max(users)) + 1, "items": len(item_index),
              "items_without_metadata": int(without.sum()),
              "reviews_without_metadata": int(without[item_array - 1].sum()),
              "uncategorised_items": int((item_category[1:] == category_index.get(UNCATEGORISED, -1)).sum()),
              "metadata_lines": metadata_lines}
    return AmazonReviews(np.frombuffer(users, np.int64).copy(), item_array, np.frombuffer(times, np.int64).copy(),
                         list(item_index), item_category, list(category_index), counts)


def find_metadata(reviews_path: Path) -> Path:
    """meta_<Category>.json[.gz] beside reviews_<Category>[_5].json[.gz], else the only meta_*.json* there."""
    match = re.match(r"reviews_(.+?)(_5)?\.json", reviews_path.name)
    folder = reviews_path.parent
    if match:
        for suffix in (".json.gz", ".json", ".jsonl.gz", ".jsonl"):
            if (folder / f"meta_{match.group(1)}{suffix}").is_file():
                return folder / f"meta_{match.group(1)}{suffix}"
    candidates = sorted(folder.glob("meta_*.json*"))
    if len(candidates) != 1:
        raise AmazonFormatError(f"{reviews_path}: no metadata file given (--meta) and {len(candidates)} meta_*.json* "
                                f"files beside it: name one with --meta")
    return candidates[0]


@dataclass(frozen=True)
class AmazonSplit:
    max_history: int = 50  # behaviours kept per row (the last ones)
    min_count: int = 1  # an item needs this many training-period reviews to get a row
    oov: OovPolicy = "reject"
    seed: int = 0  # the negative samples


@dataclass(frozen=True)
class StringIds:
    """string_ids.json: the strings a client knows -> the integer ids the model's vocabulary maps."""

    items: dict[str, int]  # asin -> catalogue id (the items with an embedding row)
    categories: dict[str, int]  # category name -> catalogue id
    item_categories: dict[str, int]  # asin -> catalogue id of its category (what a candidate sends)

    def string_vocabulary(self, vocabulary: ExternalIds) -> ExternalIds:
        """`vocabulary` (catalogue ids) with the asins and category names themselves, the same rows: what
        `--ids string` ships, so Score and OIP clients send the strings (infersuite/services/ctr/string_ids.py)."""
        asin_of = {catalogue: asin for asin, catalogue in self.items.items()}
        name_of = {catalogue: name for name, catalogue in self.categories.items()}
        names = [name_of[int(c)] for c in vocabulary.categories]
        for name in names:
            if not name or len(name.encode()) > MAX_ID_BYTES:
                raise AmazonFormatError(f"the category {name!r} cannot be a string id (empty, or over {MAX_ID_BYTES} "
                                        "bytes): train with --ids int, which ships string_ids.json instead")
        return ExternalIds(items=[asin_of[int(i)] for i in vocabulary.items], categories=names, oov=vocabulary.oov,
                           min_count=vocabulary.min_count)

    def to_json(self) -> dict[str, Any]:
        return {"format": "amazon", "unknown_id": UNKNOWN_ID,
                "about": "Score takes integer ids: send items[asin] and categories[name] (item_categories[asin] is "
                         "an item's category id); send 0 for a string not listed here (the model's oov policy, "
                         "meta.json vocabulary.external.oov, refuses it or uses the shared row). Category = the "
                         f"last category of an item's first metadata path, {UNCATEGORISED!r} when it has none.",
                "items": self.items, "categories": self.categories, "item_categories": self.item_categories}


def _positions(reviews: AmazonReviews) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order: review indices by user then time then file order, position of each within its user's
    reviews, that user's review count), all in `order`'s order."""
    order = np.lexsort((np.arange(len(reviews)), reviews.timestamps, reviews.users))
    sorted_users = reviews.users[order]
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_users) != 0])
    lengths = np.diff(np.r_[starts, len(order)])
    first = np.repeat(starts, lengths)
    return order, np.arange(len(order)) - first, np.repeat(lengths, lengths)


def _negatives(user_of_row: np.ndarray, reviewed_keys: np.ndarray, n_items: int,
               rng: np.random.Generator) -> np.ndarray:
    """One item row in 1..n_items per row that its user never reviewed (keys: user * (n_items + 2) + row)."""
    negatives = rng.integers(1, n_items + 1, len(user_of_row))
    clash = np.isin(user_of_row * (n_items + 2) + negatives, reviewed_keys)
    for _ in range(1000):
        if not clash.any():
            return negatives
        negatives[clash] = rng.integers(1, n_items + 1, int(clash.sum()))
        clash[clash] = np.isin(user_of_row[clash] * (n_items + 2) + negatives[clash], reviewed_keys)
    raise AmazonFormatError(f"a user reviewed (nearly) every one of the {n_items} vocabulary items: no negative "
                            "to sample; lower --min-count or add items")


def _histories(kept: np.ndarray, before: np.ndarray, lengths: np.ndarray, item_rows: np.ndarray,
               category_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, T) item and category rows of each row's history: the `lengths` usable reviews (`kept`, sorted
    positions) just before `before`; T = the longest, 0-padded at the end. Filled in blocks of rows, so
    the temporaries stay a block's size beside the two (R, T) results."""
    slot = np.arange(int(lengths.max()))[None, :]  # (1, T)
    items, categories = (np.zeros((len(lengths), slot.shape[1]), np.int64) for _ in range(2))
    for start in range(0, len(lengths), _BLOCK_ROWS):
        block = slice(start, start + _BLOCK_ROWS)
        valid = slot < lengths[block, None]  # (b, T)
        taken = kept[np.where(valid, (before[block] - lengths[block])[:, None] + slot, 0)]  # (b, T) sorted positions
        items[block] = np.where(valid, item_rows[taken], 0)
        categories[block] = np.where(valid, category_rows[taken], 0)
    return items, categories


def _paired_rows(history_items: np.ndarray, history_categories: np.ndarray, lengths: np.ndarray,
                 candidates: np.ndarray, candidate_categories: np.ndarray, item_category: np.ndarray,
                 counts: np.ndarray, n_categories: int) -> ClickData:
    """ClickData of R rows (train, valid, test: `counts`), each with its positive then its negative."""
    n_rows, n_items = len(lengths), len(item_category) - 1
    config = ClickDataConfig(n_users=n_rows, n_items=n_items, n_categories=n_categories,
                             max_history=history_items.shape[1], valid_fraction=float(counts[1] / n_rows),
                             test_fraction=float(counts[2] / n_rows))
    return ClickData(
        config=config, item_category=item_category, item_latent=np.zeros((n_items + 1, 1)),
        history_items=history_items, history_categories=history_categories, history_lengths=lengths,
        candidate_items=candidates, candidate_categories=candidate_categories,
        labels=np.tile(np.array([1.0, 0.0], np.float32), n_rows), click_probability=np.full(2 * n_rows, np.nan),
        user_index=np.repeat(np.arange(n_rows), 2), impression_offsets=np.arange(0, 2 * n_rows + 1, 2, dtype=np.int64),
        train_users=np.arange(counts[0]), valid_users=np.arange(counts[0], counts[0] + counts[1]),
        test_users=np.arange(counts[0] + counts[1], n_rows))


def amazon_click_data(reviews: AmazonReviews, split: AmazonSplit
                      ) -> tuple[ClickData, ExternalIds, dict[str, Any], StringIds]:
    """The reviews as DIN's rows (module docstring), its vocabulary, a summary and the string-id file."""
    order, position, length = _positions(reviews)
    role = np.where(position == length - 1, 2, np.where(position == length - 2, 1, 0))  # 0 train, 1 valid, 2 test
    role[position == 0] = 0  # the first review is only ever history
    in_training = np.zeros(len(reviews), bool)
    in_training[order] = role == 0
    item_ids, category_ids = reviews.items, reviews.item_category[reviews.items]
    vocabulary = build_vocabulary_of_ids(item_ids, category_ids, in_training, split.min_count, split.oov)
    item_rows, item_known = vocabulary.rows("items", item_ids[order])
    category_rows, _ = vocabulary.rows("categories", category_ids[order])
    usable = (item_rows > 0) & (category_rows > 0)  # under `reject`, reviews with unknown ids leave the rows
    kept = np.flatnonzero(usable)  # sorted positions usable as history
    user_start = np.arange(len(order)) - position
    first_kept = np.searchsorted(kept, user_start)  # history of sorted position e: kept[first_kept : before]
    before = np.searchsorted(kept, np.arange(len(order)))
    history_length = np.minimum(before - first_kept, split.max_history)
    is_row = (position >= 1) & usable & (history_length > 0)
    by_role = [np.flatnonzero(is_row & (role == r)) for r in (0, 1, 2)]  # train, valid, test
    if not all(len(r) for r in by_role):
        empty = [name for name, r in zip(("train", "valid", "test"), by_role, strict=True) if not len(r)]
        raise AmazonFormatError(f"the split leaves no {empty} rows: users need 3 or more reviews (1 behaviour, "
                                "then validation and test) with items in the vocabulary")
    rows = np.concatenate(by_role)
    history_items, history_categories = _histories(kept, before[rows], history_length[rows], item_rows, category_rows)
    n_items, n_categories = vocabulary.table_rows("items"), vocabulary.table_rows("categories")
    sorted_users = reviews.users[order]
    n_listed = len(vocabulary.items)
    reviewed = np.unique(sorted_users[item_known] * (n_listed + 2) + item_rows[item_known])  # _negatives' keys
    negatives = _negatives(sorted_users[rows], reviewed, n_listed, np.random.default_rng(split.seed))
    item_category = np.zeros(n_items + 1, np.int64)
    item_category[item_rows[usable]] = category_rows[usable]
    candidates = np.stack([item_rows[rows], negatives], axis=1).reshape(-1)  # (2R,) positive, negative
    candidate_categories = np.stack([category_rows[rows], item_category[negatives]], axis=1).reshape(-1)
    counts = np.bincount(role[rows], minlength=3)
    data = _paired_rows(history_items, history_categories, history_length[rows], candidates, candidate_categories,
                        item_category, counts, n_categories)
    summary = {"format": "amazon", "events": len(reviews), **reviews.counts,
               "events_dropped_oov": int((~usable).sum()),
               "rows_dropped_oov": int(((position >= 1) & ~usable).sum()),
               "rows": {name: int(c) for name, c in zip(("train", "valid", "test"), counts, strict=True)},
               "impressions": {name: 2 * int(c) for name, c in zip(("train", "valid", "test"), counts, strict=True)},
               "vocabulary": {"items": n_listed, "categories": len(vocabulary.categories), "oov": vocabulary.oov,
                              "min_count": vocabulary.min_count}, "negative_seed": split.seed,
               "history_width": history_items.shape[1]}
    return data, vocabulary, summary, string_ids(reviews, vocabulary)


def string_ids(reviews: AmazonReviews, vocabulary: ExternalIds) -> StringIds:
    """The strings of the vocabulary's items and categories with their catalogue ids."""
    items = {reviews.asins[int(i) - 1]: int(i) for i in vocabulary.items}  # catalogue ids: integers
    categories = {reviews.category_names[int(c) - 1]: int(c) for c in vocabulary.categories}
    return StringIds(items=items, categories=categories,
                     item_categories={asin: int(reviews.item_category[i]) for asin, i in items.items()})


def describe(summary: dict[str, Any]) -> tuple[str, str]:
    """(the report's data sentence, its test rule) for `models.ctr.train`'s user-data report."""
    data = (f"{summary['reviews']} reviews of {summary['users']} users on {summary['items']} items "
            f"({summary['items_without_metadata']} reviewed asins without metadata, "
            f"{summary['reviews_without_metadata']} reviews; {summary['uncategorised_items']} items in "
            f"{UNCATEGORISED!r}); vocabulary {summary['vocabulary']['items']} items (min count "
            f"{summary['vocabulary']['min_count']}), {summary['vocabulary']['categories']} categories (the last of "
            f"each item's first category path), unknown ids: {summary['vocabulary']['oov']} "
            f"({summary['rows_dropped_oov']} rows dropped); negatives drawn with seed {summary['negative_seed']}.")
    rule = ("Test = each user's last review (label 1) and one item they never reviewed, drawn uniformly from the "
            "vocabulary (label 0), scored against their earlier reviews; validation = the review before it; "
            "GAUC is the share of users whose positive outscores their negative (one row per user on test)")
    return data, rule
