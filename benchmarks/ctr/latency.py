"""`make bench-ctr`: latency of Score (100 candidates, 50 behaviours) through gRPC vs the bare
onnxruntime call on the same input, measured side by side in one run.

The server runs in its own process (`python -m infersuite.services`), as in production; the client and the
bare call run here. Both share this machine's cores, so the ratio, not the absolute figure, is
the portable result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

from benchmarks._server import start_server, stop_server
from infersuite.protos import ctr_pb2, ctr_pb2_grpc

MODEL = "din-fp32"


def _request(meta: dict, history: int, candidates: int, seed: int) -> ctr_pb2.ScoreRequest:
    rng = np.random.default_rng(seed)
    vocab = meta["vocabulary"]
    return ctr_pb2.ScoreRequest(
        history_item_ids=rng.integers(1, vocab["n_items"] + 1, history).tolist(),
        history_category_ids=rng.integers(1, vocab["n_categories"] + 1, history).tolist(),
        candidate_item_ids=rng.integers(1, vocab["n_items"] + 1, candidates).tolist(),
        candidate_category_ids=rng.integers(1, vocab["n_categories"] + 1, candidates).tolist())


def _feeds(request: ctr_pb2.ScoreRequest) -> dict[str, np.ndarray]:
    t = len(request.history_item_ids)
    return {
        "history_items": np.array([request.history_item_ids], np.int64),
        "history_categories": np.array([request.history_category_ids], np.int64),
        "history_mask": np.ones((1, t), np.float32),
        "candidate_items": np.array(request.candidate_item_ids, np.int64),  # rows layout: (N,)
        "candidate_categories": np.array(request.candidate_category_ids, np.int64),
        "candidate_user": np.zeros(len(request.candidate_item_ids), np.int64),
    }


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.array(samples_s) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "n": len(ms)}


def time_bare(model_path: Path, feeds: dict[str, np.ndarray], n: int, warmup: int) -> dict[str, float]:
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    samples = []
    for i in range(warmup + n):
        start = time.perf_counter()
        session.run(None, feeds)
        if i >= warmup:
            samples.append(time.perf_counter() - start)
    return _percentiles(samples)


def time_grpc(port: int, request: ctr_pb2.ScoreRequest, n: int, warmup: int) -> dict[str, float]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ctr_pb2_grpc.CtrServiceStub(channel)
        samples = []
        for i in range(warmup + n):
            start = time.perf_counter()
            reply = stub.Score(request, timeout=10)
            if i >= warmup:
                samples.append(time.perf_counter() - start)
            assert len(reply.click_probabilities) == len(request.candidate_item_ids)
    return _percentiles(samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ctr.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--report", type=Path, default=Path("reports/bench_ctr.md"))
    args = parser.parse_args(argv)
    model_dir = args.repository / MODEL / "1"
    meta = json.loads((model_dir / "meta.json").read_text())
    request = _request(meta, args.history, args.candidates, seed=0)
    proc, port = start_server(args.repository)
    try:
        grpc_figures = time_grpc(port, request, args.requests, args.warmup)
    finally:
        stop_server(proc)
    bare = time_bare(model_dir / "model.onnx", _feeds(request), args.requests, args.warmup)
    ratio = grpc_figures["p50_ms"] / bare["p50_ms"]
    lines = [
        "# CTR Score latency: gRPC vs bare onnxruntime",
        "",
        f"Command: `make bench-ctr` (`python -m benchmarks.ctr.latency --requests {args.requests}`); "
        f"model `{MODEL}`, {args.candidates} candidates, {args.history} behaviours, batch of one request, "
        f"sequential calls, {args.warmup} warm-up calls discarded. Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, onnxruntime {ort.__version__}.",
        "",
        "| path | p50 ms | p99 ms | mean ms | calls |",
        "|---|---|---|---|---|",
        f"| gRPC Score (separate server process, loopback) | {grpc_figures['p50_ms']:.3f} | "
        f"{grpc_figures['p99_ms']:.3f} | {grpc_figures['mean_ms']:.3f} | {grpc_figures['n']} |",
        f"| bare onnxruntime `session.run` | {bare['p50_ms']:.3f} | {bare['p99_ms']:.3f} | "
        f"{bare['mean_ms']:.3f} | {bare['n']} |",
        "",
        f"Ratio gRPC / bare at p50: **{ratio:.2f}x** (overhead {grpc_figures['p50_ms'] - bare['p50_ms']:.3f} ms: "
        "serialisation, validation, loopback transport, event loop and executor hand-off).",
    ]
    text = "\n".join(lines) + "\n"
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
