"""DIN on a user's click log (models/ctr/user_data.py), no sockets: the reader names the line and
column of a bad value, the vocabulary keeps ids seen min_count times in the training period and maps
unknown ids by the chosen policy, and the time split never lets a row see its own future."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from infersuite.modelmeta.families import ExternalIds, Vocabulary
from models.ctr.user_data import ClickLogError, TimeSplit, build_vocabulary, click_data, read_click_log


def _log(path: Path, rows: list[tuple]) -> Path:
    path.write_text("user,item,category,timestamp,clicked,extra\n" + "".join(
        ",".join(map(str, r)) + ",x\n" for r in rows))
    return path


def _world(path: Path, users: int = 60, seed: int = 0) -> Path:
    """Each event its own item id (so a row's ids tell its events' times apart): users click one
    category over time, with non-clicked impressions of the others, on overlapping time lines."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        taste = int(rng.integers(0, 3))
        for t in range(20):
            liked = bool(rng.random() < 0.6)
            category = taste if liked else int((taste + 1 + rng.integers(0, 2)) % 3)
            rows.append((500 + user, 9_000_000 + len(rows), 70 + category, 1 + (7 * user) % 37 + t * 3.5,
                         int(liked)))
    # One early impression of every item by another user: every id is in the training vocabulary.
    return _log(path, [*rows, *((1, item, category, 0.0, 0) for _, item, category, _, _ in rows)])


def test_a_bad_file_is_refused_naming_the_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text("user,item,category,timestamp\n1,2,3,4\n")
    with pytest.raises(ClickLogError, match=r"lacks the column\(s\) \['clicked'\]"):
        read_click_log(tmp_path / "b.csv")
    with pytest.raises(ClickLogError, match=r"c.csv:3: column 'item' holds 'abc', not an integer"):
        read_click_log(_log(tmp_path / "c.csv", [(1, 2, 3, 4.0, 1), (1, "abc", 3, 5.0, 0)]))
    with pytest.raises(ClickLogError, match=r"d.csv:2: column 'clicked' must be 0 or 1, got 2"):
        read_click_log(_log(tmp_path / "d.csv", [(1, 2, 3, 4.0, 2)]))
    with pytest.raises(ClickLogError, match=r"column 'timestamp' must be finite"):
        read_click_log(_log(tmp_path / "e.csv", [(1, 2, 3, "nan", 1)]))
    with pytest.raises(ClickLogError, match=r"f.csv:3: column 'item' holds '9223372036854775808', outside the "
                                            r"64-bit integers \(string ids: pass --ids string\)"):
        read_click_log(_log(tmp_path / "f.csv", [(1, 2**63 - 1, 3, 4.0, 1), (1, 2**63, 3, 5.0, 0)]))


def test_the_columns_come_back_as_int64_float64_float32_arrays(tmp_path: Path) -> None:
    log = read_click_log(_log(tmp_path / "g.csv", [(-5, 2**63 - 1, 3, 1.5e12, 1), (7, 2, -3, 2.25, 0)]))
    assert [a.dtype for a in (log.users, log.items, log.categories, log.timestamps, log.clicked)] == \
        [np.int64, np.int64, np.int64, np.float64, np.float32]
    assert log.users.tolist() == [-5, 7] and log.items.tolist() == [2**63 - 1, 2]
    assert log.timestamps.tolist() == [1.5e12, 2.25] and log.clicked.tolist() == [1.0, 0.0]
    log.users[0] = 1  # writable, as arrays built from lists were


def test_the_vocabulary_keeps_frequent_training_ids_in_first_seen_order_and_maps_by_policy(tmp_path: Path) -> None:
    log = read_click_log(_log(tmp_path / "v.csv", [
        (1, 700, 7, 1.0, 1), (1, 300, 3, 2.0, 0), (2, 700, 7, 3.0, 1), (2, 300, 3, 4.0, 1),
        (2, 555, 5, 5.0, 1), (3, 900, 9, 99.0, 1), (3, 900, 9, 99.5, 1)]))
    training = log.timestamps < 10
    vocab = build_vocabulary(log, training, min_count=2, oov="reject")
    assert (vocab.items, vocab.categories) == ([700, 300], [7, 3, 5])  # 555 once, 900 only after the cut
    rows, known = vocab.rows("items", np.array([300, 700, 555, 900]))
    assert rows.tolist() == [2, 1, 0, 0] and known.tolist() == [True, True, False, False]
    bucket = build_vocabulary(log, training, min_count=2, oov="bucket")
    assert bucket.rows("items", np.array([555, 700]))[0].tolist() == [3, 1] and bucket.table_rows("items") == 3
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        build_vocabulary(log, training, min_count=0, oov="reject")


def test_the_schema_refuses_a_vocabulary_that_does_not_match_its_table_sizes() -> None:
    external = {"items": [5, 9], "categories": [1], "oov": "bucket"}
    Vocabulary.model_validate({"n_items": 3, "n_categories": 2, "external": external})
    with pytest.raises(ValidationError, match="other table sizes"):
        Vocabulary.model_validate({"n_items": 2, "n_categories": 2, "external": external})
    with pytest.raises(ValidationError, match="lists an id twice"):
        ExternalIds.model_validate({"items": [5, 5], "categories": [1], "oov": "reject"})


def test_the_time_split_never_shows_a_row_its_future(tmp_path: Path) -> None:
    log = read_click_log(_world(tmp_path / "w.csv"))
    data, vocab, summary = click_data(log, TimeSplit(valid_fraction=0.2, test_fraction=0.2, max_history=8))
    valid_cut, test_cut = summary["cuts"]
    assert all(summary["rows"][k] > 0 for k in ("train", "valid", "test"))
    assert data.config.n_items == len(vocab.items) and data.history_lengths.max() <= 8
    event_of_row = {row: int(item) - 9_000_000 for row, item in enumerate(vocab.items, start=1)}  # user's event
    time_of = lambda rows: log.timestamps[[event_of_row[int(r)] for r in rows]]  # noqa: E731
    clicked_of = lambda rows: log.clicked[[event_of_row[int(r)] for r in rows]]  # noqa: E731
    for users, start, end in ((data.valid_users, valid_cut, test_cut), (data.test_users, test_cut, np.inf)):
        for user in users:
            history = data.history_items[user, :data.history_lengths[user]]
            impressions = data.candidate_items[data.impressions_of(np.array([user]))]
            assert (time_of(history) < start).all() and (clicked_of(history) == 1).all()
            assert ((time_of(impressions) >= start) & (time_of(impressions) < end)).all()
    for user in data.train_users:  # training rows: the first half's clicks, then the second half
        history = data.history_items[user, :data.history_lengths[user]]
        impressions = data.candidate_items[data.impressions_of(np.array([user]))]
        assert time_of(history).max() <= time_of(impressions).min() and (time_of(impressions) < valid_cut).all()
    assert summary["impressions"]["test"] == int((log.timestamps >= test_cut).sum())  # all users clicked earlier
