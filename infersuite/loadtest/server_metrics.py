"""Server-side figures from the target's Prometheus /metrics, scraped before and after a step.

The difference of two scrapes of a histogram is the histogram of what happened in between, so
the server's request time, queue time, compute time and batch size over exactly the measured
window sit next to the client's figures. Quantiles come from the buckets by linear
interpolation, as PromQL's histogram_quantile does, so they are bucket-resolution estimates.
"""

from __future__ import annotations

import math
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

HISTOGRAMS = {
    "infersuite_request_duration_seconds": "request_s",  # whole gRPC request in the server
    "infersuite_model_queue_duration_seconds": "queue_s",  # waiting for a batch slot
    "infersuite_model_compute_duration_seconds": "compute_s",  # one model execution (one batch)
    "infersuite_model_batch_size": "batch_size",  # requests per execution
}
GROUP_LABELS = ("model", "service", "method")  # what a server-side row is keyed by


@dataclass
class HistogramSnapshot:
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative count
    count: float = 0.0
    total: float = 0.0

    def minus(self, before: HistogramSnapshot | None) -> HistogramSnapshot:
        if before is None:
            return self
        return HistogramSnapshot({le: c - before.buckets.get(le, 0.0) for le, c in self.buckets.items()},
                                 self.count - before.count, self.total - before.total)

    def plus(self, other: HistogramSnapshot) -> HistogramSnapshot:
        bounds = set(self.buckets) | set(other.buckets)
        return HistogramSnapshot({le: self.buckets.get(le, 0.0) + other.buckets.get(le, 0.0) for le in bounds},
                                 self.count + other.count, self.total + other.total)

    def quantile(self, q: float) -> float:
        """histogram_quantile(q): linear inside the bucket that holds rank q * count."""
        if self.count <= 0:
            return math.nan
        rank, lower, below = q * self.count, 0.0, 0.0
        for upper in sorted(self.buckets):
            cumulative = self.buckets[upper]
            if cumulative >= rank:
                if math.isinf(upper):
                    return lower  # beyond the last finite bucket: its bound is all we know
                share = (rank - below) / (cumulative - below) if cumulative > below else 0.0
                return lower + (upper - lower) * share
            lower, below = upper, cumulative
        return lower

    def upper_bound(self, q: float) -> float:
        """The upper bound of the bucket holding quantile q: for integer-valued histograms
        (batch sizes) interpolation would invent fractions."""
        rank = q * self.count
        return next((upper for upper in sorted(self.buckets) if self.buckets[upper] >= rank), math.nan)

    def summary(self, interpolate: bool = True) -> dict[str, float]:
        mean = self.total / self.count if self.count > 0 else math.nan
        quantile = self.quantile if interpolate else self.upper_bound
        return {"count": self.count, "mean": mean, "p50": quantile(0.5), "p99": quantile(0.99)}


Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], HistogramSnapshot]


def parse(text: str) -> Snapshot:
    """The infersuite histograms in a /metrics text, keyed by (metric, grouping labels)."""
    snapshot: Snapshot = {}
    for family in text_string_to_metric_families(text):
        if family.name not in HISTOGRAMS:
            continue
        for sample in family.samples:
            key = (family.name, tuple((k, v) for k, v in sorted(sample.labels.items()) if k in GROUP_LABELS))
            histogram = snapshot.setdefault(key, HistogramSnapshot())
            if sample.name.endswith("_bucket"):
                histogram.buckets[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_count"):
                histogram.count = sample.value
            elif sample.name.endswith("_sum"):
                histogram.total = sample.value
    return snapshot


def scrape(url: str, timeout_s: float = 5.0) -> Snapshot:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return parse(response.read().decode("utf-8"))


def delta(before: Snapshot, after: Snapshot) -> Snapshot:
    return {key: histogram.minus(before.get(key)) for key, histogram in after.items()}


def rows(snapshot: Snapshot) -> list[dict[str, Any]]:
    """One row per (metric, labels) that saw traffic, durations in ms (batch size in requests)."""
    table = []
    for (name, labels), histogram in sorted(snapshot.items()):
        if histogram.count <= 0:
            continue
        batch = HISTOGRAMS[name] == "batch_size"
        scale = 1.0 if batch else 1000.0
        figures = {k: (v * scale if k != "count" else v) for k, v in histogram.summary(not batch).items()}
        table.append({"metric": HISTOGRAMS[name], "labels": dict(labels), **figures})
    return table


class MetricsScraper:
    """Scrapes one URL around each measured window and adds the windows up (over trials).

    A failed scrape is reported once (`error`) and the server columns stay empty: the client
    figures are still valid without them.
    """

    def __init__(self, url: str | None):
        self.url = url
        self.error: str | None = None
        self._before: Snapshot | None = None
        self._total: Snapshot = {}

    def before(self) -> None:
        self._before = self._try()

    def after(self) -> None:
        after = self._try()
        if after is not None and self._before is not None:
            for key, histogram in delta(self._before, after).items():
                self._total[key] = self._total[key].plus(histogram) if key in self._total else histogram
        self._before = None

    def take(self) -> list[dict[str, Any]]:
        """The accumulated windows as rows; starts a new accumulation."""
        table, self._total = rows(self._total), {}
        return table

    def _try(self) -> Snapshot | None:
        if not self.url or self.error:
            return None
        try:
            return scrape(self.url)
        except (OSError, ValueError) as err:
            self.error = f"cannot scrape {self.url}: {err}"
            return None
