"""A generated dataset in the Amazon review layout (models/ctr/amazon.py), and the reader's peak memory on it.

    python -m models.ctr.amazon_example example DIR [--users N]  # reviews_Synthetic_5.json.gz, meta_Synthetic.json.gz
    python -m models.ctr.amazon_example measure DIR/reviews_Synthetic_5.json.gz  # peak RSS: read, then rows

The world: items belong to leaf categories (category paths ["Synthetic", "Group g", "Leaf c"]) and are
drawn within a category with Zipf popularity; each user has 1-3 interests (categories, mixed by a
Dirichlet draw) and reviews `min_reviews`..`max_reviews` items, each from one of their interests (85%,
and then often the interest of the previous review) or from anywhere (15%), days apart. As in the real
dumps, some items have no category path and some reviewed asins are missing from the metadata.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import IO

import numpy as np


def _open(path: Path, compress: bool) -> IO[str]:
    return gzip.open(path, "wt", encoding="utf-8", compresslevel=1) if compress else path.open("w", encoding="utf-8")


def _asin(item: int) -> str:
    return f"B{(item * 2_654_435_761) % 10**9:09d}"  # distinct for items below 2**32: the multiplier is odd


def write_amazon_example(folder: Path, users: int = 2000, items: int = 600, categories: int = 24, seed: int = 0,
                         min_reviews: int = 5, max_reviews: int = 15, compress: bool = True) -> tuple[Path, Path]:
    """Writes reviews_Synthetic_5.json[.gz] and meta_Synthetic.json[.gz] into `folder` (module docstring);
    streams the reviews, one user at a time. Returns (reviews path, metadata path)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".json.gz" if compress else ".json"
    reviews_path, meta_path = folder / f"reviews_Synthetic_5{suffix}", folder / f"meta_Synthetic{suffix}"
    item_category = rng.permutation(np.arange(items) % categories)
    members = [np.flatnonzero(item_category == c) for c in range(categories)]
    popularity = [1.0 / np.arange(1, len(m) + 1) ** 1.1 for m in members]
    popularity = [p / p.sum() for p in popularity]
    with _open(reviews_path, compress) as out:
        for user in range(users):
            interests = rng.choice(categories, size=int(rng.integers(1, 4)), replace=False)
            mix = rng.dirichlet(np.ones(len(interests)))
            time = int(rng.integers(1_200_000_000, 1_350_000_000))
            category = int(rng.choice(interests, p=mix))
            for _ in range(int(rng.integers(min_reviews, max_reviews + 1))):
                roll = rng.random()
                if roll < 0.15:
                    category = int(rng.integers(categories))
                elif roll < 0.55 or category not in interests:
                    category = int(rng.choice(interests, p=mix))
                item = int(members[category][rng.choice(len(members[category]), p=popularity[category])])
                time += int(rng.integers(1, 30)) * 86_400
                out.write(json.dumps({"reviewerID": f"A{user:07d}X", "asin": _asin(item), "reviewerName": "n",
                                      "helpful": [0, 0], "reviewText": "fine", "overall": 4.0,
                                      "summary": "ok", "unixReviewTime": time}) + "\n")
    with _open(meta_path, compress) as out:
        for item in range(items + items // 10):  # items beyond `items` are never reviewed
            if item < items and item % 97 == 5:
                continue  # a reviewed asin the metadata lacks
            c = int(item_category[item]) if item < items else int(rng.integers(categories))
            paths = [] if item % 53 == 7 else [["Synthetic", f"Group {c % 4}", f"Leaf {c}"], ["Other", "Shelf"]]
            out.write(json.dumps({"asin": _asin(item), "title": f"item {item}", "price": 9.99,
                                  "categories": paths}) + "\n")
    return reviews_path, meta_path


def _peak_rss_mib() -> float:
    """The process's peak resident set so far (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(reviews: Path, meta: Path | None, max_history: int) -> str:
    """A markdown paragraph: peak RSS after the imports, after reading, after building the rows."""
    import time

    from models.ctr.amazon import AmazonSplit, amazon_click_data, find_metadata, read_amazon

    baseline = _peak_rss_mib()
    started = time.perf_counter()
    read = read_amazon(reviews, meta or find_metadata(reviews))
    after_read, read_seconds = _peak_rss_mib(), time.perf_counter() - started
    data, _, summary, _ = amazon_click_data(read, AmazonSplit(max_history=max_history))
    after_rows = _peak_rss_mib()
    size = reviews.stat().st_size / 2**20
    return (f"\n## Peak memory\n\n`python -m models.ctr.amazon_example measure {reviews}`: {len(read):,} reviews of "
            f"{summary['users']:,} users ({size:.0f} MiB file), {summary['items']:,} items. Peak RSS after the imports "
            f"{baseline:.0f} MiB; after reading both files {after_read:.0f} MiB ({read_seconds:.0f} s, "
            f"{len(read) / read_seconds:,.0f} reviews/s); after building the {data.n_users:,} rows "
            f"(history width {summary['history_width']}) {after_rows:.0f} MiB.\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.ctr.amazon_example", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["example", "measure"])
    parser.add_argument("path", type=Path, help="example: the folder to write; measure: the reviews file")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="example: plain JSON lines instead of gzip")
    parser.add_argument("--meta", type=Path, default=None, help="measure: the metadata file (default: found beside)")
    parser.add_argument("--max-history", type=int, default=50)
    args = parser.parse_args(argv)
    if args.command == "example":
        reviews, meta = write_amazon_example(args.path, args.users, args.items, seed=args.seed, compress=not args.plain)
        print(f"wrote {reviews} and {meta}")
    else:
        print(measure(args.path, args.meta, args.max_history))


if __name__ == "__main__":
    main()
