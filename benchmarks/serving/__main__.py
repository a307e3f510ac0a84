"""`make bench-serving`: where the server's CPU goes, and the suite against bare onnxruntime and its
Python peers (MLServer, KServe), side by side in one run.

The load generator (benchmarks/serving/loadgen.py, its own process) runs on the generator cores and
every server on the server cores (default: server on core 1, generator on core 0), so the ceiling
is bare onnxruntime on the server's core. Rounds are interleaved (each round runs every server once,
in a rotated order) because this machine's speed drifts by +-30% between minutes; the report gives
min / median / max over rounds. Per step: req/s, p50/p99, candidates/s, server CPU per request (its
process tree, from /proc) split into model execution (the runtime's
infersuite_model_compute_cpu_seconds_total) and everything else. The bare-onnxruntime ceiling is one
of the servers of each round, so the ceiling, the suite and the peers share the same minutes; so is a
minimal Python OIP server on grpcio's synchronous transport (benchmarks/serving/servers.py), the
yardstick of what any Python server on grpcio reaches on this mix.

The run proves the machine was quiet (validity.py, machine.py): it does not start while the load
average or /proc/stat shows other work (it waits up to --quiet-wait seconds, then exits 3; --force
starts anyway and the report says so), and every measured window reads each benchmark core's busy
time from /proc/stat and every process's CPU from /proc/<pid>/stat. A saturated pinned step whose
server core was less than 95% busy, or any step where foreign work took more than 5% of a core,
makes the run invalid. An invalid run still writes its report, stamped INVALID at the top with the
reasons and the foreign processes named, and then exits 1. Written rather than refused because a
starved run is evidence worth keeping (which step, which core, which process, how much), and a
20-minute run that leaves nothing behind teaches nothing; the stamp is the report's first line, so
no figure can be read without it, the .json says "valid": false, and the exit status fails `make`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.serving import profile, report, servers, validity
from benchmarks.serving.loadgen import LoadSpec
from benchmarks.serving.workload import MIXES, MODEL, make_requests, mean_candidates

SCORE = "/infersuite.ctr.v1.CtrService/Score"
INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"
OPEN_LOOP_RATES = (100, 200, 400, 600, 800, 1000, 1300, 1600, 2000, 2500, 3000)
P99_GOAL_MS = 50.0


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args, self.work = args, work
        self.server_cores, self.generator_cores = set(args.server_cores), set(args.generator_cores)
        self.meta = json.loads((args.repository / MODEL / "1" / "meta.json").read_text())
        vocab = self.meta["vocabulary"]
        self.requests = {mix: make_requests(mix, 2000, vocab["n_items"], vocab["n_categories"]) for mix in args.mixes}
        self.files: dict[tuple[str, str], str] = {}
        for mix, requests in self.requests.items():
            self.files[(mix, "score")] = self._write(f"score-{mix}", [r.score_request() for r in requests])
            self.files[(mix, "infer")] = self._write(f"infer-{mix}", [r.infer_request() for r in requests])
        self.files[("-", "echo")] = self._write("echo", [b"x" * 64])
        self.steps: list[dict[str, Any]] = []
        self.configurations: dict[str, dict[str, str]] = {}  # by server name, as the report prints them

    def _write(self, name: str, payloads: list[bytes]) -> str:
        path = self.work / f"{name}.pkl"
        path.write_bytes(pickle.dumps(payloads))
        return str(path)

    def load(self, server: Any, method: str, payload: tuple[str, str], clients: int,
             **extra: Any) -> dict[str, Any]:
        target = getattr(server, "target", None) or server.grpc_address  # the suite's or a peer's
        self.configurations.setdefault(getattr(server, "name", None) or server.kind, server.configuration)
        generator_cores = sorted(extra.pop("cores", self.generator_cores))
        spec = LoadSpec(target=target, method=method,
                        requests_file=self.files[payload], clients=clients,
                        seconds=extra.pop("seconds", self.args.seconds),
                        warmup_s=self.args.warmup, cores=generator_cores,
                        server_pid=server.pid, metrics_url=getattr(server, "metrics_url", ""),
                        server_cores=sorted(self.server_cores), own_root_pid=os.getpid(),
                        pinned=not set(generator_cores) & self.server_cores, **extra)
        spec_path = self.work / "spec.json"
        spec_path.write_text(json.dumps(spec.__dict__))
        done = subprocess.run([sys.executable, "-m", "benchmarks.serving.loadgen", str(spec_path)],
                              capture_output=True, text=True, timeout=spec.seconds + spec.warmup_s + 120)
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result.pop("spec")
        mix = payload[0]
        if mix in self.requests:
            result["candidates_per_s"] = result["throughput_rps"] * mean_candidates(self.requests[mix])
        return result

    def record(self, **step: Any) -> dict[str, Any]:
        self.steps.append(step)
        keys = ("throughput_rps", "p99_ms", "server_cpu_ms_per_request", "other_cpu_ms_per_request", "errors")
        print(json.dumps({k: v for k, v in step.items() if k in keys or k in ("clients", "round", "rate")
                          or isinstance(v, str)}), flush=True)
        for flag in validity.step_flags(step):
            print(f"FLAGGED {validity.step_label(step)}: {flag}; offenders "
                  f"{step.get('machine', {}).get('offenders', [])}", flush=True)
        return step


Factories = dict[str, Callable[[], contextlib.AbstractContextManager[Any]]]


def _peers(bench: Bench, cores: set[int]) -> Factories:
    """MLServer and KServe on `cores`, serving the suite's ONNX file (each when `make peers` installed it)."""
    if not bench.args.peers:
        return {}
    from benchmarks.peers.launch import peer_installed, start_peer

    onnx = bench.args.repository / MODEL / "1" / "model.onnx"
    chosen: Factories = {}
    for kind in ("mlserver", "kserve"):
        if peer_installed(kind):  # type: ignore[arg-type]
            chosen[kind] = lambda kind=kind: start_peer(kind, onnx, cores)  # type: ignore[misc]
        else:
            print(f"{kind} is not installed (make peers): left out", flush=True)
    return chosen


def _servers(bench: Bench) -> Factories:
    repo, cores = bench.args.repository, bench.server_cores
    return {
        "infersuite": lambda: servers.suite(repo, cores),
        "infersuite, batching off": lambda: servers.suite(repo, cores, "infersuite, batching off",
                                                          INFERSUITE_DYNAMIC_BATCHING="false"),
        SYNC: lambda: servers.suite(repo, cores, SYNC, INFERSUITE_TRANSPORT="sync"),
        **_peers(bench, cores),
        servers.MINIMAL: lambda: servers.minimal(repo, cores),
    }


CEILING = "bare onnxruntime"
SYNC = "infersuite, sync transport"


def _closed_loop_rounds(bench: Bench) -> None:
    """Each round runs the ceiling and every server once, in a rotated order, then the empty-RPC floor of
    each transport (grpc.aio, grpcio sync)."""
    factories = _servers(bench)
    names = [CEILING, *factories]
    for round_ in range(bench.args.rounds):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            if name == CEILING:
                _ceilings(bench, round_)
                continue
            with factories[name]() as server:
                for mix in bench.args.mixes:
                    steps = [("OIP ModelInfer", INFER, "infer", c) for c in bench.args.clients]
                    if name.startswith("infersuite"):
                        steps.insert(0, ("ctr Score", SCORE, "score", max(bench.args.clients)))
                    for api, method, kind, clients in steps:
                        result = bench.load(server, method, (mix, kind), clients)
                        bench.record(kind="closed", round=round_, server=name, mix=mix, api=api, clients=clients,
                                     **result)
        for transport in servers.ECHO_TRANSPORTS:
            with servers.echo(bench.server_cores, transport) as floor:
                result = bench.load(floor, servers.ECHO_METHOD, ("-", "echo"), max(bench.args.clients))
                bench.record(kind="floor", round=round_, server=floor.name, mix="-", api="empty unary RPC",
                             clients=max(bench.args.clients), **result)


def _open_loop(bench: Bench) -> None:
    mix = bench.args.mixes[0]
    for name, factory in _servers(bench).items():
        if name in ("infersuite, batching off", servers.MINIMAL):
            continue
        with factory() as server:
            for rate in OPEN_LOOP_RATES:
                result = bench.load(server, INFER, (mix, "infer"), 256, rate=float(rate),
                                    seconds=bench.args.open_seconds)
                bench.record(kind="open", server=name, mix=mix, api="OIP ModelInfer", rate=rate, **result)
                if result["p99_ms"] > 4 * P99_GOAL_MS or result["errors"]:
                    break


def _streaming(bench: Bench) -> None:
    mix, clients = bench.args.mixes[0], max(bench.args.clients)
    with servers.suite(bench.args.repository, bench.server_cores) as server:
        for api, method, streaming in (("OIP ModelInfer", INFER, False), ("OIP ModelStreamInfer", STREAM, True)):
            result = bench.load(server, method, (mix, "infer"), clients, streaming=streaming)
            bench.record(kind="streaming", server="infersuite", mix=mix, api=api, clients=clients, **result)


def _both_cores(bench: Bench) -> None:
    """Every server on all the cores, the generator sharing them (no pinning apart): the suite with one
    and with two workers, and the peers (each one process), as a deployment without pinning runs."""
    both = bench.server_cores | bench.generator_cores
    cores = ",".join(map(str, sorted(both)))
    chosen: Factories = {
        f"infersuite, {n} worker{'s' * (n > 1)}": (lambda n=n: servers.suite(  # type: ignore[misc]
            bench.args.repository, both, f"infersuite, {n} worker{'s' * (n > 1)}", INFERSUITE_WORKERS=str(n),
            INFERSUITE_CPU_AFFINITY=cores)) for n in (1, 2)}
    chosen.update(_peers(bench, both))
    mix = bench.args.mixes[0]
    for name, factory in chosen.items():
        with factory() as server:
            for clients in bench.args.clients:
                result = bench.load(server, INFER, (mix, "infer"), clients, cores=both)
                bench.record(kind="both_cores", server=name, mix=mix, api="OIP ModelInfer", clients=clients, **result)


def _profile(bench: Bench) -> dict[str, Any]:
    """py-spy samples of the suite at saturation (ctr Score, first mix, 64 clients): top functions."""
    result, table = profile.profile(bench.args.repository, bench.work, None, bench.args.mixes[0], 6.0,
                                    max(bench.args.clients), bench.server_cores, bench.generator_cores, {})
    bench.record(kind="profile", server="infersuite", mix=bench.args.mixes[0], api="ctr Score",
                 clients=max(bench.args.clients), machine=result.get("machine"))
    return table


def _ceilings(bench: Bench, round_: int) -> None:
    """One pass of bare onnxruntime per mix on the server's core (benchmarks/serving/ceiling.py)."""
    core = min(bench.server_cores)
    for mix in bench.args.mixes:
        done = subprocess.run([sys.executable, "-m", "benchmarks.serving.ceiling", str(bench.args.repository), mix,
                               str(core), str(bench.args.ceiling_seconds), "1"], capture_output=True, text=True,
                              check=True)
        found = json.loads(done.stdout)
        bench.configurations.setdefault(CEILING, {"cores": str(core), "model": ", ".join(
            f"{k}={v}" for k, v in found["session"].items())})
        bench.record(kind="ceiling", round=round_, server=CEILING, mix=mix, rates=found["rates"],
                     machine=found["machine"])


def ceilings_by_round(steps: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """mix -> batch size -> req/s in each round (the report gives min / median / max)."""
    found: dict[str, dict[str, list[float]]] = {}
    for step in steps:
        if step["kind"] == "ceiling":
            for size, rate in step["rates"].items():
                found.setdefault(step["mix"], {}).setdefault(str(size), []).append(rate)
    return found


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        yield Path(tmp)


RERENDERED = "`, re-rendered from its .json by `"


def _rerender(source: Path, out: Path, argv: list[str] | None) -> None:
    """The report of an earlier run, from its .json: same measurements, today's checks and rendering."""
    run = json.loads(source.read_text())
    context, steps, gate = run["context"], run["steps"], run["context"]["gate"]
    command = "python -m benchmarks.serving " + " ".join(sys.argv[1:] if argv is None else argv)
    # The run's own command is kept apart, so a second re-render replaces the stamp instead of appending one.
    measured = context.get("measured_command") or context["command"].split(RERENDERED)[0]
    context["measured_command"] = measured
    context["command"] = f"{measured}{RERENDERED}{command}"
    verdict = validity.verdict(steps, gate if not gate["quiet"] else {})
    report.write(out, context, ceilings_by_round(steps), steps, run.get("profile", {}), verdict)
    if not verdict.valid:
        sys.exit(f"INVALID run ({verdict.steps_flagged} of {verdict.steps_checked} steps flagged): "
                 + "; ".join(verdict.reasons[:3]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--server-cores", type=int, nargs="+", default=[1])
    parser.add_argument("--generator-cores", type=int, nargs="+", default=[0])
    parser.add_argument("--mixes", nargs="+", default=list(MIXES), choices=list(MIXES))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds per step")
    parser.add_argument("--open-seconds", type=float, default=5.0, help="measured seconds per open-loop rate")
    parser.add_argument("--ceiling-seconds", type=float, default=2.0)
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="leave MLServer and KServe out")
    parser.add_argument("--skip", nargs="*", default=[], choices=["open", "extras", "profile"])
    parser.add_argument("--out", type=Path, default=Path("reports/serving.md"))
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="seconds to wait for a quiet machine before refusing to start")
    parser.add_argument("--force", action="store_true",
                        help="start on a busy machine anyway (the report is then stamped INVALID)")
    parser.add_argument("--rerender", type=Path, metavar="JSON",
                        help="rewrite --out from a run's own .json with the current validity rules and tables "
                             "(no measurement; the report says it was re-rendered)")
    args = parser.parse_args(argv)
    if args.rerender is not None:
        _rerender(args.rerender, args.out, argv)
        return
    started = time.time()
    gate = validity.wait_until_quiet(set(args.server_cores) | set(args.generator_cores), wait_s=args.quiet_wait)
    if not gate["quiet"] and not args.force:
        sys.exit(f"refusing to benchmark on a busy machine: {'; '.join(gate['reasons'])}; foreign processes: "
                 f"{gate['offenders'] or 'none visible in /proc'}. Benchmarks never run beside training or other "
                 "benchmarks (docs/benchmarking.md); --force runs anyway and stamps the report INVALID.")
    with _workdir() as work:
        bench = Bench(args, work)
        _closed_loop_rounds(bench)
        if "open" not in args.skip:
            _open_loop(bench)
        if "extras" not in args.skip:
            _streaming(bench)
            _both_cores(bench)
        profile = _profile(bench) if "profile" not in args.skip else {}
    command = "make bench-serving" if argv is None and sys.argv[1:] == [] else \
        "python -m benchmarks.serving " + " ".join(sys.argv[1:] if argv is None else argv)
    context = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
               "minutes": (time.time() - started) / 60, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "load_average_before": gate["load_average"], "load_average_after": list(os.getloadavg()),
               "gate": gate, "configurations": bench.configurations, "server_cores": sorted(bench.server_cores),
               "generator_cores": sorted(bench.generator_cores), "seconds": args.seconds, "warmup": args.warmup,
               "rounds": args.rounds, "mean_candidates": {m: mean_candidates(r) for m, r in bench.requests.items()}}
    verdict = validity.verdict(bench.steps, gate if not gate["quiet"] else {})
    report.write(args.out, context, ceilings_by_round(bench.steps), bench.steps, profile, verdict)
    if not verdict.valid:
        sys.exit(f"INVALID run ({verdict.steps_flagged} of {verdict.steps_checked} steps flagged): {args.out} is "
                 "stamped INVALID; do not commit it. First reasons: " + "; ".join(verdict.reasons[:3]))


if __name__ == "__main__":
    main()
