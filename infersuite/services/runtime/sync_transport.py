"""grpcio's synchronous server as the suite's transport (INFERSUITE_TRANSPORT=sync).

An empty unary RPC costs about half the server CPU on grpcio's synchronous server (a thread pool)
that it costs on grpc.aio (reports/serving.md measures both floors in every round). With this
transport, gRPC calls arrive on a pool of `transport_threads` threads instead of the event loop:

- the hot unary methods a servicer names in `SYNC_METHODS` (OIP ModelInfer) run on the calling
  thread to the end: decoding, limits, the model (`ModelManager.run_sync`: the thread waits for a free
  instance and runs onnxruntime itself, which releases the GIL), encoding. Requests are not combined on
  this path (combining never saved CPU on the ranking mix: reports/serving.md);
- every other method (the families' servicers, control, health, reflection, streams) is the same
  asyncio servicer as on grpc.aio, handed to the runtime's event loop, which runs in the main thread
  as with grpc.aio: the call's thread waits for its answer (or pulls a stream's answers one by one).

The same behaviours as the grpc.aio wrapper (infersuite/services/runtime/handler_wrapper.py): deadline in
context, bearer token, undecodable requests refused INVALID_ARGUMENT, errors mapped to their status
by `error_status`, request metrics, the in-flight byte budget. A call whose client left is counted
CANCELLED (or DEADLINE_EXCEEDED past its deadline) and the work it handed to the loop is cancelled.

What differs: every call in progress holds a thread, streams included (an open ModelStreamInfer,
ScoreStream or health Watch holds one for its lifetime, plus one that reads its requests). Calls past
the pool wait in gRPC's queue for a thread; set INFERSUITE_MAX_CONCURRENT_RPCS so that they are
refused RESOURCE_EXHAUSTED with pushback instead (at most `transport_threads` calls at once:
infersuite/services/runtime/call_limit.py, docs/limits.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
from prometheus_client import Counter

from infersuite.services.runtime.call_limit import CallLimit, LimitedPool
from infersuite.services.runtime.context import request_alive, request_deadline
from infersuite.services.runtime.errors import InferSuiteError, InvalidArgument
from infersuite.services.runtime.handler_wrapper import (
    DEADLINE_SLACK_S,
    Closing,
    MethodMetrics,
    Undecodable,
    per_method,
    refuse_early,
    tolerant,
)
from infersuite.services.runtime.inflight_bytes import InflightBytes
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.security import BearerToken
from infersuite.services.runtime.status import error_status

log = logging.getLogger(__name__)

READ_AHEAD = 2  # requests of a client stream read before the servicer asks for them
WRITE_POLL_S = 0.05  # how often a call's thread waiting for written answers looks whether the writer ended


class _Aborted(Exception):
    """An asyncio servicer's `context.abort` on the synchronous transport: the wrapper ends the call."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code, self.details = code, details


class _LoopContext:
    """What an asyncio servicer handed to the event loop sees as its context: the call's own synchronous
    context, with the asyncio `abort` and, for a response stream, `write` (health Watch writes its
    answers): written messages go to the call's thread, which sends them."""

    def __init__(self, context: grpc.ServicerContext, written: queue.SimpleQueue[Any] | None = None):
        self._context, self._written = context, written

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise _Aborted(code, details)

    async def write(self, message: Any) -> None:
        if self._written is None:
            raise RuntimeError("write() on a call without a response stream")
        self._written.put(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class _ClientStream:
    """A client stream's requests, as the asyncio servicer reads them: a thread of its own reads the
    synchronous iterator at most READ_AHEAD requests ahead (the servicer's own backpressure holds)."""

    def __init__(self, requests: Iterator[Any], loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._ready: asyncio.Queue[Any] = asyncio.Queue()
        self._room = threading.Semaphore(READ_AHEAD)
        self._done = False
        threading.Thread(target=self._read, args=(requests,), name="grpc-sync-stream", daemon=True).start()

    def _read(self, requests: Iterator[Any]) -> None:
        end: Any = StopAsyncIteration()
        try:
            for request in requests:
                while not self._room.acquire(timeout=0.5):
                    if self._done:
                        return
                self._put(request)
        except grpc.RpcError:  # the call ended (cancelled, past its deadline)
            pass
        except Exception as exc:  # handed to the servicer, which maps it
            end = exc
        self._put(end)

    def _put(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody reads any more
            self._loop.call_soon_threadsafe(self._ready.put_nowait, item)

    def close(self) -> None:
        self._done = True

    def __aiter__(self) -> _ClientStream:
        return self

    async def __anext__(self) -> Any:
        item = await self._ready.get()
        if isinstance(item, BaseException):
            raise item
        self._room.release()
        if isinstance(item, Undecodable):  # the stream can be read on after it (runtime/streaming.py)
            raise InvalidArgument(f"a message of the stream is not a valid {item.type_name} protobuf message")
        return item


class _Call:
    """One call's hand-offs to the event loop; the one in progress is cancelled if the call ends first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, context: grpc.ServicerContext):
        self.loop = loop
        self._current: concurrent.futures.Future[Any] | None = None
        self._lock = threading.Lock()
        self.ended = False
        context.add_callback(self._end)

    def _end(self) -> None:
        with self._lock:
            self.ended = True
            current = self._current
        if current is not None:
            current.cancel()

    def submit(self, awaitable: Any) -> concurrent.futures.Future[Any]:
        """Starts `awaitable` on the loop; it is cancelled if the call ends first."""
        future = asyncio.run_coroutine_threadsafe(_awaited(awaitable), self.loop)
        with self._lock:
            self._current = future
            if self.ended:
                future.cancel()
        return future

    def run(self, awaitable: Any) -> Any:
        """The result of `awaitable` run on the loop (raises what it raises)."""
        try:
            return self.submit(awaitable).result()
        finally:
            with self._lock:
                self._current = None


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class SyncHandlerWrapper:
    """The synchronous transport's counterpart of HandlerWrapper: wraps every handler once, when it
    is registered."""

    def __init__(self, loop: asyncio.AbstractEventLoop, metrics: Metrics, auth: BearerToken | None = None,
                 budget: InflightBytes | None = None, closing: Closing | None = None):
        self._loop, self._metrics, self._auth = loop, metrics, auth
        self._budget = budget or InflightBytes.on(metrics)
        self._closing = closing

    def wrap(self, full_method: str, handler: grpc.RpcMethodHandler | None) -> Any:
        if handler is None:
            return None
        metrics, auth, closing = per_method(self._metrics, self._auth, full_method, self._closing)
        method = full_method.rpartition("/")[2]
        deserialize, serialize = tolerant(handler.request_deserializer), handler.response_serializer
        if handler.unary_unary:
            inner = handler.unary_unary
            native = getattr(getattr(inner, "__self__", None), "SYNC_METHODS", {}).get(method)
            behaviour = self._unary(metrics, auth, closing, getattr(inner.__self__, native) if native else None, inner)
            return grpc.unary_unary_rpc_method_handler(behaviour, deserialize, serialize)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._stream_unary(metrics, auth, closing, handler.stream_unary), deserialize, serialize)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(metrics, auth, closing, handler.unary_stream, client_stream=False),
                deserialize, serialize)
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(metrics, auth, closing, handler.stream_stream, client_stream=True),
            deserialize, serialize)

    @contextlib.contextmanager
    def _mapped(self, metrics: MethodMetrics, context: grpc.ServicerContext, request: Any,
                auth: BearerToken | None, closing: Closing | None) -> Iterator[None]:
        """One call: deadline in context, errors mapped to gRPC codes, metrics recorded."""
        start, code = time.perf_counter(), grpc.StatusCode.OK
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        request_deadline.set(deadline)
        request_alive.set(context.is_active)  # the model queue drops a request whose client left
        try:
            refuse_early(auth, context, request, closing)
            yield
            if not context.is_active():
                code = _gone(deadline)
        except GeneratorExit:  # gRPC closed a stream's answers: the call ended
            code = _gone(deadline)
            raise
        except concurrent.futures.CancelledError:  # the call ended before its answer: nobody to tell
            code = _gone(deadline)
            context.abort(code, "the call ended before its answer")
        except _Aborted as exc:
            code = exc.code
            context.abort(exc.code, exc.details)
        except Exception as exc:  # every other error is mapped, never leaked
            if not context.is_active():  # nobody to tell (an abort, so gRPC logs no traceback)
                code = _gone(deadline)
                context.abort(code, "the call ended before its answer")
            code, message = error_status(exc, "a handler")
            if isinstance(exc, InferSuiteError) and exc.trailing_metadata:
                context.set_trailing_metadata(exc.trailing_metadata)
            context.abort(code, message)
        finally:
            metrics.count(code)
            metrics.latency.observe(time.perf_counter() - start)

    def _unary(self, metrics: MethodMetrics, auth: BearerToken | None, closing: Closing | None,
               native: Callable[..., Any] | None,
               inner: Callable[..., Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        budget, loop = self._budget, self._loop

        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            with self._mapped(metrics, context, request, auth, closing):
                size = budget.admit(request)  # before the handler decodes anything (inflight_bytes.py)
                try:
                    if native is not None:
                        return native(request, context)
                    return _Call(loop, context).run(inner(request, _LoopContext(context)))
                finally:
                    budget.release(size)
            return None  # not reached: _mapped ends a failed call by raising

        return behaviour

    def _stream_unary(self, metrics: MethodMetrics, auth: BearerToken | None, closing: Closing | None,
                      inner: Callable[..., Any]) -> Callable[[Iterator[Any], grpc.ServicerContext], Any]:
        loop = self._loop

        def behaviour(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            stream = _ClientStream(requests, loop)
            try:
                with self._mapped(metrics, context, None, auth, closing):
                    return _Call(loop, context).run(inner(stream, _LoopContext(context)))
            finally:
                stream.close()
            return None

        return behaviour

    def _streaming(self, metrics: MethodMetrics, auth: BearerToken | None, closing: Closing | None,
                   inner: Callable[..., Any],
                   client_stream: bool) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        budget, loop = self._budget, self._loop

        def behaviour(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            stream = _ClientStream(request, loop) if client_stream else None
            call = _Call(loop, context)
            try:
                with self._mapped(metrics, context, None if client_stream else request, auth, closing):
                    # A unary request is counted for its whole answer; a stream's messages by the servicer.
                    size = 0 if client_stream else budget.admit(request)
                    try:
                        written: queue.SimpleQueue[Any] = queue.SimpleQueue()
                        answers = inner(stream if client_stream else request, _LoopContext(context, written))
                        if hasattr(answers, "__aiter__"):
                            yield from _pulled(call, answers)
                        else:  # a coroutine that answers through context.write
                            yield from _written(call.submit(answers), written)
                    finally:
                        budget.release(size)
            finally:
                if stream is not None:
                    stream.close()

        return behaviour


def _gone(deadline: float | None) -> grpc.StatusCode:
    expired = deadline is not None and time.monotonic() >= deadline - DEADLINE_SLACK_S
    return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED


def _written(done: concurrent.futures.Future[Any], written: queue.SimpleQueue[Any]) -> Iterator[Any]:
    """The messages a coroutine writes, sent as they come, until it ends (then its error, if any)."""
    while True:
        try:
            yield written.get(timeout=WRITE_POLL_S)
        except queue.Empty:
            if done.done() and written.empty():
                done.result()
                return


def _pulled(call: _Call, answers: AsyncIterator[Any]) -> Iterator[Any]:
    """An async generator's items, each pulled from the loop by the call's thread."""
    iterator = answers.__aiter__()
    try:
        while True:
            try:
                item = call.run(iterator.__anext__())
            except StopAsyncIteration:
                return
            yield item
    finally:
        closing = getattr(iterator, "aclose", None)
        if closing is not None and not call.ended:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(closing(), call.loop).result(timeout=5)


class SyncTransport:
    """grpcio's synchronous server behind the few calls InferSuiteServer makes on grpc.aio's."""

    def __init__(self, options: list[tuple[str, Any]], threads: int, call_limit: int, refused_calls: Counter,
                 pushback: bool = True):
        """`call_limit` 0: calls past the `threads` wait in gRPC's queue for one; else at most
        min(call_limit, threads) calls at once, more refused RESOURCE_EXHAUSTED: with `pushback` by the
        suite's limit (infersuite/services/runtime/call_limit.py), without it by grpcio's own, which costs
        less server CPU per refusal but carries no retry hint and is not counted."""
        self._pool: concurrent.futures.ThreadPoolExecutor
        if call_limit and pushback:
            limit = CallLimit(min(call_limit, threads), refused_calls)
            self._pool = LimitedPool(threads, limit)
            self._server = grpc.server(self._pool, options=options, interceptors=[limit])
        else:
            self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="grpc-sync")
            self._server = grpc.server(self._pool, options=options,
                                       maximum_concurrent_rpcs=min(call_limit, threads) if call_limit else None)

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, Any]) -> None:
        self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, credentials)

    async def start(self) -> None:
        self._server.start()

    async def stop(self, grace: float | None) -> None:
        await asyncio.to_thread(self._server.stop(grace).wait)
        self._pool.shutdown(wait=False)

    async def wait_for_termination(self) -> None:
        await asyncio.to_thread(self._server.wait_for_termination)


def refuse_unknown(count: Callable[[], None]) -> Callable[[Any, grpc.ServicerContext], Iterator[bytes]]:
    """The synchronous catch-all for a service or method this server does not have."""

    def refuse(requests: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
        count()
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown service or method")
        yield b""  # unreachable: makes this a generator, as a stream handler must be

    return refuse

