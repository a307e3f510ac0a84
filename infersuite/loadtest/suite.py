"""`suite`: a short closed-loop sweep for every service a running suite hosts, one report each,
plus `summary.md`; `selfcheck`: the generator's own ceiling against a trivial local endpoint.

Services are discovered with gRPC server reflection and matched to generators by their gRPC
service name; the Open Inference Protocol gets one report per ready model (RepositoryIndex).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from infersuite.loadtest import report
from infersuite.loadtest.cli import RunError, UsageError, command_line, parse_params, target_from
from infersuite.loadtest.commands import Display, _describe, check_reachable, clients, resolve_metrics_url
from infersuite.loadtest.connect import blocking_channel, token_metadata
from infersuite.loadtest.engine import StepSpec, Target
from infersuite.loadtest.generators import GeneratorError, create
from infersuite.loadtest.generators.base import by_grpc_service
from infersuite.loadtest.generators.oip import oip_messages
from infersuite.loadtest.local_suite import SERVING, LocalSuite
from infersuite.loadtest.runner import Runner, StepResult
from infersuite.loadtest.server_metrics import MetricsScraper
from infersuite.loadtest.trivial_server import ECHO
from infersuite.loadtest.workers import GeneratorSpec, WorkerError, WorkerPool


def list_services(target: Target) -> list[str]:
    """Full gRPC service names the target advertises through reflection."""
    with blocking_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = stub.ServerReflectionInfo(iter([request]), timeout=10)
        return [s.name for r in responses for s in r.list_services_response.service]


def oip_models(target: Target) -> list[str]:
    messages = oip_messages()
    with blocking_channel(target) as channel:
        index = channel.unary_unary("/inference.GRPCInferenceService/RepositoryIndex",
                                    request_serializer=messages.RepositoryIndexRequest.SerializeToString,
                                    response_deserializer=messages.RepositoryIndexResponse.FromString)
        answer = index(messages.RepositoryIndexRequest(ready=True), timeout=10,
                       metadata=token_metadata(target.token))
    return sorted({m.name for m in answer.models})


def service_params(items: list[str]) -> dict[str, dict[str, str]]:
    """`--param splitcompute.payloads=DIR` -> {"splitcompute": {"payloads": "DIR"}}."""
    by_service: dict[str, dict[str, str]] = {}
    for key, value in parse_params(items).items():
        service, dot, name = key.partition(".")
        if not dot or not name:
            raise UsageError(f"--param {key}={value}: expected SERVICE.KEY=VALUE in suite")
        by_service.setdefault(service, {})[name] = value
    return by_service


def health_of(target: Target, service: str = "") -> int | None:
    """The health status of `service` ("" = the whole server), None if it cannot be asked."""
    with blocking_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                             timeout=2.0)
        except grpc.RpcError:
            return None
    return int(reply.status)


def plan(target: Target, repository: Path, extra: dict[str, dict[str, str]] | None = None
         ) -> tuple[list[tuple[str, str, dict[str, str]]], dict[str, str]]:
    """(report name, generator, params) for every SERVING service found, the health floor first;
    and the services skipped, with why."""
    extra = extra or {}
    generators = by_grpc_service()
    runs: list[tuple[str, str, dict[str, str]]] = [("health", "health", {})]
    skipped: dict[str, str] = {}
    for service in list_services(target):
        name = generators.get(service)
        if name is None and not service.startswith("grpc."):  # a family service without a generator
            skipped[service] = ("no request generator for it (infersuite/loadtest/generators/<family>.py; "
                                "docs/families.md)")
            continue
        if name is None or name == "health":
            continue
        status = health_of(target, service)  # None: no health entry (e.g. OIP): try it anyway
        if status is not None and status != SERVING:
            skipped[name] = f"{service} is not SERVING (its models missing from the repository?)"
            continue
        if name == "oip":
            vocabulary = {"repository": str(repository)} if repository.is_dir() else {}
            runs += [(f"oip-{model}", "oip", {"model": model, **vocabulary, **extra.get("oip", {})})
                     for model in oip_models(target)]
        elif name == "ctr" and _has_ctr_meta(repository, extra.get("ctr", {})):
            runs.append(("ctr", "ctr", {"repository": str(repository), **extra.get("ctr", {})}))
        else:
            runs.append((name, name, extra.get(name, {})))
    serving = [s for s in list_services(target) if generators.get(s) not in (None, "health")
               and health_of(target, s) == SERVING]
    if serving:  # the floor probes a SERVING service, so a partial suite's floor is still valid
        runs[0] = ("health", "health", {"service": serving[0]})
    return runs, skipped


def _has_ctr_meta(repository: Path, params: dict[str, str]) -> bool:
    """Whether the ctr generator can read the served model's vocabulary from the repository."""
    try:
        create("ctr", {"repository": str(repository), **params})
    except GeneratorError:
        return False
    return True


def _sweep(args: argparse.Namespace, target: Target, name: str, generator: str, params: dict[str, str],
           scraper: MetricsScraper, display: Display) -> tuple[list[StepResult], dict[str, Any]]:
    timing = {"warmup_s": args.warmup, "duration_s": args.duration, "deadline_s": 5.0}
    steps = ([StepSpec(mode="open", rate=rate, **timing) for rate in args.rate] if args.rate
             else [StepSpec(mode="closed", concurrency=c, **timing) for c in args.concurrency])
    spec = GeneratorSpec(generator, tuple(sorted(params.items())))
    with WorkerPool(target, spec, args.workers) as pool:
        runner = Runner(pool, scraper, 1, display)
        for step in steps:
            result = runner.run(step, f"{name} {step.load:g}")
            display.step_done(f"{name} " + _describe(step, result))
        return runner.results, pool.description


def cmd_suite(args: argparse.Namespace) -> int:
    extra = service_params(args.param)
    if not args.start_server:
        return _suite(args, extra)
    services = [s.strip() for s in args.start_server.split(",") if s.strip()]
    if not args.repository.is_dir():
        raise UsageError(f"--repository {args.repository}: no model repository there (run `make models`)")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with LocalSuite(services, args.repository, log=args.out_dir / "server.log") as suite:
            args.target, args.metrics_url = suite.address, suite.metrics_url
            return _suite(args, extra, suite)
    except RuntimeError as err:
        raise RunError(str(err)) from None


def _suite(args: argparse.Namespace, extra: dict[str, dict[str, str]], server: LocalSuite | None = None) -> int:
    target = target_from(args)
    check_reachable(target, args.connect_timeout)
    scraper = MetricsScraper(resolve_metrics_url(args.metrics_url, args.target))
    display = Display(args.quiet)
    runs, skipped = plan(target, args.repository, extra)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    summary: list[dict[str, Any]] = [{"name": name, "skipped": why} for name, why in skipped.items()]
    for name, generator, params in runs:
        if name in args.skip or generator in args.skip:
            continue
        try:
            results, description = _sweep(args, target, name, generator, params, scraper, display)
        except (GeneratorError, WorkerError) as err:
            display.step_done(f"{name}: skipped: {err}")
            summary.append({"name": name, "skipped": str(err)})
            continue
        if server is not None and not server.alive():
            raise RunError(f"the suite process stopped during the load test (exit code {server.exit_code()}; "
                           f"see {server.log}): its figures would be connection errors, not measurements")
        settings = {"command_line": command_line(), "generator": generator, "params": params}
        built = report.build(report.metadata(args.target, name, settings, description), results)
        report.write(built, args.out_dir / name)
        summary.append({"name": name, "steps": built["steps"]})
    (args.out_dir / "summary.md").write_text(summary_markdown(args, summary))
    print(f"report: {args.out_dir / 'summary.md'}")
    return 0


def summary_markdown(args: argparse.Namespace, runs: list[dict[str, Any]]) -> str:
    lines = [f"# Load-test summary: {args.target}", "",
             f"Generated by `{command_line()}` at git {report.git_revision()['sha'][:12]}. "
             f"{'Open loop (Poisson)' if args.rate else 'Closed loop'}, {args.duration:g} s per step after "
             f"{args.warmup:g} s warm-up; `health` is the transport floor.", "",
             "| service | load | ok/s | p50 ms | p99 ms | errors | warnings | report |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        if "skipped" in run:
            lines.append(f"| {run['name']} | - | - | - | - | - | skipped: {run['skipped']} | - |")
            continue
        for step in run["steps"]:
            latency = step["latency_from_intended_ms"]
            lines.append(f"| {run['name']} | {_load(step)} | {step['throughput_rps']:.0f} | "
                         f"{latency['p50_ms']:.2f} | {latency['p99_ms']:.2f} | {sum(step['errors'].values())} | "
                         f"{len(step['warnings'])} | [{run['name']}/report.md]({run['name']}/report.md) |")
    return "\n".join([*lines, ""])


def _load(step: dict[str, Any]) -> str:
    load = step["load"]
    return clients(load["concurrency"]) if load["mode"] == "closed" else f"{load['rate']:g}/s"


def start_trivial_server() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen([sys.executable, "-m", "infersuite.loadtest.trivial_server", "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("port "):
        process.kill()
        raise RuntimeError("the trivial server did not start")
    return process, int(line.split()[1])


def cmd_selfcheck(args: argparse.Namespace) -> int:
    """Open-loop steps at rising rates from ONE worker process against a trivial endpoint."""
    server, port = start_trivial_server()
    display = Display(args.quiet)
    target = Target(f"127.0.0.1:{port}")
    try:
        with WorkerPool(target, GeneratorSpec("raw", (("method", ECHO),)), workers=1) as pool:
            runner = Runner(pool, MetricsScraper(None), 1, display)
            for rate in args.rate:
                step = StepSpec(mode="open", rate=rate, warmup_s=1.0, duration_s=args.duration, deadline_s=5.0)
                display.step_done(_describe(step, runner.run(step, f"{rate:g}/s")))
            meta = report.metadata(target.address, "raw (trivial endpoint, one worker process)",
                                   {"command_line": command_line()}, pool.description)
    finally:
        server.terminate()
        server.wait(timeout=10)
    built = report.build(meta, runner.results)
    sustained = [s for s in built["steps"] if sustains(s)]
    best = max(sustained, key=lambda s: s["load"]["rate"], default=None)
    rate, lag = (best["load"]["rate"], best["schedule_lag_ms"]["p99_ms"]) if best else (0.0, float("nan"))
    load_average = meta["machine"]["load_average"][0]
    built["generator_ceiling"] = {"sustained_rate_per_process": rate, "schedule_lag_p99_ms": lag,
                                  "rule": "throughput >= 95% of offered, no drops, no errors"}
    report.write(built, args.out)
    with (args.out / "report.md").open("a") as md:
        md.write(f"\n**One generator process sustained {rate:g} requests/s** (the highest offered rate answered at "
                 f">= 95% with no drops and no errors), with a schedule lag p99 of {lag:.1f} ms there; the trivial "
                 f"server ran on the same {meta['machine']['logical_cpus']} CPUs, load average {load_average:.1f}. "
                 "Latency here is mostly the trivial server's queue on a shared machine, not the generator's.\n")
    print(f"sustained per process: {rate:g} requests/s (schedule lag p99 {lag:.1f} ms); "
          f"report: {args.out / 'report.md'}")
    return 0


def sustains(step: dict[str, Any]) -> bool:
    return (step["throughput_rps"] >= 0.95 * step["load"]["rate"] and not step["dropped"]
            and not step["errors"] and not step["check_failures"])
