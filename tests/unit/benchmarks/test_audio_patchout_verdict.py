"""reports/audio.md's Patchout-at-equal-compute line: with minus without Patchout, paired by training seed,
judged at the seed level (models.statistics): the committed run's 3 seeds (0.856 vs 0.744 mean) are
unresolved, [-0.09, +0.32], not a win."""

from __future__ import annotations

from benchmarks.audio.generality import patchout_verdict


def _runs(accuracies: list[float]) -> dict:
    return {"runs": [{"seed": seed, "test_accuracy": a, "train_cpu_s": 30.0} for seed, a in enumerate(accuracies)]}


def test_the_committed_three_seeds_are_unresolved() -> None:
    line = patchout_verdict({"with Patchout": _runs([0.903, 0.847, 0.817]),
                             "without Patchout": _runs([0.850, 0.769, 0.611])})[-1]
    assert "+0.112 [-0.092, +0.316]" in line and "**unresolved**" in line and "Student-t" in line


def test_a_steady_gain_is_supported_and_missing_pairs_give_no_line() -> None:
    line = patchout_verdict({"with Patchout": _runs([0.90, 0.91, 0.90, 0.92]),
                             "without Patchout": _runs([0.80, 0.80, 0.81, 0.80])})[-1]
    assert "**supported**" in line
    assert patchout_verdict({"with Patchout": _runs([0.9])}) == []


def test_the_written_report_is_rerendered_from_its_own_table_once(tmp_path) -> None:
    from benchmarks.audio.generality import rerender_report

    report = tmp_path / "audio.md"
    report.write_text("# Audio\n\nWritten by `x`.\n\n| PaSST training | test accuracy |\n|---|---|\n"
                      "| with Patchout (exported) | 0.933 | 5.2 |\n| without Patchout | 0.961 | 8.2 |\n\nBoW.\n\n"
                      "| PaSST | epochs in the budget | CPU s / epoch | test accuracy, mean +- sd | per seed "
                      "| CPU s used |\n"
                      "|---|---|---|---|---|---|\n"
                      "| with Patchout | 18 | 1.64 | 0.856 +- 0.044 | 0.903, 0.847, 0.817 | 31, 33, 32 |\n"
                      "| without Patchout | 11 | 2.85 | 0.744 +- 0.122 | 0.850, 0.769, 0.611 | 36, 34, 32 |\n\n"
                      "## Next\n")
    first = rerender_report(report, "python -m benchmarks.audio.generality --rerender-report a.md")
    assert rerender_report(report, "python -m benchmarks.audio.generality --rerender-report a.md") == first
    assert "+0.112 [-0.092, +0.316]" in first and "**unresolved**" in first
    assert first.count("One training run each") == 1 and first.count("re-rendered from this report's own") == 1
    assert "32 |\n\nWith minus without" in first and "one seed.\n\n## Next" not in first
