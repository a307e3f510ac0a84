"""`make bench-triton-front` (issue 28): the server CPU per request of the suite in front of a real
Triton Inference Server, beside Triton answering the same requests directly and beside the suite on its
embedded onnxruntime backend.

Three configurations, closed loop at each of --clients, interleaved rounds (the machine's speed drifts
between minutes), everything from `make bench-serving`'s pieces: its din-fp32 request mix
(workload.py), its load generator in its own process on the generator core (loadgen.py, through
`Bench.load`), its /proc accounting and validity checks (machine.py, validity.py):

- Triton direct: OIP ModelInfer to Triton 2.51 (exporters/triton_local.py: the python backend running
  the same ONNX graph with onnxruntime, one intra-op thread, one instance);
- the suite in front of Triton: `INFERSUITE_BACKEND=triton` pointed at that Triton; OIP ModelInfer and
  ctr Score to the suite;
- the suite on its embedded onnxruntime backend, the same requests (bench-serving's usual figure).

Triton and the suite are pinned to the SAME server core (they share it in the middle configuration), so
every figure is CPU of that one core: "server core busy per request" is the core's busy time
(/proc/stat, irq/softirq of loopback networking included) over the measured window divided by the
answers in it, exact for every configuration. "Process CPU per request" is utime + stime of the server
processes and their threads (/proc/<pid>/stat): the load generator reads one process tree exactly at its
window's edges (Triton's in the first configuration, the suite's in the other two); in the middle one,
Triton's share comes from the driver reading Triton's tree over an inner window of the same step
(INNER_MARGIN_S inside the measured one) as a rate, divided by the step's throughput. The driver reads
the exactly-measured tree over that inner window too; how far that estimate lands from the exact figure
is reported as the split's error.

    python -m benchmarks.serving.triton_front --repository shipped_models --rounds 2 --seconds 10
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tritonclient.grpc import InferenceServerClient
from tritonclient.utils import InferenceServerException

from benchmarks.peers.proc import process_tree, tree_cpu_seconds
from benchmarks.serving import report, servers, validity
from benchmarks.serving.__main__ import INFER, SCORE, Bench
from benchmarks.serving.servers import RunningServer
from benchmarks.serving.workload import MIXES, MODEL, mean_candidates
from exporters import triton_local

DIRECT = "Triton direct"
FRONT = "infersuite in front of Triton"
EMBEDDED = "infersuite, embedded onnxruntime"
CONFIGURATIONS = (DIRECT, FRONT, EMBEDDED)
LOADGEN_START_S = 1.5  # the load generator's interpreter start and channel set-up, before its warm-up begins
INNER_MARGIN_S = 0.5  # the driver's inner window starts and ends this far inside the measured one (at least)
SPLIT_ERROR_MAX = 0.10  # the inner-window estimate of the exactly read tree, relative error worth a warning


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree_affinity(root: int) -> set[int]:
    """Every core any thread of `root`'s process tree may run on."""
    allowed: set[int] = set()
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    allowed |= os.sched_getaffinity(int(task.name))
    return allowed


def _wait_for_model(port: int, proc: Any, log: Path, timeout_s: float = 120.0) -> None:
    client = InferenceServerClient(f"127.0.0.1:{port}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(InferenceServerException):
            if client.is_model_ready(MODEL):
                return
        time.sleep(0.3)
    triton_local.kill(proc)
    raise RuntimeError(f"Triton never served {MODEL}: {log.read_text(errors='replace')[-2000:]}")


@contextlib.contextmanager
def triton(repository: Path, cores: set[int], work: Path) -> Iterator[RunningServer]:
    """Triton serving din-fp32 on `cores`, ready on return. It is pinned by inheritance: the calling thread
    holds `cores` while it forks tritonserver, whose threads and python-backend stubs inherit them."""
    port, log = _free_port(), work / "tritonserver.log"
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        proc = triton_local.launch(repository, port, work, [MODEL], log)
    finally:
        os.sched_setaffinity(0, allowed)
    try:
        _wait_for_model(port, proc, log)
        pinned = _tree_affinity(proc.pid)
        if not pinned <= cores:
            raise RuntimeError(f"Triton's threads may run on cores {sorted(pinned)}, not only {sorted(cores)}")
        yield RunningServer(DIRECT, proc, port, None, {
            "cores": ",".join(map(str, sorted(pinned))), "server": "tritonserver 2.51 (nvidia-pytriton 0.7.0 wheel), "
            "gRPC only", "model": f"{MODEL} on the python backend running onnxruntime "
            f"(exporters/triton_python_model.py), intra-op threads {os.environ.get('INFERSUITE_TRITON_THREADS', '1')}, "
            "one instance, processes " + str(len(process_tree(proc.pid)))})
    finally:
        triton_local.kill(proc)


@contextlib.contextmanager
def suite_in_front(repository: Path, cores: set[int], front_of: RunningServer) -> Iterator[RunningServer]:
    # explicit model control: only ctr's model, the one Triton serves (under `none` the suite would wait for
    # every model of the repository to be ready on Triton).
    with servers.suite(repository, cores, FRONT, INFERSUITE_BACKEND="triton", INFERSUITE_TRITON_URL=front_of.target,
                       INFERSUITE_MODEL_CONTROL_MODE="explicit") as server:
        server.configuration["model"] = f"Triton at {front_of.target} (the configuration above), same core"
        yield server


def _triton_requests(port: int | None) -> int:
    """Requests Triton has answered for the model so far (its statistics; 0 without a Triton)."""
    if port is None:
        return 0
    statistics_ = InferenceServerClient(f"127.0.0.1:{port}").get_inference_statistics(MODEL)
    return int(statistics_.model_stats[0].inference_stats.success.count)


def _inner_window(roots: dict[str, int], triton_port: int | None, start_s: float, end_s: float) -> dict[str, Any]:
    """CPU seconds of each process tree, and requests Triton answered, between `start_s` and `end_s` from now
    (the driver's inner window)."""
    began = time.monotonic()
    time.sleep(start_s)
    answered, at = _triton_requests(triton_port), time.monotonic()
    before = {name: tree_cpu_seconds(pid) for name, pid in roots.items()}
    time.sleep(max(began + end_s - time.monotonic(), 0.0))
    after, until = {name: tree_cpu_seconds(pid) for name, pid in roots.items()}, time.monotonic()
    return {"seconds": until - at, "cpu_s": {name: after[name] - before[name] for name in roots},
            "triton_requests": _triton_requests(triton_port) - answered if triton_port else None}


def measure(bench: Bench, server: RunningServer, roots: dict[str, int], triton_port: int | None, api: str,
            method: str, kind: str, clients: int) -> dict[str, Any]:
    """One closed-loop step through the load generator, with the driver's inner-window reading of `roots`."""
    start = LOADGEN_START_S + bench.args.warmup + INNER_MARGIN_S
    end = bench.args.warmup + bench.args.seconds - INNER_MARGIN_S
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        inner = pool.submit(_inner_window, roots, triton_port, start, end)
        result = bench.load(server, method, (bench.args.mix, kind), clients)
        result["inner_window"] = inner.result()
    return result


# -- the pure part: figures per step, summaries over rounds, the report --------------------------------------


def cpu_per_request(step: dict[str, Any]) -> dict[str, float | None]:
    """Milliseconds of server CPU per answered request: by process (the exactly read tree, the other one
    estimated from the inner window), their sum, and the server core's busy time."""
    done = step["completed"]
    exact = step["server_cpu_ms_per_request"] if done else None
    inner, rate = step.get("inner_window") or {}, step["throughput_rps"]
    rates = {name: cpu / inner["seconds"] for name, cpu in inner.get("cpu_s", {}).items()} if inner else {}
    estimate = {name: 1000 * r / rate if rate else None for name, r in rates.items()}
    measured_as = "triton" if step["server"] == DIRECT else "suite"
    figures: dict[str, float | None] = {"suite": None, "triton": None, measured_as: exact}
    for name, value in estimate.items():
        if name != measured_as:
            figures[name] = value
    parts = [v for k, v in figures.items() if k in ("suite", "triton") and v is not None]
    figures["processes"] = sum(parts) if parts and exact is not None else None
    busy = report._server_core(step, "busy_share")
    figures["core_busy"] = 1000 * busy * step["machine"]["seconds"] / done if busy is not None and done else None
    own_estimate = estimate.get(measured_as)
    figures["split_error"] = own_estimate / exact - 1 if own_estimate is not None and exact else None
    triton_requests = inner.get("triton_requests") if inner else None
    figures["triton_calls"] = triton_requests / (rate * inner["seconds"]) if triton_requests is not None and rate \
        else None
    # Model execution inside the suite's process (its /metrics), read only for the embedded backend.
    figures["model"] = step.get("model_cpu_ms_per_request") if step.get("other_cpu_ms_per_request") is not None \
        and step["server"] == EMBEDDED else None
    return figures


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: list[float], digits: int = 3) -> str:
    if not values:
        return "n/a"
    middle = statistics.median(values)
    return f"{middle:.{digits}f}" if len(values) == 1 else \
        f"{middle:.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def summarise(steps: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(configuration, API, clients) -> medians over rounds and every round's CPU figures."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for step in steps:
        groups.setdefault((step["server"], step["api"], step["clients"]), []).append(step)
    found = {}
    for key, runs in groups.items():
        figures = [cpu_per_request(r) for r in runs]
        codes: dict[str, int] = {}
        for run in runs:
            for code, n in run.get("error_codes", {}).items():
                codes[code] = codes.get(code, 0) + n
        found[key] = {"rounds": [r["round"] for r in runs], "rps": [r["throughput_rps"] for r in runs],
                      "p50_ms": _median([r["p50_ms"] for r in runs]), "p99_ms": _median([r["p99_ms"] for r in runs]),
                      "max_ms": max(r["max_ms"] for r in runs), "errors": codes, "completed": sum(
                          r["completed"] for r in runs), **{name: [f[name] for f in figures if f[name] is not None]
                                                            for name in figures[0]}}
    return found


def ratios(summary: dict[tuple[str, str, int], dict[str, Any]], over: str, field: str,
           clients: int) -> list[float]:
    """FRONT / `over` of `field` (ms per request) for OIP ModelInfer at `clients`, paired by round."""
    top, bottom = summary.get((FRONT, "OIP ModelInfer", clients)), summary.get((over, "OIP ModelInfer", clients))
    if not top or not bottom or len(top[field]) != len(top["rounds"]) or len(bottom[field]) != len(bottom["rounds"]):
        return []
    by_round = dict(zip(bottom["rounds"], bottom[field], strict=True))
    return [value / by_round[r] for r, value in zip(top["rounds"], top[field], strict=True) if by_round.get(r)]


def _errors(codes: dict[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(codes.items())) or "0"


def _table(summary: dict[tuple[str, str, int], dict[str, Any]], configuration: str) -> list[str]:
    lines = [f"### {configuration}", "", "| API | clients | req/s median [min, max] | p50 ms | p99 ms | max ms | "
             "suite process ms/req | Triton processes ms/req | server processes ms/req | server core busy ms/req | "
             "errors by code |", "|" + "---|" * 11]
    for (name, api, clients), s in summary.items():
        if name == configuration:
            lines.append(f"| {api} | {clients} | {_spread(s['rps'], 0)} | {s['p50_ms']:.2f} | {s['p99_ms']:.1f} | "
                         f"{s['max_ms']:.0f} | {_spread(s['suite'])} | {_spread(s['triton'])} | "
                         f"{_spread(s['processes'])} | {_spread(s['core_busy'])} | {_errors(s['errors'])} |")
    return lines


def _ratio_lines(summary: dict[tuple[str, str, int], dict[str, Any]], clients: list[int]) -> list[str]:
    lines = ["## CPU per request: the suite in front of Triton / Triton direct (OIP ModelInfer)", "",
             "Median of the per-round ratios [min, max]; the two configurations share each round's minutes.", "",
             "| clients | server processes | server core busy | in front of Triton / embedded (core busy) |",
             "|---|---|---|---|"]
    for c in clients:
        lines.append(f"| {c} | {_spread(ratios(summary, DIRECT, 'processes', c), 2)} | "
                     f"{_spread(ratios(summary, DIRECT, 'core_busy', c), 2)} | "
                     f"{_spread(ratios(summary, EMBEDDED, 'core_busy', c), 2)} |")
    return lines


def _where_lines(summary: dict[tuple[str, str, int], dict[str, Any]], clients: list[int]) -> list[str]:
    """The extra CPU of the front configuration: the suite's process plus Triton's change from direct."""
    lines = ["## Where the extra CPU goes (OIP ModelInfer, ms of CPU per request, medians over rounds)", "",
             "| clients | Triton direct: Triton | in front: Triton | Triton requests per suite request | in front: "
             "suite | extra over Triton direct | = suite + Triton's change | embedded suite: model execution + rest |",
             "|" + "---|" * 8]
    for c in clients:
        direct, front = summary.get((DIRECT, "OIP ModelInfer", c)), summary.get((FRONT, "OIP ModelInfer", c))
        embedded = summary.get((EMBEDDED, "OIP ModelInfer", c))
        if not direct or not front:
            continue
        alone, behind, suite = _median(direct["triton"]), _median(front["triton"]), _median(front["suite"])
        extra = (_median(front["processes"]) or 0.0) - (_median(direct["processes"]) or 0.0)
        change = behind - alone if behind is not None and alone is not None else None
        model = _median(embedded["model"]) if embedded else None
        whole = _median(embedded["suite"]) if embedded else None
        rest = whole - model if whole is not None and model is not None else None
        lines.append(f"| {c} | {report._fmt(alone, 3)} | {report._fmt(behind, 3)} | "
                     f"{report._fmt(_median(front['triton_calls']))} | {report._fmt(suite, 3)} | {extra:+.3f} | "
                     f"{report._fmt(suite, 3)} {'+' if (change or 0) >= 0 else '-'} {abs(change or 0):.3f} | "
                     f"{report._fmt(model, 3)} + {report._fmt(rest, 3)} |")
    return [*lines, "", "Triton requests per suite request below 1: the suite's dynamic batcher combined requests "
            "into fewer, larger Triton calls (read from Triton's model statistics over the inner window)."]


def _split_lines(steps: list[dict[str, Any]]) -> list[str]:
    errors = [e for e in (cpu_per_request(s)["split_error"] for s in steps) if e is not None]
    worst = max(errors, key=abs, default=None)
    lines = ["How good the inner-window split is: over every step the driver also estimated the exactly read "
             f"process tree; the estimate differs from the exact figure by median {_spread([abs(e) for e in errors])}"
             f" (relative), worst {report._fmt(worst, 3)}."]
    if worst is not None and abs(worst) > SPLIT_ERROR_MAX:
        lines.append(f"**The split is imprecise in at least one step (> {SPLIT_ERROR_MAX:.0%}); read the Triton "
                     "column of the middle configuration as an estimate.**")
    return lines


def render(context: dict[str, Any], steps: list[dict[str, Any]], verdict: validity.Verdict) -> list[str]:
    summary = summarise(steps)
    clients = context["clients"]
    stamp = validity.stamp(verdict, command=context["command"])
    return [
        *stamp, "# The suite in front of Triton: server CPU per request (issue 28)", "",
        f"Written by `{context['command']}` ({context['started']}, {context['minutes']:.1f} min). Machine: "
        f"{context['machine']}. Server core {context['server_cores']} holds Triton and the suite (both in the middle "
        f"configuration: they share one core), load generator on {context['generator_cores']}. "
        f"{context['rounds']} interleaved rounds, {context['warmup']} s warm-up + {context['seconds']} s measured "
        f"per step, closed loop; `{MODEL}`, the {context['mix']} mix of bench-serving (mean candidates "
        f"{context['mean_candidates']:.1f} per request). Figures: median over rounds [min, max].", "",
        *_ratio_lines(summary, clients), "", *_where_lines(summary, clients), "",
        "Server core busy counts everything the shared core did (both processes, and the kernel's loopback "
        "networking for them); server processes counts utime + stime of the processes' threads. In the middle "
        "configuration the suite's process CPU is exact (its tree, read by the load generator at the window's "
        "edges) and Triton's is the inner-window estimate.", "", *_split_lines(steps), "",
        "## Each configuration", "", *[line for c in CONFIGURATIONS for line in (*_table(summary, c), "")],
        *report._configuration_lines(context["configurations"]), "",
        *report._validity_lines(context, steps, verdict), ""]


def write(out: Path, context: dict[str, Any], steps: list[dict[str, Any]], verdict: validity.Verdict) -> None:
    lines = render(context, steps, verdict)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    summary = {" | ".join(map(str, key)): value for key, value in summarise(steps).items()}
    out.with_suffix(".json").write_text(json.dumps({"valid": verdict.valid, "verdict": verdict.__dict__,
                                                    "context": context, "summary": summary, "steps": steps}, indent=1))
    print("\n".join(lines))


# -- the run ----------------------------------------------------------------------------------------------


def _steps(bench: Bench, configuration: str) -> list[tuple[str, str, str, int]]:
    steps = [("OIP ModelInfer", INFER, "infer", c) for c in bench.args.clients]
    if configuration != DIRECT and bench.args.score:
        steps.append(("ctr Score", SCORE, "score", max(bench.args.clients)))
    return steps


def _run(bench: Bench, round_: int, configuration: str, server: RunningServer, roots: dict[str, int],
         triton_port: int | None = None) -> None:
    for api, method, kind, clients in _steps(bench, configuration):
        result = measure(bench, server, roots, triton_port, api, method, kind, clients)
        bench.record(kind="closed", round=round_, server=configuration, mix=bench.args.mix, api=api,
                     clients=clients, **result)


def _triton_block(bench: Bench, round_: int, work: Path) -> None:
    """Triton direct and the suite in front of it, on one Triton process, in the round's order."""
    repository, cores = bench.args.repository, bench.server_cores
    with triton(repository, cores, work) as direct:
        def run_direct() -> None:
            _run(bench, round_, DIRECT, direct, {"triton": direct.pid}, direct.port)

        def run_front() -> None:
            with suite_in_front(repository, cores, direct) as front:
                _run(bench, round_, FRONT, front, {"suite": front.pid, "triton": direct.pid}, direct.port)

        for run in (run_direct, run_front)[::1 if round_ % 2 == 0 else -1]:
            run()


def _embedded(bench: Bench, round_: int) -> None:
    with servers.suite(bench.args.repository, bench.server_cores, EMBEDDED) as server:
        _run(bench, round_, EMBEDDED, server, {"suite": server.pid})


def _rounds(bench: Bench, work: Path) -> None:
    blocks: list[Callable[[int], None]] = [lambda r: _triton_block(bench, r, work), lambda r: _embedded(bench, r)]
    for round_ in range(bench.args.rounds):
        for block in blocks[round_ % 2:] + blocks[:round_ % 2]:
            block(round_)


def _machine() -> str:
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")]
    return f"{platform.machine()}, {os.cpu_count()} cores" + (f" ({names[0]})" if names else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving.triton_front", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("shipped_models"))
    parser.add_argument("--server-cores", type=int, nargs="+", default=[1])
    parser.add_argument("--generator-cores", type=int, nargs="+", default=[0])
    parser.add_argument("--mix", default="ranking", choices=list(MIXES))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds per step")
    parser.add_argument("--no-score", dest="score", action="store_false", help="leave ctr Score out")
    parser.add_argument("--out", type=Path, default=Path("reports/serving_triton.md"))
    parser.add_argument("--quiet-wait", type=float, default=120.0)
    parser.add_argument("--force", action="store_true", help="start on a busy machine (the report is INVALID)")
    args = parser.parse_args(argv)
    args.mixes = [args.mix]  # what Bench reads
    started = time.time()
    gate = validity.wait_until_quiet(set(args.server_cores) | set(args.generator_cores), wait_s=args.quiet_wait)
    if not gate["quiet"] and not args.force:
        sys.exit(f"refusing to benchmark on a busy machine: {'; '.join(gate['reasons'])}; --force runs anyway")
    with tempfile.TemporaryDirectory(prefix="bench-triton-front-") as tmp:
        bench = Bench(args, Path(tmp))
        _rounds(bench, Path(tmp))
    command = "make bench-triton-front" if argv is None and sys.argv[1:] == ["--repository", "shipped_models"] \
        else "python -m benchmarks.serving.triton_front " + " ".join(sys.argv[1:] if argv is None else argv)
    context = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
               "minutes": (time.time() - started) / 60, "machine": _machine(),
               "load_average_before": gate["load_average"],
               "load_average_after": list(os.getloadavg()), "gate": gate, "configurations": bench.configurations,
               "server_cores": sorted(bench.server_cores), "generator_cores": sorted(bench.generator_cores),
               "clients": args.clients, "seconds": args.seconds, "warmup": args.warmup, "rounds": args.rounds,
               "mix": args.mix, "mean_candidates": mean_candidates(bench.requests[args.mix])}
    verdict = validity.verdict(bench.steps, gate if not gate["quiet"] else {})
    write(args.out, context, bench.steps, verdict)
    if not verdict.valid:
        sys.exit(f"INVALID run: {args.out} is stamped INVALID; first reasons: " + "; ".join(verdict.reasons[:3]))


if __name__ == "__main__":
    main()
