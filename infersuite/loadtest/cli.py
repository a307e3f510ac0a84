"""Command line: `python -m infersuite.loadtest {run,slo,suite,selfcheck,list} ...` (see --help of each).

Every user mistake ends in one line `loadtest: error: ...` and a non-zero exit, never a traceback:
2 for bad arguments, 1 for a target or generator that cannot be used.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from infersuite.loadtest.engine import StepSpec, Target
from infersuite.loadtest.schedule import load_trace


class UsageError(Exception):
    """A bad argument: exit 2."""


class RunError(Exception):
    """The target or a generator cannot be used: exit 1."""


def positive_list(kind: type, name: str) -> Any:
    def parse(text: str) -> list[Any]:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be a comma-separated list of numbers, got {text!r}") from None
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text!r}")
        return values
    return parse


def positive(kind: type, name: str, allow_zero: bool = False) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {text!r}")
        return value
    return parse


def add_target_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("target")
    group.add_argument("--target", default="localhost:50051", help="host:port of the gRPC server")
    group.add_argument("--metrics-url", default="auto",
                       help="Prometheus /metrics URL scraped around each step; 'auto' = http://<host>:9464/metrics "
                            "if it answers, 'none' = off")
    group.add_argument("--tls", action="store_true", help="connect with TLS")
    group.add_argument("--ca-cert", help="PEM of the CA that signed the server (default: system roots)")
    group.add_argument("--client-cert", help="PEM client certificate (mutual TLS)")
    group.add_argument("--client-key", help="PEM client key (mutual TLS)")
    group.add_argument("--server-name", help="TLS server name override")
    group.add_argument("--token-file", help="file holding the bearer token (default: $INFERSUITE_CLIENT_TOKEN)")
    group.add_argument("--connect-timeout", type=positive(float, "--connect-timeout"), default=5.0,
                       help="seconds to wait for the target before giving up")


def add_step_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("steps")
    group.add_argument("--duration", type=positive(float, "--duration"), default=10.0, help="measured seconds per step")
    group.add_argument("--warmup", type=positive(float, "--warmup", allow_zero=True), default=2.0,
                       help="seconds of load before each step's window, discarded")
    group.add_argument("--trials", type=positive(int, "--trials"), default=1, help="repeats of every step")
    group.add_argument("--deadline-ms", type=positive(float, "--deadline-ms"), default=5000.0,
                       help="gRPC deadline of every call")
    group.add_argument("--late-ms", type=positive(float, "--late-ms"), default=5.0,
                       help="open loop: a send this late after its intended time counts as late")
    group.add_argument("--max-inflight", type=positive(int, "--max-inflight"), default=10_000,
                       help="open loop, per process: sends beyond this many in flight are dropped and counted")
    group.add_argument("--arrival", choices=("poisson", "constant"), default="poisson",
                       help="open loop inter-arrival times")
    group.add_argument("--workers", type=positive(int, "--workers", allow_zero=True), default=1,
                       help="load generator processes (0 = in this process)")
    group.add_argument("--channels", type=positive(int, "--channels"), default=1,
                       help="HTTP/2 connections per process")
    group.add_argument("--seed", type=int, default=0, help="seed of requests and arrival times")
    group.add_argument("--pool-size", type=positive(int, "--pool-size"), default=1024,
                       help="distinct requests per process, cycled")
    group.add_argument("--out", type=Path, help="report directory (default artifacts/loadtest/<service>-<mode>)")
    group.add_argument("--quiet", action="store_true", help="no progress display")


def add_service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True, help="request generator: see `python -m infersuite.loadtest list`")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="generator parameter (repeatable), e.g. --param n_items=600")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loadtest", description="Load tests for infersuite and any "
                                     "Open Inference Protocol server: open and closed loop, HDR latency, reports.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="one step or a sweep over concurrency or rate")
    add_service_options(run)
    add_target_options(run)
    add_step_options(run)
    load = run.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=positive_list(int, "--concurrency"),
                      help="closed loop: clients, a comma list sweeps (default 1)")
    load.add_argument("--rate", type=positive_list(float, "--rate"),
                      help="open loop: requests/s, a comma list sweeps")
    load.add_argument("--trace", type=Path, help="open loop: replay send times (s), one per line")
    slo = commands.add_parser("slo", help="highest open-loop rate whose p99 meets an SLO")
    add_service_options(slo)
    add_target_options(slo)
    add_step_options(slo)
    slo.add_argument("--slo-p99-ms", type=positive(float, "--slo-p99-ms"), required=True)
    slo.add_argument("--start-rate", type=positive(float, "--start-rate"), default=50.0)
    slo.add_argument("--max-rate", type=positive(float, "--max-rate"), default=20_000.0)
    slo.add_argument("--precision", type=positive(float, "--precision"), default=0.1,
                     help="stop when the pass/fail bracket is this narrow (relative)")
    slo.add_argument("--max-error-rate", type=positive(float, "--max-error-rate", allow_zero=True), default=0.001)
    suite = commands.add_parser("suite", help="a short sweep for every service the target hosts")
    add_target_options(suite)
    suite.add_argument("--repository", type=Path, default=Path("model_repository"),
                       help="model repository to read vocabularies/model names from (if present)")
    suite.add_argument("--out-dir", type=Path, default=Path("artifacts/loadtest"))
    suite.add_argument("--duration", type=positive(float, "--duration"), default=5.0)
    suite.add_argument("--warmup", type=positive(float, "--warmup", allow_zero=True), default=1.0)
    suite_load = suite.add_mutually_exclusive_group()
    suite_load.add_argument("--concurrency", type=positive_list(int, "--concurrency"), default=[1, 4, 16],
                            help="closed-loop sweep (default 1,4,16)")
    suite_load.add_argument("--rate", type=positive_list(float, "--rate"),
                            help="open-loop Poisson sweep instead (requests/s)")
    suite.add_argument("--workers", type=positive(int, "--workers", allow_zero=True), default=1)
    suite.add_argument("--start-server", metavar="SERVICES",
                       help="start `python -m infersuite.services` hosting these (comma list, * = every family) on "
                            "free local ports, test it, stop it (overrides --target/--metrics-url)")
    suite.add_argument("--skip", action="append", default=[], metavar="NAME",
                       help="leave out a generator or report (e.g. oip, oip-seg-head-fp32, health); repeatable")
    suite.add_argument("--param", action="append", default=[], metavar="SERVICE.KEY=VALUE",
                       help="a generator parameter for one service, e.g. splitcompute.payloads=DIR")
    suite.add_argument("--quiet", action="store_true")
    check = commands.add_parser("selfcheck", help="the generator's own ceiling against a trivial local endpoint")
    check.add_argument("--rate", type=positive_list(float, "--rate"), default=[1000, 2000, 3000, 4000])
    check.add_argument("--duration", type=positive(float, "--duration"), default=5.0)
    check.add_argument("--out", type=Path, default=Path("artifacts/loadtest/generator"))
    check.add_argument("--quiet", action="store_true")
    commands.add_parser("list", help="request generators")
    return parser


def parse_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        params[key.strip()] = value.strip()
    return params


def target_from(args: argparse.Namespace) -> Target:
    if ":" not in args.target.rsplit("]", 1)[-1]:
        raise UsageError(f"--target {args.target!r}: expected host:port")
    for option in ("ca_cert", "client_cert", "client_key"):
        path = getattr(args, option, None)
        if path and not Path(path).is_file():
            raise UsageError(f"--{option.replace('_', '-')} {path}: no such file")
    from infersuite.loadtest.connect import read_token

    token_file = getattr(args, "token_file", None)
    if token_file and not Path(token_file).is_file():
        raise UsageError(f"--token-file {token_file}: no such file")
    return Target(args.target, args.tls or bool(args.ca_cert or args.client_cert), args.ca_cert, args.client_cert,
                  args.client_key, args.server_name, getattr(args, "channels", 1), token=read_token(token_file))


def steps_from(args: argparse.Namespace) -> list[StepSpec]:
    common = {"warmup_s": args.warmup, "duration_s": args.duration, "deadline_s": args.deadline_ms / 1000,
              "late_threshold_s": args.late_ms / 1000, "max_inflight": args.max_inflight, "seed": args.seed,
              "arrival": args.arrival}
    if getattr(args, "trace", None):
        try:
            trace = load_trace(args.trace)
        except (OSError, ValueError) as err:
            raise UsageError(f"--trace: {err}") from None
        return [StepSpec(mode="open", trace=trace, rate=_trace_rate(trace), **common)]
    if getattr(args, "rate", None):
        return [StepSpec(mode="open", rate=rate, **common) for rate in args.rate]
    return [StepSpec(mode="closed", concurrency=c, **common) for c in (getattr(args, "concurrency", None) or [1])]


def _trace_rate(trace: tuple[float, ...]) -> float:
    from infersuite.loadtest.schedule import trace_rate
    return trace_rate(trace)


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["python", "-m", "infersuite.loadtest", *sys.argv[1:]])
