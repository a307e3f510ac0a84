"""Histogram math: percentiles, merging across processes, lossless encoding."""

import pytest

from infersuite.loadtest.stats import StepStats, cdf_points, new_histogram, record_us, summarize


def test_percentiles_of_a_known_distribution_are_within_hdr_precision():
    histogram = new_histogram()
    for ms in range(1, 1001):  # 1..1000 ms, uniform
        record_us(histogram, ms / 1000)
    figures = summarize(histogram)
    assert figures["count"] == 1000
    assert figures["p50_ms"] == pytest.approx(500, rel=1e-3)
    assert figures["p90_ms"] == pytest.approx(900, rel=1e-3)
    assert figures["p99_ms"] == pytest.approx(990, rel=1e-3)
    assert figures["p99_9_ms"] == pytest.approx(999, rel=1e-3)
    assert figures["max_ms"] == pytest.approx(1000, rel=1e-3)
    assert figures["mean_ms"] == pytest.approx(500.5, rel=1e-3)


def test_microsecond_resolution_and_clamping():
    histogram = new_histogram()
    record_us(histogram, 0.000_123)  # 123 us
    record_us(histogram, -1.0)  # a clock oddity never crashes: clamped to 1 us
    assert summarize(histogram)["max_ms"] == pytest.approx(0.123, abs=1e-6)
    assert histogram.get_min_value() == 1


def test_empty_histogram_summarizes_to_zeros():
    assert summarize(new_histogram())["p99_ms"] == 0.0
    assert cdf_points(new_histogram()) == []


def _stats(values_ms, errors=None):
    stats = StepStats(duration_s=2.0)
    for ms in values_ms:
        record_us(stats.latency_intended, ms / 1000)
        record_us(stats.latency_actual, ms / 2000)
        stats.ok += 1
    stats.errors.update(errors or {})
    return stats


def test_merging_processes_equals_recording_everything_in_one():
    a, b = _stats(range(1, 501), {"UNAVAILABLE": 2}), _stats(range(501, 1001), {"UNAVAILABLE": 1, "INTERNAL": 4})
    a.cpu_percent, b.cpu_percent = 30.0, 70.0
    a.merge(b)
    whole = _stats(range(1, 1001))
    assert summarize(a.latency_intended) == summarize(whole.latency_intended)
    assert a.ok == 1000 and a.errors == {"UNAVAILABLE": 3, "INTERNAL": 4}
    assert a.processes == 2 and a.cpu_percent == 70.0  # the busiest process is the one that matters
    assert a.throughput() == pytest.approx(500.0)  # same 2 s window, both processes' responses


def test_dict_round_trip_is_lossless():
    stats = _stats([1, 5, 5, 250, 1000], {"DEADLINE_EXCEEDED": 1})
    stats.check_failures["ctr: wrong count"] = 2
    stats.late, stats.dropped = 3, 1
    again = StepStats.from_dict(stats.to_dict())
    assert summarize(again.latency_intended) == summarize(stats.latency_intended)
    assert summarize(again.latency_actual) == summarize(stats.latency_actual)
    assert (again.errors, again.check_failures, again.late, again.dropped) == (
        stats.errors, stats.check_failures, 3, 1)


def test_cdf_points_are_monotone_and_reach_the_tail():
    stats = _stats(range(1, 10_001))
    points = cdf_points(stats.latency_intended)
    percentiles = [p for p, _ in points]
    latencies = [v for _, v in points]
    assert percentiles == sorted(percentiles) and latencies == sorted(latencies)
    assert percentiles[-1] >= 99.99
