"""The call limit (INFERSUITE_MAX_CONCURRENT_RPCS) of either transport, with a retry hint.

grpcio's own `maximum_concurrent_rpcs` (either transport) refuses a call past the limit with
RESOURCE_EXHAUSTED and no trailing metadata, so a client cannot tell when to come back. Here the limit
is ours (INFERSUITE_CALL_LIMIT_PUSHBACK=true; the default on the synchronous transport; on grpc.aio the
default is grpc.aio's own limit, cheaper under heavy overload: reports/overload.md).

grpc.aio (`AioCallLimit`): decided by the handler wrapper (infersuite/services/runtime/handler_wrapper.py)
first thing in each call's handler, before the request is decoded: a unary request's bytes reach the
handler undecoded and are decoded only when the call is admitted. A call past the limit is answered
RESOURCE_EXHAUSTED with `grpc-retry-pushback-ms`; its place is the handler's until it returns. Health's
methods are not limited (a probe that fails under overload gets a busy replica restarted), so its open
Watch streams hold no place either.

The synchronous transport (`CallLimit`): decided where grpcio looks up each call's handler (a server
interceptor, on grpcio's one polling thread, before the call reaches the thread pool):

- a call within the limit gets its own handler and a thread of the pool, and holds its place until
  that thread is done with it (whether or not its handler ran: a client may leave first);
- a call past it gets a refusal handler, RESOURCE_EXHAUSTED with `grpc-retry-pushback-ms`, which
  reads nothing and runs at once on the polling thread itself (grpcio hands a handler to the executor
  its behaviour names in `experimental_thread_pool`; the refusal's runs what it is given inline), as
  grpcio's own refusal does: a refusal never waits behind the calls being served, and takes no
  thread from them.

On both, the pushback is the recent mean time of an admitted unary call (its handler's time, or its
thread's, waits included): about when a place frees. Refusals are counted in
infersuite_refused_calls_total{reason="call_limit"}.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import Counter

from infersuite.services.runtime.errors import RETRY_PUSHBACK_KEY

SMOOTHING = 0.05  # weight of the newest unary call in the mean call time behind the pushback
FIRST_PUSHBACK_S = 0.01  # the pushback before any unary call has been timed


def refusal(limit: int, mean_call_s: float) -> tuple[int, str]:
    """The pushback (ms) and message of a call-limit refusal: the pushback is about when a place frees."""
    pushback_ms = max(1, round(mean_call_s * 1000))
    return pushback_ms, (f"this server process is working on its limit of {limit} calls at once "
                         f"(INFERSUITE_MAX_CONCURRENT_RPCS); retry after {pushback_ms} ms")


class AioCallLimit:
    """grpc.aio: at most `limit` calls in handlers at once; past it, ResourceExhausted with pushback. Used
    from the event loop's thread only."""

    def __init__(self, limit: int, refused_calls: Counter):
        self.limit = limit
        self.active = 0
        self.mean_call_s = FIRST_PUSHBACK_S
        self._refusals = refused_calls.labels("call_limit")

    @property
    def full(self) -> bool:
        return self.active >= self.limit

    def enter(self) -> float:
        """Takes a place for a call the limit admitted (not `full`); returns its start, for `leave`."""
        self.active += 1
        return time.monotonic()

    def refuse(self, context: grpc.aio.ServicerContext) -> None:
        """Ends a call past the limit RESOURCE_EXHAUSTED with pushback, by setting its status (no exception
        travels through grpc.aio: the handler returns and grpc.aio sends the status alone)."""
        self._refusals.inc()
        pushback_ms, message = refusal(self.limit, self.mean_call_s)
        context.set_trailing_metadata(((RETRY_PUSHBACK_KEY, str(pushback_ms)),))
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details(message)

    def leave(self, started: float, unary: bool) -> None:
        self.active -= 1
        if unary:
            self.mean_call_s += SMOOTHING * (time.monotonic() - started - self.mean_call_s)


class CallLimit(grpc.ServerInterceptor):
    """At most `limit` calls at once in the pool's threads; past it, refused with pushback."""

    def __init__(self, limit: int, refused_calls: Counter):
        self.limit = limit
        self.active = 0  # admitted calls whose pool thread is not done with them
        self.mean_call_s = FIRST_PUSHBACK_S
        self._refusals = refused_calls.labels("call_limit")
        self._lock = threading.Lock()
        # What the last handler lookup decided, for the pool's next submit on the same (polling) thread:
        # (thread id, unary) when it admitted a call, None when it refused or has been taken.
        self._decided: tuple[int, bool] | None = None
        self._refusal = grpc.stream_unary_rpc_method_handler(self._refusing())

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        with self._lock:
            admitted = self.active < self.limit
        if not admitted:
            self._decided = None
            return self._refusal
        handler = continuation(handler_call_details)
        unary = handler is not None and not handler.request_streaming and not handler.response_streaming
        self._decided = (threading.get_ident(), unary)
        return handler

    def taken(self) -> tuple[bool, bool]:
        """(admitted, unary) for the call grpcio now hands to the pool: what the lookup just before it on
        this thread decided. grpcio looks a call's handler up and submits it on its one polling thread,
        nothing between the two; a lookup not followed by a submit (no handler: grpcio answers UNIMPLEMENTED)
        is overwritten by the next lookup. Submits from other threads are never calls."""
        decided = self._decided
        if decided is None or decided[0] != threading.get_ident():
            return False, False
        self._decided = None
        with self._lock:
            self.active += 1
        return True, decided[1]

    def release(self, started: float, unary: bool) -> None:
        with self._lock:
            self.active -= 1
            if unary:
                self.mean_call_s += SMOOTHING * (time.monotonic() - started - self.mean_call_s)

    def _refusing(self) -> Callable[[Iterator[bytes], grpc.ServicerContext], None]:
        """The refusal's behaviour (a stream handler: nothing is read), run inline by grpcio."""

        def refuse(requests: Iterator[bytes], context: grpc.ServicerContext) -> None:
            self._refusals.inc()
            pushback_ms, message = refusal(self.limit, self.mean_call_s)
            context.set_trailing_metadata(((RETRY_PUSHBACK_KEY, str(pushback_ms)),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

        refuse.experimental_thread_pool = _Inline()  # type: ignore[attr-defined]
        return refuse


class _Inline(concurrent.futures.ThreadPoolExecutor):
    """Runs what it is given at once on the calling thread; starts no thread."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to whoever waits on the future, as a pool would
            future.set_exception(exc)
        return future


class LimitedPool(concurrent.futures.ThreadPoolExecutor):
    """The transport's thread pool: each admitted call's place in `limit` is released when its thread is
    done with it."""

    def __init__(self, threads: int, limit: CallLimit):
        super().__init__(threads, thread_name_prefix="grpc-sync")
        self.call_limit = limit

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        admitted, unary = self.call_limit.taken()
        started = time.monotonic()
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            if admitted:
                self.call_limit.release(started, False)
            raise
        if admitted:
            future.add_done_callback(lambda _: self.call_limit.release(started, unary))
        return future
