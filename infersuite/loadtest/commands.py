"""What each subcommand does; `infersuite/loadtest/cli.py` parses and validates, this module runs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from infersuite.loadtest import report
from infersuite.loadtest.cli import RunError, UsageError, command_line, parse_params, steps_from, target_from
from infersuite.loadtest.engine import StepSpec, Target
from infersuite.loadtest.generators import GeneratorError, available, create, missing_families
from infersuite.loadtest.runner import Runner
from infersuite.loadtest.server_metrics import MetricsScraper, scrape
from infersuite.loadtest.workers import GeneratorSpec, WorkerError, WorkerPool


class Display:
    """One progress line on stderr, redrawn in place on a terminal, else one line per step."""

    LOG_EVERY_S = 10.0  # without a terminal: one progress line this often (CI logs stay short)

    def __init__(self, quiet: bool = False):
        self.quiet, self.tty = quiet, sys.stderr.isatty()
        self._started: dict[str, float] = {}
        self._logged = 0.0

    def __call__(self, title: str, step_seconds: float, done: int) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        elapsed = now - self._started.setdefault(title, now)
        line = f"{title}: {min(elapsed, step_seconds):5.1f}/{step_seconds:.1f} s, {done:,} responses"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        elif now - self._logged >= self.LOG_EVERY_S:
            self._logged = now
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def step_done(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(("\r\033[K" if self.tty else "") + text + "\n")
            sys.stderr.flush()


def check_reachable(target: Target, timeout_s: float) -> None:
    """Raises RunError unless the target accepts a connection within `timeout_s`."""
    from infersuite.loadtest.connect import blocking_channel

    channel = blocking_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise RunError(f"cannot reach {target.address} within {timeout_s:g} s (is the server running? "
                       "wrong port? TLS mismatch?)") from None
    finally:
        channel.close()


def resolve_metrics_url(text: str, target: str) -> str | None:
    if text == "none":
        return None
    if text != "auto":
        if urlsplit(text).scheme not in ("http", "https"):
            raise UsageError(f"--metrics-url {text!r}: expected http(s)://host:port/metrics, 'auto' or 'none'")
        return text
    host = target.rsplit(":", 1)[0].strip("[]") or "localhost"
    url = f"http://{'localhost' if host in ('0.0.0.0', '::') else host}:9464/metrics"
    try:
        scrape(url, timeout_s=1.0)
    except (OSError, ValueError):
        sys.stderr.write(f"metrics: nothing answers at {url} (the default port); server-side figures are left out. "
                         "Pass --metrics-url http://HOST:PORT/metrics (the server's INFERSUITE_METRICS_PORT).\n")
        return None
    return url


def _describe(step: StepSpec, result: Any) -> str:
    figures = result.to_dict()
    intended = figures["latency_from_intended_ms"]
    load = _title(step)
    text = (f"{load}: {figures['throughput_rps']:.0f} ok/s, p50 {intended['p50_ms']:.2f} ms, "
            f"p99 {intended['p99_ms']:.2f} ms, errors {sum(result.merged.errors.values())}, "
            f"check failures {sum(result.merged.check_failures.values())}")
    return text + "".join(f"\n  ! {w}" for w in result.warnings)


def _pool(args: argparse.Namespace, target: Target, service: str, params: dict[str, str]) -> WorkerPool:
    return WorkerPool(target, GeneratorSpec(service, tuple(sorted(params.items())), args.pool_size, args.seed),
                      args.workers)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return {"command_line": command_line(), **options}


def cmd_run(args: argparse.Namespace, slo: bool = False) -> int:
    params = parse_params(args.param)
    try:
        create(args.service, params)  # validates the service name and parameters before any connection
    except GeneratorError as err:
        raise UsageError(str(err)) from None
    target = target_from(args)
    steps = steps_from(args) if not slo else [StepSpec(mode="open", rate=args.start_rate, **_common(args))]
    check_reachable(target, args.connect_timeout)
    scraper = MetricsScraper(resolve_metrics_url(args.metrics_url, args.target))
    display = Display(args.quiet)
    with _pool(args, target, args.service, params) as pool:
        runner = Runner(pool, scraper, args.trials, display)
        slo_result = None
        if slo:
            slo_result = runner.slo_search(steps[0], args.slo_p99_ms, args.start_rate, args.max_rate,
                                           args.precision, args.max_error_rate)
        else:
            for step in steps:
                display.step_done(_describe(step, runner.run(step, _title(step))))
        meta = report.metadata(args.target, args.service, _settings(args), pool.description)
    if scraper.error:
        display.step_done(f"note: {scraper.error}; server-side columns left empty")
    default = f"{args.service}-{'slo' if slo else steps[0].mode}"
    out = args.out or Path("artifacts/loadtest") / default
    files = report.write(report.build(meta, runner.results, slo_result), out)
    if slo_result:
        display.step_done(f"SLO search: best rate {slo_result['best_rate']} ({slo_result['verdict']})")
    print(f"report: {files[1]}")
    return 0


def _common(args: argparse.Namespace) -> dict[str, Any]:
    return {"warmup_s": args.warmup, "duration_s": args.duration, "deadline_s": args.deadline_ms / 1000,
            "late_threshold_s": args.late_ms / 1000, "max_inflight": args.max_inflight, "seed": args.seed,
            "arrival": args.arrival}


def _title(step: StepSpec) -> str:
    return clients(step.concurrency) if step.mode == "closed" else f"{step.rate:g}/s"


def clients(count: int) -> str:
    return f"{count} client{'s' if count != 1 else ''}"


def cmd_list(args: argparse.Namespace) -> int:
    for name, summary in available().items():
        print(f"{name:14s} {summary}")
    for family, why in missing_families().items():
        print(f"{family:14s} NO GENERATOR: {why}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from infersuite.loadtest.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 with a one-line message on bad arguments
    handlers = {"run": cmd_run, "slo": lambda a: cmd_run(a, slo=True), "list": cmd_list,
                "suite": _lazy("infersuite.loadtest.suite", "cmd_suite"),
                "selfcheck": _lazy("infersuite.loadtest.suite", "cmd_selfcheck")}
    try:
        return int(handlers[args.command](args))
    except UsageError as err:
        parser.exit(2, f"loadtest: error: {err}\n")
    except (RunError, GeneratorError, WorkerError) as err:
        parser.exit(1, f"loadtest: error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "loadtest: interrupted\n")
    return 0


def _lazy(module: str, name: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        import importlib
        return int(getattr(importlib.import_module(module), name)(args))
    return run
