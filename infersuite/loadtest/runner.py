"""Steps, trials, sweeps and the SLO search on top of a WorkerPool, plus the generator self-check.

Every step = warm-up (discarded) + a fixed measured window, repeated `trials` times; the
trials' histograms merge into the step's figures and their spread is kept. Each step carries
the server's view of the same windows (from /metrics) and the warnings of the self-check,
so a number limited by the generator or the machine is labelled as such.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from infersuite.loadtest.engine import StepSpec
from infersuite.loadtest.server_metrics import MetricsScraper
from infersuite.loadtest.stats import StepStats, cdf_points, summarize
from infersuite.loadtest.workers import WorkerPool

GENERATOR_CPU_LIMIT = 85.0  # % of one core: above it a worker process cannot keep its schedule
MACHINE_CPU_LIMIT = 90.0  # % of all cores: generator and server fight for the CPU


@dataclass
class StepResult:
    step: StepSpec
    trials: list[StepStats]
    merged: StepStats
    server: list[dict[str, Any]] = field(default_factory=list)
    machine_cpu_percent: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def p99_ms(self) -> float:
        return summarize(self.merged.latency_intended)["p99_ms"]

    @property
    def error_rate(self) -> float:
        total = self.merged.ok + sum(self.merged.errors.values()) + sum(self.merged.check_failures.values())
        bad = total - self.merged.ok
        return bad / total if total else 1.0

    def to_dict(self) -> dict[str, Any]:
        merged = self.merged
        trial_p99 = [summarize(t.latency_intended)["p99_ms"] for t in self.trials]
        trial_tput = [t.throughput() for t in self.trials]
        return {
            "load": {"mode": self.step.mode, "concurrency": self.step.concurrency, "rate": self.step.rate,
                     "arrival": "trace" if self.step.trace else self.step.arrival, "value": self.step.load},
            "settings": {k: v for k, v in dataclasses.asdict(self.step).items() if k != "trace"},
            "throughput_rps": sum(trial_tput) / len(trial_tput),
            "trials": {"count": len(self.trials), "p99_ms": trial_p99, "throughput_rps": trial_tput},
            "latency_from_intended_ms": summarize(merged.latency_intended),
            "latency_from_actual_ms": summarize(merged.latency_actual),
            "schedule_lag_ms": summarize(merged.schedule_lag),
            "cdf_from_intended": cdf_points(merged.latency_intended),
            "sent": merged.sent, "ok": merged.ok, "errors": dict(merged.errors),
            "check_failures": dict(merged.check_failures), "error_samples": merged.error_samples,
            "late": merged.late, "dropped": merged.dropped,
            "error_rate": self.error_rate,
            "generator": {"processes": merged.processes // len(self.trials),
                          "max_process_cpu_percent": merged.cpu_percent,
                          "machine_cpu_percent": self.machine_cpu_percent},
            "server": self.server, "warnings": self.warnings, "raw": [t.to_dict() for t in self.trials],
        }


def self_check(step: StepSpec, stats: StepStats, machine_cpu: float) -> list[str]:
    """Why this step's figures might describe the generator or the machine, not the server."""
    warnings = []
    if stats.cpu_percent >= GENERATOR_CPU_LIMIT:
        warnings.append(f"generator saturated: a worker process used {stats.cpu_percent:.0f}% of a core "
                        "(add --workers)")
    if machine_cpu >= MACHINE_CPU_LIMIT:
        warnings.append(f"machine CPU {machine_cpu:.0f}% busy: generator and server compete for the cores")
    if step.mode == "open":
        lag = summarize(stats.schedule_lag)
        if lag["p99_ms"] > step.late_threshold_s * 1000:
            warnings.append(f"schedule lag p99 {lag['p99_ms']:.1f} ms > {step.late_threshold_s * 1000:g} ms: "
                            "sends left late (latency is still counted from the intended time)")
        if stats.dropped:
            warnings.append(f"{stats.dropped} sends dropped at the in-flight cap ({step.max_inflight} per "
                            "process): the server could not keep up")
        expected = step.rate * step.duration_s if step.trace is None else 0
        if expected and stats.sent + stats.dropped < 0.9 * expected:
            warnings.append(f"only {stats.sent + stats.dropped} of ~{expected:.0f} scheduled sends happened")
    return warnings


class Runner:
    """Runs steps on one WorkerPool and reports progress through `display`."""

    def __init__(self, pool: WorkerPool, scraper: MetricsScraper, trials: int = 1,
                 display: Callable[[str, float, int], None] | None = None):
        self.pool, self.scraper, self.trials, self.display = pool, scraper, trials, display
        self.results: list[StepResult] = []

    def run(self, step: StepSpec, label: str = "") -> StepResult:
        trials = []
        psutil.cpu_percent(None)  # starts the machine-wide CPU measurement
        for trial in range(self.trials):
            title = f"{label} trial {trial + 1}/{self.trials}" if self.trials > 1 else label
            progress = self._progress(title, step.warmup_s + step.duration_s)
            stats = self.pool.run_step(dataclasses.replace(step, seed=step.seed + trial), progress,
                                       self.scraper.before)
            self.scraper.after()
            trials.append(stats)
        machine_cpu = psutil.cpu_percent(None)
        merged = StepStats.from_dict(trials[0].to_dict())
        for stats in trials[1:]:
            merged.merge(stats)
        merged.duration_s = step.duration_s * len(trials)
        warnings = sorted({w for stats in trials for w in self_check(step, stats, machine_cpu)})
        result = StepResult(step, trials, merged, self.scraper.take(), machine_cpu, warnings)
        self.results.append(result)
        return result

    def _progress(self, title: str, seconds: float) -> Callable[[int], None] | None:
        display = self.display
        if display is None:
            return None
        return lambda done: display(title, seconds, done)

    def sweep(self, steps: list[StepSpec]) -> list[StepResult]:
        return [self.run(step, f"step {i + 1}/{len(steps)} {_load_label(step)}") for i, step in enumerate(steps)]

    def slo_search(self, base: StepSpec, slo_p99_ms: float, start_rate: float, max_rate: float,
                   precision: float = 0.1, max_error_rate: float = 0.001) -> dict[str, Any]:
        """Highest open-loop rate whose p99 (from intended send) <= slo and error rate <= max.

        Doubles from `start_rate` until a rate fails (or `max_rate`), then bisects until the
        bracket is narrower than `precision` (relative). A probe the generator could not drive
        (saturated, dropped sends) stops the search rather than pass or fail the server.
        """
        passed: float | None = None
        failed: float | None = None
        rate, verdict = start_rate, ""

        def probe(rate: float) -> bool | None:
            result = self.run(dataclasses.replace(base, mode="open", rate=rate), f"SLO probe {rate:.0f}/s")
            if any(w.startswith("generator saturated") for w in result.warnings):
                return None
            return result.p99_ms <= slo_p99_ms and result.error_rate <= max_error_rate and not result.merged.dropped

        while passed is None or failed is None:
            outcome = probe(rate)
            if outcome is None:
                verdict = f"stopped: the generator saturated at {rate:.0f}/s (add --workers)"
                break
            if outcome:
                passed = rate
                if rate >= max_rate:
                    verdict = f"every probed rate passed, up to --max-rate {max_rate:g}/s"
                    break
                rate = min(rate * 2, max_rate)
            else:
                failed = rate
                if passed is None:
                    verdict = f"even {rate:.0f}/s misses the SLO"
                    break
        while passed is not None and failed is not None and not verdict and (failed - passed) / passed > precision:
            middle = (passed + failed) / 2
            outcome = probe(middle)
            if outcome is None:
                verdict = f"stopped: the generator saturated at {middle:.0f}/s"
                break
            passed, failed = (middle, failed) if outcome else (passed, middle)
        return {"slo_p99_ms": slo_p99_ms, "max_error_rate": max_error_rate, "best_rate": passed,
                "first_failing_rate": failed, "precision": precision, "verdict": verdict or "bracketed",
                "probes": [{"rate": r.step.rate, "p99_ms": r.p99_ms, "error_rate": r.error_rate,
                            "dropped": r.merged.dropped} for r in self.results]}


def _load_label(step: StepSpec) -> str:
    return f"concurrency={step.concurrency}" if step.mode == "closed" else f"rate={step.rate:g}/s"
