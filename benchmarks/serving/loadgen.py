"""The benchmark's load generator: a lean grpc.aio client in its own process, pinned to its own cores.

Requests are serialized once, before the run, and sent as bytes through a generic unary-unary or
stream-stream call, so the generator spends its CPU on gRPC, not on protobuf; replies are checked
for size only (their content is checked by the tests). Closed loop: `clients` callers, each sending
its next request when the previous answer arrives. Open loop: Poisson arrivals at `rate` per second,
latency counted from the intended send time (no coordinated omission). At both edges of the measured
window it reads the server's CPU and the machine (machine.py: every core's busy time, every process's
CPU) and returns the window's machine report (validity.window_report) with the result.

Run as `python -m benchmarks.serving.loadgen <spec.json>`; prints one JSON line with the result.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np
from hdrh.histogram import HdrHistogram

from benchmarks.peers.proc import tree_cpu_seconds
from benchmarks.serving import validity
from benchmarks.serving.machine import Sample, Window, take_sample


@dataclass
class LoadSpec:
    target: str  # host:port
    method: str  # full gRPC method, e.g. /inference.GRPCInferenceService/ModelInfer
    requests_file: str  # pickle of list[bytes] (serialized requests)
    clients: int = 64  # closed loop: concurrent callers (also the cap on outstanding open-loop calls)
    seconds: float = 8.0  # measured
    warmup_s: float = 2.0  # sent but not counted
    rate: float = 0.0  # > 0: open loop at this many requests per second
    streaming: bool = False  # bidirectional stream per client (ModelStreamInfer-like) instead of unary
    cores: list[int] = field(default_factory=list)  # CPU affinity of this process
    timeout_s: float = 10.0
    metadata: list[tuple[str, str]] = field(default_factory=list)
    server_pid: int = 0  # > 0: the server's CPU (its process tree) is read at the window's edges
    metrics_url: str = ""  # the server's /metrics: model execution CPU read at the window's edges
    server_cores: list[int] = field(default_factory=list)  # where the server runs: its cores' busy share is read
    pinned: bool = True  # False: servers and generator share their cores (read as one set)
    own_root_pid: int = 0  # the benchmark's driver (0: this process's parent); its tree is not foreign work


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, 60_000_000, 3)  # microseconds, up to a minute


class _Run:
    def __init__(self, spec: LoadSpec, payloads: list[bytes]):
        self.spec, self.payloads = spec, payloads
        self.latency = _histogram()
        self.done = self.errors = self.sent = 0
        self.error_codes: dict[str, int] = {}
        self.start = time.perf_counter()
        self.measure_from = self.start + spec.warmup_s
        self.stop_at = self.measure_from + spec.seconds

    def record(self, began: float, ok: bool, code: str = "") -> None:
        """Counts answers that arrive inside the measured window (as the server's CPU is read there)."""
        end = time.perf_counter()
        if end < self.measure_from or end > self.stop_at:
            return
        if ok:
            self.done += 1
            self.latency.record_value(max(1, min(int((end - began) * 1e6), 60_000_000)))
        else:
            self.errors += 1
            self.error_codes[code] = self.error_codes.get(code, 0) + 1


async def _closed_unary(run: _Run, call: grpc.aio.UnaryUnaryMultiCallable, offset: int) -> None:
    i, n, payloads = offset, len(run.payloads), run.payloads
    while time.perf_counter() < run.stop_at:
        began = time.perf_counter()
        try:
            await call(payloads[i % n], timeout=run.spec.timeout_s, metadata=run.spec.metadata or None)
            run.record(began, True)
        except grpc.aio.AioRpcError as err:
            run.record(began, False, err.code().name)
        i += run.spec.clients


async def _closed_stream(run: _Run, call: grpc.aio.StreamStreamMultiCallable, offset: int) -> None:
    """One stream per client, one message outstanding at a time (a closed loop over a stream)."""
    stream = call(metadata=run.spec.metadata or None)
    i, n = offset, len(run.payloads)
    try:
        while time.perf_counter() < run.stop_at:
            began = time.perf_counter()
            await stream.write(run.payloads[i % n])
            reply = await stream.read()
            # A stream answer with an error travels inside the message; the benchmark only counts it.
            run.record(began, reply is not grpc.aio.EOF)
            i += run.spec.clients
        await stream.done_writing()
    except grpc.aio.AioRpcError as err:
        run.record(time.perf_counter(), False, err.code().name)


async def _open_loop(run: _Run, call: grpc.aio.UnaryUnaryMultiCallable) -> None:
    rng = np.random.default_rng(0)
    gaps = rng.exponential(1.0 / run.spec.rate, size=int(run.spec.rate * (run.spec.seconds + run.spec.warmup_s)) + 16)
    outstanding: set[asyncio.Task] = set()
    intended, n = run.start, len(run.payloads)

    async def one(payload: bytes, began: float) -> None:
        try:
            await call(payload, timeout=run.spec.timeout_s, metadata=run.spec.metadata or None)
            run.record(began, True)
        except grpc.aio.AioRpcError as err:
            run.record(began, False, err.code().name)

    for k, gap in enumerate(gaps):
        intended += gap
        if intended > run.stop_at:
            break
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(one(run.payloads[k % n], intended))
        outstanding.add(task)
        task.add_done_callback(outstanding.discard)
    if outstanding:
        await asyncio.wait(outstanding, timeout=run.spec.timeout_s)


def _model_cpu_s(metrics_url: str) -> float:
    """Sum of infersuite_model_compute_cpu_seconds_total over models (0 when absent)."""
    if not metrics_url:
        return 0.0
    with urllib.request.urlopen(metrics_url, timeout=5) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("infersuite_model_compute_cpu_seconds_total{"))


def _server_cpu(spec: LoadSpec) -> tuple[float, float, Sample]:
    machine = take_sample(spec.own_root_pid or os.getppid())
    return (tree_cpu_seconds(spec.server_pid) if spec.server_pid else 0.0), _model_cpu_s(spec.metrics_url), machine


async def _sample_window(run: _Run, edges: list[tuple[float, float, Sample]]) -> None:
    """Reads the server's CPU (process tree, and model execution from /metrics) and the machine's
    cores and processes (machine.py) at both window edges."""
    await asyncio.sleep(max(run.measure_from - time.perf_counter(), 0))
    edges.append(await asyncio.to_thread(_server_cpu, run.spec))
    await asyncio.sleep(max(run.stop_at - time.perf_counter(), 0))
    edges.append(await asyncio.to_thread(_server_cpu, run.spec))


async def run_load(spec: LoadSpec) -> dict:
    payloads = pickle.loads(Path(spec.requests_file).read_bytes())
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(spec.target, options=options) as channel:
        await channel.channel_ready()
        run = _Run(spec, payloads)
        cpu0 = time.process_time()
        edges: list[tuple[float, float, Sample]] = []
        sampler = asyncio.ensure_future(_sample_window(run, edges))
        if spec.streaming:
            stream_call = channel.stream_stream(spec.method)
            await asyncio.gather(*(_closed_stream(run, stream_call, k) for k in range(spec.clients)))
        elif spec.rate > 0:
            await _open_loop(run, channel.unary_unary(spec.method))
        else:
            unary = channel.unary_unary(spec.method)
            await asyncio.gather(*(_closed_unary(run, unary, k) for k in range(spec.clients)))
        cpu = time.process_time() - cpu0
        await sampler
    h = run.latency
    server_cpu = edges[1][0] - edges[0][0]
    model_cpu = edges[1][1] - edges[0][1]
    per_request = 1000 / max(run.done, 1)
    return {"completed": run.done, "errors": run.errors, "error_codes": run.error_codes,
            "throughput_rps": run.done / spec.seconds,
            "p50_ms": h.get_value_at_percentile(50) / 1000, "p99_ms": h.get_value_at_percentile(99) / 1000,
            "p999_ms": h.get_value_at_percentile(99.9) / 1000, "max_ms": h.get_max_value() / 1000,
            "generator_cpu_s": cpu, "server_cpu_s": server_cpu, "model_cpu_s": model_cpu,
            "server_cpu_ms_per_request": server_cpu * per_request, "model_cpu_ms_per_request": model_cpu * per_request,
            "other_cpu_ms_per_request": (server_cpu - model_cpu) * per_request if spec.metrics_url else None,
            "machine": validity.window_report(Window(edges[0][2], edges[1][2]), spec.server_cores, spec.cores,
                                              spec.pinned),
            "spec": asdict(spec)}


def main() -> None:
    spec = LoadSpec(**json.loads(Path(sys.argv[1]).read_text()))
    if spec.cores:
        os.sched_setaffinity(0, set(spec.cores))
    print(json.dumps(asyncio.run(run_load(spec))), flush=True)


if __name__ == "__main__":
    main()
