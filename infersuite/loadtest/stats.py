"""Latency accounting: HDR histograms (microsecond resolution) and the counters of one load step.

Every step keeps three histograms, all in microseconds:

- `latency_intended`: response time measured from the INTENDED send time. In open loop this is
  the coordinated-omission-safe figure (wrk2's lesson): a stalled server delays the sends behind
  it, and that delay is charged to the server, not silently skipped.
- `latency_actual`: response time measured from the moment the request really left.
- `schedule_lag`: how late the generator sent (actual - intended); large values mean the
  generator, not the server, is the bottleneck.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: nothing a deadline allows is larger
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_us(histogram: HdrHistogram, seconds: float) -> None:
    """Records a duration in seconds at microsecond resolution (clamped to the histogram range)."""
    histogram.record_value(min(max(int(seconds * 1e6), LOWEST_US), HIGHEST_US))


def encode(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii")


def decode(text: str) -> HdrHistogram:
    histogram = new_histogram()
    if text:
        histogram.add(HdrHistogram.decode(text.encode("ascii")))
    return histogram


def summarize(histogram: HdrHistogram) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean in milliseconds (0 for an empty histogram)."""
    if histogram.get_total_count() == 0:
        return {"count": 0, **{_key(p): 0.0 for p in PERCENTILES}, "max_ms": 0.0, "mean_ms": 0.0}
    figures: dict[str, float] = {"count": histogram.get_total_count()}
    for percentile in PERCENTILES:
        figures[_key(percentile)] = histogram.get_value_at_percentile(percentile) / 1000.0
    figures["max_ms"] = histogram.get_max_value() / 1000.0
    figures["mean_ms"] = histogram.get_mean_value() / 1000.0
    return figures


def _key(percentile: float) -> str:
    return f"p{percentile:g}_ms".replace(".", "_")


def cdf_points(histogram: HdrHistogram, points: int = 60) -> list[tuple[float, float]]:
    """(percentile, latency ms) pairs spaced so the tail (99, 99.9, 99.99...) is visible."""
    if histogram.get_total_count() == 0:
        return []
    # 1 - 10^-k for k in [0.05, 5]: dense near the tail, like HdrHistogram's percentile output
    exponents = [0.05 + 4.95 * i / (points - 1) for i in range(points)]
    percentiles = sorted({round(100.0 * (1.0 - 10.0 ** -k), 4) for k in exponents})
    return [(p, histogram.get_value_at_percentile(p) / 1000.0) for p in percentiles]


@dataclass
class StepStats:
    """What one load step (one process or merged) measured."""

    latency_intended: HdrHistogram = field(default_factory=new_histogram)
    latency_actual: HdrHistogram = field(default_factory=new_histogram)
    schedule_lag: HdrHistogram = field(default_factory=new_histogram)
    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # gRPC status code name -> count
    check_failures: Counter[str] = field(default_factory=Counter)  # failed check -> count
    error_samples: dict[str, str] = field(default_factory=dict)  # status code name -> first details seen
    late: int = 0  # sent later than the lateness threshold after their intended time
    dropped: int = 0  # never sent: the in-flight cap was reached (open loop)
    duration_s: float = 0.0  # measured window
    cpu_percent: float = 0.0  # generator process CPU over the window (100 = one core)
    processes: int = 1

    def merge(self, other: StepStats) -> None:
        """Adds another process's step (same window) into this one."""
        self.latency_intended.add(other.latency_intended)
        self.latency_actual.add(other.latency_actual)
        self.schedule_lag.add(other.schedule_lag)
        self.sent += other.sent
        self.ok += other.ok
        self.errors.update(other.errors)
        self.check_failures.update(other.check_failures)
        for code, details in other.error_samples.items():
            self.error_samples.setdefault(code, details)
        self.late += other.late
        self.dropped += other.dropped
        self.duration_s = max(self.duration_s, other.duration_s)
        self.cpu_percent = max(self.cpu_percent, other.cpu_percent)  # the busiest process matters
        self.processes += other.processes

    @property
    def completed(self) -> int:
        return self.ok + sum(self.errors.values())

    def throughput(self) -> float:
        """Successful responses per second over the window."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form; histograms are kept losslessly (HdrHistogram base64)."""
        return {
            "sent": self.sent, "ok": self.ok, "errors": dict(self.errors),
            "check_failures": dict(self.check_failures), "error_samples": self.error_samples,
            "late": self.late, "dropped": self.dropped,
            "duration_s": self.duration_s, "cpu_percent": self.cpu_percent, "processes": self.processes,
            "histograms": {"latency_intended": encode(self.latency_intended),
                           "latency_actual": encode(self.latency_actual),
                           "schedule_lag": encode(self.schedule_lag)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepStats:
        histograms = data["histograms"]
        return cls(
            latency_intended=decode(histograms["latency_intended"]),
            latency_actual=decode(histograms["latency_actual"]),
            schedule_lag=decode(histograms["schedule_lag"]),
            sent=data["sent"], ok=data["ok"], errors=Counter(data["errors"]),
            check_failures=Counter(data["check_failures"]), error_samples=dict(data.get("error_samples", {})),
            late=data["late"], dropped=data["dropped"],
            duration_s=data["duration_s"], cpu_percent=data["cpu_percent"], processes=data["processes"],
        )
