"""Dynamic batching with admission control, attached to a model by its repository entry.

Like Triton's dynamic batcher: requests queue per model; a batch fires at once when the model is
idle (work-conserving) or no company is expected (low load), else when the queue holds a full
batch or its oldest request has waited max_queue_delay. Scheduling is callback-driven (a timer
and the end of each execution), so a request costs the event loop no task switches of its own.
Each request keeps its own future; a
failed batch fails every request in it.

Admission, bounded in time as well as count: a full queue, or one holding more expected work than
the model's queue-time bound (`max_queue_time_s`, Triton's default_queue_policy
default_timeout_microseconds), or an event loop running behind by over half that bound (received
requests waiting for a handler), answers RESOURCE_EXHAUSTED at once with a retry hint, and a request
that still waits past the bound leaves the queue with the same answer; a request whose
deadline cannot be met given the queue ahead of it and the model's recent compute time is refused
with DEADLINE_EXCEEDED before compute; cancelled and expired requests leave the queue and are
never computed. How requests combine is the model's BatchLayout (infersuite/services/runtime/batch_layout.py):
ragged axes padded with their waste capped, row inputs concatenated. A batch starts from the
oldest request and takes the queued requests whose ragged sizes are closest to it, so padding
stays small without starving anyone.

Whether to combine at all is measured (infersuite/services/runtime/combine_choice.py): the batcher combines
only while combined executions cost less CPU per useful cell than single ones on the model's own
traffic, so combining does not stay on where it makes a mix dearer than one request per execution. A cheap request to an
idle model runs on the event loop (`inline_max_s`), without the queue, the executor hand-off or a
future, after one yield: requests received with it (a burst, a backlog) reach the queue during that
yield, and then all of them queue (and may combine), visible to admission.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from infersuite.services.runtime.backends.base import LoadedModel
from infersuite.services.runtime.batch_layout import BatchLayout, RaggedDim, RequestShape, padding_fraction
from infersuite.services.runtime.combine_choice import CombineChoice
from infersuite.services.runtime.context import request_alive, request_deadline
from infersuite.services.runtime.errors import (
    DeadlineExceeded,
    InferSuiteError,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from infersuite.services.runtime.loop_lag import LoopLag, monitor
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.stats import ModelStats

log = logging.getLogger(__name__)

SYNC_WAIT_SLICE_S = 0.02  # how often a thread waiting for an instance looks at its deadline and its client


@dataclass(frozen=True)
class BatchingPolicy:
    max_batch_size: int  # rows per execution; 0 = the model has no batch dimension
    max_queue_delay_s: float  # longest a request waits for company
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 256  # queued requests before RESOURCE_EXHAUSTED
    max_padding_fraction: float = 0.5  # a request that would make a batch more padding than this waits
    instance_count: int = 1  # concurrent executions
    combine: bool = True  # False: one request per execution (batching off), admission control still on
    max_cells: int = 1 << 30  # rows x padded ragged sizes per execution
    inline_max_s: float = 0.0  # executions this cheap may run on the event loop's thread; 0 = never
    max_queue_time_s: float = 0.0  # longest expected (at admission) or actual wait in the queue; 0 = no bound

    @property
    def fire_size(self) -> int:
        if not self.combine or self.max_batch_size <= 1:
            return 1
        return max(self.preferred_batch_sizes, default=self.max_batch_size)

    @property
    def rows_per_execution(self) -> int:
        return max(self.max_batch_size, 1) if self.combine else 1


@dataclass(eq=False, slots=True)
class _Pending:
    inputs: Mapping[str, np.ndarray]
    shape: RequestShape
    future: asyncio.Future
    enqueued: float
    deadline: float | None
    outputs: frozenset[str] | None = None  # the outputs the caller reads (None: every output)
    started: bool = field(default=False)
    alive: Callable[[], bool] | None = None  # whether its caller still waits (None: cancellation tells)


def _union_of_outputs(batch: Sequence[_Pending]) -> list[str] | None:
    """What one execution computes: every output any request of the batch reads (None: all of them)."""
    if any(p.outputs is None for p in batch):
        return None
    return sorted(frozenset().union(*(p.outputs for p in batch if p.outputs is not None)))


class DynamicBatcher:
    def __init__(self, model: LoadedModel, policy: BatchingPolicy, layout: BatchLayout | Sequence[RaggedDim],
                 metrics: Metrics, stats: ModelStats):
        self.model, self.policy = model, policy
        self._layout = layout if isinstance(layout, BatchLayout) else BatchLayout(layout)
        self._metrics, self._stats = metrics, stats
        self._loop = asyncio.get_running_loop()
        self._queue: list[_Pending] = []  # arrival order
        self._queued_rows = 0
        self._running = 0  # executions in flight
        self._timer: asyncio.TimerHandle | None = None
        self._dispatch_soon = False
        self._per_request_ewma_s: float | None = None  # compute time per request of recent batches
        self._per_cell_ewma_s: float | None = None  # compute time per useful cell (rows x ragged sizes)
        self._run_now = getattr(model, "infer_now", None)  # a backend that can run on the calling thread
        self._can_combine = policy.combine and policy.max_batch_size > 1  # the policy allows it at all
        self._choice = CombineChoice()
        # The choice's cost of an execution: the process's CPU since the previous execution ended (model,
        # gRPC, decoding, batching: all the work that served its requests; other models' work is noise).
        self._cpu_clock = time.process_time
        self._cpu_at_last_end: float | None = None
        self._interarrival_ewma_s: float | None = None
        self._last_arrival: float | None = None
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        name = model.name
        self._queue_time = metrics.queue_time.labels(name)
        self._batch_size = metrics.batch_size.labels(name)
        self._batch_rows = metrics.batch_rows.labels(name)
        self._padding = metrics.padding_fraction.labels(name)
        self._depth = metrics.queue_depth.labels(name)
        self._compute_time = metrics.compute_time.labels(name, model.version)
        self._combining_gauge = metrics.combining.labels(name)
        self._combining_gauge.set(1 if self._can_combine else 0)
        self._rejected = {reason: metrics.rejected.labels(name, reason)
                          for reason in ("queue_full", "queue_time", "deadline", "cancelled", "expired")}
        self._inline_candidate = False  # a request yielded once before running inline
        # With a queue-time bound, the event loop's own backlog counts too (infersuite/services/runtime/loop_lag.py).
        self._loop_lag: LoopLag | None = monitor(self._loop) if policy.max_queue_time_s else None
        # The synchronous transport's path (`run_sync`): its threads wait for a free instance here. One
        # instance (the default) is a plain lock: taking and handing it over happens in C, where the
        # semaphore runs Python (a Condition, a lock per waiter) on every request.
        self._instances = (threading.Lock() if policy.instance_count == 1
                           else threading.BoundedSemaphore(policy.instance_count))
        self._sync_lock = threading.Lock()
        self._sync_waiting = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this scheduler lives on (callers on other threads hand work to it)."""
        return self._loop

    @property
    def runs_sync(self) -> bool:
        """Whether `run_sync` can run on the calling thread (the backend runs a model in-process)."""
        return self._run_now is not None

    # --- admission ------------------------------------------------------------------------
    def _expected_wait_s(self) -> float:
        """Queue ahead of a new request plus its own execution, from the recent compute time per
        request (batches of any layout: a request's share of its execution)."""
        return self._queue_ahead_s() + (self._per_request_ewma_s or 0.0)

    def _queue_ahead_s(self) -> float:
        """How long the queue ahead of a new request takes to run, by the recent compute time per request."""
        return len(self._queue) / self.policy.instance_count * (self._per_request_ewma_s or 0.0)

    def _reject(self, reason: str, error: InferSuiteError) -> InferSuiteError:
        self._rejected[reason].inc()
        return error

    def _admit(self, deadline: float | None) -> None:
        if self._closed:
            raise Unavailable(f"model {self.model.name!r} is shutting down")
        if len(self._queue) >= self.policy.max_queue_size:
            retry = max(self._expected_wait_s(), 0.001)
            raise self._reject("queue_full", ResourceExhausted(
                f"model {self.model.name!r} queue is full ({self.policy.max_queue_size} requests); retry later",
                retry_after_s=retry))
        bound = self.policy.max_queue_time_s
        if self._loop_lag is not None and (lag := self._loop_lag.lag_s()) > bound / 2:
            raise self._reject("queue_time", ResourceExhausted(
                f"the server is {lag * 1000:.0f} ms behind on received requests, over half of model "
                f"{self.model.name!r}'s queue-time bound of {bound * 1000:.0f} ms; retry later",
                retry_after_s=max(lag, 0.001)))
        if bound and self._queue and (ahead := self._queue_ahead_s()) > bound:
            raise self._reject("queue_time", ResourceExhausted(
                f"model {self.model.name!r} has about {ahead * 1000:.0f} ms of queued work, over its queue-time "
                f"bound of {bound * 1000:.0f} ms; retry later", retry_after_s=max(ahead - bound, 0.001)))
        if deadline is not None and self._per_request_ewma_s is not None:
            left, need = deadline - time.monotonic(), self._expected_wait_s()
            if left < need:
                raise self._reject("deadline", DeadlineExceeded(
                    f"deadline cannot be met: {left * 1000:.1f} ms left, about {need * 1000:.1f} ms of queue "
                    f"and compute ahead on model {self.model.name!r}"))

    def _describe(self, inputs: Mapping[str, np.ndarray], signature: bool = True) -> RequestShape:
        shape = self._layout.describe(inputs, signature)
        if self.policy.max_batch_size > 0 and shape.rows > self.policy.max_batch_size:
            raise InvalidArgument(f"{shape.rows} rows exceed the model's max_batch_size {self.policy.max_batch_size}")
        return shape

    async def submit(self, inputs: Mapping[str, np.ndarray],
                     outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The request's own outputs: those named in `outputs` (None: every output) and maybe more."""
        deadline = request_deadline.get()
        self._admit(deadline)
        shape = self._describe(inputs)
        now = time.monotonic()
        self._note_arrival(now)
        if self._inline_fits(shape):
            # One yield first: requests already received (a backlog read after the last inline run) reach
            # the scheduler now and queue, so a backlog stays visible to admission; alone, this one runs inline.
            self._inline_candidate = True
            try:
                await asyncio.sleep(0)
            finally:
                self._inline_candidate = False
            if self._inline_fits(shape):
                return self._run_inline(inputs, shape, outputs, deadline, now)
        pending = _Pending(inputs, shape, self._loop.create_future(), now, deadline,
                           frozenset(outputs) if outputs else None, alive=request_alive.get())
        self._queue.append(pending)
        self._queued_rows += shape.rows
        self._depth.set(len(self._queue))
        if not self._dispatch_soon:  # after the requests that arrived in this loop iteration
            self._dispatch_soon = True
            self._loop.call_soon(self._dispatch)
        try:
            return await pending.future
        except asyncio.CancelledError:
            if not pending.started:  # left the queue: it will never be computed
                self._drop(pending)
                self._rejected["cancelled"].inc()
            raise

    def _combining(self) -> bool:
        """Whether the next execution may take several requests: the policy allows it and, on this
        model's traffic, it saves CPU (or is being measured)."""
        return self._can_combine and self._choice.combine()

    def _inline_fits(self, shape: RequestShape) -> bool:
        """Idle model, nothing queued, no other request about to run inline, and the request's expected
        execution within the inline bound. `submit` yields once and asks again, so requests received
        together (a burst) queue and combine instead."""
        per_cell = self._per_cell_ewma_s
        return (self._run_now is not None and per_cell is not None and self._running == 0 and not self._queue
                and not self._inline_candidate
                and per_cell * self._layout.cells(shape.rows, shape.sizes) <= self.policy.inline_max_s)

    def _run_inline(self, inputs: Mapping[str, np.ndarray], shape: RequestShape, outputs: Sequence[str] | None,
                    deadline: float | None, now: float) -> dict[str, np.ndarray]:
        """One execution on the event loop, with the bookkeeping of an executor batch of one."""
        assert self._run_now is not None
        if deadline is not None and deadline <= now:
            self._rejected["expired"].inc()
            raise DeadlineExceeded("deadline passed before compute; not computed")
        self._queue_time.observe(0.0)
        self._observe_shapes([shape])
        result, elapsed = self._run_here(1, inputs, list(outputs) if outputs else None)
        self._record_execution([shape], elapsed)
        return result

    def _run_here(self, requests: int, inputs: Mapping[str, np.ndarray],
                  wanted: list[str] | None) -> tuple[dict[str, np.ndarray], float]:
        """One execution of `requests` requests on the event loop's thread, counted as running like an
        executor one; returns the outputs and the time it took (a failure is counted and raised)."""
        assert self._run_now is not None
        self._running += 1
        start = time.perf_counter()
        try:
            return self._run_now(inputs, wanted), time.perf_counter() - start
        except BaseException:
            self._stats.record_failure(requests)
            raise
        finally:
            self._running -= 1

    def _observe_shapes(self, shapes: Sequence[RequestShape]) -> None:
        self._batch_size.observe(len(shapes))
        self._batch_rows.observe(sum(s.rows for s in shapes))
        if shapes[0].sizes:
            self._padding.observe(padding_fraction([s.rows for s in shapes], [s.sizes for s in shapes]))

    def _record_execution(self, shapes: Sequence[RequestShape], elapsed: float) -> None:
        """Compute-time estimates (admission, inline choice), the combining choice, the compute
        histogram and OIP statistics."""
        share, ewma = elapsed / len(shapes), self._per_request_ewma_s
        self._per_request_ewma_s = share if ewma is None else 0.8 * ewma + 0.2 * share
        cells = max(sum(self._layout.cells(s.rows, s.sizes) for s in shapes), 1)
        per_cell, ewma = elapsed / cells, self._per_cell_ewma_s
        self._per_cell_ewma_s = per_cell if ewma is None else 0.8 * ewma + 0.2 * per_cell
        if self._can_combine:
            cpu, last = self._cpu_clock(), self._cpu_at_last_end
            self._cpu_at_last_end = cpu
            if last is not None:
                verdict = self._choice.saves_cpu
                self._choice.record(cells, cpu - last)
                if self._choice.saves_cpu is not verdict:  # the gauge changes only with the verdict
                    self._combining_gauge.set(0 if self._choice.saves_cpu is False else 1)
        self._compute_time.observe(elapsed)
        self._stats.record_batch(len(shapes), elapsed)

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
        try:
            self._queue.remove(pending)
        except ValueError:  # already taken
            return
        self._queued_rows -= pending.shape.rows
        self._depth.set(len(self._queue))

    # --- scheduling -----------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Starts executions while an instance is free and the queue holds a batch worth firing."""
        self._dispatch_soon = False
        while not self._closed and self._queue and self._running < self.policy.instance_count:
            wait = self._wait_s()
            if wait > 0:
                self._arm(wait)
                return
            batch = self._form_batch()
            if not batch:
                continue
            if self._batch_inline(batch):
                self._execute_now(batch)
                continue
            self._running += 1
            task = self._loop.create_task(self._execute(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _wait_s(self) -> float:
        """0 when a batch should fire now, else how long the oldest request may still wait.

        Work-conserving: an idle model never waits for company. Under load, batches form from what
        arrives while the model computes (the requests that arrive in one loop iteration join the
        same batch); the queue delay applies only while other instances of the model are busy.
        Waiting while idle measured slower here: closed-loop clients all sit in the queue, nothing
        new arrives, and the core idles for the whole delay (reports/serving.md)."""
        policy = self.policy
        if (not self._combining() or self._running == 0 or self._queued_rows >= policy.fire_size
                or not self._company_expected()):
            return 0.0
        return max(self._queue[0].enqueued + policy.max_queue_delay_s - time.monotonic(), 0.0)

    def _arm(self, wait: float) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()  # the oldest request waited its delay (or left): fire what is there

    def _expire(self, pending: _Pending, now: float) -> bool:
        if pending.future.done():  # cancelled by the caller
            return True
        if pending.alive is not None and not pending.alive():  # its caller left; the cancel is on its way
            pending.future.cancel()  # `submit` counts it
            return True
        if pending.deadline is not None and pending.deadline <= now:
            self._rejected["expired"].inc()
            pending.future.set_exception(DeadlineExceeded("deadline passed while queued; not computed"))
            return True
        bound = self.policy.max_queue_time_s
        if bound and now - pending.enqueued > bound:
            self._rejected["queue_time"].inc()
            pending.future.set_exception(ResourceExhausted(
                f"waited {(now - pending.enqueued) * 1000:.0f} ms in model {self.model.name!r}'s queue, over its "
                f"queue-time bound of {bound * 1000:.0f} ms; not computed, retry later", retry_after_s=bound))
            return True
        return False

    def _live_queue(self, now: float) -> list[_Pending]:
        live = [p for p in self._queue if not self._expire(p, now)]
        if len(live) != len(self._queue):
            self._queue = live
            self._queued_rows = sum(p.shape.rows for p in live)
        return live

    def _form_batch(self) -> list[_Pending]:
        """The oldest live request, then the queued requests of the same signature whose ragged sizes
        are closest to it, while rows, cells and the padding share stay within the policy."""
        now = time.monotonic()
        if not self._combining():
            return self._start(self._oldest_live(now), now)
        live = self._live_queue(now)
        if not live:
            self._depth.set(0)
            return []
        anchor = live[0]
        batch = [anchor]
        if len(live) > 1:
            batch += self._companions(anchor, live[1:])
        taken = set(map(id, batch))
        self._queue = [p for p in live if id(p) not in taken]
        self._queued_rows -= sum(p.shape.rows for p in batch)
        return self._start(batch, now)

    def _oldest_live(self, now: float) -> list[_Pending]:
        """The oldest queued request that is still wanted, alone (a batch of one while not combining).
        Only the front is looked at: a queued request whose client left or whose deadline passed fails
        when it reaches the front (a cancelled call already left the queue), instead of a scan of the
        whole queue for every execution, which grew with the number of clients."""
        queue = self._queue
        while queue:
            pending = queue.pop(0)
            self._queued_rows -= pending.shape.rows
            if not self._expire(pending, now):
                return [pending]
        return []

    def _start(self, batch: list[_Pending], now: float) -> list[_Pending]:
        """Marks the batch's requests as started (no longer cancellable from the queue) and records
        their time in the queue."""
        self._depth.set(len(self._queue))
        for pending in batch:
            pending.started = True
            self._queue_time.observe(now - pending.enqueued)
            self._stats.queue_ns += int((now - pending.enqueued) * 1e9)  # OIP ModelStatistics queue time
        return batch

    def _companions(self, anchor: _Pending, others: list[_Pending]) -> list[_Pending]:
        policy, cells = self.policy, self._layout.cells
        sizes = anchor.shape.sizes
        others = [p for p in others if p.shape.signature == anchor.shape.signature]
        if sizes:
            others.sort(key=lambda p: sum(abs(a - b) for a, b in zip(p.shape.sizes, sizes, strict=True)))
        rows, useful, top = anchor.shape.rows, cells(anchor.shape.rows, sizes), list(sizes)
        chosen = []
        for pending in others:
            shape = pending.shape
            new_rows = rows + shape.rows
            new_top = [max(a, b) for a, b in zip(top, shape.sizes, strict=True)]
            padded = cells(new_rows, new_top)
            new_useful = useful + cells(shape.rows, shape.sizes)
            if new_rows > policy.rows_per_execution or padded > policy.max_cells:
                continue
            if padded and 1.0 - new_useful / padded > policy.max_padding_fraction:
                continue
            chosen.append(pending)
            rows, useful, top = new_rows, new_useful, new_top
            if rows >= policy.rows_per_execution:
                break
        return chosen

    async def _execute(self, batch: list[_Pending]) -> None:
        try:
            await self._run_batch(batch)
        finally:
            self._running -= 1
            self._dispatch()

    def _batch_inline(self, batch: list[_Pending]) -> bool:
        """While the batcher does not combine, an execution runs on the event loop when the model has one
        instance and it is expected within the inline bound: on a worker's one core the executor thread
        would only take turns with the loop, at the cost of a hand-off, a task and a wake-up. While it
        combines, the executor stays: the loop then takes up requests during the run, and batches grow
        (measured: small equal requests at 64 clients cost 0.73 ms each with combined batches on the loop,
        0.64-0.67 ms on the executor, reports/serving.md).

        Not under a queue-time bound: grpc.aio takes up one new call per turn of the event loop (it asks
        gRPC core for the next call only after handling the last), so executions run back to back on
        the loop slow that take-up to about one call per execution. Under an open-loop overload the
        calls not yet taken up wait outside the process's sight (in gRPC core and the client's flow
        control), where neither the queue-time bound nor a concurrency limit can refuse them
        (`make bench-overload` at 3x: accepted p99 1,083 ms before this rule, 41 ms after it with the
        load generator's collector paused too, reports/overload.md). A bound says latency comes first,
        so executions stay off the loop; without one, the loop's lower CPU per request is kept."""
        per_cell = self._per_cell_ewma_s
        if (self._run_now is None or per_cell is None or self.policy.instance_count != 1
                or self.policy.max_queue_time_s or self._combining()):
            return False
        cells = sum(self._layout.cells(p.shape.rows, p.shape.sizes) for p in batch)
        return per_cell * cells <= self.policy.inline_max_s

    def _prepare(self, batch: list[_Pending]) -> tuple[list[RequestShape], Mapping[str, np.ndarray], list[str] | None]:
        shapes = [p.shape for p in batch]
        inputs = batch[0].inputs if len(batch) == 1 else self._layout.combine([p.inputs for p in batch], shapes)
        self._observe_shapes(shapes)
        return shapes, inputs, _union_of_outputs(batch)

    @staticmethod
    def _fail(batch: list[_Pending], exc: BaseException) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(exc)

    def _deliver(self, batch: list[_Pending], shapes: list[RequestShape], outputs: dict[str, np.ndarray],
                 elapsed: float) -> None:
        results = [outputs] if len(batch) == 1 else self._layout.split(outputs, shapes)
        self._record_execution(shapes, elapsed)
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)

    def _execute_now(self, batch: list[_Pending]) -> None:
        """`_run_batch` on the event loop's thread (see `_batch_inline`)."""
        shapes, inputs, wanted = self._prepare(batch)
        try:
            outputs, elapsed = self._run_here(len(batch), inputs, wanted)
        except BaseException as exc:
            self._fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._deliver(batch, shapes, outputs, elapsed)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        # The execution's deadline is its requests' latest (none if one has none): a backend that bounds its
        # call by the deadline (Triton) must not read whatever deadline this task's context inherited from the
        # request or the earlier execution that happened to schedule it (its own, long gone, under load).
        deadlines = [p.deadline for p in batch]
        request_deadline.set(None if None in deadlines else max(d for d in deadlines if d is not None))
        shapes, inputs, wanted = self._prepare(batch)
        start = time.perf_counter()
        try:
            outputs = await (self.model.infer(inputs) if wanted is None else self.model.infer(inputs, wanted))
        except BaseException as exc:
            self._stats.record_failure(len(batch))
            self._fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._deliver(batch, shapes, outputs, time.perf_counter() - start)

    # --- the synchronous transport's path ---------------------------------------------------
    def run_sync(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None, deadline: float | None,
                 wanted: Callable[[], bool]) -> dict[str, np.ndarray]:
        """One request on the calling thread (a thread of grpcio's synchronous server, infersuite/services/runtime/
        sync_transport.py): no queue, future or hand-off; the thread waits for a free instance of the model
        instead, and onnxruntime releases the GIL while it computes. Requests are not combined on this
        path. Admission as `submit`'s, with the threads waiting for an instance as the queue: full at
        max_queue_size, refused by queued work over the queue-time bound or a deadline it cannot meet; a
        waiter leaves uncomputed when its deadline or the bound passes, or when `wanted()` turns false
        (the client left)."""
        if not self.runs_sync:
            raise Unavailable(f"model {self.model.name!r} cannot run on the calling thread")
        with self._sync_lock:
            self._admit_sync(deadline)
            self._sync_waiting += 1
        enqueued = time.monotonic()
        try:
            shape = self._describe(inputs, signature=False)  # never combined: no batch signature needed
            self._note_arrival(enqueued)
            self._wait_for_instance(enqueued, deadline, wanted)
        finally:
            with self._sync_lock:
                self._sync_waiting -= 1
        try:
            waited = time.monotonic() - enqueued
            self._queue_time.observe(waited)
            self._observe_shapes([shape])
            assert self._run_now is not None
            start = time.perf_counter()
            try:
                result = self._run_now(inputs, list(outputs) if outputs else None)
            except BaseException:
                with self._sync_lock:
                    self._stats.record_failure(1)
                raise
            with self._sync_lock:  # the estimates and statistics, one thread at a time
                self._stats.queue_ns += int(waited * 1e9)
                self._record_execution([shape], time.perf_counter() - start)
            return result
        finally:
            self._instances.release()

    def _admit_sync(self, deadline: float | None) -> None:
        if self._closed:
            raise Unavailable(f"model {self.model.name!r} is shutting down")
        waiting, per_request = self._sync_waiting, self._per_request_ewma_s or 0.0
        if waiting >= self.policy.max_queue_size:
            raise self._reject("queue_full", ResourceExhausted(
                f"model {self.model.name!r} queue is full ({self.policy.max_queue_size} requests); retry later",
                retry_after_s=max(waiting * per_request, 0.001)))
        ahead = waiting / self.policy.instance_count * per_request
        bound = self.policy.max_queue_time_s
        if bound and ahead > bound:
            raise self._reject("queue_time", ResourceExhausted(
                f"model {self.model.name!r} has about {ahead * 1000:.0f} ms of queued work, over its queue-time "
                f"bound of {bound * 1000:.0f} ms; retry later", retry_after_s=max(ahead - bound, 0.001)))
        if deadline is not None and self._per_request_ewma_s is not None:
            left, need = deadline - time.monotonic(), ahead + per_request
            if left < need:
                raise self._reject("deadline", DeadlineExceeded(
                    f"deadline cannot be met: {left * 1000:.1f} ms left, about {need * 1000:.1f} ms of queue "
                    f"and compute ahead on model {self.model.name!r}"))

    def _wait_for_instance(self, enqueued: float, deadline: float | None, wanted: Callable[[], bool]) -> None:
        """Takes an instance (the caller releases it); raises when the request must leave uncomputed."""
        bound = self.policy.max_queue_time_s
        while not self._instances.acquire(timeout=SYNC_WAIT_SLICE_S):
            now = time.monotonic()
            if self._closed:
                raise Unavailable(f"model {self.model.name!r} was unloaded")
            if deadline is not None and deadline <= now:
                self._rejected["expired"].inc()
                raise DeadlineExceeded("deadline passed while queued; not computed")
            if bound and now - enqueued > bound:
                self._rejected["queue_time"].inc()
                raise ResourceExhausted(
                    f"waited {(now - enqueued) * 1000:.0f} ms in model {self.model.name!r}'s queue, over its "
                    f"queue-time bound of {bound * 1000:.0f} ms; not computed, retry later", retry_after_s=bound)
            if not wanted():
                self._rejected["cancelled"].inc()
                raise Unavailable("the client left before its request was computed")
        if deadline is not None and deadline <= time.monotonic():
            self._instances.release()
            self._rejected["expired"].inc()
            raise DeadlineExceeded("deadline passed while queued; not computed")

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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for pending in list(self._queue):
            if not pending.future.done():
                pending.future.set_exception(Unavailable(f"model {self.model.name!r} was unloaded"))
        self._queue.clear()
        self._queued_rows = 0
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
