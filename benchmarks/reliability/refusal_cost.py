"""Server CPU per call-limit refusal on either transport: the suite's refusal with pushback
(infersuite/services/runtime/call_limit.py) against grpcio's own bare refusal (INFERSUITE_CALL_LIMIT_PUSHBACK=false),
on the synchronous transport and on grpc.aio (there the suite's limit sits in its handler wrapper,
infersuite/services/runtime/handler_wrapper.py), interleaved rounds, the server pinned to one core and this
client to the other. A server with a limit of one call holds that call (it sleeps) while the client sends
unary calls, 64 at a time, every one of them refused; the server's CPU time comes from /proc/<pid>/stat.
Writes reports/refusal_cost.md.

    python -m benchmarks.reliability.refusal_cost        # make bench-refusal-cost (~1 minute)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter

from benchmarks.reliability.measure import ROOT
from benchmarks.serving.machine import Window, all_cores, take_sample
from infersuite.services.runtime.errors import RETRY_PUSHBACK_KEY

HOLD, REFUSED = "/bench.Refusal/Hold", "/bench.Refusal/Refused"
KINDS = {"suite": "synchronous transport, the suite's (pushback)",
         "grpcio": "synchronous transport, grpcio's (INFERSUITE_CALL_LIMIT_PUSHBACK=false)",
         "aio-suite": "grpc.aio, the suite's (pushback, in the handler wrapper)",
         "aio-grpcio": "grpc.aio, grpcio's (INFERSUITE_CALL_LIMIT_PUSHBACK=false)"}


def _serve(kind: str, core: int) -> None:
    """The server process: one place, taken by a call to HOLD; every other call is refused."""
    from infersuite.services.runtime.call_limit import CallLimit, LimitedPool

    os.sched_setaffinity(0, {core})
    if kind.startswith("aio-"):
        asyncio.run(_serve_aio(kind))
        return

    def hold(request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(3600)
        return b""

    class Handlers(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(hold if details.method == HOLD else lambda r, c: b"")

    if kind == "grpcio":
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(2), maximum_concurrent_rpcs=1)
    else:
        limit = CallLimit(1, Counter("refused", "refused", ["reason"], registry=CollectorRegistry()))
        server = grpc.server(LimitedPool(2, limit), interceptors=[limit])
    server.add_generic_rpc_handlers((Handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


async def _serve_aio(kind: str) -> None:
    from infersuite.services.runtime.call_limit import AioCallLimit
    from infersuite.services.runtime.handler_wrapper import HandlerWrapper, RegisteringServer
    from infersuite.services.runtime.metrics import Metrics

    async def hold(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(3600)
        return b""

    async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b""

    class Handlers(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(hold if details.method == HOLD else answer)

    if kind == "aio-grpcio":
        server = grpc.aio.server(maximum_concurrent_rpcs=1)
        server.add_generic_rpc_handlers((Handlers(),))
    else:  # the runtime's own wrapper (errors, metrics, the limit), as build_server registers every handler
        metrics = Metrics()
        server = grpc.aio.server()
        wrapper = HandlerWrapper(metrics, call_limit=AioCallLimit(1, metrics.refused_calls))
        RegisteringServer(server, wrapper).add_generic_rpc_handlers((Handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _round(kind: str, calls: int, args: argparse.Namespace) -> dict[str, object]:
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.reliability.refusal_cost", "--serve", kind,
                               "--server-core", str(args.server_core)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        port = int(server.stdout.readline()) if server.stdout else 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            held = asyncio.ensure_future(channel.unary_unary(HOLD)(b"", timeout=600))
            await asyncio.sleep(0.5)
            refused = channel.unary_unary(REFUSED)
            slots = asyncio.Semaphore(64)

            async def one() -> tuple[str, bool]:
                async with slots:
                    try:
                        await refused(b"x" * 100, timeout=10)
                        return "OK", False
                    except grpc.aio.AioRpcError as err:
                        pushback = any(k == RETRY_PUSHBACK_KEY for k, _ in err.trailing_metadata() or ())
                        return err.code().name, pushback

            await asyncio.gather(*(one() for _ in range(200)))  # warm-up
            before, start = _cpu_s(server.pid), time.monotonic()
            outcomes = await asyncio.gather(*(one() for _ in range(calls)))
            seconds, cpu = time.monotonic() - start, _cpu_s(server.pid) - before
            held.cancel()
        codes = collections.Counter(code for code, _ in outcomes)
        return {"kind": kind, "codes": dict(codes), "with_pushback": sum(p for _, p in outcomes),
                "refusals_per_s": round(calls / seconds), "cpu_us_per_refusal": round(cpu / calls * 1e6, 1)}
    finally:
        server.kill()
        server.wait()


async def main_async(args: argparse.Namespace) -> tuple[list[dict[str, object]], dict[str, Any]]:
    os.sched_setaffinity(0, {args.client_core})
    rounds = []
    before = take_sample(os.getpid())
    for _ in range(args.rounds):
        for kind in KINDS:
            rounds.append(await _round(kind, args.calls, args))
            print(rounds[-1], flush=True)
    return rounds, all_cores(Window(before, take_sample(os.getpid())))


def render(rounds: list[dict[str, object]], machine: dict[str, Any], args: argparse.Namespace,
           command: str) -> str:
    def cpu(kind: str) -> list[float]:
        return [float(str(r["cpu_us_per_refusal"])) for r in rounds if r["kind"] == kind]

    lines = [
        "# Server CPU per call-limit refusal", "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, grpcio {grpc.__version__}; server pinned to "
        f"core {args.server_core}, client to core {args.client_core}; load average after {os.getloadavg()}. "
        f"{args.rounds} interleaved rounds of {args.calls} unary calls, 64 at a time, each refused (a limit of one "
        "call, held). Server CPU from /proc/<pid>/stat. Both cores over the run (/proc/stat): idle "
        f"{machine['idle_share']:.0%}, foreign work {machine['foreign_share']:.1%} "
        f"({', '.join(machine['offenders']) or 'nobody'}; valid when at most 5%).", "",
        "| round | refusal | codes | with pushback | refusals/s | server CPU per refusal (us) |",
        "|---|---|---|---|---|---|"]
    for i, r in enumerate(rounds):
        lines.append(f"| {i // len(KINDS) + 1} | {KINDS[str(r['kind'])]} | {r['codes']} | {r['with_pushback']} | "
                     f"{r['refusals_per_s']} | {r['cpu_us_per_refusal']} |")
    lines += ["", "Medians of server CPU per refusal:"]
    for transport, prefix in (("synchronous transport", ""), ("grpc.aio", "aio-")):
        if not cpu(prefix + "suite") or not cpu(prefix + "grpcio"):
            continue
        suite, bare = statistics.median(cpu(prefix + "suite")), statistics.median(cpu(prefix + "grpcio"))
        lines.append(f"- {transport}: the suite's refusal {suite:.1f} us, grpcio's {bare:.1f} us: "
                     f"{suite - bare:+.1f} us ({suite / bare:.2f}x) for the retry hint, the count and a handler's "
                     "call path.")
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability.refusal_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-core", type=int, default=1)
    parser.add_argument("--client-core", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "refusal_cost.md")
    parser.add_argument("--serve", choices=tuple(KINDS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.server_core)
        return
    rounds, machine = asyncio.run(main_async(args))
    command = "python -m benchmarks.reliability.refusal_cost " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.write_text(render(rounds, machine, args, command.strip()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
