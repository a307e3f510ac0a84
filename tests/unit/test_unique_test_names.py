"""pytest imports test modules by basename (no packages under tests/): two files with one name in
different folders stop the whole run at collection ("import file mismatch"). Catch it in the fast lane,
which collects tests/unit only and would never see such a clash."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_basename_is_unique_across_tests() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        seen[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert len(seen) > 100 and not clashes, clashes
