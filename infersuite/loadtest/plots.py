"""PNG plots of a report: latency percentiles vs load, throughput vs load, latency CDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PERCENTILE_LINES = (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("p99_9_ms", "p99.9"))


def _x_label(steps: list[dict[str, Any]]) -> str:
    return "clients (closed loop)" if steps[0]["load"]["mode"] == "closed" else "offered rate (requests/s)"


def plot_latency(steps: list[dict[str, Any]], path: Path) -> Path:
    x = [s["load"]["value"] for s in steps]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for key, label in PERCENTILE_LINES:
        axes.plot(x, [s["latency_from_intended_ms"][key] for s in steps], marker="o", label=label)
    if steps[0]["load"]["mode"] == "open":
        axes.plot(x, [s["latency_from_actual_ms"]["p99_ms"] for s in steps], linestyle="--", color="grey",
                  label="p99 from actual send")
    axes.set(xlabel=_x_label(steps), ylabel="latency (ms)", yscale="log", title="Latency percentiles vs load")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return _save(figure, path)


def plot_throughput(steps: list[dict[str, Any]], path: Path) -> Path:
    x = [s["load"]["value"] for s in steps]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(x, [s["throughput_rps"] for s in steps], marker="o", label="successful responses/s")
    if steps[0]["load"]["mode"] == "open":
        axes.plot(x, x, linestyle=":", color="grey", label="offered rate")
    axes.set(xlabel=_x_label(steps), ylabel="throughput (requests/s)", title="Throughput vs load")
    axes.grid(True, alpha=0.3)
    axes.legend()
    return _save(figure, path)


def plot_cdf(steps: list[dict[str, Any]], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for step in steps:
        points = step["cdf_from_intended"]
        if not points:
            continue
        # x = 1 / (1 - percentile) puts p90, p99, p99.9 at equal spacing (HdrHistogram's plot).
        axes.plot([1.0 / max(1e-6, 1.0 - p / 100.0) for p, _ in points], [v for _, v in points],
                  label=f"{step['load']['value']:g}")
    axes.set(xscale="log", yscale="log", xlabel="percentile", ylabel="latency from intended send (ms)",
             title="Latency by percentile")
    ticks = [1, 2, 10, 100, 1000, 10000]
    axes.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(title=_x_label(steps), fontsize="small", loc="lower right")
    return _save(figure, path)


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_all(report: dict[str, Any], out: Path) -> list[Path]:
    """The three plots, over the steps that had successful responses (none: no plots)."""
    steps = sorted((s for s in report["steps"] if s["ok"] > 0), key=lambda s: s["load"]["value"])
    if not steps:
        return []
    return [plot_latency(steps, out / "latency_vs_load.png"), plot_throughput(steps, out / "throughput_vs_load.png"),
            plot_cdf(steps, out / "latency_cdf.png")]
