"""Overload inside the SLO: ctr (a tiny DIN on onnxruntime) at 3x its sustainable rate for 60 s and
10x for 10 s, the server pinned to one core and this client to the other, with the default queue
(256 requests), a queue-time bound of half the SLO (INFERSUITE_MAX_QUEUE_TIME_MS=50) and calls in
handlers at once bounded (INFERSUITE_MAX_CONCURRENT_RPCS=16: past it grpc.aio's own limit refuses before
any handler runs, without pushback, or with INFERSUITE_CALL_LIMIT_PUSHBACK=true the suite's, with
pushback, before decoding the request); the same on the synchronous transport (INFERSUITE_TRANSPORT=sync,
its call limit at most its threads), at the same offered rates; a control run at 3x with the defaults
(no bound but the queue's count) shows what the bounds change. The sustainable rate is swept first on grpc.aio
with the queue-time bound and no call limit, so that it measures the core. The client's garbage collector is off
during each phase (tests/reliability/load.py). Writes reports/overload.md (+ .json).

    python -m benchmarks.reliability.overload            # make bench-overload (~9 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from benchmarks.reliability.measure import ROOT, build_ctr_repository, ctr_suite, run_sweep
from benchmarks.reliability.report import PINNED_PHASES, overload_section
from benchmarks.serving.machine import Sample, Window, take_sample
from benchmarks.serving.validity import FOREIGN_SHARE_MAX, window_report
from tests.reliability import scenarios
from tests.reliability.load import open_loop
from tests.reliability.requests import ctr_requests

DEFAULT_QUEUE = 256  # the runtime's default max_queue_size (infersuite/services/runtime/settings.py)
# A sweep step is sustained with p99 within the SLO and at most 1 request in 1,000 refused: the queue-time
# bound is on during the sweep, and a single refusal (its estimate of the wait ahead) once cut a run's
# sustainable rate a whole step (25%) below the rate it served at p99 13 ms, every goal easier with it.
SWEEP_OK_SHARE = 0.999
# A failing step is tried again (other arrival times) before the sweep ends: one refusal in ~900 requests (the
# call limit met by a burst) ended the 7 Dec 16:10 sweep at 181 req/s, a step whose p99 was 44 ms.
SWEEP_RETRIES = 1
# The sweep measures what the core sustains, so its server has the queue-time bound but no call limit: with the
# limit of 16, Poisson bursts were refused at 298 req/s while the core was 40% busy, the sweep stopped at 223.5 req/s
# and every overload phase then served 107-181% of that "sustainable" rate (7 Dec 19:57): its 3x was ~1.6x.
SWEEP_CALL_LIMIT = 0
# Each run's prefix (its phases' keys: <prefix>x3, <prefix>x10) -> whose refusal past the call limit it measures.
WHOSE_LIMIT = {"": "grpcio's limit", "aio_pushback_": "the suite's limit, INFERSUITE_CALL_LIMIT_PUSHBACK=true",
               "sync_": "the suite's limit", "sync_bare_": "grpcio's limit, INFERSUITE_CALL_LIMIT_PUSHBACK=false"}


def _pin_client(cores: set[int]) -> None:
    os.sched_setaffinity(0, cores)


async def _overload(suite, make, sustainable: float, factor: float, duration_s: float,
                    args: argparse.Namespace) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(suite.target) as channel:
        await open_loop(channel, make, 0.5 * sustainable, 2.0)  # warm-up (compute-time estimate)
        before = take_sample(os.getpid())
        figures = await scenarios.overload(channel, make, sustainable, duration_s, factor=factor, recovery_s=10.0)
    return {**figures, "factor": factor, "machine": _machine(before, args)}


def _machine(before: Sample, args: argparse.Namespace) -> dict[str, Any]:
    """Per core since `before` (/proc/stat): busy, own and foreign shares, the load average, offenders."""
    return window_report(Window(before, take_sample(os.getpid())), {args.server_core}, {args.client_core})


def _foreign(results: dict[str, Any]) -> list[str]:
    """The phases where work outside this benchmark took more than its share of a core."""
    return [f"{phase}: {core['role']} core {core['cores']} {core['foreign_share']:.1%} foreign"
            for phase, r in results.items() if isinstance(r, dict) and "machine" in r
            for core in r["machine"]["cores"] if core["foreign_share"] > FOREIGN_SHARE_MAX]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    server_core, client_core = args.server_core, args.client_core
    _pin_client({client_core})
    work = Path(tempfile.mkdtemp(prefix="overload-"))
    repository, n_items, n_categories = build_ctr_repository(work, DEFAULT_QUEUE)
    make = ctr_requests(n_items, n_categories, candidates=args.candidates, history=args.history)
    pinned = {"INFERSUITE_CPU_AFFINITY": str(server_core), "INFERSUITE_WORKERS": "1"}
    bounded = {**pinned, "INFERSUITE_MAX_QUEUE_TIME_MS": str(args.queue_time_ms),
               "INFERSUITE_MAX_CONCURRENT_RPCS": str(args.concurrent_rpcs)}
    out = args.out.resolve()  # recorded relative to the repository: reports never name this machine's paths
    recorded = {**vars(args), "out": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else out.name}
    results: dict[str, Any] = {"args": recorded, "load_before": os.getloadavg()}
    sync = {**bounded, "INFERSUITE_TRANSPORT": "sync",  # calls past the limit would wait for a thread
            "INFERSUITE_MAX_CONCURRENT_RPCS": str(min(args.concurrent_rpcs, args.sync_threads)),
            "INFERSUITE_TRANSPORT_THREADS": str(args.sync_threads)}
    suite = ctr_suite(repository, **{**bounded, "INFERSUITE_MAX_CONCURRENT_RPCS": str(SWEEP_CALL_LIMIT)})
    try:
        await suite.ready()
        rates = [args.rate_start * (1.25 ** i) for i in range(30)]
        before = take_sample(os.getpid())
        rate, sweep = await run_sweep(suite, make, rates, args.sweep_step_s, args.slo_ms, SWEEP_OK_SHARE,
                                      SWEEP_RETRIES)
        results["sweep"] = {"sustainable_rps": round(rate, 1), "steps": sweep, "retries": SWEEP_RETRIES,
                            "call_limit": SWEEP_CALL_LIMIT, "machine": _machine(before, args)}
    finally:
        suite.stop()
    both = ((3.0, args.overload_s), (10.0, args.burst_s))
    # The call limit's refusal: each transport's default (grpc.aio's own; the suite's with pushback on the
    # synchronous transport), then the other one.
    pushback = {**bounded, "INFERSUITE_CALL_LIMIT_PUSHBACK": "true"}
    for prefix, env, runs in (("", bounded, both), ("aio_pushback_", pushback, both),
                              ("sync_", sync, both),  # at the offered rates of grpc.aio's sweep
                              ("sync_bare_", {**sync, "INFERSUITE_CALL_LIMIT_PUSHBACK": "false"}, both[1:])):
        suite = ctr_suite(repository, **env)
        try:
            await suite.ready()
            for factor, seconds in runs:
                results[f"{prefix}x{factor:g}"] = {**await _overload(suite, make, rate, factor, seconds, args),
                                                   "sustainable_rps": round(rate, 1), "slo_ms": args.slo_ms}
        finally:
            suite.stop()
    sustainable = results["sweep"]["sustainable_rps"]
    control = ctr_suite(repository, **pinned)  # the default: no time bound
    try:
        await control.ready()
        results["control"] = {**await _overload(control, make, sustainable, 3.0, args.control_s, args),
                               "sustainable_rps": round(sustainable, 1), "slo_ms": args.slo_ms}
    finally:
        control.stop()
    results["load_after"] = os.getloadavg()
    return results


def render(results: dict[str, Any], command: str) -> str:
    args = results["args"]
    foreign = _foreign(results)
    lines = [
        *([f"> **INVALID: other work took more than {FOREIGN_SHARE_MAX:.0%} of a benchmark core; no figure below "
           "may be quoted.** " + "; ".join(foreign), ""] if foreign else []),
        "# Overload inside the SLO",
        "",
        f"Written by `{command}`. Machine: {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"the suite (one worker) pinned to core {args['server_core']}, this client to core {args['client_core']}. "
        f"Load average before {results['load_before']}, after {results['load_after']}.",
        "",
        f"ctr: a tiny DIN on onnxruntime, requests of {args['candidates']} candidates and {args['history']} "
        f"behaviours. Its queue: the default {DEFAULT_QUEUE} requests and a queue-time bound "
        f"(`INFERSUITE_MAX_QUEUE_TIME_MS={args['queue_time_ms']:g}`, half the SLO; the default is none): "
        "a request is refused RESOURCE_EXHAUSTED with "
        "`grpc-retry-pushback-ms` when the queued work ahead of it exceeds the bound, and leaves the queue "
        "uncomputed if it still waits longer, and queued executions stay off the event loop; "
        f"`INFERSUITE_MAX_CONCURRENT_RPCS={args['concurrent_rpcs']}`"
        + (" (0: no limit)" if not args["concurrent_rpcs"] else " calls in handlers at once, more refused "
           "RESOURCE_EXHAUSTED by grpc.aio's compiled layer before any handler runs (its default: no pushback); also "
           "with the suite's limit (`INFERSUITE_CALL_LIMIT_PUSHBACK=true`: refused with pushback first thing in the "
           "handler, before the request is decoded, infersuite/services/runtime/call_limit.py)") + ". "
        f"The synchronous transport (`INFERSUITE_TRANSPORT=sync`, {args['sync_threads']} threads) runs the same "
        "bounds with its call limit at most its threads, past it the suite's own limit refuses RESOURCE_EXHAUSTED "
        "with pushback before reading the request, on grpcio's polling thread as grpcio's own refusal; "
        "at 10x also with grpcio's own refusal (no pushback, less server CPU per refusal), "
        "at the same offered rates (3x and 10x grpc.aio's sustainable rate: a sweep "
        "that needs the requests answered OK stops on the synchronous transport at its first refusals, bursts "
        "past its call limit of at most its threads, far below what it serves). "
        "The control runs on the defaults (grpc.aio): neither bound. The client's garbage collector is off "
        "during each phase (its collections stalled it for up to 0.35 s). Sustainable rate (highest swept rate "
        "served "
        f"within the {args['slo_ms']} ms p99 SLO with at most {1 - SWEEP_OK_SHARE:.1%} refused, on grpc.aio"
        + (" with the queue-time bound and no call limit, so that it measures the core, not Poisson bursts past the "
           "limit" if "call_limit" in results["sweep"] and not results["sweep"]["call_limit"] else "")
        + (f"; a failing step tried {results['sweep']['retries'] + 1} times before the sweep ends"
           if results["sweep"].get("retries") else "") + f"): {results['sweep']['sustainable_rps']} req/s.",
        "",
    ]
    sync_limit = min(args["concurrent_rpcs"], args["sync_threads"])
    for key, name in PINNED_PHASES:
        if key not in results:  # a run from before the phase existed
            continue
        whose = WHOSE_LIMIT.get(key.rpartition("x")[0], "")
        if key == "control":
            bound = "no time bound, gRPC's default backlog"
        elif key.startswith("sync_"):
            bound = (f"{args['queue_time_ms']:g} ms of queued work, {sync_limit} concurrent calls "
                     f"({whose}, {args['sync_threads']} threads)")
        else:
            bound = f"{args['queue_time_ms']:g} ms of queued work, " + (
                f"{args['concurrent_rpcs']} concurrent calls ({whose})" if args["concurrent_rpcs"]
                else "no limit of concurrent calls")
        lines += overload_section(f"ctr, {name}", results[key], f"{DEFAULT_QUEUE} requests, {bound}")
    lines += ["## The machine in each phase (/proc/stat, per core: busy share of the phase, the part of the busy "
              "time the benchmark's own processes account for, foreign work)", "",
              "| phase | core | role | busy | own share of busy | foreign | load average after |",
              "|---|---|---|---|---|---|---|"]
    for phase in ("sweep", *(key for key, _ in PINNED_PHASES)):
        if phase not in results:
            continue
        machine = results[phase]["machine"]
        lines += [f"| {phase} | {core['cores'][0]} | {core['role']} | {core['busy_share']:.2f} | "
                  f"{core['own_share_of_busy']:.2f} | {core['foreign_share']:.1%} | {machine['load_average']} |"
                  for core in machine["cores"]]
    limit = results["sweep"].get("call_limit")
    heading = "grpc.aio" + (", the queue-time bound, no call limit" if limit == 0 else "")
    lines += ["", f"## Sustainable-rate sweep ({heading})", "```json", json.dumps(results["sweep"], indent=1), "```",
              ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability.overload",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--overload-s", type=float, default=60.0, help="length of the 3x overload")
    parser.add_argument("--burst-s", type=float, default=10.0, help="length of the 10x overload")
    parser.add_argument("--control-s", type=float, default=20.0, help="length of the 3x control without time bound")
    parser.add_argument("--slo-ms", type=float, default=100.0)
    parser.add_argument("--queue-time-ms", type=float, default=50.0, help="INFERSUITE_MAX_QUEUE_TIME_MS of the runs")
    parser.add_argument("--concurrent-rpcs", type=int, default=16,
                        help="INFERSUITE_MAX_CONCURRENT_RPCS of the runs (0: no limit; the control never has one)")
    parser.add_argument("--sync-threads", type=int, default=8,
                        help="INFERSUITE_TRANSPORT_THREADS of the synchronous-transport runs (their call limit "
                             "is at most this)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--rate-start", type=float, default=50.0)
    parser.add_argument("--sweep-step-s", type=float, default=4.0)
    parser.add_argument("--server-core", type=int, default=1)
    parser.add_argument("--client-core", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "overload.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.monotonic()
    results = asyncio.run(main_async(args))
    results["seconds"] = round(time.monotonic() - start, 1)
    command = "python -m benchmarks.reliability.overload " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.write_text(render(results, command.strip()))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {args.out} in {results['seconds']} s")
    if _foreign(results):
        sys.exit("INVALID run: " + "; ".join(_foreign(results)))


if __name__ == "__main__":
    main()
