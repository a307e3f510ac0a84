"""One Prometheus view of several serving processes, merged when it is scraped.

Each worker keeps its own in-memory registry (no per-request cost beyond a single process's) and
serves it on a private localhost port; the parent's /metrics fetches every worker's text and
merges it: counters, histograms and summaries are summed by series (so rates and percentiles
are those of the whole server), gauges keep one series per worker under a `worker` label
(`sum without (worker)` or `min without (worker)` in PromQL says what fits each gauge).
Per-process `*_created` timestamps are dropped: they mean nothing once summed. Three families
describe the workers themselves: `infersuite_worker_up`, `infersuite_worker_requests_total`
(each worker's share of the requests: how evenly the kernel spread the connections) and
`infersuite_worker_restarts_total` (workers the parent restarted after they died). A restarted
worker's counters start again from 0, which Prometheus's rate() reads as a counter reset.

The merge reads the text format line by line, keeping each series' name and labels as the
worker wrote them (prometheus_client's own exposition): about 30x cheaper than parsing it with
prometheus_client.parser (reports/metrics_cost.md, written by `python -m benchmarks.serving.metrics_cost`).
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

SUMMED_TYPES = frozenset({"counter", "histogram", "summary", "gaugehistogram"})
REQUESTS_TOTAL = "infersuite_requests_total"  # summed per worker into infersuite_worker_requests_total


@dataclass(frozen=True)
class WorkerText:
    """One worker's exposition text; None when it could not be scraped."""

    worker: int
    text: str | None


@dataclass
class _Family:
    help_line: str
    kind: str
    series: dict[str, float] = field(default_factory=dict)  # 'name{labels}' -> value, first-seen order


def _with_worker(series: str, worker: str) -> str:
    if series.endswith("}"):
        return f'{series[:-1]},worker="{worker}"}}'
    return f'{series}{{worker="{worker}"}}'


def _is_created(name: str, families: dict[str, _Family]) -> bool:
    if not name.endswith("_created"):
        return False
    base = name[: -len("_created")]
    return any(families.get(n) is not None and families[n].kind in SUMMED_TYPES for n in (base, f"{base}_total"))


def _merge_one(text: str, worker: str, families: dict[str, _Family]) -> float:
    """Adds one worker's text into `families`; returns that worker's request total."""
    family: _Family | None = None
    requests, help_line, name = 0.0, "", ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            help_line = line
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            family = None if _is_created(name, families) else families.setdefault(name, _Family(help_line, kind))
        elif line and not line.startswith("#") and family is not None:
            series, _, value_text = line.rpartition(" ")
            value = float(value_text)
            if family.kind in SUMMED_TYPES:
                family.series[series] = family.series.get(series, 0.0) + value
                if name == REQUESTS_TOTAL:
                    requests += value
            else:
                family.series[_with_worker(series, worker)] = value
    return requests


def merge(texts: Iterable[WorkerText], restarts: int = 0) -> str:
    """The merged exposition text: the workers' families, then the per-worker families."""
    families: dict[str, _Family] = {}
    up, shares = [], []
    for worker_text in texts:
        worker = str(worker_text.worker)
        up.append(f'infersuite_worker_up{{worker="{worker}"}} {1.0 if worker_text.text is not None else 0.0}')
        if worker_text.text is not None:
            requests = _merge_one(worker_text.text, worker, families)
            shares.append(f'infersuite_worker_requests_total{{worker="{worker}"}} {floatToGoString(requests)}')
    lines = []
    for name, family in families.items():
        lines += [family.help_line, f"# TYPE {name} {family.kind}"]
        lines += [f"{series} {floatToGoString(value)}" for series, value in family.series.items()]
    lines += ["# HELP infersuite_worker_up 1 when the worker's metrics could be read at this scrape.",
              "# TYPE infersuite_worker_up gauge", *up,
              "# HELP infersuite_worker_requests_total gRPC requests handled by each worker.",
              "# TYPE infersuite_worker_requests_total counter", *shares,
              "# HELP infersuite_worker_restarts_total Workers restarted by the parent after they died.",
              "# TYPE infersuite_worker_restarts_total counter",
              f"infersuite_worker_restarts_total {floatToGoString(restarts)}"]
    return "\n".join(lines) + "\n"


def fetch_text(port: int, timeout_s: float = 2.0) -> str | None:
    """A worker's /metrics text from its private localhost endpoint; None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as reply:
            return reply.read().decode()
    except OSError as exc:
        log.warning("metrics of the worker on port %d unreadable: %s", port, exc)
        return None


def scrape(worker_ports: Sequence[tuple[int, int | None]], restarts: int = 0,
           fetch: Callable[[int], str | None] = fetch_text) -> str:
    """Reads every worker's metrics ((index, port or None while it starts or is down)) and merges them."""
    return merge((WorkerText(worker, None if port is None else fetch(port)) for worker, port in worker_ports),
                 restarts)
