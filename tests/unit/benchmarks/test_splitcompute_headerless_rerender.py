"""Issue 27's corrections to reports/splitcompute.md: the BD-rate over the high-accuracy range only
(`accuracy_floor`), the header-free figures as the headline, the learned codec's standing against JPEG,
and `--rerender` from the committed .json (an older .json without the ablation rows and the run's command
reads them once from its report), idempotent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.splitcompute.bdrate import bd_rate
from benchmarks.splitcompute.report import rerender

REPORTS = Path(__file__).resolve().parents[3] / "reports"
RATES = np.array([100.0, 180.0, 400.0, 900.0, 2500.0])
ACCURACIES = np.array([0.55, 0.68, 0.80, 0.86, 0.90])


def test_the_floor_restricts_the_range_and_a_range_above_both_curves_is_none() -> None:
    # log-linear curves (PCHIP fits them exactly): log tested - log reference = -4 * (0.90 - a), so the mean
    # difference is -4 * 0.05 from 0.80 up and -4 * 0.175 over the whole range
    reference = 30 * np.exp(9 * ACCURACIES)
    tested = reference * np.exp(-4 * (0.90 - ACCURACIES))
    high = bd_rate((reference, ACCURACIES), (tested, ACCURACIES), accuracy_floor=0.80)
    assert high is not None and (high.accuracy_low, high.accuracy_high) == (0.80, 0.90)
    assert high.value == pytest.approx(np.expm1(-0.2), rel=1e-9)
    whole = bd_rate((reference, ACCURACIES), (tested, ACCURACIES))
    assert whole is not None and whole.value == pytest.approx(np.expm1(-0.7), rel=1e-9)  # flattered by low range
    assert bd_rate((RATES, ACCURACIES), (RATES / 2, ACCURACIES), accuracy_floor=0.95) is None


def test_rerender_of_the_committed_run_headlines_the_header_free_figures(tmp_path: Path) -> None:
    source, out = tmp_path / "splitcompute.json", tmp_path / "splitcompute.md"
    shutil.copy(REPORTS / "splitcompute.md", out)
    run = json.loads((REPORTS / "splitcompute.json").read_text())
    for key in ("report", "served", "ablation"):  # as the run before issue 27 wrote it
        run.pop(key, None)
    source.write_text(json.dumps(run))
    command = f"python -m benchmarks.splitcompute.report --rerender {source} --out {out}"
    first = rerender(source, out, command)
    saved = source.read_text()
    assert rerender(source, out, command) == first and source.read_text() == saved
    assert first.count("Re-rendered from its .json") == 1
    best = next(line for line in first.splitlines() if line.startswith("- Entropic Student vs best input codec"))
    assert "**-56.5%** without headers" in best and "(-81.6% bytes sent" in best
    assert "from 85% up **-34.1%** without headers" in best and "**missed**" in best
    assert "1.53-1.93x JPEG 4:4:4's bytes sent" in first  # the learned codec is weaker than JPEG
    assert "| split point + frozen tail layers | GDN, from scratch | 6 | 11.0% | 10.8% |" in first
    stored = json.loads(saved)
    assert stored["report"]["command"].startswith("python -m benchmarks.splitcompute_report")
    assert stored["report"]["rerendered_by"] == command and stored["served"]["setting"] == "beta=0.05"
    assert len(stored["ablation"]) == 3
