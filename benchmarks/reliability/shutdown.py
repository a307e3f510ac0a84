"""SIGTERM under load near capacity, the suite itself (ctr, a tiny DIN): what the calls sent before the signal
and after it get, with the transport stopped at once (the control: what a gRPC server's stop does) against the
stop that first answers new calls itself until they stop coming (RuntimeSettings.shutdown_refuse_s), with
and without a drain (shutdown_drain_s: health NOT_SERVING while still serving). Server pinned to core 1,
the client to core 0; the sustainable rate (every request within the SLO) swept first on the same cores;
SIGTERM 3 s into an open loop at each rate, the load going on 2 s more; the configurations interleaved in
every round. Writes reports/shutdown.md.

    python -m benchmarks.reliability.shutdown        # make bench-shutdown (~6 min)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.reliability.measure import ROOT, ctr_settings, run_shutdown, swept_ctr
from benchmarks.serving.machine import Window, all_cores, take_sample
from infersuite.loadtest.local_suite import SUITE_COMMAND, ServerProcess

SERVER_CORES, CLIENT_CORE = {1}, 0
CONFIGS = {  # name -> the suite's settings
    "transport stopped at once (shutdown_refuse_s=0)": {"INFERSUITE_SHUTDOWN_REFUSE_S": "0"},
    "new calls refused by the suite first (default)": {},
    "drain 0.25 s, then refused first": {"INFERSUITE_SHUTDOWN_DRAIN_S": "0.25"},
}
GRACE_S = 5.0


def _suite(repository: Path, **env: str) -> ServerProcess:
    return ServerProcess({"PYTHONPATH": str(ROOT), **ctr_settings(repository, INFERSUITE_GRACE_PERIOD_S=str(GRACE_S),
                                                                   **env)},
                         command=SUITE_COMMAND, cwd=ROOT, cores=SERVER_CORES)


async def _measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    swept = await swept_ctr(work, 64, args, _suite)
    repository, make, sustainable = swept.repository, swept.make, swept.sustainable
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for load in args.loads:
            for name, env in CONFIGS.items():
                suite = _suite(repository, **env)
                try:
                    await suite.ready()
                    figures = await run_shutdown(suite, make, load * sustainable, GRACE_S)
                finally:
                    suite.stop()
                runs.append({"round": round_, "load": load, "config": name, **figures})
                print(json.dumps(runs[-1]), flush=True)
    return {"sustainable_rps": round(sustainable, 1), "runs": runs}


def _summed(runs: list[dict[str, Any]], key: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for run in runs:
        for code, n in run[key].items():
            total[code] = total.get(code, 0) + n
    return dict(sorted(total.items()))


def _report(results: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    machine = results["machine"]
    lines = [
        "# SIGTERM near capacity: what the calls sent before and after the signal get (ctr, the suite itself)", "",
        f"Written by `{command}` on {machine['started_utc']} UTC. Machine: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; server pinned to core 1, client to core 0; load average before "
        f"{machine['load_before']}, after {machine['load_after']}; both cores over the run (/proc/stat): idle "
        f"{machine['cores']['idle_share']:.0%}, foreign work {machine['cores']['foreign_share']:.1%}"
        + (f" ({', '.join(machine['cores']['offenders'][:5])})" if machine['cores']['offenders'] else "") + ".", "",
        f"Sustainable rate (highest swept open-loop rate with every request within the {args.slo_ms:g} ms p99 SLO, "
        f"on the same pinned cores): {results['sustainable_rps']} req/s. Each run: a fresh suite, an open loop at "
        "the load below, SIGTERM 3 s in, the load going on 2 s more, grace period "
        f"{GRACE_S:g} s; {args.rounds} rounds, the configurations interleaved in each. Codes summed over the rounds.",
        "",
        "| load | configuration | calls sent before SIGTERM | calls sent after | per round: CANCELLED before | "
        "exit after SIGTERM (median) |",
        "|---|---|---|---|---|---|"]
    for load in args.loads:
        for name in CONFIGS:
            runs = [r for r in results["runs"] if r["load"] == load and r["config"] == name]
            cancelled = [r["codes_before_signal"].get("CANCELLED", 0) for r in runs]
            lines.append(f"| {load:.2f} x ({load * results['sustainable_rps']:.0f} req/s) | {name} | "
                         f"{_summed(runs, 'codes_before_signal')} | {_summed(runs, 'codes_after_signal')} | "
                         f"{', '.join(map(str, cancelled))} | "
                         f"{statistics.median(r['exit_after_s'] for r in runs):.2f} s |")
    lines += ["", "Over every run of each configuration (every load):", ""]
    for name in CONFIGS:
        runs = [r for r in results["runs"] if r["config"] == name]
        before, after = _summed(runs, "codes_before_signal"), _summed(runs, "codes_after_signal")
        sent = sum(before.values())
        lines.append(f"- {name}: of {sent} calls sent before SIGTERM, {before.get('OK', 0)} OK, "
                     f"{before.get('CANCELLED', 0)} CANCELLED, {before.get('UNAVAILABLE', 0)} refused UNAVAILABLE; "
                     f"of {sum(after.values())} sent after, {after.get('CANCELLED', 0)} CANCELLED; "
                     f"{sum(r['codes_before_signal'] == {'OK': r['sent_before_signal']} for r in runs)} of {len(runs)} "
                     "runs answered every call sent before the signal OK")
    lines += ["", "How to read it: CANCELLED is what a gRPC server's stop answers to calls it had received but not "
              "yet handed to its handlers; the client cannot tell whether anything ran, and gRPC's retry "
              "policies do not retry it. UNAVAILABLE from the suite's own refusal (message: the server is "
              "shutting down, nothing was run) is safe to retry on another replica. OK after the signal happens "
              "only with a drain, which keeps serving while health says NOT_SERVING (for balancers that poll "
              "health). The exit waits for the health Watch stream the client keeps open (an in-flight call) "
              "until the grace period ends.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability.shutdown",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=float, nargs="+", default=[0.9, 1.0], help="shares of the sustainable rate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slo-ms", type=float, default=100.0)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--rate-start", type=float, default=100.0)
    parser.add_argument("--sweep-step-s", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "shutdown.md")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {CLIENT_CORE})
    machine: dict[str, Any] = {"started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                               "load_before": [round(x, 2) for x in os.getloadavg()]}
    before = take_sample(os.getpid())
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(_measure(args, Path(tmp)))
    machine |= {"load_after": [round(x, 2) for x in os.getloadavg()],
                "cores": all_cores(Window(before, take_sample(os.getpid())))}
    results["machine"] = machine
    command = "python -m benchmarks.reliability.shutdown" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None
                                                                                      else argv))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    args.out.write_text(_report(results, args, command))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
