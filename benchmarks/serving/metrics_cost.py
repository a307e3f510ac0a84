"""CPU per metric update: prometheus_client in memory (what each worker does; the parent merges
at scrape time) against its multiprocess mode (every update written to a memory-mapped file).

    python -m benchmarks.serving.metrics_cost            # -> reports/metrics_cost.md

Each mode runs in its own process (multiprocess mode is chosen when prometheus_client is
imported). Figures are the best of several repeats, in nanoseconds per update on a label child
bound in advance, as the runtime's hot path uses them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

OPERATIONS = ("counter inc", "gauge inc+dec", "histogram observe")
UPDATES_PER_REQUEST = {"counter inc": 1, "gauge inc+dec": 1, "histogram observe": 4}  # see the report
COMMAND = "python -m benchmarks.serving.metrics_cost"


def _measure(number: int, repeats: int) -> dict[str, float]:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    counter = Counter("c", "c", ["service", "method", "code"], registry=registry).labels("s", "m", "OK")
    gauge = Gauge("g", "g", ["model"], registry=registry, multiprocess_mode="livesum").labels("din")
    histogram = Histogram("h", "h", ["model"], registry=registry).labels("din")

    def gauge_both() -> None:
        gauge.inc()
        gauge.dec()

    calls = {"counter inc": counter.inc, "gauge inc+dec": gauge_both,
             "histogram observe": lambda: histogram.observe(0.0007)}
    return {name: min(timeit.repeat(call, number=number, repeat=repeats)) / number * 1e9
            for name, call in calls.items()}


def _merge_ms(workers: int, repeats: int) -> tuple[float, float]:
    """Parent CPU per scrape merging `workers` texts of a registry with 4 models' series, and
    what parsing them with prometheus_client.parser alone would cost."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from infersuite.services.runtime.metrics import Metrics
    from infersuite.services.runtime.metrics_merge import WorkerText, merge

    metrics = Metrics()
    for model in ("din", "segmentation-encoder", "splitcompute-decoder", "audio-embedder"):
        metrics.compute_time.labels(model, "1").observe(0.001)
        for name in ("queue_time", "batch_size", "padding_fraction"):
            getattr(metrics, name).labels(model).observe(1)
        metrics.model_ready.labels(model).set(1)
        metrics.requests.labels(model, "Infer", "OK").inc()
        metrics.request_latency.labels(model, "Infer").observe(0.001)
    text = generate_latest(metrics.registry).decode()
    texts = [WorkerText(i, text) for i in range(workers)]
    merged = min(timeit.repeat(lambda: merge(texts), number=1, repeat=repeats)) * 1000
    parsed = min(timeit.repeat(lambda: [list(text_string_to_metric_families(t.text or "")) for t in texts],
                               number=1, repeat=repeats)) * 1000
    return merged, parsed


def _run_mode(multiprocess: bool, number: int, repeats: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with tempfile.TemporaryDirectory() as directory:
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = directory
        child = [sys.executable, "-m", "benchmarks.serving.metrics_cost", "--child", str(number), str(repeats)]
        out = subprocess.run(child, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def _report(memory: dict[str, float], mapped: dict[str, float], merge_ms: dict[int, tuple[float, float]]) -> str:
    rows = [f"| {op} | {memory[op]:.0f} | {mapped[op]:.0f} | {mapped[op] / memory[op]:.1f}x |" for op in OPERATIONS]
    per_request = {mode: sum(figures[op] * n for op, n in UPDATES_PER_REQUEST.items())
                   for mode, figures in (("memory", memory), ("mapped", mapped))}
    return "\n".join([
        "# Metric updates: in-memory registry vs prometheus_client multiprocess mode", "",
        f"Written by `{COMMAND}` on this machine (shared and noisy: best of repeats).", "",
        "| update (label child bound in advance) | in memory, ns | multiprocess mode, ns | ratio |",
        "|---|---|---|---|", *rows, "",
        "A served request makes about one counter update, one gauge inc+dec and four histogram",
        "observations (request latency and queue time per request, compute time and batch size per",
        "batch, the ctr service two more per request):",
        f"**{per_request['memory'] / 1000:.1f} µs in memory against {per_request['mapped'] / 1000:.1f} µs in "
        "multiprocess mode** per request. infersuite keeps each worker's registry in memory and merges the",
        "workers' metrics when /metrics is scraped (infersuite/services/runtime/metrics_merge.py), which costs nothing",
        "per request; the parent pays per scrape instead:", "",
        "| workers merged (4 models' series each) | parent CPU per scrape, ms | parsing alone with "
        "prometheus_client.parser, ms |", "|---|---|---|",
        *[f"| {n} | {ms[0]:.1f} | {ms[1]:.1f} |" for n, ms in merge_ms.items()], "",
        "docs/scaling.md has the design.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving.metrics_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("reports/metrics_cost.md"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(*args.child)))
        return
    memory, mapped = _run_mode(False, args.number, args.repeats), _run_mode(True, args.number, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    merge_ms = {n: _merge_ms(n, args.repeats) for n in (2, 16, 64)}
    args.out.write_text(_report(memory, mapped, merge_ms))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
