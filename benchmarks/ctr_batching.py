"""`make bench-ctr-batching`: CTR Score throughput and latency at 1, 8 and 64 concurrent clients,
dynamic batching off vs on, against the ceiling of bare onnxruntime at its best batch size on the
same cores, all measured in one run.

Two request mixes: "ranking" (history 1..50, candidates 20..100: compute-bound, DIN's work grows
with candidates x behaviours) and "small" (history 1..20, candidates 1..10: overhead-bound). The
server runs in its own process; clients are closed-loop asyncio callers in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

from benchmarks._server import start_server, stop_server
from protos import ctr_pb2, ctr_pb2_grpc
from services.runtime.padding import pad_and_concat, ragged_dims_from_meta

MODEL = "din-fp32"


WORKLOADS = {"ranking": ((1, 50), (20, 100)), "small": ((1, 20), (1, 10))}  # (history, candidates) ranges


def make_requests(meta: dict, count: int, workload: str = "ranking", seed: int = 0) -> list[ctr_pb2.ScoreRequest]:
    rng, vocab = np.random.default_rng(seed), meta["vocabulary"]
    (t_lo, t_hi), (n_lo, n_hi) = WORKLOADS[workload]
    requests = []
    for _ in range(count):
        t, n = int(rng.integers(t_lo, t_hi + 1)), int(rng.integers(n_lo, n_hi + 1))
        requests.append(ctr_pb2.ScoreRequest(
            history_item_ids=rng.integers(1, vocab["n_items"] + 1, t).tolist(),
            history_category_ids=rng.integers(1, vocab["n_categories"] + 1, t).tolist(),
            candidate_item_ids=rng.integers(1, vocab["n_items"] + 1, n).tolist(),
            candidate_category_ids=rng.integers(1, vocab["n_categories"] + 1, n).tolist()))
    return requests


def feeds(request: ctr_pb2.ScoreRequest) -> dict[str, np.ndarray]:
    t = len(request.history_item_ids)
    return {"history_items": np.array([request.history_item_ids], np.int64),
            "history_categories": np.array([request.history_category_ids], np.int64),
            "history_mask": np.ones((1, t), np.float32),
            "candidate_items": np.array([request.candidate_item_ids], np.int64),
            "candidate_categories": np.array([request.candidate_category_ids], np.int64)}


def ceiling(model_path: Path, meta: dict, requests: list, batch_sizes: list[int], seconds: float) -> dict[int, float]:
    """Bare onnxruntime requests/s per batch size (padded batches of consecutive requests)."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    dims = ragged_dims_from_meta(meta)
    rates = {}
    for size in batch_sizes:
        batches = [pad_and_concat([feeds(r) for r in requests[i:i + size]], dims)
                   for i in range(0, len(requests) - size + 1, size)][:50]
        session.run(None, batches[0])
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            session.run(None, batches[done % len(batches)])
            done += 1
        rates[size] = done * size / (time.perf_counter() - start)
    return rates


async def closed_loop(port: int, requests: list, clients: int, warmup_s: float, seconds: float) -> dict:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ctr_pb2_grpc.CtrServiceStub(channel)
        latencies: list[float] = []
        errors = 0
        measuring_from = time.perf_counter() + warmup_s
        stop_at = measuring_from + seconds

        async def client(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < stop_at:
                request = requests[i % len(requests)]
                i += clients
                start = time.perf_counter()
                try:
                    reply = await stub.Score(request, timeout=10)
                    assert len(reply.click_probabilities) == len(request.candidate_item_ids)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                if start >= measuring_from:
                    latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(client(k) for k in range(clients)))
    ms = np.array(latencies) * 1000
    return {"clients": clients, "throughput_rps": len(ms) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": errors, "requests": len(ms)}


def _table(rows: list[dict], best_ceiling: float) -> list[str]:
    lines = ["| batching | clients | throughput req/s | p50 ms | p99 ms | of ceiling | errors |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batching']} | {r['clients']} | {r['throughput_rps']:.0f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['throughput_rps'] / best_ceiling:.0%} | {r['errors']} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds per step")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--report", type=Path, default=Path("reports/bench_ctr_batching.md"))
    args = parser.parse_args(argv)
    model_dir = args.repository / MODEL / "1"
    meta = json.loads((model_dir / "meta.json").read_text())
    workloads = {name: make_requests(meta, 2000, name) for name in args.workloads}
    rows = []
    for batching in ("off", "on"):
        proc, port = start_server(args.repository, INFERSUITE_DYNAMIC_BATCHING=str(batching == "on").lower())
        try:
            for name, requests in workloads.items():
                for clients in args.clients:
                    result = asyncio.run(closed_loop(port, requests, clients, args.warmup, args.seconds))
                    rows.append({"workload": name, "batching": batching, **result})
                    print(rows[-1], flush=True)
        finally:
            stop_server(proc)
    lines = [
        "# CTR Score under concurrent load: dynamic batching off vs on",
        "",
        f"Command: `make bench-ctr-batching` (`python -m benchmarks.ctr_batching --seconds {args.seconds}`). "
        f"Model `{MODEL}`; closed-loop clients in one asyncio process, server in another (`python -m services`, "
        f"default settings), {args.warmup} s warm-up discarded per step, {args.seconds} s measured. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cores shared by client, server and onnxruntime threads. "
        "One run, side by side; the ceiling is bare onnxruntime (`session.run` on padded batches of the same "
        "requests, no gRPC) on the same cores at its best batch size.",
    ]
    ceilings = {}
    for name, requests in workloads.items():
        rates = ceiling(model_dir / "model.onnx", meta, requests, [1, 8, 16, 32, 64], seconds=3.0)
        best_size = max(rates, key=rates.__getitem__)
        best = ceilings[name] = rates[best_size]
        top = max(args.clients)
        mine = [r for r in rows if r["workload"] == name]
        off = next(r for r in mine if r["batching"] == "off" and r["clients"] == top)
        on = next(r for r in mine if r["batching"] == "on" and r["clients"] == top)
        (t_lo, t_hi), (n_lo, n_hi) = WORKLOADS[name]
        lines += [
            "", f"## {name}: history {t_lo}..{t_hi}, candidates {n_lo}..{n_hi}", "",
            *_table(mine, best), "",
            "Ceiling: " + ", ".join(f"batch {b}: {r:.0f} req/s" for b, r in rates.items())
            + f"; best = batch {best_size}, **{best:.0f} req/s**.", "",
            f"At {top} clients: batching on gives **{on['throughput_rps'] / off['throughput_rps']:.2f}x** the "
            f"unbatched throughput, **{on['throughput_rps'] / best:.0%}** of the ceiling, p99 "
            f"**{on['p99_ms']:.1f} ms** (goals: >= 3x, >= 70%, <= 50 ms).",
        ]
    text = "\n".join(lines) + "\n"
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    args.report.with_suffix(".json").write_text(json.dumps({"rows": rows, "ceiling": ceilings}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
