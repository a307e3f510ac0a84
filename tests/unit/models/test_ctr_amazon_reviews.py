"""DIN on the Amazon review layout (models/ctr/amazon.py), no sockets: gzip and plain files read alike,
the paper's category is the last of the first path (none -> the shared bucket, counted), rows are built
the paper's way (history before k, positive at k, a never-reviewed negative; last review test, the one
before validation), string ids map to the catalogue ids the vocabulary lists, and each broken copy is
refused naming the file, line and field."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from models.ctr.amazon import (
    UNCATEGORISED,
    AmazonFormatError,
    AmazonSplit,
    amazon_click_data,
    find_metadata,
    read_amazon,
)
from models.ctr.amazon_example import write_amazon_example
from models.ctr.user_data import ClickLogError, TimeSplit, detect_format, load_user_data


def _lines(path: Path, records: list[object], compress: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _review(user: str, asin: str, time: int) -> dict[str, object]:
    return {"reviewerID": user, "asin": asin, "unixReviewTime": time, "overall": 5.0}


def _small(tmp_path: Path) -> tuple[Path, Path]:
    """Three users: u1 reviews a,b,c,d in time order (written shuffled), u2 a,b,c,e,x, u3 f,g,h,a;
    'x' has no metadata, 'e' no category path (a Python-literal line, as in the 2014 metadata dumps),
    'z' is never reviewed."""
    reviews = [_review("u1", "c", 30), _review("u1", "a", 10), _review("u2", "a", 11), _review("u1", "d", 40),
               _review("u1", "b", 20), _review("u2", "b", 21), _review("u2", "c", 31), _review("u2", "e", 41),
               _review("u2", "x", 51), _review("u3", "f", 5), _review("u3", "g", 6), _review("u3", "h", 7),
               _review("u3", "a", 8)]
    meta = [{"asin": "a", "categories": [["Books", "Novels"], ["Gifts"]]}, {"asin": "b", "categories": [["Toys"]]},
            {"asin": "c", "categories": [["Books", "Novels"]]}, {"asin": "d", "categories": [["Toys", "Cars"]]},
            "{'asin': 'e', 'categories': [[]]}", {"asin": "f", "categories": [["Books", "Novels"]]},
            {"asin": "g", "categories": [["Toys"]]}, {"asin": "h"}, {"asin": "z", "categories": [["Unseen"]]}]
    return _lines(tmp_path / "reviews_Small_5.json", reviews), _lines(tmp_path / "meta_Small.json", meta)


def _rows(data, vocab, read, users: np.ndarray) -> list[tuple[list[str], str]]:  # type: ignore[no-untyped-def]
    """(history asins, positive asin) of rows `users`; '?' for the bucket row."""
    asin_of_row = {row + 1: read.asins[catalogue - 1] for row, catalogue in enumerate(vocab.items)}
    asin_of_row[len(vocab.items) + 1] = "?"
    return [([asin_of_row[r] for r in data.history_items[u, :data.history_lengths[u]]],
             asin_of_row[int(data.candidate_items[2 * u])]) for u in users]


def test_the_paper_category_and_the_counts(tmp_path: Path) -> None:
    read = read_amazon(*_small(tmp_path))
    assert read.asins == ["c", "a", "d", "b", "e", "x", "f", "g", "h"]  # catalogue ids: order of first appearance
    category = {asin: read.category_names[read.item_category[i + 1] - 1] for i, asin in enumerate(read.asins)}
    assert category == {"a": "Novels", "b": "Toys", "c": "Novels", "d": "Cars", "e": UNCATEGORISED,
                        "x": UNCATEGORISED, "f": "Novels", "g": "Toys", "h": UNCATEGORISED}
    assert read.counts == {"reviews": 13, "users": 3, "items": 9, "items_without_metadata": 1,
                           "reviews_without_metadata": 1, "uncategorised_items": 3, "metadata_lines": 9}


def test_rows_are_built_the_paper_s_way(tmp_path: Path) -> None:
    read = read_amazon(*_small(tmp_path))
    data, vocab, summary, ids = amazon_click_data(read, AmazonSplit(max_history=2, oov="bucket", seed=3))
    # Held out as validation/test positives: c d (u1), e x (u2), h a (u3); d e x h are never in training: bucket.
    assert _rows(data, vocab, read, data.train_users) == [(["a"], "b"), (["a"], "b"), (["a", "b"], "c"),
                                                          (["f"], "g")]
    assert _rows(data, vocab, read, data.valid_users) == [(["a", "b"], "c"), (["b", "c"], "?"), (["f", "g"], "?")]
    assert _rows(data, vocab, read, data.test_users) == [(["b", "c"], "?"), (["c", "?"], "?"), (["g", "?"], "a")]
    assert data.labels.tolist() == [1.0, 0.0] * 10
    asin_of_row = {row + 1: read.asins[catalogue - 1] for row, catalogue in enumerate(vocab.items)}
    negatives = [asin_of_row[int(r)] for r in data.candidate_items[1::2]]  # never the bucket
    reviewed = {0: set("abcd"), 1: set("abcex"), 2: set("fgha")}
    users = [0, 1, 1, 2, 0, 1, 2, 0, 1, 2]  # the rows' users, in the order above
    assert all(n not in reviewed[u] for n, u in zip(negatives, users, strict=True))
    assert ids.items == {a: read.asins.index(a) + 1 for a in "abcfg"}
    assert ids.categories == {"Novels": ids.item_categories["a"], "Toys": ids.item_categories["b"]}
    assert summary["rows"] == {"train": 4, "valid": 3, "test": 3}


def test_reject_drops_rows_whose_positive_is_unknown_and_unknown_behaviours(tmp_path: Path) -> None:
    read = read_amazon(*_small(tmp_path))
    data, vocab, summary, _ = amazon_click_data(read, AmazonSplit(oov="reject"))
    assert summary["rows"] == {"train": 4, "valid": 1, "test": 1} and summary["rows_dropped_oov"] == 4
    assert _rows(data, vocab, read, data.test_users) == [(["f", "g"], "a")]  # h left u3's history
    assert vocab.table_rows("items") == 5 and (data.history_items <= 5).all()


def test_the_negatives_are_seeded(tmp_path: Path) -> None:
    reviews, meta = write_amazon_example(tmp_path, users=60, items=80, seed=1, compress=False)
    one = amazon_click_data(read_amazon(reviews, meta), AmazonSplit(seed=4))[0]
    two = amazon_click_data(read_amazon(reviews, meta), AmazonSplit(seed=4))[0]
    other = amazon_click_data(read_amazon(reviews, meta), AmazonSplit(seed=5))[0]
    assert np.array_equal(one.candidate_items, two.candidate_items)
    assert not np.array_equal(one.candidate_items, other.candidate_items)
    assert np.array_equal(one.candidate_items[::2], other.candidate_items[::2])  # positives do not move


def test_gzip_and_plain_copies_give_the_same_rows(tmp_path: Path) -> None:
    plain = write_amazon_example(tmp_path / "plain", users=50, items=80, seed=2, compress=False)
    packed = write_amazon_example(tmp_path / "gz", users=50, items=80, seed=2, compress=True)
    assert packed[0].name == "reviews_Synthetic_5.json.gz" and find_metadata(packed[0]) == packed[1]
    split = TimeSplit(min_count=2)
    a, b = load_user_data(plain[0], None, split), load_user_data(packed[0], None, split)
    assert 300 <= a.summary["reviews"] <= 800 and a.summary["reviews_without_metadata"] > 0
    for name in ("history_items", "history_categories", "candidate_items", "candidate_categories", "labels"):
        assert np.array_equal(getattr(a.data, name), getattr(b.data, name)), name
    assert a.beside_model == b.beside_model and set(a.beside_model) == {"string_ids.json"}


def test_the_format_is_told_by_the_name(tmp_path: Path) -> None:
    assert detect_format(Path("reviews_Books_5.json.gz")) == "amazon"
    assert detect_format(Path("x.jsonl")) == "amazon"
    assert detect_format(Path("clicks.csv")) == "clicklog" and detect_format(Path("c.parquet")) == "clicklog"
    with pytest.raises(ClickLogError, match=r"log.txt: cannot tell the format from the name"):
        detect_format(Path("log.txt"))
    (tmp_path / "reviews_A_5.json").write_text("")
    with pytest.raises(AmazonFormatError, match=r"0 meta_\*.json\* files beside it: name one with --meta"):
        find_metadata(tmp_path / "reviews_A_5.json")


@pytest.mark.parametrize(("line", "message"), [
    ({"asin": "a", "unixReviewTime": 5}, r"reviews_B_5.json:2: no field 'reviewerID'"),
    ({"reviewerID": "u", "unixReviewTime": 5}, r"reviews_B_5.json:2: no field 'asin'"),
    ({"reviewerID": "u", "asin": "a"}, r"reviews_B_5.json:2: no field 'unixReviewTime'"),
    ({"reviewerID": "u", "asin": "a", "unixReviewTime": "05 1, 2014"},
     r"reviews_B_5.json:2: field 'unixReviewTime' is '05 1, 2014', not an integer \(seconds\)"),
    ({"reviewerID": "u", "asin": "a", "unixReviewTime": 1.5e9},
     r"reviews_B_5.json:2: field 'unixReviewTime' is 1500000000.0, not an integer"),
    ({"reviewerID": 17, "asin": "a", "unixReviewTime": 5}, r"reviews_B_5.json:2: field 'reviewerID' is 17, not a"),
    ('{"reviewerID": "u", "asin": ', r"reviews_B_5.json:2: not a JSON object"),
    ("[1, 2]", r"reviews_B_5.json:2: not a JSON object \(a list\)"),
])
def test_a_broken_reviews_file_is_refused_naming_file_line_and_field(tmp_path: Path, line: object,
                                                                      message: str) -> None:
    reviews = _lines(tmp_path / "reviews_B_5.json", [_review("u", "a", 1), line])
    meta = _lines(tmp_path / "meta_B.json", [{"asin": "a", "categories": [["X"]]}])
    with pytest.raises(AmazonFormatError, match=message):
        read_amazon(reviews, meta)


@pytest.mark.parametrize(("line", "message"), [
    ({"categories": [["X"]]}, r"meta_B.json:2: no field 'asin'"),
    ({"asin": "b", "categories": "Books"}, r"meta_B.json:2: field 'categories' is Books, not a list of lists"),
    ({"asin": "b", "categories": [["X", 3]]}, r"meta_B.json:2: field 'categories' .* not a list of lists of str"),
    ({"asin": "a", "categories": [["Y"]]}, r"meta_B.json:2: asin 'a' is listed again \(first on line 1\)"),
])
def test_a_broken_metadata_file_is_refused_naming_file_line_and_field(tmp_path: Path, line: object,
                                                                       message: str) -> None:
    reviews = _lines(tmp_path / "reviews_B_5.json", [_review("u", "a", 1), _review("u", "b", 2)])
    meta = _lines(tmp_path / "meta_B.json", [{"asin": "a", "categories": [["X"]]}, line], compress=True)
    with pytest.raises(AmazonFormatError, match=message):
        read_amazon(reviews, meta)


def test_unreadable_empty_and_unsplittable_files_are_refused(tmp_path: Path) -> None:
    meta = _lines(tmp_path / "meta_B.json", [{"asin": "a", "categories": [["X"]]}])
    with pytest.raises(AmazonFormatError, match=r"nothing.json: cannot be read"):
        read_amazon(tmp_path / "nothing.json", meta)
    with pytest.raises(AmazonFormatError, match=r"empty.json: no reviews"):
        read_amazon(_lines(tmp_path / "empty.json", []), meta)
    truncated = tmp_path / "cut.json.gz"
    truncated.write_bytes(gzip.compress(b'{"reviewerID": "u", "asin": "a", "unixReviewTime": 1}\n' * 50)[:40])
    with pytest.raises(AmazonFormatError, match=r"cut.json.gz: unreadable"):
        read_amazon(truncated, meta)
    two_each = _lines(tmp_path / "two.json", [_review(u, "a", 1) for u in "pq"] + [_review(u, "b", 2) for u in "pq"])
    with pytest.raises(AmazonFormatError, match=r"the split leaves no \['train', 'valid'\] rows"):
        amazon_click_data(read_amazon(two_each, meta), AmazonSplit(oov="bucket"))  # b gets the shared row


def test_the_memory_measure_states_each_stage(tmp_path: Path) -> None:
    from models.ctr.amazon_example import measure

    reviews, _ = write_amazon_example(tmp_path, users=40, items=60, seed=3, compress=False)
    text = measure(reviews, None, max_history=50)
    assert text.startswith("\n## Peak memory\n\n") and "reviews of 40 users" in text
    stages = [float(m) for m in re.findall(r"(?:imports|both files|history width \d+\)) (\d+) MiB", text)]
    assert len(stages) == 3 and stages == sorted(stages) and stages[0] > 0  # peaks never fall


def test_histories_gathered_in_blocks_equal_one_gather(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import models.ctr.amazon as amazon

    read = read_amazon(*write_amazon_example(tmp_path, users=50, items=70, seed=4, compress=False))
    whole = amazon_click_data(read, AmazonSplit())[0]
    monkeypatch.setattr(amazon, "_BLOCK_ROWS", 7)
    blocks = amazon_click_data(read, AmazonSplit())[0]
    assert len(whole.history_lengths) > 7 * 10
    assert np.array_equal(whole.history_items, blocks.history_items)
    assert np.array_equal(whole.history_categories, blocks.history_categories)
