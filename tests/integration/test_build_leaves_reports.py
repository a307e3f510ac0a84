"""Builds write into artifacts/, never into reports/: only `make report-*` / `bench-*` targets write reports."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_quick_build_writes_only_its_out_and_artifacts(tmp_path: Path) -> None:
    before = tree_digest(ROOT / "reports")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # cwd is the temp dir: a relative "reports/..." default would land there, an absolute one in the repo.
    subprocess.run([sys.executable, "-m", "exporters.build", "--quick", "--out", "repo", "--artifacts", "art"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "repo"]
    assert (tmp_path / "repo" / "aliases.json").is_file()
    assert tree_digest(ROOT / "reports") == before
