"""Dynamic batching with admission control, attached to a model by its config.pbtxt.

Like Triton's dynamic batcher: requests queue per model; a batch fires when it reaches the
largest preferred size (or max_batch_size) or when its oldest request has waited
max_queue_delay. Each request keeps its own future; a failed batch fails every request in it.
Admission: a full queue answers RESOURCE_EXHAUSTED at once (with a retry hint); a request whose
deadline cannot be met given the queue ahead of it and the model's recent compute time is
refused with DEADLINE_EXCEEDED before compute; cancelled and expired requests leave the queue
and are never computed. Ragged inputs are padded per batch with the padding waste capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from services.runtime.backends.base import LoadedModel
from services.runtime.context import request_deadline
from services.runtime.errors import (
    DeadlineExceeded,
    InferSuiteError,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from services.runtime.metrics import Metrics
from services.runtime.padding import (
    RaggedDim,
    fixed_signature,
    pad_and_concat,
    padding_fraction,
    ragged_sizes,
    request_rows,
    split_outputs,
)
from services.runtime.stats import ModelStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchingPolicy:
    max_batch_size: int  # rows per execution; 0 = the model has no batch dimension
    max_queue_delay_s: float  # longest a request waits for company
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 256  # queued requests before RESOURCE_EXHAUSTED
    max_padding_fraction: float = 0.5  # a request that would make a batch more padding than this waits
    instance_count: int = 1  # concurrent executions
    combine: bool = True  # False: one request per execution (batching off), admission control still on

    @property
    def fire_size(self) -> int:
        if not self.combine or self.max_batch_size <= 1:
            return 1
        return max(self.preferred_batch_sizes, default=self.max_batch_size)

    @property
    def rows_per_execution(self) -> int:
        return max(self.max_batch_size, 1) if self.combine else 1


@dataclass(eq=False)
class _Pending:
    inputs: Mapping[str, np.ndarray]
    rows: int
    sizes: tuple[int, ...]
    signature: tuple
    future: asyncio.Future
    enqueued: float
    deadline: float | None
    started: bool = field(default=False)


class DynamicBatcher:
    def __init__(self, model: LoadedModel, policy: BatchingPolicy, dims: list[RaggedDim], metrics: Metrics,
                 stats: ModelStats):
        self.model, self.policy, self._dims = model, policy, dims
        self._metrics, self._stats = metrics, stats
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(policy.instance_count)
        self._compute_ewma_s: float | None = None
        self._interarrival_ewma_s: float | None = None
        self._last_arrival: float | None = None
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        self._scheduler = asyncio.create_task(self._schedule(), name=f"batcher-{model.name}")
        name = model.name
        self._queue_time = metrics.queue_time.labels(name)
        self._batch_size = metrics.batch_size.labels(name)
        self._padding = metrics.padding_fraction.labels(name)
        self._depth = metrics.queue_depth.labels(name)

    # --- admission ------------------------------------------------------------------------
    def _expected_wait_s(self) -> float:
        """Queue ahead of a new request plus its own execution, from the recent compute time."""
        compute = self._compute_ewma_s or 0.0
        queued_rows = sum(p.rows for p in self._queue)
        rounds = math.ceil(queued_rows / self.policy.rows_per_execution / self.policy.instance_count)
        return rounds * compute + compute

    def _reject(self, reason: str, error: InferSuiteError) -> InferSuiteError:
        self._metrics.rejected.labels(self.model.name, reason).inc()
        return error

    def _admit(self, deadline: float | None) -> None:
        if self._closed:
            raise Unavailable(f"model {self.model.name!r} is shutting down")
        if len(self._queue) >= self.policy.max_queue_size:
            retry = max(self._expected_wait_s(), 0.001)
            raise self._reject("queue_full", ResourceExhausted(
                f"model {self.model.name!r} queue is full ({self.policy.max_queue_size} requests); retry later",
                retry_after_s=retry))
        if deadline is not None and self._compute_ewma_s is not None:
            left, need = deadline - time.monotonic(), self._expected_wait_s()
            if left < need:
                raise self._reject("deadline", DeadlineExceeded(
                    f"deadline cannot be met: {left * 1000:.1f} ms left, about {need * 1000:.1f} ms of queue "
                    f"and compute ahead on model {self.model.name!r}"))

    async def submit(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        deadline = request_deadline.get()
        self._admit(deadline)
        rows = request_rows(inputs) if self.policy.max_batch_size > 0 else 1
        if rows > max(self.policy.max_batch_size, 1):
            raise InvalidArgument(f"{rows} rows exceed the model's max_batch_size {self.policy.max_batch_size}")
        now = time.monotonic()
        self._note_arrival(now)
        pending = _Pending(inputs, rows, ragged_sizes(inputs, self._dims), fixed_signature(inputs, self._dims),
                           asyncio.get_running_loop().create_future(), now, deadline)
        self._queue.append(pending)
        self._depth.set(len(self._queue))
        self._wakeup.set()
        try:
            return await pending.future
        except asyncio.CancelledError:
            if not pending.started:  # left the queue: it will never be computed
                self._drop(pending)
                self._metrics.rejected.labels(self.model.name, "cancelled").inc()
            raise

    def _note_arrival(self, now: float) -> None:
        if self._last_arrival is not None:
            gap = now - self._last_arrival
            ewma = self._interarrival_ewma_s
            self._interarrival_ewma_s = gap if ewma is None else 0.9 * ewma + 0.1 * gap
        self._last_arrival = now

    def _company_expected(self) -> bool:
        """Whether another request is likely to arrive within the queue delay (at low load it is
        not, and waiting would only add the delay to every request)."""
        gap = self._interarrival_ewma_s
        return gap is not None and gap < self.policy.max_queue_delay_s

    def _drop(self, pending: _Pending) -> None:
        with contextlib.suppress(ValueError):  # already taken by the scheduler
            self._queue.remove(pending)
        self._depth.set(len(self._queue))

    # --- scheduling -----------------------------------------------------------------------
    async def _schedule(self) -> None:
        while not self._closed:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._slots.acquire()
            await self._wait_for_company()
            batch = self._form_batch()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._execute(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _wait_for_company(self) -> None:
        """Until the queue holds a full (preferred) batch or the oldest request waited long enough."""
        while self._queue:
            if sum(p.rows for p in self._queue) >= self.policy.fire_size or not self._company_expected():
                return
            wait = self._queue[0].enqueued + self.policy.max_queue_delay_s - time.monotonic()
            if wait <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except TimeoutError:
                return

    def _expire(self, pending: _Pending, now: float) -> bool:
        if pending.future.done():  # cancelled by the caller
            return True
        if pending.deadline is not None and pending.deadline <= now:
            self._metrics.rejected.labels(self.model.name, "expired").inc()
            pending.future.set_exception(DeadlineExceeded("deadline passed while queued; not computed"))
            return True
        return False

    def _form_batch(self) -> list[_Pending]:
        """The oldest live request, then later ones of the same shape while padding stays capped."""
        now, rows = time.monotonic(), 0
        batch: list[_Pending] = []
        for pending in list(self._queue):
            if self._expire(pending, now):
                self._drop(pending)
                continue
            if batch and not self.policy.combine:
                break
            if batch and (pending.signature != batch[0].signature
                          or rows + pending.rows > self.policy.max_batch_size):
                continue
            if batch and padding_fraction([p.rows for p in [*batch, pending]],
                                          [p.sizes for p in [*batch, pending]]) > self.policy.max_padding_fraction:
                continue
            batch.append(pending)
            rows += pending.rows
            if rows >= self.policy.rows_per_execution:
                break
        for pending in batch:
            pending.started = True
            self._drop(pending)
            self._queue_time.observe(now - pending.enqueued)
        return batch

    async def _execute(self, batch: list[_Pending]) -> None:
        try:
            rows, sizes = [p.rows for p in batch], [p.sizes for p in batch]
            inputs = batch[0].inputs if len(batch) == 1 else pad_and_concat([p.inputs for p in batch], self._dims)
            self._batch_size.observe(sum(rows))
            self._padding.observe(padding_fraction(rows, sizes))
            start = time.perf_counter()
            try:
                outputs = await self.model.infer(inputs)
            except BaseException as exc:
                self._stats.record_failure(len(batch))
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                return
            elapsed = time.perf_counter() - start
            ewma = self._compute_ewma_s
            self._compute_ewma_s = elapsed if ewma is None else 0.8 * ewma + 0.2 * elapsed
            self._metrics.compute_time.labels(self.model.name, self.model.version).observe(elapsed)
            self._stats.record_batch(len(batch), elapsed)
            results = [outputs] if len(batch) == 1 else split_outputs(outputs, rows, sizes, self._dims)
            for pending, result in zip(batch, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)
        finally:
            self._slots.release()
            self._wakeup.set()

    async def drain(self, timeout_s: float) -> bool:
        """Waits until the queue is empty and no batch runs (a hot reload retires the old version
        this way: new requests already go elsewhere); True when idle within `timeout_s`."""
        limit = time.monotonic() + timeout_s
        while (self._queue or self._tasks) and time.monotonic() < limit:
            await asyncio.sleep(0.005)
        return not (self._queue or self._tasks)

    async def close(self) -> None:
        """Stops taking requests; queued ones fail UNAVAILABLE, running batches finish."""
        self._closed = True
        for pending in list(self._queue):
            if not pending.future.done():
                pending.future.set_exception(Unavailable(f"model {self.model.name!r} was unloaded"))
        self._queue.clear()
        self._scheduler.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
