"""A py-spy profile of the suite at saturation, of this checkout or another one (before/after).

    python -m benchmarks.serving.profile --label after
    git worktree add /tmp/before <commit> && make -C /tmp/before VENV=$PWD/.venv protos
    python -m benchmarks.serving.profile --tree /tmp/before --repository <repository it serves> --label before

Server pinned to core 1, the benchmark's load generator on core 0 (ctr Score, 64 closed-loop clients,
the ranking mix; Score's API is the same in every version). Writes reports/serving_profile_<label>.md
with req/s, server CPU per request and the top functions (self and inclusive share of samples).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.serving import report, servers
from benchmarks.serving.loadgen import LoadSpec
from benchmarks.serving.workload import MIXES, MODEL, make_requests

METHODS = {"score": "/infersuite.ctr.v1.CtrService/Score",
           "oip": "/inference.GRPCInferenceService/ModelInfer"}


def profile(repository: Path, work: Path, tree: Path | None, mix: str, seconds: float, clients: int,
            server_cores: set[int], generator_cores: set[int], env: dict[str, str], api: str = "score",
            native: bool = False) -> tuple[dict, dict]:
    """-> (load result, profile table) of one profiled run."""
    vocab = json.loads((repository / MODEL / "1" / "meta.json").read_text())["vocabulary"]
    requests = make_requests(mix, 2000, vocab["n_items"], vocab["n_categories"])
    payloads = work / "requests.pkl"
    payloads.write_bytes(pickle.dumps([r.score_request() if api == "score" else r.infer_request() for r in requests]))
    with servers.suite(repository, server_cores, tree=tree, **env) as server:
        spec = LoadSpec(server.target, METHODS[api], str(payloads), clients=clients, seconds=seconds, warmup_s=2.0,
                        cores=sorted(generator_cores), server_pid=server.pid, server_cores=sorted(server_cores),
                        own_root_pid=os.getpid())
        (work / "spec.json").write_text(json.dumps(spec.__dict__))
        load = subprocess.Popen([sys.executable, "-m", "benchmarks.serving.loadgen", str(work / "spec.json")],
                                stdout=subprocess.PIPE, text=True)
        spy_out = work / "profile.txt"
        py_spy = Path(sys.executable).parent / "py-spy"
        before = thread_cpu(server.pid)
        # --gil: only samples of the thread holding the GIL, so idle threads (the executor's, gRPC's poller
        # waiting) do not fill the table; onnxruntime's own work releases the GIL and shows as the model CPU.
        # --native: C/C++ frames too (protobuf parsing, gRPC core, numpy), inside the Python stacks.
        subprocess.run([str(py_spy), "record", "--gil", *(["--native"] * native), "-p", str(server.pid),
                        "-d", str(int(seconds)), "-r", "100", "-f", "raw", "-o", str(spy_out)],
                       capture_output=True, timeout=seconds + 60)
        after = thread_cpu(server.pid)
        result = json.loads((load.communicate(timeout=seconds + 120)[0]).strip().splitlines()[-1])
    table = report.profile_table(spy_out) if spy_out.exists() else {}
    table["gil_only"] = True
    answered = max(result["throughput_rps"] * seconds, 1.0)
    table["threads_ms_per_request"] = {name: (after.get(name, 0.0) - before.get(name, 0.0)) * 1000 / answered
                                       for name in after}
    return result, table


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's threads, grouped: the event loop (main thread), gRPC's event engine,
    and the rest (the onnxruntime executor, gRPC's poller, metrics)."""
    groups: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if task.name == str(pid):
            group = "event loop (main thread)"
        elif name.startswith("event_engine"):
            group = "gRPC event engine"
        else:  # Python 3.11 does not name OS threads: the executor that runs the model counts here
            group = "other threads (the onnxruntime executor, gRPC's poller, metrics)"
        groups[group] = groups.get(group, 0.0) + seconds
    return groups


def _dirty(tree: Path | None) -> bool:
    status = subprocess.run(["git", "-C", str(tree or "."), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True).stdout
    return bool(status.strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--tree", type=Path, default=None, help="another checkout to run (default: this one)")
    parser.add_argument("--label", default="after")
    parser.add_argument("--mix", default="ranking", choices=list(MIXES))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--env", nargs="*", default=[], help="KEY=VALUE settings for the server")
    parser.add_argument("--api", default="score", choices=list(METHODS), help="ctr Score or OIP ModelInfer")
    parser.add_argument("--native", action="store_true", help="sample native frames too (py-spy --native)")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory() as tmp:
        result, table = profile(args.repository, Path(tmp), args.tree, args.mix, args.seconds, args.clients,
                                {1}, {0}, env, args.api, args.native)
    command = "python -m benchmarks.serving.profile " + " ".join(sys.argv[1:] if argv is None else argv)
    revision = subprocess.run(["git", "-C", str(args.tree or "."), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or "unknown"
    lines = [f"# Profile of the suite at saturation: {args.label}", "",
             f"Command: `{command}` (code at commit {revision}{' plus uncommitted changes' * _dirty(args.tree)}; "
             f"model {MODEL} as that commit's exporter writes it). {METHODS[args.api]}, {args.mix} mix, {args.clients} "
             "closed-loop clients; server on core 1, "
             f"load generator on core 0; load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}.", "",
             f"- throughput {result['throughput_rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms",
             f"- server CPU {result['server_cpu_ms_per_request']:.3f} ms per request (process tree, /proc)",
             "", "Server CPU per request by thread (/proc, over the profiled seconds):", "",
             *[f"- {name}: {ms:.3f} ms" for name, ms in sorted(table.get("threads_ms_per_request", {}).items())],
             "", f"py-spy, {table.get('samples', 0)} samples (Python frames; gRPC's and protobuf's native work shows "
             "as the asyncio callback that runs it; onnxruntime as `run`).", "",
             "| self share | function |", "|---|---|"]
    lines += [f"| {share:.1%} | `{name}` |" for name, share in table.get("self", [])[:20]]
    lines += ["", "| inclusive share | function |", "|---|---|"]
    lines += [f"| {share:.1%} | `{name}` |" for name, share in table.get("inclusive", [])[:25]]
    out = Path("reports") / f"serving_profile_{args.label}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
