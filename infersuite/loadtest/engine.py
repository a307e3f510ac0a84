"""The load engine of one process: closed loop (N clients) and open loop (a fixed schedule).

Times are `time.monotonic()` seconds, which on Linux is one system-wide clock, so worker
processes can share a start instant. Each step has a warm-up (sent, not recorded) followed by
a measured window; only requests whose intended send time falls in the window are recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import grpc
import numpy as np
import psutil

from infersuite.loadtest.generators import GeneratorError, RequestGenerator, RequestPool
from infersuite.loadtest.schedule import Arrival, arrival_offsets, split_for_worker, trace_offsets
from infersuite.loadtest.stats import StepStats, record_us

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class Target:
    """Where to send and how to connect."""

    address: str  # host:port
    tls: bool = False
    ca_cert: str | None = None  # PEM file; default: the system roots
    client_cert: str | None = None  # PEM file for mutual TLS
    client_key: str | None = None
    server_name: str | None = None  # TLS name override (a certificate issued for another name)
    channels: int = 1  # HTTP/2 connections per process, used round-robin
    token: str | None = None  # bearer token sent as `authorization` metadata (infersuite.loadtest.connect)


@dataclass(frozen=True)
class StepSpec:
    """One load step: the load, its warm-up and measured window, and per-call limits."""

    mode: Literal["closed", "open"]
    concurrency: int = 1  # closed loop: clients, each with one request in flight (over all processes)
    rate: float = 0.0  # open loop: requests/s over all processes
    arrival: Arrival = "poisson"
    trace: tuple[float, ...] | None = None  # open loop: replayed offsets (s), instead of rate/arrival
    warmup_s: float = 1.0
    duration_s: float = 10.0
    deadline_s: float = 5.0  # gRPC deadline of every call
    late_threshold_s: float = 0.005  # a send later than this after its intended time counts as late
    max_inflight: int = 10_000  # open loop, per process: sends beyond it are dropped (and counted)
    seed: int = 0
    extra: dict[str, float] = field(default_factory=dict)  # free-form, echoed in reports

    @property
    def load(self) -> float:
        """The x-axis of sweeps: concurrency (closed) or offered rate (open)."""
        return float(self.concurrency) if self.mode == "closed" else self.rate


def _credentials(target: Target) -> grpc.ChannelCredentials:
    def read(path: str | None) -> bytes | None:
        return open(path, "rb").read() if path else None
    return grpc.ssl_channel_credentials(read(target.ca_cert), read(target.client_key), read(target.client_cert))


def channel_options(target: Target, index: int = 0) -> list[tuple[str, object]]:
    options: list[tuple[str, object]] = [
        ("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.channel_id", index),  # distinct args -> a distinct connection per channel
        ("grpc.use_local_subchannel_pool", 1)]
    if target.server_name:
        options.append(("grpc.ssl_target_name_override", target.server_name))
    return options


def open_channel(target: Target, index: int = 0) -> grpc.aio.Channel:
    from infersuite.loadtest.connect import BearerToken

    options = channel_options(target, index)
    interceptors = [BearerToken(target.token)] if target.token else None
    if target.tls:
        return grpc.aio.secure_channel(target.address, _credentials(target), options, interceptors=interceptors)
    return grpc.aio.insecure_channel(target.address, options, interceptors=interceptors)


class LoadEngine:
    """Holds the channels and the request pool of one process; runs steps on them."""

    def __init__(self, target: Target, generator: RequestGenerator, *, worker: int = 0, workers: int = 1,
                 seed: int = 0, pool_size: int = 1024):
        self.target, self.generator = target, generator
        self.worker, self.workers, self.seed, self.pool_size = worker, workers, seed, pool_size
        self.channels: list[grpc.aio.Channel] = []
        self.pool: RequestPool | None = None
        self._calls: list[grpc.aio.UnaryUnaryMultiCallable] = []

    async def start(self) -> None:
        self.channels = [open_channel(self.target, i) for i in range(self.target.channels)]
        rng = np.random.default_rng([self.seed, self.worker])
        try:
            self.pool = await self.generator.build(self.channels[0], rng, self.pool_size)
        except ImportError as err:
            raise GeneratorError(f"{self.generator.name}: stubs missing ({err}); run `make protos`") from None
        # No (de)serializers: the pool already holds bytes and the checks parse responses.
        self._calls = [ch.unary_unary(self.pool.method) for ch in self.channels]

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def run_step(self, step: StepSpec, start_at: float | None = None,
                       progress: ProgressFn | None = None) -> StepStats:
        """Runs one step starting at monotonic time `start_at` (default: now)."""
        assert self.pool is not None, "start() first"
        run = _StepRun(self, step, start_at if start_at is not None else time.monotonic(), progress)
        return await run.execute()


class _StepRun:
    """The state of one step in one process."""

    def __init__(self, engine: LoadEngine, step: StepSpec, start: float, progress: ProgressFn | None):
        assert engine.pool is not None
        self.engine, self.step, self.pool = engine, step, engine.pool
        self.start = start
        self.window_start = start + step.warmup_s
        self.end = self.window_start + step.duration_s
        self.stats = StepStats(duration_s=step.duration_s)
        self.progress = progress
        self.inflight = 0
        self.next_request = engine.worker * 7919  # workers start at different pool entries
        self.tasks: set[asyncio.Task[None]] = set()

    async def execute(self) -> StepStats:
        await asyncio.sleep(max(0.0, self.start - time.monotonic()))
        reporter = asyncio.create_task(self._report_progress()) if self.progress else None
        process = psutil.Process()
        window_cpu: list[tuple[float, float]] = []  # (process CPU seconds, monotonic) at the window start

        def snapshot() -> None:
            times = process.cpu_times()
            window_cpu.append((times.user + times.system, time.monotonic()))

        asyncio.get_running_loop().call_at(self.window_start, snapshot)  # the loop clock is monotonic
        try:
            if self.step.mode == "closed":
                await self._closed_loop()
            else:
                await self._open_loop()
        finally:
            if reporter:
                reporter.cancel()
        if window_cpu:
            times = process.cpu_times()
            busy, wall = times.user + times.system - window_cpu[0][0], time.monotonic() - window_cpu[0][1]
            self.stats.cpu_percent = 100.0 * busy / wall if wall > 0 else 0.0
        if self.progress:
            self.progress(self.stats.completed)
        return self.stats

    def _next_request(self) -> int:
        index = self.next_request % len(self.pool)
        self.next_request += 1
        return index

    async def _call(self, index: int) -> tuple[bytes | None, str | None]:
        """(response, None) or (None, status code name)."""
        calls = self.engine._calls
        call = calls[self.next_request % len(calls)]
        try:
            return await call(self.pool.payloads[index], timeout=self.step.deadline_s), None
        except grpc.aio.AioRpcError as err:
            code = err.code().name
            if code not in self.stats.error_samples:
                self.stats.error_samples[code] = (err.details() or "")[:300]
            return None, code

    def _record(self, index: int, intended: float, sent: float, response: bytes | None, code: str | None) -> None:
        done = time.monotonic()
        if intended < self.window_start:
            return  # warm-up
        stats = self.stats
        if code is not None:
            stats.errors[code] += 1
            return
        assert response is not None
        try:
            failure = self.pool.check(self.pool.expectations[index], response)
        except Exception:  # an unparsable response is a failed check, not a crashed generator
            failure = f"{self.engine.generator.name}: response does not parse"
        if failure:
            stats.check_failures[failure] += 1
            return
        stats.ok += 1
        record_us(stats.latency_intended, done - intended)
        record_us(stats.latency_actual, done - sent)

    async def _closed_loop(self) -> None:
        clients = split_for_worker(np.arange(self.step.concurrency), self.engine.worker, self.engine.workers)
        await asyncio.gather(*(self._client() for _ in clients))

    async def _client(self) -> None:
        while (sent := time.monotonic()) < self.end:
            index = self._next_request()
            self.stats.sent += sent >= self.window_start
            response, code = await self._call(index)
            self._record(index, sent, sent, response, code)  # closed loop: intended == actual

    async def _open_loop(self) -> None:
        step = self.step
        rng = np.random.default_rng(step.seed)  # same in every worker: one global schedule, split
        if step.trace is not None:
            offsets = trace_offsets(step.trace, step.warmup_s + step.duration_s)
        else:
            offsets = arrival_offsets(step.rate, step.warmup_s + step.duration_s, step.arrival, rng)
        intended_times = self.start + split_for_worker(offsets, self.engine.worker, self.engine.workers)
        await self._dispatch(intended_times.tolist())
        if self.tasks:
            await asyncio.wait(set(self.tasks))

    async def _dispatch(self, intended_times: list[float]) -> None:
        """Sends every request at (or as soon as possible after) its intended time."""
        step, stats = self.step, self.stats
        position, count = 0, len(intended_times)
        while position < count:
            now = time.monotonic()
            if intended_times[position] > now:
                await asyncio.sleep(intended_times[position] - now)
                continue
            while position < count and intended_times[position] <= now:  # send everything due
                intended = intended_times[position]
                position += 1
                measured = intended >= self.window_start
                if self.inflight >= step.max_inflight:
                    stats.dropped += measured
                    continue
                sent = time.monotonic()
                if measured:
                    stats.sent += 1
                    stats.late += (sent - intended) > step.late_threshold_s
                    record_us(stats.schedule_lag, sent - intended)
                task = asyncio.create_task(self._one(self._next_request(), intended, sent))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            await asyncio.sleep(0)  # let responses in between bursts

    async def _one(self, index: int, intended: float, sent: float) -> None:
        self.inflight += 1
        try:
            response, code = await self._call(index)
        finally:
            self.inflight -= 1
        self._record(index, intended, sent, response, code)

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            assert self.progress is not None
            self.progress(self.stats.completed)
