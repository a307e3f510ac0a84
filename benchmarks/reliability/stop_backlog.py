"""What a plain grpc.aio server (no infersuite code) answers to the calls sent before `server.stop(grace)`
when it runs behind: a unary handler that burns `--work-ms` of CPU, the server pinned to one core, an
open loop on the other at rates below and above what the handler allows, `stop(5.0)` two seconds in.
Near the core's capacity a share of the calls sent before stop() get CANCELLED at once, grace or not
(the likely ones: received by gRPC core, not yet taken up by grpc.aio). reports/reliability.md's SIGTERM
section shows the suite meeting the same. Writes reports/stop_backlog.md.

    python -m benchmarks.reliability.stop_backlog        # make bench-stop-backlog (~30 s)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from benchmarks.reliability.measure import ROOT
from benchmarks.serving.machine import Window, all_cores, take_sample

METHOD = "/bench.Backlog/Burn"


def _serve(queue: Any, core: int, work_s: float, stop_after_s: float) -> None:
    """A grpc.aio server: each call burns `work_s` of CPU; stop(5.0) after `stop_after_s`, its time sent back."""
    os.sched_setaffinity(0, {core})

    async def burn(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        end = time.perf_counter() + work_s
        while time.perf_counter() < end:
            pass
        return b"done"

    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "bench.Backlog", {"Burn": grpc.unary_unary_rpc_method_handler(burn)})
        server.add_generic_rpc_handlers((handler,))
        queue.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await asyncio.sleep(stop_after_s)
        queue.put(time.time())
        await server.stop(5.0)

    asyncio.run(main())


async def _load(port: int, rate: float, seconds: float) -> list[tuple[float, str]]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call, outcomes = channel.unary_unary(METHOD), []

        async def one() -> None:
            sent = time.time()
            try:
                await call(b"", timeout=10)
                code = "OK"
            except grpc.aio.AioRpcError as err:
                code = err.code().name
            outcomes.append((sent, code))

        tasks, start = [], time.monotonic()
        while time.monotonic() - start < seconds:
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(max(0.0, start + len(tasks) / rate - time.monotonic()))
        await asyncio.gather(*tasks)
    return outcomes


def _run(rate: float, args: argparse.Namespace) -> dict[str, Any]:
    queue: Any = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(queue, args.server_core, args.work_ms / 1000, 2.0))
    server.start()
    try:
        port = queue.get(timeout=30)
        outcomes = asyncio.run(_load(port, rate, 3.0))
        stopped = queue.get(timeout=30)
    finally:
        server.join(15)
        if server.is_alive():
            server.kill()
    before = collections.Counter(code for sent, code in outcomes if sent < stopped)
    after = collections.Counter(code for sent, code in outcomes if sent >= stopped)
    return {"rate": rate, "load": round(rate * args.work_ms / 1000, 2), "before_stop": dict(before),
            "after_stop": dict(after)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability.stop_backlog",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-ms", type=float, default=1.5, help="CPU each call burns on the server")
    parser.add_argument("--rates", type=float, nargs="+", default=[300.0, 500.0, 620.0, 700.0])
    parser.add_argument("--server-core", type=int, default=1)
    parser.add_argument("--client-core", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "stop_backlog.md")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {args.client_core})
    before = take_sample(os.getpid())
    runs = [_run(rate, args) for rate in args.rates]
    cores = all_cores(Window(before, take_sample(os.getpid())))
    command = "python -m benchmarks.reliability.stop_backlog " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = ["# Calls sent before a grpc.aio server's stop(grace): a plain server, no infersuite code", "",
             f"Written by `{command.strip()}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: "
             f"{os.cpu_count()} cores, Python {platform.python_version()}, grpcio {grpc.__version__}; server pinned to "
             f"core {args.server_core}, client to core {args.client_core}; both cores over the runs (/proc/stat): idle "
             f"{cores['idle_share']:.0%}, foreign work {cores['foreign_share']:.1%}. Each call burns "
             f"{args.work_ms:g} ms of server CPU; open loop for 3 s, `server.stop(5.0)` 2 s in.", "",
             "| offered req/s | offered load (CPU share of the core) | calls sent before stop() | calls sent after |",
             "|---|---|---|---|"]
    lines += [f"| {r['rate']:g} | {r['load']:.2f} | {r['before_stop']} | {r['after_stop']} |" for r in runs]
    lines += ["", "Below the core's capacity every call sent before stop() is answered OK within the grace period. "
              "Near or past it, a share of them get CANCELLED at once although the grace period has not run out "
              "(inferred, not traced: only then do received calls wait for grpc.aio's loop to take them up, and "
              "those are the ones stop() does not wait for). New calls after stop() are refused UNAVAILABLE.", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
