"""`python -m benchmarks.ctr.report --rerender`: rebuilds the committed report's claims and comparison
tables from its .json (the seed-level intervals, the users-only bootstrap beside them), stamps the report
with the command, keeps the run's own command in the .json, and gives the same files when run twice."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.ctr.report import rerender

REPORT = """# CTR quality

Produced by `python -m exporters.ctr_report --out x` (= `make report-ctr`).

Model: tiny. Intervals: 2,000 paired bootstrap resamples of test users of the seed-averaged per-user AUC \
difference (GAUC weights); RelaImpr (eq. 11) from the seed means.

## Claims against the data

Supported = the old rule.

- DIN beats the BaseModel: **supported**, ΔGAUC +0.0083 [+0.0052, +0.0115].

## BaseModel vs DIN, PReLU vs Dice

World: small. Oracle (true click probability): GAUC 0.7420, AUC 0.7863.

| A - B | seeds | ΔGAUC per seed (mean ± sd) | ΔGAUC, paired bootstrap over users [95% interval] | reading |
|---|---|---|---|---|
| DIN, PReLU - BaseModel (sum pooling, PReLU) | 3 | 0.0083 ± 0.0026 | +0.0083 [+0.0052, +0.0115] | DIN, PReLU better |
"""
FIGURES = {"dice": {
    "models": {"base": {"gauc": [0.6727, 0.0036]}, "din_prelu": {"gauc": [0.6810, 0.0011]}},
    "comparisons": {"din_prelu - base": {"seeds": [0, 1, 2], "per_seed": [0.0060, 0.0111, 0.0078],
                                         "per_seed_mean_sd": [0.0083, 0.0026], "users": 2754,
                                         "bootstrap": [0.0083, 0.0052, 0.0115]}}}}


def test_rerender_rewrites_claims_and_tables_and_is_idempotent(tmp_path: Path) -> None:
    report, source = tmp_path / "ctr_quality.md", tmp_path / "ctr_quality.json"
    report.write_text(REPORT)
    source.write_text(json.dumps(FIGURES))
    command = f"python -m benchmarks.ctr.report --rerender {source} --report {report}"
    first = rerender(source, report, command)
    saved = source.read_text()
    assert rerender(source, report, command) == first and source.read_text() == saved
    meta = json.loads(saved)["report"]
    assert meta == {"command": "python -m exporters.ctr_report --out x", "rerendered_by": command}
    assert first.count("Re-rendered from") == 1 and "Student-t" in first and "Supported = the old rule" not in first
    assert "2,000 paired bootstrap resamples" not in first and "ignores training variance" in first
    row = next(line for line in first.splitlines() if line.startswith("| DIN, PReLU - BaseModel"))
    assert row.endswith("| DIN, PReLU better | [+0.0052, +0.0115] |")  # seed level excludes 0 here too
    assert "recovers **12%**" in first  # (0.6810 - 0.6727) / (0.7420 - 0.6727)
    assert json.loads(saved)["dice"]["oracle"] == {"gauc": 0.742, "auc": 0.7863}
