"""Supervised workers and the budget of request bytes in flight, measured on real suite processes:
reports/reliability.md's sections "Worker killed under load", "Crash loop" and "Memory budget"
(figures in reports/reliability_supervision.json).

    python -m benchmarks.reliability.supervision --repository shipped_models

- Worker killed under load: 2 workers serving ctr, open-loop Poisson load over 16 connections; one
  worker is SIGKILLed mid-run. Measured twice: clients with gRPC's default fail-fast calls, and with
  wait_for_ready (what a client of a replicated service should use). Recorded: every request's status,
  when failures happened, health on fresh connections every 100 ms, when /metrics showed the worker
  down and restarted, whether the server stayed up.
- Crash loop: a worker killed more often than INFERSUITE_WORKER_RESTART_LIMIT allows: exit status,
  the time to exit and the line the server logs.
- Every phase records the machine (/proc/stat over the cores, load average); a phase where foreign work
  took more than 5% of the cores marks the run INVALID (the report says so, the command exits non-zero).
- Memory budget: one serving process; 16 clients at once, each sending DIN's OIP request at its
  declared limits 3 times, with INFERSUITE_MAX_INFLIGHT_BYTES off, at its default and at three
  requests' bytes. Peak RSS growth is the kernel's high-water mark (VmHWM, reset before each run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
from grpc_health.v1 import health_pb2
from tritonclient.grpc import service_pb2_grpc

from benchmarks.reliability import report
from benchmarks.reliability.hostile import Peak, worst_case_request
from benchmarks.reliability.measure import ROOT, checkout_suite, ctr_settings, ctr_suite
from benchmarks.serving.machine import Sample, Window, take_sample
from benchmarks.serving.validity import FOREIGN_SHARE_MAX, window_report
from infersuite.loadtest.local_suite import check_health
from infersuite.services.runtime.repository import ModelRepository
from infersuite.services.runtime.settings import RuntimeSettings
from tests.reliability.load import metric, open_loop, scrape
from tests.reliability.requests import ctr_requests

CONNECTIONS = 16
DIN = "din-fp32"


def _machine(before: Sample) -> dict[str, Any]:
    """The machine over a phase (/proc/stat, all cores as one set: the workers and the client share them):
    busy share, this benchmark's own share of it, foreign work, the load average, the offenders."""
    return window_report(Window(before, take_sample(os.getpid())), sorted(os.sched_getaffinity(0)), [],
                         pinned=False)


def foreign_phases(results: dict[str, Any]) -> list[str]:
    """The phases where work outside this benchmark took more than FOREIGN_SHARE_MAX of the cores."""
    phases = [(f"worker kill ({'wait_for_ready' if k['wait_for_ready'] else 'fail-fast'})", k)
              for k in results["worker_kill"]]
    phases += [("crash loop", results["crash_loop"])]
    phases += [(f"memory budget {m['budget_bytes']}", m) for m in results["memory_budget"]]
    return [f"{name}: {core['foreign_share']:.1%} foreign" for name, r in phases
            for core in r["machine"]["cores"] if core["foreign_share"] > FOREIGN_SHARE_MAX]


def _workers(pid: int) -> list[psutil.Process]:
    """The suite's worker processes in start order (not multiprocessing's resource tracker)."""
    children = [c for c in psutil.Process(pid).children() if "spawn_main" in " ".join(c.cmdline())]
    return sorted(children, key=lambda c: c.create_time())


def _health_now(target: str) -> str:
    """The overall health on a fresh connection (it lands on any live worker), or the call's error code."""
    try:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(check_health(target, fresh=True)))
    except grpc.RpcError as err:
        return err.code().name


async def worker_kill(repository: Path, rate: float, duration_s: float, kill_at_s: float,
                      wait_for_ready: bool) -> dict[str, Any]:
    vocabulary = ModelRepository(repository).resolve(DIN).meta["vocabulary"]
    make = ctr_requests(vocabulary["n_items"], vocabulary["n_categories"], candidates=50, history=20)
    suite = ctr_suite(repository, INFERSUITE_WORKERS="2", INFERSUITE_GRACE_PERIOD_S="2")
    channels = [grpc.aio.insecure_channel(suite.target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(CONNECTIONS)]
    health: list[tuple[float, str]] = []
    events: dict[str, float] = {}
    try:
        await suite.ready()
        await open_loop(channels, make, rate, 2.0)  # warm-up: every connection open
        victim, sample = _workers(suite.proc.pid)[0], take_sample(os.getpid())
        load = asyncio.create_task(open_loop(channels, make, rate, duration_s, timeout_s=5.0,
                                             wait_for_ready=wait_for_ready))
        start = time.monotonic()

        async def watch_health() -> None:
            while not load.done():
                health.append((time.monotonic() - start, await asyncio.to_thread(_health_now, suite.target)))
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch_health())
        await asyncio.sleep(kill_at_s)
        killed = time.monotonic()
        victim.kill()
        while time.monotonic() - killed < duration_s:
            samples = await asyncio.to_thread(scrape, suite.metrics_url)
            up = metric(samples, "infersuite_worker_up", worker="0")
            if up == 0 and "down_seen_s" not in events:
                events["down_seen_s"] = time.monotonic() - killed
            if metric(samples, "infersuite_worker_restarts_total") >= 1 and up == 1:
                events["restarted_s"] = time.monotonic() - killed
                break
            await asyncio.sleep(0.05)
        result = await load
        await watcher
        machine = _machine(sample)
        samples = await asyncio.to_thread(scrape, suite.metrics_url)
        shares = {w: metric(samples, "infersuite_worker_requests_total", worker=w) for w in ("0", "1")}
        alive = suite.proc.poll() is None
    finally:
        for channel in channels:
            await channel.close()
        suite.stop()
    kill_offset = killed - result.started
    failed = [o for o in result.outcomes if o.code != "OK"]
    before = [o.latency_s for o in result.outcomes if o.code == "OK" and o.intended < kill_offset]
    around = [o.latency_s for o in result.outcomes if o.code == "OK" and kill_offset <= o.intended < kill_offset + 2]
    after = [o.latency_s for o in result.outcomes if o.code == "OK" and o.intended >= kill_offset + 2]

    def p99(values: list[float]) -> float | None:
        return round(float(np.percentile(values, 99)) * 1000, 1) if values else None

    return {
        "wait_for_ready": wait_for_ready, "offered_rps": rate, "duration_s": duration_s, "connections": CONNECTIONS,
        "killed_at_s": round(kill_offset, 2), "sent": result.sent, "codes": dict(result.codes()),
        "unanswered": result.unanswered,
        "failed_window_s": [round(min(o.intended for o in failed) - kill_offset, 3),
                            round(max(o.intended for o in failed) - kill_offset, 3)] if failed else None,
        "ok_p99_ms": {"before_kill": p99(before), "first_2_s_after": p99(around), "later": p99(after)},
        "worker_down_seen_s": round(events.get("down_seen_s", float("nan")), 3),
        "worker_restarted_s": round(events["restarted_s"], 2) if "restarted_s" in events else None,
        "health_samples": dict(Counter(status for _, status in health)),
        "health_not_serving_after_kill": [(round(t - kill_at_s, 2), s) for t, s in health
                                          if s != "SERVING" and t >= kill_at_s],
        "server_alive_after": alive, "requests_per_worker": shares, "machine": machine,
    }


async def crash_loop(repository: Path, limit: int) -> dict[str, Any]:
    suite = checkout_suite(ctr_settings(repository, INFERSUITE_WORKERS="2", INFERSUITE_GRACE_PERIOD_S="2",
                                        INFERSUITE_WORKER_RESTART_LIMIT=str(limit)), stderr=subprocess.PIPE)
    kills, restarts = 0, []
    try:
        await suite.ready()
        sample = take_sample(os.getpid())
        while suite.proc.poll() is None and kills <= limit:
            _workers(suite.proc.pid)[0].kill()
            kills += 1
            last_kill = time.monotonic()
            if kills > limit:
                break
            while suite.proc.poll() is None:  # until the restarted worker is up again
                samples = await asyncio.to_thread(scrape, suite.metrics_url)
                if metric(samples, "infersuite_worker_restarts_total") == kills and \
                        metric(samples, "infersuite_worker_up", worker="0") == 1:
                    restarts.append(round(time.monotonic() - last_kill, 2))
                    break
                await asyncio.sleep(0.05)
        exit_code = await asyncio.to_thread(suite.proc.wait, 60)
        exited_s = time.monotonic() - last_kill
        machine = _machine(sample)
        errors = suite.proc.stderr.read() if suite.proc.stderr else ""
    finally:
        suite.stop()
    line = next((x for x in errors.splitlines() if "crash loop" in x), "")
    return {"restart_limit": limit, "kills": kills, "restart_s": restarts, "exit_code": exit_code,
            "exit_after_last_kill_s": round(exited_s, 2), "log_line": line.split(": ", 1)[-1], "machine": machine}


async def memory_budget(repository: Path, budget: int, clients: int, rounds: int) -> dict[str, Any]:
    suite = ctr_suite(repository, INFERSUITE_MAX_INFLIGHT_BYTES=str(budget), INFERSUITE_SERVICES="[]")
    try:
        await suite.ready()
        options = [("grpc.max_send_message_length", -1)]
        async with grpc.aio.insecure_channel(suite.target, options=options) as channel:
            oip = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            request, _ = await worst_case_request(oip, ModelRepository(repository), DIN)
            assert request is not None, "din-fp32 declares its limits"
            await oip.ModelInfer(request, timeout=300)  # warm: the first one alone
            peak, sample = Peak(suite.proc.pid), take_sample(os.getpid())
            before = peak.reset()
            codes: Counter[str] = Counter()
            start = time.monotonic()

            async def client() -> None:
                for _ in range(rounds):
                    try:
                        await oip.ModelInfer(request, timeout=300)
                        codes["OK"] += 1
                    except grpc.aio.AioRpcError as err:
                        codes[err.code().name] += 1

            await asyncio.gather(*(client() for _ in range(clients)))
            elapsed = time.monotonic() - start
            growth = peak.peak_mib() - before
            machine = _machine(sample)
        refused = metric(await asyncio.to_thread(scrape, suite.metrics_url), "infersuite_refused_calls_total",
                         reason="inflight_bytes")
    finally:
        suite.stop()
    return {"budget_bytes": budget, "request_bytes": request.ByteSize(), "clients": clients,
            "rounds": rounds, "codes": dict(codes), "refused_by_budget": refused,
            "peak_rss_growth_mib": round(growth, 1), "seconds": round(elapsed, 1), "machine": machine}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    repository = args.repository.resolve()
    load_before = list(os.getloadavg())
    kills = [await worker_kill(repository, args.rate, args.duration_s, args.kill_at_s, wait)
             for wait in (False, True)]
    loop = await crash_loop(repository, limit=2)
    memory = [await memory_budget(repository, 0, args.clients, args.rounds)]  # no budget
    for budget in (RuntimeSettings().max_inflight_bytes, 3 * memory[0]["request_bytes"]):
        memory.append(await memory_budget(repository, budget, args.clients, args.rounds))
    return {"load_average_before": load_before,
            "args": {"repository": str(args.repository), "rate": args.rate, "duration_s": args.duration_s,
                     "kill_at_s": args.kill_at_s, "clients": args.clients, "rounds": args.rounds},
            "worker_kill": kills, "crash_loop": loop, "memory_budget": memory}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability.supervision",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "shipped_models")
    parser.add_argument("--rate", type=float, default=200.0, help="offered ctr Score requests/s")
    parser.add_argument("--duration-s", type=float, default=12.0)
    parser.add_argument("--kill-at-s", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=16, help="memory budget: concurrent clients")
    parser.add_argument("--rounds", type=int, default=3, help="memory budget: requests per client")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "reliability.md")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    results["command"] = "python -m benchmarks.reliability.supervision " + " ".join(argv or sys.argv[1:])
    report.write_section(args.out, "supervision", results)
    if foreign_phases(results):
        sys.exit("INVALID run: " + "; ".join(foreign_phases(results)))


if __name__ == "__main__":
    main()
