"""Click logs with string ids (models/ctr/user_data.py `ids="string"`, issue 24), no sockets: the
reader keeps the strings as written (interned once), refuses empty and oversized ids naming line or
row and column, the vocabulary holds the strings with the same min count and OOV policy as integer
ids, and the schema (infersuite.modelmeta.families.ExternalIds) checks a string vocabulary's shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from infersuite.modelmeta.families import ExternalIds, Vocabulary
from models.ctr.user_data import (
    MAX_ID_BYTES,
    ClickLogError,
    TimeSplit,
    build_vocabulary,
    click_data,
    load_user_data,
    read_click_log,
    string_vocabulary,
)

HEADER = "user,item,category,timestamp,clicked\n"
# (user, item, category, time, clicked): "B00-7" twice and "é-3" twice before the cut at 10, "B00-5" once,
# "late" only after it
EVENTS = [("u-1", "B00-7", "shoes", 1.0, 1), ("u-1", " é-3 ", "hats", 2.0, 0), ("u-2", "B00-7", "shoes", 3.0, 1),
          ("u-2", "é-3", "hats", 4.0, 1), ("u-2", "B00-5", "bags", 5.0, 1), ("u-3", "late", "socks", 99.0, 1)]


def _csv(path: Path, events: list[tuple]) -> Path:
    path.write_text(HEADER + "".join(",".join(map(str, e)) + "\n" for e in events), encoding="utf-8")
    return path


def test_string_ids_are_read_as_written_and_interned_in_first_seen_order(tmp_path: Path) -> None:
    log = read_click_log(_csv(tmp_path / "s.csv", EVENTS), ids="string")
    assert log.item_keys == ["B00-7", "é-3", "B00-5", "late"]  # blanks around an id stripped
    assert log.category_keys == ["shoes", "hats", "bags", "socks"]
    assert log.items.tolist() == [1, 2, 1, 2, 3, 4] and log.users.tolist() == [1, 1, 2, 2, 2, 3]
    with pytest.raises(ClickLogError, match=r"s.csv:2: column 'user' holds 'u-1', not an integer \(string ids: "
                                            r"pass --ids string\)"):
        read_click_log(tmp_path / "s.csv")


def test_the_string_vocabulary_keeps_min_count_and_maps_unknown_ids_by_policy(tmp_path: Path) -> None:
    log = read_click_log(_csv(tmp_path / "v.csv", EVENTS), ids="string")
    training = log.timestamps < 10
    reject = string_vocabulary(log, build_vocabulary(log, training, min_count=2, oov="reject"))
    assert (reject.items, reject.categories) == (["B00-7", "é-3"], ["shoes", "hats", "bags"])
    assert reject.string_ids and reject.longest_id_bytes() == 5  # "B00-7", "shoes"; "é-3" is 4 bytes
    rows, known = reject.rows("items", ["é-3", "B00-7", "B00-5", "late", "b00-7"])
    assert rows.tolist() == [2, 1, 0, 0, 0] and known.tolist() == [True, True, False, False, False]
    bucket = string_vocabulary(log, build_vocabulary(log, training, min_count=2, oov="bucket"))
    rows, known = bucket.rows("items", ["B00-5", "B00-7", "never"])
    assert rows.tolist() == [3, 1, 3] and known.tolist() == [False, True, False] and bucket.table_rows("items") == 3
    assert bucket.rows("categories", ["socks"])[0].tolist() == [4]  # the categories' own shared row
    everything = string_vocabulary(log, build_vocabulary(log, training, min_count=1, oov="reject"))
    assert everything.items == ["B00-7", "é-3", "B00-5"]


def test_empty_and_oversized_ids_are_refused_naming_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ClickLogError, match=r"e.csv:3: column 'item' is empty \(a string id needs at least one"):
        read_click_log(_csv(tmp_path / "e.csv", [EVENTS[0], ("u-1", "  ", "hats", 2.0, 0)]), ids="string")
    long = "é" * (MAX_ID_BYTES // 2 + 1)  # 2 bytes a character
    with pytest.raises(ClickLogError, match=rf"l.csv:2: column 'category' holds a {2 * len(long)}-byte id, over "
                                            rf"the limit of {MAX_ID_BYTES} bytes"):
        read_click_log(_csv(tmp_path / "l.csv", [("u-1", "a", long, 1.0, 1)]), ids="string")
    read_click_log(_csv(tmp_path / "ok.csv", [("u-1", "a", "é" * (MAX_ID_BYTES // 2), 1.0, 1)]), ids="string")


def test_parquet_string_columns_give_the_csv_s_log_and_integers_read_as_text(tmp_path: Path) -> None:
    columns = list(zip(*EVENTS, strict=True))
    table = pa.table({"user": list(columns[0]), "item": [i.strip() for i in columns[1]], "category": list(columns[2]),
                      "timestamp": list(columns[3]), "clicked": list(columns[4])})
    pq.write_table(table, tmp_path / "s.parquet")
    parquet, csv = read_click_log(tmp_path / "s.parquet", "string"), read_click_log(_csv(tmp_path / "s.csv", EVENTS),
                                                                                     "string")
    assert (parquet.item_keys, parquet.category_keys) == (csv.item_keys, csv.category_keys)
    np.testing.assert_array_equal(parquet.items, csv.items)
    np.testing.assert_array_equal(parquet.users, csv.users)
    with pytest.raises(ClickLogError, match=r"column 'user' is string, not an integer \(string ids: pass --ids"):
        read_click_log(tmp_path / "s.parquet")
    pq.write_table(table.set_column(1, "item", pa.array([7, 3, 7, 3, 5, 9])), tmp_path / "i.parquet")
    assert read_click_log(tmp_path / "i.parquet", "string").item_keys == ["7", "3", "5", "9"]
    pq.write_table(table.set_column(1, "item", pa.array(["a", "", "a", "b", "c", "d"])), tmp_path / "e.parquet")
    with pytest.raises(ClickLogError, match=r"e.parquet:row 1: column 'item' is empty"):
        read_click_log(tmp_path / "e.parquet", "string")
    pq.write_table(table.set_column(1, "item", pa.array([1.5] * 6)), tmp_path / "f.parquet")
    with pytest.raises(ClickLogError, match=r"column 'item' is double, not strings or integers"):
        read_click_log(tmp_path / "f.parquet", "string")


def test_a_string_log_trains_rows_like_its_integer_twin(tmp_path: Path) -> None:
    """The same events with integer ids and with string ids give the same rows; only the vocabulary's keys differ."""
    rng = np.random.default_rng(4)
    events = [(f"user-{u}", int(rng.integers(0, 40)), int(rng.integers(0, 5)), float(t), int(rng.integers(0, 2)))
              for u in range(30) for t in rng.uniform(0, 100, 25)]
    _csv(tmp_path / "int.csv", [(int(u[5:]), 100 + i, 7 + c, t, k) for u, i, c, t, k in events])
    _csv(tmp_path / "str.csv", [(u, f"item-{i}", f"cat-{c}", t, k) for u, i, c, t, k in events])
    split = TimeSplit(min_count=3, oov="bucket", max_history=8)
    integers, strings = load_user_data(tmp_path / "int.csv", None, split), load_user_data(
        tmp_path / "str.csv", None, split, ids="string")
    for field in ("history_items", "history_categories", "candidate_items", "candidate_categories", "labels"):
        np.testing.assert_array_equal(getattr(integers.data, field), getattr(strings.data, field))
    assert strings.vocabulary.items == [f"item-{i - 100}" for i in integers.vocabulary.items]
    assert strings.summary["ids"] == "string" and integers.summary["ids"] == "int"
    data, vocabulary, _ = click_data(read_click_log(tmp_path / "str.csv", "string"), split)
    assert vocabulary == strings.vocabulary and data.config.n_items == vocabulary.table_rows("items")


def test_amazon_reviews_with_ids_string_ship_the_asins_themselves(tmp_path: Path) -> None:
    """The same rows as the catalogue-id vocabulary; the strings string_ids.json would have listed."""
    from models.ctr.amazon_example import write_amazon_example

    reviews, _ = write_amazon_example(tmp_path, users=60, items=90, seed=7, compress=False)
    split = TimeSplit(min_count=2, oov="bucket")
    catalogue, strings = load_user_data(reviews, None, split), load_user_data(reviews, None, split, ids="string")
    for field in ("history_items", "history_categories", "candidate_items", "candidate_categories", "labels"):
        np.testing.assert_array_equal(getattr(catalogue.data, field), getattr(strings.data, field))
    shipped = catalogue.beside_model["string_ids.json"]
    assert strings.beside_model == {} and strings.summary["ids"] == "string"
    assert strings.vocabulary.string_ids and sorted(strings.vocabulary.items) == sorted(shipped["items"])
    asins = list(shipped["items"])
    rows, _ = catalogue.vocabulary.rows("items", np.array([shipped["items"][a] for a in asins]))
    assert strings.vocabulary.rows("items", asins)[0].tolist() == rows.tolist()
    names = list(shipped["categories"])
    rows, _ = catalogue.vocabulary.rows("categories", np.array([shipped["categories"][n] for n in names]))
    assert strings.vocabulary.rows("categories", names)[0].tolist() == rows.tolist()


def test_the_schema_checks_a_string_vocabulary() -> None:
    external = {"items": ["B00-7", "é-3"], "categories": ["shoes"], "oov": "bucket", "min_count": 2}
    parsed = Vocabulary.model_validate({"n_items": 3, "n_categories": 2, "external": external}).external
    assert parsed is not None and parsed.string_ids and parsed.rows("items", ["é-3", "x"])[0].tolist() == [2, 3]
    for bad, message in [({"categories": [1]}, "integer ids for one table and strings for the other"),
                         ({"items": ["a", "a"]}, "lists an id twice"),
                         ({"items": ["a", ""]}, r"lists the empty string \(reserved for padding\)"),
                         ({"items": ["a", 2]}, "validation error")]:
        with pytest.raises(ValidationError, match=message):
            ExternalIds.model_validate({**external, **bad})
    assert not ExternalIds.model_validate({**external, "items": [5], "categories": [1]}).string_ids
