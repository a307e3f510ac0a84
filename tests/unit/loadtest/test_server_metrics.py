"""Joining /metrics: window deltas and bucket quantiles (as PromQL's histogram_quantile)."""

import math

import pytest

from infersuite.loadtest.server_metrics import HistogramSnapshot, MetricsScraper, delta, parse, rows


def _text(count_fast: int, count_slow: int) -> str:
    total = count_fast + count_slow
    return f"""# HELP infersuite_model_compute_duration_seconds Time of one model execution.
# TYPE infersuite_model_compute_duration_seconds histogram
infersuite_model_compute_duration_seconds_bucket{{le="0.001",model="din-fp32",version="1"}} {count_fast}
infersuite_model_compute_duration_seconds_bucket{{le="0.01",model="din-fp32",version="1"}} {total}
infersuite_model_compute_duration_seconds_bucket{{le="+Inf",model="din-fp32",version="1"}} {total}
infersuite_model_compute_duration_seconds_count{{model="din-fp32",version="1"}} {total}
infersuite_model_compute_duration_seconds_sum{{model="din-fp32",version="1"}} {count_fast * 0.0005 + count_slow * 0.005}
# HELP infersuite_model_batch_size Requests per execution.
# TYPE infersuite_model_batch_size histogram
infersuite_model_batch_size_bucket{{le="1.0",model="din-fp32"}} {count_fast}
infersuite_model_batch_size_bucket{{le="4.0",model="din-fp32"}} {total}
infersuite_model_batch_size_bucket{{le="+Inf",model="din-fp32"}} {total}
infersuite_model_batch_size_count{{model="din-fp32"}} {total}
infersuite_model_batch_size_sum{{model="din-fp32"}} {count_fast + 4 * count_slow}
# HELP other_metric Not ours.
# TYPE other_metric counter
other_metric_total 5
"""


def test_window_is_the_difference_of_two_scrapes():
    before, after = parse(_text(100, 0)), parse(_text(150, 50))
    table = {row["metric"]: row for row in rows(delta(before, after))}
    compute = table["compute_s"]
    assert compute["labels"] == {"model": "din-fp32"}  # version is not a grouping label
    assert compute["count"] == 100  # 50 fast + 50 slow happened in the window
    assert compute["mean"] == pytest.approx((50 * 0.5 + 50 * 5) / 100)  # ms
    assert compute["p50"] == pytest.approx(1.0)  # rank 50 ends the first bucket
    assert compute["p99"] == pytest.approx(1.0 + 9.0 * 49 / 50)  # linear inside (1 ms, 10 ms]
    batch = table["batch_size"]
    assert (batch["p50"], batch["p99"]) == (1.0, 4.0)  # batch sizes: bucket bounds, no fractions
    assert batch["mean"] == pytest.approx(2.5)


def test_quantile_beyond_the_last_finite_bucket_is_that_bound():
    histogram = HistogramSnapshot({0.1: 0.0, math.inf: 10.0}, 10, 50.0)
    assert histogram.quantile(0.99) == 0.1
    assert math.isnan(HistogramSnapshot().quantile(0.5))


def test_an_unreachable_metrics_url_leaves_the_server_columns_empty():
    scraper = MetricsScraper("http:///metrics")  # no host: fails before any socket
    scraper.before()
    scraper.after()
    assert scraper.take() == [] and "cannot scrape" in (scraper.error or "")
