"""Trials, the self-check, the SLO search (against a fake pool with a known knee) and reports."""

import json

import pytest

from infersuite.loadtest import report
from infersuite.loadtest.engine import StepSpec
from infersuite.loadtest.runner import Runner, self_check
from infersuite.loadtest.server_metrics import MetricsScraper
from infersuite.loadtest.stats import StepStats, record_us


class KneePool:
    """A fake WorkerPool: p99 is 10 ms below `knee` requests/s and 500 ms above it."""

    def __init__(self, knee: float):
        self.knee, self.calls = knee, []

    def run_step(self, step, progress=None, at_window_start=None):
        self.calls.append(step)
        stats = StepStats(duration_s=step.duration_s)
        latency = 0.010 if step.load <= self.knee else 0.5
        for _ in range(200):
            record_us(stats.latency_intended, latency)
            record_us(stats.latency_actual, latency)
            record_us(stats.schedule_lag, 0.0001)
        stats.ok = stats.sent = 200
        stats.cpu_percent = 20.0
        return stats


def _step(**overrides):
    return StepSpec(**{"mode": "open", "rate": 100.0, "warmup_s": 0.0, "duration_s": 1.0, **overrides})


def test_slo_search_brackets_the_knee_within_the_precision():
    pool = KneePool(knee=730.0)
    runner = Runner(pool, MetricsScraper(None))
    result = runner.slo_search(_step(), slo_p99_ms=50.0, start_rate=100.0, max_rate=10_000.0, precision=0.05)
    assert result["best_rate"] <= 730.0 < result["first_failing_rate"]
    assert (result["first_failing_rate"] - result["best_rate"]) / result["best_rate"] <= 0.05
    assert [s.rate for s in pool.calls[:4]] == [100.0, 200.0, 400.0, 800.0]  # doubling, then bisection
    assert all(s.mode == "open" for s in pool.calls)


def test_slo_search_reports_when_no_rate_meets_the_slo():
    result = Runner(KneePool(knee=10.0), MetricsScraper(None)).slo_search(_step(), 50.0, 100.0, 1000.0)
    assert result["best_rate"] is None and "misses the SLO" in result["verdict"]


def test_trials_are_repeated_with_new_seeds_and_merged():
    pool = KneePool(knee=1e9)
    result = Runner(pool, MetricsScraper(None), trials=3).run(_step(seed=5))
    assert [s.seed for s in pool.calls] == [5, 6, 7]
    assert result.merged.ok == 600 and result.merged.duration_s == 3.0
    assert result.to_dict()["trials"]["count"] == 3


def test_self_check_flags_a_saturated_or_late_generator():
    step = _step(rate=1000.0, duration_s=1.0, late_threshold_s=0.005)
    stats = StepStats(duration_s=1.0, sent=400, dropped=10, cpu_percent=97.0)
    record_us(stats.schedule_lag, 0.050)
    warnings = " | ".join(self_check(step, stats, machine_cpu=95.0))
    assert "generator saturated" in warnings and "97%" in warnings
    assert "machine CPU 95%" in warnings
    assert "schedule lag p99 50.0 ms" in warnings
    assert "10 sends dropped" in warnings
    assert "only 410 of ~1000 scheduled sends" in warnings
    healthy = StepStats(duration_s=1.0, sent=1000, cpu_percent=30.0)
    record_us(healthy.schedule_lag, 0.0002)
    assert self_check(step, healthy, machine_cpu=40.0) == []


def test_report_files_hold_the_figures(tmp_path):
    runner = Runner(KneePool(knee=150.0), MetricsScraper(None))
    for rate in (100.0, 200.0):
        runner.run(_step(rate=rate))
    meta = report.metadata("localhost:1", "ctr", {"command_line": "python -m infersuite.loadtest run ..."},
                           {"n_items": 600})
    files = report.write(report.build(meta, runner.results), tmp_path)
    assert sorted(f.name for f in files) == ["latency_cdf.png", "latency_vs_load.png", "report.json", "report.md",
                                             "throughput_vs_load.png"]
    for png in files[2:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["metadata"]["git"]["sha"] and data["metadata"]["machine"]["logical_cpus"] >= 1
    steps = data["steps"]
    assert [s["load"]["rate"] for s in steps] == [100.0, 200.0]
    assert steps[0]["latency_from_intended_ms"]["p99_ms"] == pytest.approx(10.0, rel=1e-3)
    assert steps[1]["latency_from_intended_ms"]["p99_ms"] == pytest.approx(500.0, rel=1e-3)
    assert steps[0]["raw"][0]["histograms"]["latency_intended"]  # lossless histogram kept
    markdown = (tmp_path / "report.md").read_text()
    assert "| 100/s poisson | 200 | 10.01 (10.01) |" in markdown  # HDR: 3 significant digits
    assert "python -m infersuite.loadtest run ..." in markdown
